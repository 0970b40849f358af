"""The DuckDB warehouse: real returns, idempotent one-transaction ingest, bad input leaves it unchanged."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from job import warehouse
from job.config import load_settings
from job.sources import fetch
from job.sources.base import SourceData

TABLES = ("assets", "prices_daily", "series_meta", "macro_observations", "risk_free", "ingests")
VANGUARD_ETF = ["SPY", "VCR", "VDC", "VDE", "VFH", "VNQ", "VHT", "VIS", "VGT", "VAW", "VOX", "VPU"]


def table_digest(path: Path) -> dict[str, tuple]:
    """Row count and order-free hashes of every row (all columns, ingested_at included) per raw table."""
    with duckdb.connect(str(path), read_only=True) as con:
        return {t: con.execute(f"SELECT count(*), sum(hash(t)::HUGEINT), bit_xor(hash(t)) FROM {t} t").fetchone()
                for t in TABLES}


def table_frames(path: Path) -> dict[str, pd.DataFrame]:
    """Every raw table's full content, in a canonical order."""
    with duckdb.connect(str(path), read_only=True) as con:
        frames = {t: con.execute(f"SELECT * FROM {t}").df() for t in TABLES}
    return {t: f.sort_values(list(f.columns)).reset_index(drop=True) for t, f in frames.items()}


@pytest.fixture(scope="module")
def snapshot_data(snapshot_dir: Path) -> SourceData:
    """The snapshot as the source delivers it (read once per module)."""
    settings = load_settings(environ={})
    return fetch(["snapshot"], settings, settings.universe("snapshot"), snapshot_dir)


@pytest.fixture
def snapshot_copy(snapshot_warehouse: Path, tmp_path: Path) -> Path:
    return Path(shutil.copy(snapshot_warehouse, tmp_path / "warehouse.duckdb"))


@pytest.fixture
def sample_copy(sample_warehouse: Path, tmp_path: Path) -> Path:
    return Path(shutil.copy(sample_warehouse, tmp_path / "sample.duckdb"))


# --- the real snapshot ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("year", "published"), [(2008, -36.8), (2020, 18.3), (2024, 24.9)])
def test_spy_calendar_year_total_returns_match_published(snapshot_warehouse: Path, year: int,
                                                          published: float) -> None:
    """Monthly total returns of SPY compound to its published calendar-year returns (within 0.2 pp)."""
    with warehouse.connect(snapshot_warehouse, read_only=True) as con:
        rets = con.execute("SELECT ret FROM monthly_returns WHERE asset = 'SPY' AND year(month) = ? "
                           "ORDER BY month", [year]).df()["ret"]
    assert len(rets) == 12 and rets.notna().all()
    assert (rets + 1).prod() * 100 - 100 == pytest.approx(published, abs=0.2)


def test_vanguard_etf_returns_are_aligned_from_2004_10(snapshot_warehouse: Path) -> None:
    """Every decision month from 2004-10 on has a return for all 12 assets, with no gap. Before that,
    decision months hold the assets that had started (unbalanced panels: a later fund is not a gap)."""
    with warehouse.connect(snapshot_warehouse, read_only=True) as con:
        assets = [r[0] for r in con.execute("SELECT asset FROM assets ORDER BY position").fetchall()]
        months = con.execute("SELECT month, n_assets FROM decision_months ORDER BY month").df()
        first_vde = con.execute("SELECT min(month) FROM monthly_returns WHERE asset = 'VDE' AND ret IS NOT NULL"
                                ).fetchone()[0]
    assert assets == VANGUARD_ETF
    periods = pd.PeriodIndex(months["month"], freq="M")
    full = periods >= pd.Period("2004-10", "M")
    assert (periods == pd.period_range(periods[0], periods[-1], freq="M")).all()
    assert (months.loc[full, "n_assets"] == 12).all() and (months.loc[~full, "n_assets"] < 12).all()
    assert str(first_vde)[:7] == "2004-10"          # VDE starts 2004-09-29: its first full month is 2004-10


def test_ingest_records_provenance(snapshot_warehouse: Path) -> None:
    with warehouse.connect(snapshot_warehouse, read_only=True) as con:
        info = warehouse.latest_ingest(con)
        sources = {r[0] for r in con.execute("SELECT DISTINCT source FROM prices_daily").fetchall()}
        vintages = {r[0] for r in con.execute("SELECT DISTINCT vintage FROM macro_observations").fetchall()}
        rf = con.execute("SELECT rf FROM risk_free WHERE month = DATE '2008-01-01'").fetchone()[0]
    assert info["source"] == "snapshot" and info["universe"] == "vanguard-etf"
    assert sources == {"snapshot"}
    assert vintages == {"2019-10", "2025-02", "latest"}
    assert rf == pytest.approx(0.0021)               # Fama/French RF 0.21 % in 2008-01


# --- idempotence and atomicity ------------------------------------------------------------------------------


def test_ingesting_the_same_data_twice_changes_nothing(snapshot_copy: Path, snapshot_data: SourceData) -> None:
    """Re-ingesting identical data leaves every raw table identical, ingested_at included."""
    before = table_frames(snapshot_copy)
    universe = load_settings(environ={}).universe("snapshot")
    summary = warehouse.ingest(snapshot_copy, snapshot_data, universe)
    after = table_frames(snapshot_copy)
    assert summary["changed_rows"] == 0
    for table in TABLES[:-1]:
        pd.testing.assert_frame_equal(after[table], before[table], obj=table)
    assert len(after["ingests"]) == len(before["ingests"]) + 1     # the ingest log records the run
    assert summary["price_rows"] == len(before["prices_daily"])


def test_a_changed_value_is_updated_in_place(sample_copy: Path) -> None:
    settings = load_settings(environ={})
    universe = settings.universe("sample")
    data = fetch(["sample"], settings, universe, None)
    data.prices.loc[data.prices.index[-1], "close"] *= 1.5
    summary = warehouse.ingest(sample_copy, data, universe)
    assert summary["changed_rows"] == 1
    assert summary["price_rows"] == len(data.prices)


@pytest.mark.parametrize("exc", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_failure_mid_ingest_leaves_prior_tables_unchanged(monkeypatch, sample_copy: Path,
                                                          exc: BaseException) -> None:
    """An error after the prices were upserted rolls everything back: the tables are exactly as before."""
    settings = load_settings(environ={})
    universe = settings.universe("sample")
    data = fetch(["sample"], settings.with_overrides({"data": {"sample_seed": 99}}), universe, None)
    before = table_digest(sample_copy)
    real_upsert = warehouse._upsert
    calls: list[str] = []

    def failing_upsert(con, table, frame, source, now):  # type: ignore[no-untyped-def]
        calls.append(table)
        if len(calls) == 2:
            raise exc
        return real_upsert(con, table, frame, source, now)

    monkeypatch.setattr(warehouse, "_upsert", failing_upsert)
    with pytest.raises(type(exc)):
        warehouse.ingest(sample_copy, data, universe)
    assert calls == ["prices_daily", "macro_observations"]         # the prices had been written
    assert table_digest(sample_copy) == before


# --- bad input through the CLI: one line, an exit code, nothing written ---------------------------------------


def _corrupt_snapshot(snapshot_dir: Path, target: Path, ticker: str, edit) -> Path:  # type: ignore[no-untyped-def]
    """A snapshot folder of symlinks to the real one, except prices/<ticker>.csv, rewritten by ``edit``."""
    (target / "prices").mkdir(parents=True)
    for sub in ("fred-md", "fred", "french"):
        (target / sub).symlink_to(snapshot_dir / sub)
    for csv in (snapshot_dir / "prices").glob("*.csv"):
        if csv.stem != ticker:
            (target / "prices" / csv.name).symlink_to(csv)
    if edit is not None:
        lines = (snapshot_dir / "prices" / f"{ticker}.csv").read_text().splitlines()
        (target / "prices" / f"{ticker}.csv").write_text("\n".join(edit(lines)) + "\n")
    return target


def _set_close(lines: list[str], row: int, value: str) -> list[str]:
    header = lines[0].split(",")
    fields = lines[row].split(",")
    fields[header.index("Close")] = value
    return [*lines[:row], ",".join(fields), *lines[row + 1:]]


BAD_SNAPSHOTS = {
    "malformed CSV": ("VDE", lambda lines: [lines[0].replace("Close", "Last"), *lines[1:]], 3,
                      "malformed price CSV"),
    "ragged CSV": ("VDE", lambda lines: [*lines[:50], lines[50] + ",1,2,3", *lines[51:]], 3, "line 51: malformed CSV"),
    "non-numeric Close": ("VGT", lambda lines: _set_close(lines, 100, "12.5x"), 3,
                          "Close '12.5x' is not a number"),
    "duplicated dates": ("SPY", lambda lines: [*lines[:1000], lines[1000], *lines[1000:]], 3,
                         "line 1002: asset=SPY date=1997-01-13: the same date twice"),
    "missing ticker file": ("VPU", None, 2, "unknown ticker(s) ['VPU']"),
}


@pytest.mark.parametrize("case", BAD_SNAPSHOTS)
def test_bad_snapshot_exits_with_one_line_and_writes_nothing(rotation, snapshot_dir: Path, tmp_path: Path,
                                                             sample_copy: Path, case: str) -> None:
    ticker, edit, code, needle = BAD_SNAPSHOTS[case]
    folder = _corrupt_snapshot(snapshot_dir, tmp_path / "snap", ticker, edit)
    before = table_digest(sample_copy)
    result = rotation("--warehouse", str(sample_copy), "ingest", "--source", "snapshot",
                      "--snapshot-dir", str(folder))
    assert result.exit_code == code, result.stderr
    assert needle in result.error
    assert "Traceback" not in result.stderr
    assert table_digest(sample_copy) == before


def test_missing_snapshot_folder_exits_2(rotation, tmp_path: Path) -> None:
    result = rotation("--warehouse", str(tmp_path / "w.duckdb"), "ingest", "--source", "snapshot",
                      "--snapshot-dir", str(tmp_path / "nowhere"))
    assert result.exit_code == 2
    assert "snapshot folder not found" in result.error
    assert not (tmp_path / "w.duckdb").exists()


def test_unknown_ticker_in_a_user_universe_exits_2(rotation, snapshot_dir: Path, tmp_path: Path) -> None:
    """A universe the snapshot does not hold names the missing tickers and what the snapshot has."""
    config = tmp_path / "c.toml"
    config.write_text('[universes.mine]\nbenchmark = "SPY"\n[universes.mine.assets]\nSPY = "S&P 500"\n'
                      'XLK = "Technology"\n')
    result = rotation("--config", str(config), "--warehouse", str(tmp_path / "w.duckdb"), "ingest",
                      "--source", "snapshot", "--snapshot-dir", str(snapshot_dir), "--universe", "mine")
    assert result.exit_code == 2
    assert "unknown ticker(s) ['XLK']" in result.error
    assert not (tmp_path / "w.duckdb").exists()


def test_a_held_warehouse_is_exit_6(tmp_path: Path, sample_warehouse: Path) -> None:
    """Another process holding the DuckDB file lock is reported as 'in use' (exit 6), not a crash."""
    import subprocess
    import sys

    path = Path(shutil.copy(sample_warehouse, tmp_path / "held.duckdb"))
    holder = subprocess.Popen([sys.executable, "-c", f"import duckdb,sys,time; c=duckdb.connect({str(path)!r}); "
                               "print('ready', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        from job.errors import LockHeld

        with pytest.raises(LockHeld) as info, warehouse.connect(path):
            pass
        assert info.value.exit_code == 6
    finally:
        holder.kill()
        holder.wait()
