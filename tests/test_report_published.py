"""The report is rebuilt from what a month publishes (job/report/published.py), tested on real runs.

Every store here is made by ``rotation run`` on the sample source (tests/real_run.py) and copied before
anything changes it; the merged month is made by a real ``rotation forecast``. Nothing is written by hand:
the damaged manifests below are the real ones with an entry or a key taken out.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

from job import artifacts
from job.query import flatten_metrics
from job.report.html import render_html
from job.report.published import CONTEXT_KEY, NEEDED, metrics_document, report_data
from job.store import LocalStore
from job.store.manifest import manifest_key, read_manifest
from tests.real_run import MODELS, MONTHS, ROTATION_BIN, RealRun, copy_store, real_run, subprocess_env

MONTH = MONTHS[-1]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> RealRun:
    return real_run(tmp_path_factory)


def rotation(run: RealRun, store: Path, *args: str, warehouse: Path | None = None,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The installed console script on ``store`` (and ``warehouse``), as a user runs it."""
    group = ["--warehouse", str(warehouse or run.warehouse), "--store", str(store)]
    return subprocess.run([str(ROTATION_BIN), *group, *args], cwd=run.workdir, capture_output=True, text=True,
                          timeout=600, env={**subprocess_env(run.workdir), **(env or {})}, check=False)


def artifact(store: Path, manifest: dict[str, Any], kind: str) -> bytes:
    (entry,) = [a for a in manifest["artifacts"] if a["kind"] == kind]
    return (store / entry["path"]).read_bytes()


def table(store: Path, manifest: dict[str, Any], kind: str) -> pd.DataFrame:
    return pq.read_table(io.BytesIO(artifact(store, manifest, kind))).to_pandas()


def test_the_rerendered_page_is_the_published_page(run: RealRun, tmp_path: Path) -> None:
    """`rotation report` renders, from the manifest alone, byte for byte the page `rotation run` published
    (the run rendered it through the same function from the files it had just written), and leaves the
    store untouched. The month holds no report_data.json: the tables and the manifest are the record."""
    store = copy_store(run, tmp_path / "store")
    for month in MONTHS:
        manifest = read_manifest(LocalStore(store), month)
        assert manifest is not None and manifest["complete"]
        kinds = {a["kind"] for a in manifest["artifacts"]}
        assert "report_data" not in kinds and {k.name for k in NEEDED} <= kinds
        assert manifest[CONTEXT_KEY]["provenance"]["run_id"] == manifest["run_id"]
        before = (store / manifest_key(month)).read_bytes()
        out = tmp_path / f"report-{month}.html"
        proc = rotation(run, store, "report", "--as-of", month, "--output", str(out))
        assert proc.returncode == 0, proc.stderr
        assert out.read_bytes() == artifact(store, manifest, "reports")
        assert (store / manifest_key(month)).read_bytes() == before
        assert "## Sector rotation: weights for" in proc.stdout


def test_the_report_shows_the_published_tables(run: RealRun) -> None:
    """Each section reads its artifacts: the decision the published weights and forecasts, performance the
    backtest, the data quality the published validation; the metrics document comes back from its long
    table (flattening it again gives the same rows)."""
    store = LocalStore(run.store)
    manifest = read_manifest(store, MONTH)
    assert manifest is not None
    data = report_data(store, manifest)
    weights, forecasts = table(run.store, manifest, "weights"), table(run.store, manifest, "forecasts")
    alloc = data.decision.allocations.set_index(["model", "asset"])
    assert set(data.decision.models) == set(MODELS) == set(weights["model"])
    for rec in weights.itertuples():
        assert alloc.loc[(rec.model, rec.asset), "weight"] == rec.weight
    for rec in forecasts[forecasts["model"].isin(MODELS)].itertuples():
        assert alloc.loc[(rec.model, rec.asset), "predicted_return"] == pytest.approx(rec.predicted, nan_ok=True)
    backtest = table(run.store, manifest, "backtest")
    returns = data.performance.returns
    assert len(returns) == len(backtest) and set(returns["model"]) == set(backtest["model"])
    validation = json.loads(artifact(run.store, manifest, "validation"))
    assert [s.name for s in data.data_quality.suites] == [s["name"] for s in validation["suites"]]
    assert data.lookahead is None and "--no-audit" in data.lookahead_not_run_reason
    assert render_html(data).encode() == artifact(run.store, manifest, "reports")

    metrics = table(run.store, manifest, "metrics")
    doc = metrics_document(metrics)
    assert doc["benchmark_asset"] == "SPY" and set(MODELS) <= set(doc["models"])
    again = pd.DataFrame(flatten_metrics(doc), columns=artifacts.METRICS.columns)
    pd.testing.assert_frame_equal(again, metrics, check_dtype=False)


def test_a_merged_forecast_shows_in_the_rerendered_decision(run: RealRun, tmp_path: Path) -> None:
    """After `rotation forecast --models ridge` (a different ridge: other alphas, so it is refitted), the
    month's re-rendered decision section holds ridge's new forecasts and tree's published ones; `rotation
    report` re-renders from the merged tables and merges the new page into the month."""
    store = copy_store(run, tmp_path / "store")
    warehouse = tmp_path / "warehouse.duckdb"
    shutil.copy(run.warehouse, warehouse)
    before = read_manifest(LocalStore(store), MONTH)
    assert before is not None
    old = table(store, before, "forecasts")
    proc = rotation(run, store, "forecast", "--as-of", MONTH, "--models", "ridge", warehouse=warehouse,
                    env={"ROTATION_MODELS__RIDGE_ALPHAS": "0.001"})
    assert proc.returncode == 0, proc.stderr
    merged = read_manifest(LocalStore(store), MONTH)
    assert merged is not None and merged[CONTEXT_KEY] == before[CONTEXT_KEY]
    new = table(store, merged, "forecasts")
    new_ridge = new[new["model"] == "ridge"].set_index("asset")["predicted"]
    old_ridge = old[old["model"] == "ridge"].set_index("asset")["predicted"]
    assert not new_ridge.equals(old_ridge)

    proc = rotation(run, store, "report", "--as-of", MONTH, "--quiet")
    assert proc.returncode == 0, proc.stderr
    rendered = read_manifest(LocalStore(store), MONTH)
    assert rendered is not None
    data = report_data(LocalStore(store), rendered)
    alloc = data.decision.allocations.set_index(["model", "asset"])["predicted_return"]
    ridge = alloc.loc["ridge"]
    assert ridge.to_numpy() == pytest.approx(new_ridge.loc[ridge.index].to_numpy(), nan_ok=True)
    assert ridge.to_numpy() != pytest.approx(old_ridge.loc[ridge.index].to_numpy(), nan_ok=True)
    tree = old[old["model"] == "tree"].set_index("asset")["predicted"]
    assert alloc.loc["tree"].to_numpy() == pytest.approx(tree.loc[alloc.loc["tree"].index].to_numpy(), nan_ok=True)
    assert artifact(store, rendered, "reports") == render_html(data).encode()


@pytest.mark.parametrize("missing", ["backtest_weights", "metrics", CONTEXT_KEY])
def test_a_month_without_what_the_report_needs_exits_2(run: RealRun, tmp_path: Path, missing: str) -> None:
    """A manifest without a kind the report reads (or without the run's context) exits 2 with one line
    naming it, and changes nothing."""
    store = copy_store(run, tmp_path / "store")
    path = store / manifest_key(MONTH)
    manifest = json.loads(path.read_bytes())
    if missing == CONTEXT_KEY:
        del manifest[CONTEXT_KEY]
    else:
        manifest["artifacts"] = [a for a in manifest["artifacts"] if a["kind"] != missing]
    path.write_text(json.dumps(manifest), encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "job", "--store", str(store), "report", "--as-of", MONTH],
                          capture_output=True, text=True, timeout=300, env=subprocess_env(run.workdir),
                          cwd=run.workdir, check=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert (f"no {missing} artifact" if missing != CONTEXT_KEY else "no report context") in lines[0]
    assert f"rotation run --as-of {MONTH}" in lines[0]
    assert json.loads(path.read_bytes()) == manifest
