"""Unbalanced panels (issue 14): funds that start later than the others, cut from the real snapshot.

Design (masked outputs, see README "Unbalanced panels"): every model sees and predicts every asset; an
asset with no return yet has the month's cross-sectional mean as its return feature and fitting label;
its forecasts are NaN, its weight 0, and nothing about it is evaluated until it has
``data.min_asset_history_months`` (default lookback + 1 = 13) months of returns.

What the design promises for the always-present assets, and what is checked here against the same run
on the uncut snapshot: the same decision months; forecasts of every model in every month; and the
baselines that read only an asset's own history (persistence, historical-mean) identical to the bit. The
learned models' forecasts of those assets may differ: the late funds' features and labels are inputs and
outputs of the same multi-output fit.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from job import warehouse
from job.backtest import risk_free_for
from job.config import load_settings
from job.dataset import Dataset
from job.errors import ConfigError
from job.metrics import _periods
from job.report.data import DataQualitySection
from job.report.inputs import out_of_sample_months, small_sample_caveat

CUTS = {"VOX": "2015-01", "VNQ": "2018-06"}      # rows before these months are removed
FIRST_RETURN = {"VOX": "2015-02", "VNQ": "2018-07"}  # the month after the first month-end price
ENTRY = {"VOX": "2016-02", "VNQ": "2019-07"}     # first decision month with 13 months of returns
# Small and fast: a later start, fewer training months, yearly refits, the original's fixed tree.
FAST_ENV = {"ROTATION_DATA__START": "2008-01", "ROTATION_BACKTEST__MIN_TRAIN_MONTHS": "36",
            "ROTATION_MODELS__REFIT_MONTHS__RIDGE": "12", "ROTATION_MODELS__REFIT_MONTHS__TREE": "12",
            "ROTATION_MODELS__TREE_FIXED": "true", "ROTATION_BACKTEST__N_JOBS": "1",
            # trade at the month-end close: the backtest books the calendar-month returns of backtest_forecasts
            "ROTATION_BACKTEST__EXECUTION_LAG_DAYS": "0"}


def _copy_snapshot(source: Path, target: Path, cuts: dict[str, str], holes: dict[str, list[str]] | None = None) -> Path:
    """A copy of the snapshot with each fund in ``cuts`` starting at that month, and the months in
    ``holes`` ({fund: ["YYYY-MM", ...]}) removed inside a fund's life."""
    target.mkdir(parents=True)
    for item in source.iterdir():
        if item.is_dir() and item.name != "prices":
            shutil.copytree(item, target / item.name)
    (target / "prices").mkdir()
    for csv in sorted((source / "prices").glob("*.csv")):
        lines = csv.read_text().splitlines()
        cut = cuts.get(csv.stem, "")
        gone = set((holes or {}).get(csv.stem, []))
        rows = [line for line in lines[1:] if line[:7] >= cut and line[:7] not in gone]
        (target / "prices" / csv.name).write_text("\n".join([lines[0], *rows]) + "\n")
    return target


def _rotation(*args: str) -> tuple[int, str]:
    from job.cli import main

    runner = CliRunner()
    with runner.isolation() as (out, err, _):
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        return code, out.getvalue().decode() + err.getvalue().decode()


@dataclass
class Run:
    code: int
    output: str
    warehouse: Path
    store: Path

    def query(self, sql: str) -> pd.DataFrame:
        code, text = _rotation("--store", str(self.store), "query", sql, "--format", "json")
        assert code == 0, text
        return pd.DataFrame(json.loads(text[text.index("["):text.rindex("]") + 1]))


@pytest.fixture(scope="module")
def runs(snapshot_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Run]]:
    """``run --source snapshot --models ridge,tree --no-audit`` on the late-start copy and on the snapshot."""
    root = tmp_path_factory.mktemp("unbalanced")
    late = _copy_snapshot(snapshot_dir, root / "late", CUTS)
    out: dict[str, Run] = {}
    with pytest.MonkeyPatch.context() as mp:
        for name in [n for n in os.environ if n.startswith(("ROTATION_", "AWS_")) and n != "ROTATION_SNAPSHOT_DIR"]:
            mp.delenv(name)
        for key, value in FAST_ENV.items():
            mp.setenv(key, value)
        for name, snap in (("late", late), ("full", snapshot_dir)):
            w, s = root / f"{name}.duckdb", root / f"{name}-store"
            code, text = _rotation("--warehouse", str(w), "--store", str(s), "run", "--source", "snapshot",
                                   "--snapshot-dir", str(snap), "--models", "ridge,tree", "--no-audit")
            out[name] = Run(code, text, w, s)
        yield out


def test_a_universe_with_late_funds_runs(runs: dict[str, Run]) -> None:
    for name, run in runs.items():
        assert run.code == 0, f"{name}: {run.output[-3000:]}"
    assert "unbalanced universe: VNQ from 2019-07, VOX from 2016-02" in runs["late"].output or \
        "unbalanced universe: VOX from 2016-02, VNQ from 2019-07" in runs["late"].output


def test_each_asset_has_its_first_and_entry_month(runs: dict[str, Run]) -> None:
    settings = load_settings(environ={}).with_overrides({"data": {"start": "2008-01"}})
    dataset, _ = warehouse.load_dataset(settings, runs["late"].warehouse)
    info = dataset.info
    assert {a: info.asset_first_months[a] for a in CUTS} == FIRST_RETURN
    assert {a: info.asset_entry_months[a] for a in CUTS} == ENTRY
    assert info.late_assets == ENTRY and info.min_asset_history_months == 13
    assert all(m == "2008-01" for a, m in info.asset_entry_months.items() if a not in CUTS)
    assert dataset.returns.loc[:pd.Period("2015-01", "M"), "VOX"].isna().all()
    assert not dataset.features.isna().to_numpy().any()   # the months before are filled, not gaps
    # the report's data-quality section carries each asset's first month (and first month held)
    section = DataQualitySection(synthetic=False, source="snapshot", asset_first_months=dict(info.asset_first_months))
    assert section.asset_first_months["VNQ"] == "2018-07"


def test_no_weight_before_an_asset_enters(runs: dict[str, Run]) -> None:
    weights = runs["late"].query("SELECT model, decision_month, asset, weight FROM backtest_weights")
    assert {"ridge", "tree"} <= set(weights["model"])  # the baselines run through the allocation too
    for asset, entry in ENTRY.items():
        rows = weights[weights["asset"] == asset]
        before, after = rows[rows["decision_month"] < entry], rows[rows["decision_month"] >= entry]
        assert len(before) > 0 and (before["weight"] == 0.0).all()
        assert len(after) > 0 and (after["weight"] > 0.0).all()  # shrinkage 0.3 spreads weight over present ones
    sums = weights.groupby(["model", "decision_month"])["weight"].sum()
    np.testing.assert_allclose(sums.to_numpy(), 1.0, atol=1e-12)


def test_equal_weight_is_over_the_assets_present(runs: dict[str, Run]) -> None:
    run = runs["late"]
    realised = run.query("SELECT decision_month, asset, realised FROM backtest_forecasts WHERE model = 'ridge'")
    port = run.query("SELECT decision_month, equal_weight_return FROM backtest WHERE model = 'ridge'")
    present = realised.dropna(subset=["realised"])
    expected = present.groupby("decision_month")["realised"].mean()
    counts = present.groupby("decision_month").size()
    got = port.set_index("decision_month")["equal_weight_return"]
    np.testing.assert_allclose(got.to_numpy(), expected.reindex(got.index).to_numpy(), atol=1e-9)  # JSON: 10 digits
    assert counts.min() == 10 and counts.max() == 12
    assert counts[counts.index < ENTRY["VOX"]].eq(10).all() and counts[counts.index >= ENTRY["VNQ"]].eq(12).all()


def test_always_present_assets_get_what_the_design_promises(runs: dict[str, Run]) -> None:
    sql = "SELECT model, decision_month, asset, predicted, realised FROM backtest_forecasts"
    late, full = runs["late"].query(sql), runs["full"].query(sql)
    keys = ["model", "decision_month", "asset"]
    assert sorted(set(late["decision_month"])) == sorted(set(full["decision_month"]))  # same decision months
    merged = late.merge(full, on=keys, suffixes=("_late", "_full"))
    always = merged[~merged["asset"].isin(list(CUTS))]
    for model in ("ridge", "tree"):
        assert always.loc[always["model"] == model, "predicted_late"].notna().all()
    own_history = always[always["model"].isin(["persistence", "historical-mean"])]
    assert len(own_history) > 0
    np.testing.assert_array_equal(own_history["predicted_late"].to_numpy(), own_history["predicted_full"].to_numpy())
    np.testing.assert_array_equal(always["realised_late"].to_numpy(), always["realised_full"].to_numpy())
    for asset, entry in ENTRY.items():   # a late fund: forecast (and realised) exactly from its entry on
        rows = merged[(merged["asset"] == asset) & merged["model"].isin(["ridge", "tree"])]
        before = rows["decision_month"] < entry
        assert rows.loc[before, ["predicted_late", "realised_late"]].isna().all().all()
        assert rows.loc[~before, ["predicted_late", "realised_late"]].notna().all().all()


def test_a_gap_inside_a_funds_life_exits_3_naming_every_asset_and_month(snapshot_dir: Path, tmp_path: Path) -> None:
    holes = {"VGT": ["2010-03", "2010-04"], "VHT": ["2012-07"], "VOX": ["2016-05"]}
    snap = _copy_snapshot(snapshot_dir, tmp_path / "holed", CUTS, holes)
    with pytest.MonkeyPatch.context() as mp:
        for key, value in FAST_ENV.items():
            mp.setenv(key, value)
        code, text = _rotation("--warehouse", str(tmp_path / "w.duckdb"), "--store", str(tmp_path / "s"), "run",
                               "--source", "snapshot", "--snapshot-dir", str(snap), "--models", "ridge",
                               "--no-audit")
    assert code == 3, text[-2000:]
    (line,) = [t for t in text.splitlines() if t.startswith("error: ")]
    assert "prices.returns_complete" in line
    # the month after a removed month-end has no previous close either: a gap of its own
    for named in ("VGT 2010-03..2010-05", "VHT 2012-07..2012-08", "VOX 2016-05..2016-06"):
        assert named in line, line
    assert "VNQ" not in line and "2015-01" not in line   # months before a fund's first price are not gaps
    assert "add the missing months" in line               # what the user can do


# ---------------------------------------------------------------------------------- small pieces, no runs

def test_risk_free_before_its_first_value_is_never_a_silent_zero(synthetic: Dataset,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    rf = synthetic.risk_free.copy()
    rf.iloc[:30] = np.nan
    dataset = Dataset(features=synthetic.features, returns=synthetic.returns, benchmark="SPY", risk_free=rf,
                      info=synthetic.info)
    months = synthetic.months[20:40]
    with caplog.at_level("WARNING"):
        values = risk_free_for(dataset, months, required=False)
    assert (values[:10] == 0.0).all() and (values[10:] > 0).all()
    assert "no risk-free rate for 2006-09..2007-06 (10 months" in caplog.text
    with pytest.raises(ConfigError, match=r"no rate for 2006-09\.\.2007-06") as info:
        risk_free_for(dataset, months, required=True)
    assert info.value.exit_code == 2


def test_small_samples_are_said_out_loud(caplog: pytest.LogCaptureFixture) -> None:
    from job.stages.evaluation import warn_small_sample

    months = pd.period_range("2024-03", periods=8, freq="M")
    portfolio = pd.DataFrame({"model": "ridge", "target_month": months, "decision_month": months - 1})
    assert out_of_sample_months(portfolio) == 8
    with caplog.at_level("WARNING"):
        warn_small_sample(portfolio, 36)
    assert [r.levelname for r in caplog.records].count("WARNING") == 1
    assert "only 8 out-of-sample months" in caplog.text
    sentence = small_sample_caveat(8, 36)
    assert "8 out-of-sample months" in sentence and "skill from luck" in sentence
    assert small_sample_caveat(120, 36) == ""
    # the "last 20 %" window only when it is a proper subset of the full span
    rows = portfolio.assign(decision_month=months - 1)
    assert set(_periods(rows, months[0] - 1)) == {"full"}
    assert set(_periods(rows, months[4] - 1)) == {"full", "last_20pct"}
