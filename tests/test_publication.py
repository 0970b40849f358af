"""Publication semantics: manifests written last, stage commands merge, runs replace, GC, conflicts.

The frames published here come from the real stages (forecast, allocate, backtest) on the synthetic
sample, never from tables written by hand; every test runs against a local folder and a moto S3 server
(the ``artifact_store`` fixture), plus a few S3-only faults through the fault proxy.
"""

from __future__ import annotations

import hashlib
import io
import json
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from job import artifacts
from job.config import load_settings
from job.errors import LockHeld
from job.store import LocalStore
from job.store.manifest import manifest_key, read_manifest, scan_manifests, verify_manifest
from job.store.publish import COMPLETE_KINDS, Publisher, garbage_collect, write_failed_validation

MONTH = "2025-01"
RUNS = [f"2026010{i}T000000Z-{c * 6}" for i, c in enumerate("abcdefg", start=1)]
ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Outputs:
    """What the real stages produced for one month: every table kind's frame and the report bytes."""

    tables: dict[str, pd.DataFrame]
    html: bytes
    validation: dict[str, Any]


@pytest.fixture(scope="module")
def outputs(sample_warehouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Outputs:
    from job.stages import data, evaluation, models

    settings = load_settings(environ={})
    dataset, month = data.load(settings, sample_warehouse)
    store = LocalStore(tmp_path_factory.mktemp("models"))
    forecasts, _ = models.forecast(dataset, settings, month, store, ["ridge"])
    params = evaluation.strategy_params(settings)
    weights = models.allocate(forecasts, dataset, params)
    evaluated = evaluation.backtest(dataset, settings, ["persistence", "historical-mean"], params=params,
                                    n_jobs=1, sweep_grid=((0.0, 0.01), (1.0,), (0.0, 0.3)))
    result = evaluated.result
    tables = {"forecasts": forecasts, "weights": weights, "backtest": result.portfolio,
              "backtest_forecasts": evaluation.backtest_forecasts(result), "backtest_weights": result.weights,
              "metrics": evaluation.metrics_frame(evaluated.metrics), "sweep": evaluated.sweep,
              # the look-ahead audit's portfolio is a walk-forward portfolio like this one (at lag 0)
              "lookahead_backtest": result.portfolio}
    return Outputs(tables=tables, html=b"<!doctype html><title>report</title>",
                   validation={"passed": True, "suites": []})


def publish_run(store: Any, run_id: str, out: Outputs, *, as_of: str = MONTH, commit: bool = True,
                skip: tuple[str, ...] = ("sweep", "lookahead_backtest")) -> Publisher:
    """A complete publication, as ``rotation run`` makes it."""
    pub = Publisher(store, as_of, run_id, command="run", mode="replace")
    for kind, frame in out.tables.items():
        if kind not in skip:
            pub.write_table(kind, frame)
    pub.write_json(artifacts.VALIDATION, out.validation)
    pub.write_bytes(artifacts.REPORTS, out.html)
    if commit:
        pub.commit(timings={"publish": 0.1}, extra={"models": ["ridge"]})
    return pub


def table(store: Any, manifest: dict[str, Any], kind: str) -> pd.DataFrame:
    (entry,) = [a for a in manifest["artifacts"] if a["kind"] == kind]
    return pd.read_parquet(io.BytesIO(store.get_bytes(entry["path"])))


def folders(store: Any, as_of: str = MONTH) -> set[str]:
    """``kind/run_id`` of every run folder of ``as_of`` in the store."""
    out = set()
    for key in store.list(""):
        match = artifacts.RUN_PATH_RE.match(key)
        if match and match["as_of"] == as_of:
            out.add(f"{match['kind']}/{match['run_id']}")
    return out


# -- the manifest ----------------------------------------------------------------------------------------

def test_the_manifest_is_written_last_and_lists_every_artifact_with_its_kind_and_hash(artifact_store: Any,
                                                                                     outputs: Outputs) -> None:
    store = artifact_store
    pub = publish_run(store, RUNS[0], outputs, commit=False)
    assert read_manifest(store, MONTH) is None, "nothing is published before the commit"
    manifest = pub.commit(timings={"train": 1.25}, extra={"code_version": "test"})
    assert read_manifest(store, MONTH) == manifest
    assert manifest["as_of"] == MONTH and manifest["run_id"] == RUNS[0] and manifest["command"] == "run"
    assert manifest["timings"] == {"train": 1.25} and manifest["code_version"] == "test"
    assert manifest["complete"] is True and set(COMPLETE_KINDS) == {a["kind"] for a in manifest["artifacts"]}
    assert manifest["publications"] == [{"run_id": RUNS[0], "command": "run", "created_at": manifest["created_at"],
                                         "kinds": sorted(COMPLETE_KINDS)}]
    for art in manifest["artifacts"]:
        data = store.get_bytes(art["path"])
        assert art["path"] == artifacts.get(art["kind"]).key(MONTH, RUNS[0])
        assert art["run_id"] == RUNS[0]
        assert art["bytes"] == len(data) and art["sha256"] == hashlib.sha256(data).hexdigest()
    assert verify_manifest(store, manifest) == []


def test_every_table_is_written_with_exactly_its_kinds_schema(tmp_path: Path, outputs: Outputs) -> None:
    """The contract holds for what the stages produce: columns in order, types as declared."""
    store = LocalStore(tmp_path)
    manifest = publish_run(store, RUNS[0], outputs, skip=()).committed
    assert manifest is not None
    for kind in artifacts.TABLE_KINDS:
        frame = table(store, manifest, kind.name)
        import pyarrow.parquet as pq

        schema = pq.read_schema(io.BytesIO(store.get_bytes(kind.key(MONTH, RUNS[0]))))
        assert schema.names[:len(kind.columns)] == kind.columns, kind.name
        assert [schema.field(c).type for c in kind.columns] == [kind.schema.field(c).type for c in kind.columns]
        assert "as_of" not in frame.columns and "run_id" not in frame.columns, "those live in the path"


def test_a_frame_that_breaks_the_contract_is_refused_before_anything_is_written(tmp_path: Path,
                                                                                outputs: Outputs) -> None:
    store = LocalStore(tmp_path)
    pub = Publisher(store, MONTH, RUNS[0])
    with pytest.raises(artifacts.ContractError, match="missing column"):
        pub.write_table("weights", outputs.tables["weights"].drop(columns=["weight"]))
    with pytest.raises(artifacts.ContractError, match="unexpected column"):
        pub.write_table("weights", outputs.tables["weights"].assign(predicted_return=0.0))
    assert store.list("") == []


# -- merge and replace -----------------------------------------------------------------------------------

def test_a_stage_command_merges_its_rows_and_keeps_every_other_kind(artifact_store: Any, outputs: Outputs) -> None:
    """``forecast --models ridge`` after a run: ridge's forecasts are replaced, the baselines' kept, and
    weights, backtest, metrics and the report stay published (issue 12, point 1)."""
    store = artifact_store
    first = publish_run(store, RUNS[0], outputs).committed
    assert first is not None
    ridge_only = outputs.tables["forecasts"].query("model == 'ridge'").assign(predicted=0.0123)
    for run_id in RUNS[1:3]:  # twice: the second forecast must not collect the run's other kinds
        pub = Publisher(store, MONTH, run_id, command="forecast", mode="merge")
        pub.write_table("forecasts", ridge_only)
        manifest = pub.commit()
    assert {a["kind"] for a in manifest["artifacts"]} == {a["kind"] for a in first["artifacts"]}
    assert manifest["complete"] is True
    by_kind = {a["kind"]: a for a in manifest["artifacts"]}
    assert by_kind["forecasts"]["run_id"] == RUNS[2]
    assert all(a["run_id"] == RUNS[0] for k, a in by_kind.items() if k != "forecasts")
    forecasts = table(store, manifest, "forecasts")
    assert not forecasts.duplicated(["model", "asset"]).any()
    assert set(forecasts["model"]) == set(outputs.tables["forecasts"]["model"])
    assert (forecasts.loc[forecasts["model"] == "ridge", "predicted"] == 0.0123).all()
    kept = forecasts[forecasts["model"] != "ridge"].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, outputs.tables["forecasts"].query("model != 'ridge'").reset_index(drop=True))
    assert [p["command"] for p in manifest["publications"]] == ["run", "forecast", "forecast"]
    assert verify_manifest(store, manifest) == []
    for kind, entry in by_kind.items():  # every referenced file survived the garbage collection
        assert store.exists(entry["path"]), kind


def test_a_merged_kind_without_keys_replaces_only_that_kind(artifact_store: Any, outputs: Outputs) -> None:
    """A re-rendered report replaces the published HTML and nothing else."""
    store = artifact_store
    publish_run(store, RUNS[0], outputs)
    pub = Publisher(store, MONTH, RUNS[1], command="report", mode="merge")
    pub.write_bytes(artifacts.REPORTS, b"<!doctype html><title>new</title>")
    manifest = pub.commit()
    by_kind = {a["kind"]: a for a in manifest["artifacts"]}
    assert store.get_bytes(by_kind["reports"]["path"]) == b"<!doctype html><title>new</title>"
    assert by_kind["validation"]["run_id"] == RUNS[0]


def test_a_complete_run_replaces_the_month(artifact_store: Any, outputs: Outputs) -> None:
    """A new ``run`` is the complete newer publication: what a stage command merged before is superseded."""
    store = artifact_store
    publish_run(store, RUNS[0], outputs)
    pub = Publisher(store, MONTH, RUNS[1], command="backtest", mode="merge")
    pub.write_table("sweep", outputs.tables["sweep"])
    assert "sweep" in {a["kind"] for a in pub.commit()["artifacts"]}
    manifest = publish_run(store, RUNS[2], outputs).committed
    assert manifest is not None
    assert {a["run_id"] for a in manifest["artifacts"]} == {RUNS[2]}
    assert "sweep" not in {a["kind"] for a in manifest["artifacts"]}
    assert [p["command"] for p in manifest["publications"]] == ["run"]


def test_merging_the_metrics_keeps_other_sections_of_the_same_model(tmp_path: Path, outputs: Outputs) -> None:
    """metrics merge on (section, model): a backtest of one model keeps that model's look-ahead audit rows."""
    store = LocalStore(tmp_path)
    metrics = outputs.tables["metrics"]
    audit = metrics[metrics["section"] == "models"].assign(section="lookahead_audit")
    full = pd.concat([metrics, audit], ignore_index=True)
    pub = Publisher(store, MONTH, RUNS[0], command="run")
    pub.write_table("metrics", full)
    pub.commit()
    pub = Publisher(store, MONTH, RUNS[1], command="backtest", mode="merge")
    pub.write_table("metrics", metrics.assign(value=metrics["value"] * 2))
    merged = table(store, pub.commit(), "metrics")
    assert len(merged) == len(full)
    assert (merged["section"] == "lookahead_audit").sum() == len(audit)
    assert not merged.duplicated(["section", "model", "period", "metric", "path"]).any()


# -- garbage collection ----------------------------------------------------------------------------------

def test_garbage_collection_removes_only_unreferenced_folders_of_every_kind(artifact_store: Any,
                                                                            outputs: Outputs) -> None:
    store = artifact_store
    store.retention_runs = 0
    store.put_bytes(f"backtest_positions/as_of={MONTH}/run_id={RUNS[0]}/part-0.parquet", b"retired kind")
    publish_run(store, RUNS[1], outputs)
    publish_run(store, RUNS[1], outputs, as_of="2025-02")  # another month is never touched
    publish_run(store, RUNS[2], outputs, commit=False)  # a crashed run
    pub = Publisher(store, MONTH, RUNS[3], command="forecast", mode="merge")
    pub.write_table("forecasts", outputs.tables["forecasts"])
    manifest = pub.commit()
    referenced = {f"{a['kind']}/{a['run_id']}" for a in manifest["artifacts"]}
    previous = {f"{k}/{RUNS[1]}" for k in COMPLETE_KINDS}
    # The previous publication's folders are kept a generation for readers that just read its manifest.
    assert folders(store) == referenced | previous
    assert f"backtest_positions/{RUNS[0]}" not in folders(store), "kinds this version no longer writes too"
    publish_run(store, RUNS[4], outputs)
    assert folders(store) == {f"{k}/{RUNS[4]}" for k in COMPLETE_KINDS} | referenced
    assert folders(store, "2025-02") == {f"{k}/{RUNS[1]}" for k in COMPLETE_KINDS}


def test_garbage_collection_keeps_retention_and_later_runs(tmp_path: Path, outputs: Outputs) -> None:
    store = LocalStore(tmp_path)
    for run_id in RUNS[:4]:
        publish_run(store, run_id, outputs, commit=False)
    deleted = garbage_collect(store, MONTH, keep_manifests=[], retention_runs=1, newest=RUNS[2])
    assert {d.split("run_id=")[1].rstrip("/") for d in deleted} == {RUNS[0], RUNS[1]}
    assert {f.split("/")[1] for f in folders(store)} == {RUNS[2], RUNS[3]}, "retention 1, and the later run"


# -- damage, crashes and conflicts -----------------------------------------------------------------------

def test_a_damaged_manifest_never_blocks_the_next_publication(artifact_store: Any, outputs: Outputs,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    store = artifact_store
    publish_run(store, RUNS[0], outputs)
    good = store.get_bytes(manifest_key(MONTH))
    store.put_bytes(manifest_key(MONTH), good[: len(good) // 2])
    assert MONTH in scan_manifests(store).damaged
    pub = Publisher(store, MONTH, RUNS[1], command="forecast", mode="merge")
    pub.write_table("forecasts", outputs.tables["forecasts"])
    manifest = pub.commit()
    assert "not valid JSON" in caplog.text
    assert read_manifest(store, MONTH) == manifest and {a["kind"] for a in manifest["artifacts"]} == {"forecasts"}
    assert manifest["complete"] is False
    assert publish_run(store, RUNS[2], outputs).committed == read_manifest(store, MONTH)


def test_a_crash_before_the_manifest_leaves_the_previous_publication(artifact_store: Any, outputs: Outputs) -> None:
    store = artifact_store
    before = publish_run(store, RUNS[0], outputs).committed
    with pytest.raises(RuntimeError, match="boom"):
        pub = Publisher(store, MONTH, RUNS[1])
        pub.write_table("weights", outputs.tables["weights"])
        raise RuntimeError("boom")
    assert read_manifest(store, MONTH) == before
    assert store.exists(artifacts.WEIGHTS.key(MONTH, RUNS[1])), "its files exist, unreferenced"


CRASH_SCRIPT = """
import sys, time
from job.store import open_store
from job.store.publish import Publisher
store = open_store(sys.argv[1])
pub = Publisher(store, "2025-01", sys.argv[2])
pub.write_bytes("weights", open(sys.argv[3], "rb").read())
print("ARTIFACTS-WRITTEN", flush=True)
time.sleep(120)
pub.commit()
"""


@pytest.mark.slow
def test_a_publisher_killed_by_sigkill_before_the_manifest_leaves_the_previous_one(artifact_store: Any,
                                                                                   outputs: Outputs,
                                                                                   tmp_path: Path) -> None:
    store = artifact_store
    before = publish_run(store, RUNS[0], outputs).committed
    weights = tmp_path / "weights.parquet"
    weights.write_bytes(store.get_bytes(artifacts.WEIGHTS.key(MONTH, RUNS[0])))
    proc = subprocess.Popen([sys.executable, "-c", CRASH_SCRIPT, store.uri, RUNS[1], str(weights)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.strip() == "ARTIFACTS-WRITTEN", proc.stderr.read() if proc.stderr else ""
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert store.exists(artifacts.WEIGHTS.key(MONTH, RUNS[1]))
    assert read_manifest(store, MONTH) == before


@pytest.mark.s3
def test_a_concurrent_publication_is_refused_by_the_manifest_etag(s3_bucket: Any, outputs: Outputs) -> None:
    """Two writers that both read the same manifest: the second to commit fails with exit 6 and leaves
    the first one's publication intact (the If-Match guard, for writers that lost the run lock)."""
    from job.store import open_store

    store = open_store(s3_bucket.uri)
    publish_run(store, RUNS[0], outputs)
    slow = Publisher(store, MONTH, RUNS[1], command="forecast", mode="merge")
    slow.write_table("forecasts", outputs.tables["forecasts"])  # reads the manifest and its ETag
    fast = Publisher(store, MONTH, RUNS[2], command="forecast", mode="merge")
    fast.write_table("forecasts", outputs.tables["forecasts"])
    won = fast.commit()
    with pytest.raises(LockHeld, match="another process published 2025-01"):
        slow.commit()
    assert read_manifest(store, MONTH) == won


@pytest.mark.s3
def test_a_lost_response_to_the_manifest_write_is_recognised(s3_bucket: Any, fault_proxy: Any,
                                                             outputs: Outputs) -> None:
    """botocore retries a conditional PUT whose answer was lost and gets 412: the publisher reads the
    manifest back, finds its own, and succeeds."""
    from job.store.s3 import S3Store

    proxy = fault_proxy(s3_bucket.endpoint)
    store = S3Store.from_uri(s3_bucket.uri, None, endpoint_url=proxy.endpoint)
    publish_run(store, RUNS[0], outputs)
    pub = Publisher(store, MONTH, RUNS[1], command="forecast", mode="merge")
    pub.write_table("forecasts", outputs.tables["forecasts"])
    proxy.drop_responses(1, lambda method, path, headers: method == "PUT" and path.split("?")[0].endswith(
        "/manifest.json"))
    manifest = pub.commit()
    assert proxy.dropped == 1
    assert read_manifest(store, MONTH) == manifest


def test_a_failed_validation_publishes_nothing_but_its_result(artifact_store: Any, outputs: Outputs) -> None:
    store = artifact_store
    before = publish_run(store, RUNS[0], outputs).committed
    key = write_failed_validation(store, MONTH, RUNS[1], {"success": False, "failed": ["gaps"]})
    assert key == f"validation/as_of={MONTH}/run_id={RUNS[1]}/validation.json"
    assert json.loads(store.get_bytes(key))["success"] is False
    assert read_manifest(store, MONTH) == before
