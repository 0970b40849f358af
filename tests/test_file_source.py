"""The user's own data files (--source file) and the forward-filled risk-free rate.

Test data is derived from the real snapshot (../shared/data) in tmp_path, never committed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from job import warehouse
from job.config import load_settings
from job.months import month_start
from job.validation._frames import FRAMES, FrameContext

UNIVERSE = {"SPY": "S&P 500", "VCR": "Consumer Discretionary", "VDC": "Consumer Staples", "VDE": "Energy",
            "VFH": "Financials", "VNQ": "Real Estate", "VHT": "Health Care", "VIS": "Industrials",
            "VGT": "Information Technology", "VAW": "Materials", "VOX": "Communication Services",
            "VPU": "Utilities"}


def month_end_returns(snapshot_dir: Path) -> pd.DataFrame:
    """Monthly total returns from the snapshot's daily closes: (date = the month's last trading day, asset, ret)."""
    rows = []
    for ticker in UNIVERSE:
        raw = pd.read_csv(snapshot_dir / "prices" / f"{ticker}.csv", dtype={"Date": str})
        daily = pd.Series(raw["Close"].to_numpy(), index=pd.to_datetime(raw["Date"].str[:10]))
        month_end = daily.groupby(daily.index.to_period("M")).tail(1)
        month_end = month_end.iloc[:-1]  # the snapshot's last month (2025-12) is incomplete
        ret = month_end / month_end.shift() - 1
        rows.append(pd.DataFrame({"date": month_end.index.strftime("%Y-%m-%d"), "asset": ticker,
                                  "value": ret.to_numpy()}).iloc[1:])
    return pd.concat(rows, ignore_index=True)


def _config(tmp_path: Path, file_table: str) -> Path:
    assets = "\n".join(f'{t} = "{s}"' for t, s in UNIVERSE.items())
    path = tmp_path / "rotation.toml"
    path.write_text(f'[data]\nuniverse = "mine"\n[universes.mine]\nbenchmark = "SPY"\n[universes.mine.assets]\n'
                    f"{assets}\n[universes.mine.file]\n{file_table}\n")
    return path


def test_returns_file_gives_the_same_dataset_as_the_price_csvs(rotation, snapshot_dir: Path, tmp_path: Path,
                                                               snapshot_warehouse: Path) -> None:
    """Monthly returns in percent, one long CSV, + the snapshot's macro data == the snapshot's price CSVs."""
    returns = month_end_returns(snapshot_dir)
    csv = tmp_path / "returns.csv"
    returns.assign(value=returns["value"] * 100).to_csv(csv, index=False, float_format="%.15g")
    config = _config(tmp_path, f'path = "{csv}"\nkind = "returns"\nunit = "percent"')
    mine = tmp_path / "w.duckdb"
    result = rotation("--config", str(config), "--warehouse", str(mine), "ingest", "--source", "file,snapshot",
                      "--snapshot-dir", str(snapshot_dir))
    assert result.exit_code == 0, result.stderr[-2000:]
    settings = load_settings(environ={})
    theirs, as_of = warehouse.load_dataset(settings, snapshot_warehouse)
    ours, our_as_of = warehouse.load_dataset(settings, mine)
    assert our_as_of == as_of
    assert list(ours.features.columns) == list(theirs.features.columns)
    assert ours.features.index.equals(theirs.features.index)
    np.testing.assert_allclose(ours.returns.to_numpy(), theirs.returns.to_numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.features.to_numpy(), theirs.features.to_numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.risk_free.to_numpy(), theirs.risk_free.to_numpy())
    # the labels (next month's returns), and so the backtest, are the same
    ours_labels, theirs_labels = ours.labels(), theirs.labels()
    assert ours_labels.index.equals(theirs_labels.index)
    np.testing.assert_allclose(ours_labels.to_numpy(), theirs_labels.to_numpy(), rtol=1e-9, atol=1e-12)


def test_per_asset_parquet_prices(snapshot_dir: Path, tmp_path: Path) -> None:
    """One Parquet file per asset with daily prices (date, value) reads like the snapshot's CSVs."""
    from job.sources.files import fetch_files

    for ticker in ("SPY", "VGT"):
        raw = pd.read_csv(snapshot_dir / "prices" / f"{ticker}.csv", dtype={"Date": str})
        pd.DataFrame({"day": pd.to_datetime(raw["Date"].str[:10]), "close": raw["Close"]}).to_parquet(
            tmp_path / f"{ticker}.parquet")
    config = _config(tmp_path, f'path = "{tmp_path}/{{asset}}.parquet"\nkind = "prices"\n'
                     'date_column = "day"\nvalue_column = "close"')
    text = config.read_text()
    text = text.replace("\n".join(f'{t} = "{s}"' for t, s in UNIVERSE.items()),
                        'SPY = "S&P 500"\nVGT = "Information Technology"')
    config.write_text(text)
    settings = load_settings(config, environ={})
    data = fetch_files(settings, settings.universe("file"))
    assert sorted(data.prices["asset"].unique()) == ["SPY", "VGT"]
    assert data.details["prices"]["VGT"][0] == "2004-01-30"


@pytest.mark.parametrize(("body", "needle"), [
    ("date,asset,value\n2020-01,SPY,1.5\n2020-02,SPY,abc\n", r"returns\.csv: line 3: return 'abc' is not a number"),
    ("date,asset,value\n2020-01,SPY,1.5\n2020-02,SPY,350\n2020-03,SPY,1\n", r"line 3: asset=SPY month=2020-02: "
     r"return 3\.5"),
    ("date,asset,value\n2020-01,SPY,1.5\n2020-03,SPY,1\n", r"line 3: asset=SPY month 2020-03 follows 2020-01"),
    ("date,asset,value\n2020-01,SPY,1.5\n2020-13,SPY,1\n", r"line 3: bad date '2020-13'"),
    ("date,asset,value\n", r"returns\.csv: no data rows|no rows for"),
])
def test_bad_rows_of_a_returns_file_exit_3(rotation, tmp_path: Path, body: str, needle: str) -> None:
    import re

    (tmp_path / "returns.csv").write_text(body)
    config = _config(tmp_path, f'path = "{tmp_path}/returns.csv"\nkind = "returns"\nunit = "percent"')
    config.write_text(config.read_text().replace("\n".join(f'{t} = "{s}"' for t, s in UNIVERSE.items()),
                                                 'SPY = "S&P 500"'))
    result = rotation("--config", str(config), "--warehouse", str(tmp_path / "w.duckdb"), "ingest",
                      "--source", "file")
    assert result.exit_code in (2, 3), result.stderr
    assert re.search(needle, result.error), result.error
    assert not (tmp_path / "w.duckdb").exists()


def test_returns_without_a_stated_unit_is_a_configuration_error(rotation, tmp_path: Path) -> None:
    (tmp_path / "returns.csv").write_text("date,asset,value\n2020-01,SPY,1.5\n")
    config = _config(tmp_path, f'path = "{tmp_path}/returns.csv"\nkind = "returns"')
    result = rotation("--config", str(config), "--warehouse", str(tmp_path / "w.duckdb"), "ingest",
                      "--source", "file")
    assert result.exit_code == 2
    assert "state the unit" in result.error


# --- risk-free: forward-filled, never a silent 0.0 -------------------------------------------------------


def test_risk_free_is_forward_filled_and_warned(snapshot_warehouse: Path) -> None:
    """Fama/French ends 2024-12 and the 2025-02 FRED-MD vintage's TB3MS ends 2025-01: 2025-02 onwards take
    January's T-bill rate (not 0.0), and the risk_free frame lists those months for the warning."""
    settings = load_settings(environ={})
    with warehouse.connect(snapshot_warehouse, read_only=True) as con:
        rf = con.execute("SELECT month, rf, source, rf_known FROM risk_free_monthly ORDER BY month").df()
        rf["m"] = rf["month"].dt.strftime("%Y-%m")
        by = rf.set_index("m")
        assert by.loc["2024-12", "source"] == "snapshot"
        assert by.loc["2025-01", "source"] == "TB3MS"
        assert by.loc["2025-02", "source"] == "forward-filled TB3MS of 2025-01"
        assert by.loc["2025-02", "rf"] == pytest.approx(by.loc["2025-01", "rf"]) and by.loc["2025-02", "rf"] > 0
        assert pd.isna(by.loc["2025-02", "rf_known"])
        assert rf["rf"].notna().all()     # (the real RF is 0.00 % in some months of 2009-2015)
        frame = FRAMES["risk_free"].build(FrameContext(con=con, settings=settings, dataset=None,
                                                       as_of=pd.Period("2025-06", freq="M")))
    assert frame.to_dict("records") == [{"months": "2025-02..2025-06", "n_months": 5,
                                         "source": "forward-filled TB3MS of 2025-01", "rf_from_source": None}] or (
        frame["months"].tolist() == ["2025-02..2025-06"] and frame["rf_from_source"].isna().all())
    assert month_start(pd.Period("2025-02", freq="M")).isoformat() == "2025-02-01"
