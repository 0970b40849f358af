"""``rotation run``: the monthly job end to end, as the CronJob and a person at a terminal run it.

The fast tests run the synthetic ``sample`` source with ridge only and no look-ahead audit, into a
local folder and into a real S3 server on loopback (moto): what a run publishes (manifest, sha256 of
every artifact, the query views), that repeating a month publishes it once with identical results and
reuses the stored models, that a crash leaves the last good month as it was, the JSON log format, and
the report in a real browser. The slow tests run the real snapshot with ridge, tree and the small LSTM,
and check the documented exit codes through a real subprocess (one ``error:`` line, no traceback).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from job.report import SECTION_TITLES, SYNTHETIC_BANNER
from job.store import open_store
from job.store.base import Store
from job.store.publish import manifest_key, read_manifest, verify_manifest
from tests.browser import assert_synthetic_report_rendered, screenshot
from tests.conftest import CliResult
from tests.s3_server import MOTO_KEY, _client, _new_bucket, _set_aws_env

SAMPLE_AS_OF = "2025-12"
N_ASSETS = 12
FAST = ("--models", "ridge", "--no-audit")
ROTATION_BIN = Path(sys.executable).parent / "rotation"
TABLES = ("forecasts", "weights", "backtest", "backtest_forecasts", "backtest_weights", "metrics")


# ----------------------------------------------------------------------------------------------- helpers

def invoke(*args: str) -> CliResult:
    """``rotation ARGS`` in-process, as the ``rotation`` fixture does, for module-scoped fixtures."""
    from click.testing import CliRunner

    from job.cli import main

    with CliRunner().isolation() as (out, err, _):
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        sys.stdout.flush()
        sys.stderr.flush()
        return CliResult(code, out.getvalue().decode(), err.getvalue().decode())


def store_files(store: Store) -> dict[str, str]:
    """``{key: sha256}`` of every object in ``store`` (the run lock aside)."""
    return {key: hashlib.sha256(store.get_bytes(key)).hexdigest() for key in store.list("")
            if not key.startswith("locks/")}


def run_frames(store: Store, manifest: dict[str, Any]) -> dict[str, pd.DataFrame]:
    """Every table kind a manifest publishes (forecasts, weights, backtest, metrics...), read back."""
    return {a["kind"]: pd.read_parquet(io.BytesIO(store.get_bytes(a["path"])))
            for a in manifest["artifacts"] if a["path"].endswith(".parquet")}


def without_run_columns(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` without the columns that name the run (run_id, created_at) rather than its results."""
    return df.drop(columns=[c for c in ("run_id", "created_at") if c in df.columns]).reset_index(drop=True)


def query_json(*group: str, sql: str) -> list[dict[str, Any]]:
    """``rotation GROUP query SQL --format json`` in-process; the rows."""
    result = invoke(*group, "query", sql, "--format", "json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def stderr_lines(result: CliResult | subprocess.CompletedProcess[str]) -> list[str]:
    text = result.stderr
    return [line for line in text.splitlines() if line.strip()]


def subprocess_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a subprocess run: no developer ROTATION_* or AWS settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ROTATION_", "AWS_")) or k == "ROTATION_SNAPSHOT_DIR"}
    env.update({"MPLCONFIGDIR": str(tmp_path / "mpl"), "TF_CPP_MIN_LOG_LEVEL": "2",
                "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"), "AWS_CONFIG_FILE": str(tmp_path / "none"),
                "ROTATION_CACHE_DIR": str(tmp_path / "cache")})
    env.update(extra)
    return env


def rotation_subprocess(tmp_path: Path, *args: str, timeout: float = 300,
                        **env: str) -> subprocess.CompletedProcess[str]:
    """The installed ``rotation`` console script in ``tmp_path``, as a shell or the CronJob runs it."""
    return subprocess.run([str(ROTATION_BIN), *args], cwd=tmp_path, capture_output=True, text=True,
                          timeout=timeout, env=subprocess_env(tmp_path, **env), check=False)


def assert_one_error_line(proc: subprocess.CompletedProcess[str], *, code: int, says: str) -> str:
    """The process exited ``code`` with exactly one ``error:`` line mentioning ``says``, no traceback."""
    assert proc.returncode == code, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert says in errors[0], errors[0]
    return errors[0]


def free_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ------------------------------------------------------------------------------ one month, run twice

@dataclass
class TwoRuns:
    """The same month run twice into one store (the second run with ``--log-format json``)."""

    kind: str
    group: tuple[str, ...]  # the group options: --warehouse W --store S
    store: Store
    workdir: Path
    warehouse: Path
    output: Path
    first: CliResult
    second: CliResult
    manifest1: dict[str, Any]
    manifest2: dict[str, Any]
    frames1: dict[str, pd.DataFrame] = field(default_factory=dict)
    frames2: dict[str, pd.DataFrame] = field(default_factory=dict)


def run_twice(kind: str, tmp_path_factory: pytest.TempPathFactory, endpoint: str = "") -> Iterator[TwoRuns]:
    """``rotation run --source sample --models ridge --no-audit`` twice for the same month.

    ``local``: a folder, walk-forward backtest; ``s3``: a fresh bucket on the moto server (AWS_* set
    for the module), static backtest. The first run also writes ``--output``; the second logs JSON.
    """
    workdir = tmp_path_factory.mktemp(f"run-{kind}")
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.startswith("ROTATION_") and name != "ROTATION_SNAPSHOT_DIR":
                mp.delenv(name)
        mp.setenv("MPLCONFIGDIR", str(workdir / "mpl"))
        if kind == "s3":
            _set_aws_env(mp, workdir, endpoint, MOTO_KEY, MOTO_KEY)
            uri = f"s3://{_new_bucket(_client(endpoint, MOTO_KEY, MOTO_KEY))}/rot"
        else:
            uri = str(workdir / "artifacts")
        warehouse = workdir / "warehouse.duckdb"
        group = ("--warehouse", str(warehouse), "--store", uri)
        output = workdir / "out" / "report.html"
        # The S3 runs backtest statically (one fit instead of 183 monthly folds): the store is under test.
        fast = (*FAST, "--scheme", "static") if kind == "s3" else FAST
        first = invoke(*group, "run", "--source", "sample", *fast, "--output", str(output))
        assert first.exit_code == 0, first.stderr
        store = open_store(uri)
        manifest1 = read_manifest(store, SAMPLE_AS_OF)
        assert manifest1 is not None
        frames1 = run_frames(store, manifest1)
        # The second run changes a setting that changes no result (report.default_model names a model
        # that did not run): its inputs differ, so it publishes again, and the tests below check that the
        # republished month is the same (an unchanged rerun publishes nothing: test_an_unchanged_rerun_...).
        mp.setenv("ROTATION_REPORT__DEFAULT_MODEL", "lstm")
        second = invoke(*group, "--log-format", "json", "run", "--source", "sample", *fast)
        mp.delenv("ROTATION_REPORT__DEFAULT_MODEL")
        assert second.exit_code == 0, second.stderr
        manifest2 = read_manifest(store, SAMPLE_AS_OF)
        assert manifest2 is not None
        yield TwoRuns(kind=kind, group=group, store=store, workdir=workdir, warehouse=warehouse,
                      output=output, first=first, second=second, manifest1=manifest1, manifest2=manifest2,
                      frames1=frames1, frames2=run_frames(store, manifest2))


@pytest.fixture(scope="module")
def local_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoRuns]:
    """Two sample runs of one month into a local folder."""
    yield from run_twice("local", tmp_path_factory)


@pytest.fixture(scope="module")
def s3_runs(s3_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoRuns]:
    """Two sample runs of one month into a bucket on the moto S3 server."""
    yield from run_twice("s3", tmp_path_factory, s3_server)


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def two_runs(request: pytest.FixtureRequest) -> TwoRuns:
    """The same tests against both stores."""
    return request.getfixturevalue(f"{request.param}_runs")


def test_every_artifact_of_the_manifest_is_there_with_its_sha256(two_runs: TwoRuns) -> None:
    """Both runs' manifests verify: every listed file exists with the recorded size and sha256."""
    for manifest in (two_runs.manifest1, two_runs.manifest2):
        assert verify_manifest(two_runs.store, manifest) == []
        assert manifest["as_of"] == SAMPLE_AS_OF
        kinds = {a["path"].split("/")[0] for a in manifest["artifacts"]}
        assert {"forecasts", "weights", "backtest", "metrics", "validation", "reports"} <= kinds
        assert f"reports/as_of={SAMPLE_AS_OF}/run_id={manifest['run_id']}/report.html" in {
            a["path"] for a in manifest["artifacts"]}
        assert all(f"run_id={manifest['run_id']}/" in a["path"] for a in manifest["artifacts"])
        assert manifest["synthetic"] is True and manifest["source"] == "sample"
        assert manifest["models"] == ["ridge"]


def test_stage_timings_are_in_the_manifest_and_the_summary(two_runs: TwoRuns) -> None:
    """Each stage's seconds are stored in the manifest and printed on the last line of the run."""
    timings = two_runs.manifest1["timings"]
    for stage in ("ingest", "dataset", "validate", "train_forecast", "allocate", "backtest", "publish"):
        assert isinstance(timings[stage], float) and timings[stage] >= 0, timings
    last = two_runs.first.stdout.strip().splitlines()[-1]
    assert last.startswith(f"published {SAMPLE_AS_OF} run {two_runs.manifest1['run_id']} to ")
    assert "backtest " in last and "publish " in last


def test_the_summary_shows_the_decision_and_where_the_report_is(two_runs: TwoRuns) -> None:
    """The terminal summary: synthetic banner, the next month's weights, metrics vs SPY, the report."""
    out = two_runs.first.stdout
    assert "SYNTHETIC DATA" in out
    assert "weights for 2026-01" in out
    assert "SPY" in out and "equal weight" in out
    run_id = two_runs.manifest1["run_id"]
    assert f"reports/as_of={SAMPLE_AS_OF}/run_id={run_id}/report.html" in out
    assert "research, not investment advice" in out


def test_query_returns_the_weights_of_one_run_per_month(two_runs: TwoRuns) -> None:
    """After two runs of one month the views show only the last: 12 assets, one run_id, no duplicates."""
    rows = query_json(*two_runs.group, sql="SELECT as_of, run_id, model, count(*) AS n, count(DISTINCT asset) "
                                           "AS assets, sum(weight) AS total FROM weights GROUP BY ALL")
    assert len(rows) == 1, rows
    (row,) = rows
    assert row["as_of"] == SAMPLE_AS_OF and row["model"] == "ridge"
    assert row["run_id"] == two_runs.manifest2["run_id"]
    assert row["n"] == N_ASSETS and row["assets"] == N_ASSETS
    assert row["total"] == pytest.approx(1.0)
    runs = query_json(*two_runs.group, sql="SELECT as_of, run_id FROM runs")
    assert runs == [{"as_of": SAMPLE_AS_OF, "run_id": two_runs.manifest2["run_id"]}]
    forecasts = query_json(*two_runs.group, sql="SELECT count(DISTINCT run_id) AS runs, count(*) AS n, "
                                                "count(DISTINCT (model, asset)) AS keys FROM forecasts")
    assert forecasts[0]["runs"] == 1 and forecasts[0]["n"] == forecasts[0]["keys"]


def test_the_month_has_one_manifest(two_runs: TwoRuns) -> None:
    """Publishing is the single manifest per month; the second run replaced the first."""
    manifests = [k for k in two_runs.store.list("runs/") if k.endswith("manifest.json")]
    assert manifests == [manifest_key(SAMPLE_AS_OF)]
    assert two_runs.manifest2["run_id"] != two_runs.manifest1["run_id"]
    assert two_runs.manifest2["run_id"] > two_runs.manifest1["run_id"]


def test_a_second_run_gives_identical_forecasts_and_weights(two_runs: TwoRuns) -> None:
    """Determinism: the repeated month's forecasts and weights equal the first run's, value for value."""
    for kind in TABLES:
        pd.testing.assert_frame_equal(without_run_columns(two_runs.frames1[kind]),
                                      without_run_columns(two_runs.frames2[kind]), check_exact=True)
    sha = {m["run_id"]: {a["path"].split("/")[0]: a["sha256"] for a in m["artifacts"]}
           for m in (two_runs.manifest1, two_runs.manifest2)}
    first, second = sha.values()
    for kind in TABLES:
        assert first[kind] == second[kind], kind  # byte-identical parquet


def test_the_second_run_loads_the_stored_models(two_runs: TwoRuns) -> None:
    """Train or load: the second run reuses the models the first one stored (same prefixes, log says so)."""
    prefixes = two_runs.manifest1["model_prefixes"]
    assert "ridge" in prefixes
    assert two_runs.manifest2["model_prefixes"] == prefixes
    assert any(key.startswith(prefixes["ridge"] + "/") for key in two_runs.store.list("models/ridge/"))
    reused = [json.loads(line)["msg"] for line in stderr_lines(two_runs.second)
              if "reusing stored" in line]
    assert any(prefixes["ridge"] in msg for msg in reused), reused
    assert not any("reusing stored" in line for line in stderr_lines(two_runs.first))
    # The walk-forward's fits too: the repeated month fits nothing and forecasts nothing again.
    first, second = (m["computation"]["backtest"] for m in (two_runs.manifest1, two_runs.manifest2))
    assert first["fits_fitted"] > 0
    assert second["fits_fitted"] == 0 and second["fits_reused"] == first["fits_fitted"] + first["fits_reused"]
    if two_runs.manifest1["scheme"] == "walk-forward":
        # The live fit of the as-of month IS the walk-forward's last fold: the first run fits it once.
        assert first["fits_reused"] == 1


def test_json_logs_parse_line_by_line_and_carry_stage_timings(two_runs: TwoRuns) -> None:
    """With --log-format json every stderr line is one JSON object, and every stage logs its seconds."""
    records = [json.loads(line) for line in stderr_lines(two_runs.second)]
    assert records and all({"ts", "level", "logger", "msg"} <= set(r) for r in records)
    ends = {r["stage"]: r["seconds"] for r in records if r.get("event") == "end" and "stage" in r}
    assert "commit" in ends  # writing the manifest: logged, but it cannot hold its own timing
    assert set(two_runs.manifest2["timings"]) == set(ends) - {"commit"}
    for stage, seconds in two_runs.manifest2["timings"].items():
        assert seconds == pytest.approx(ends[stage], abs=1e-3)
    assert not [r for r in records if r["level"] in ("error", "critical")]
    first_stage = next(i for i, r in enumerate(records) if r.get("stage"))
    assert all(r.get("run_id") == two_runs.manifest2["run_id"] for r in records[first_stage:])
    known = next(i for i, r in enumerate(records) if r.get("stage") == "train_forecast")
    assert all(r.get("as_of") == SAMPLE_AS_OF for r in records[known:])


def test_output_writes_the_report_locally_too(two_runs: TwoRuns) -> None:
    """--output PATH gets the same bytes as reports/.../report.html in the store."""
    html_key = next(a for a in two_runs.manifest1["artifacts"] if a["path"].endswith("report.html"))
    assert hashlib.sha256(two_runs.output.read_bytes()).hexdigest() == html_key["sha256"]


def test_the_report_is_self_contained_with_every_section(two_runs: TwoRuns) -> None:
    """The run's HTML report: every section heading in order, the synthetic banner, no external URL."""
    html = two_runs.output.read_text(encoding="utf-8")
    positions = [html.find(f">{title}</h2>") for title in SECTION_TITLES]
    assert all(p > 0 for p in positions), dict(zip(SECTION_TITLES, positions, strict=True))
    assert positions == sorted(positions)
    assert SYNTHETIC_BANNER in html
    assert not re.search(r"https?://", html, re.I)
    for attr in re.findall(r'\b(?:src|href)\s*=\s*"([^"]*)"', html, re.I):
        assert attr.startswith("#"), attr
    assert two_runs.manifest1["run_id"] in html


def test_output_to_a_folder_names_the_file_by_month(local_runs: TwoRuns, tmp_path: Path) -> None:
    """--output FOLDER writes FOLDER/report-<as_of>.html (as ``rotation report --output`` does)."""
    store = tmp_path / "artifacts"
    shutil.copytree(Path(local_runs.store.uri), store)
    warehouse = tmp_path / "warehouse.duckdb"
    shutil.copy(local_runs.warehouse, warehouse)
    folder = tmp_path / "reports"
    folder.mkdir()
    result = invoke("--warehouse", str(warehouse), "--store", str(store), "run", "--skip-ingest",
                    "--scheme", "static", *FAST, "--output", str(folder))
    assert result.exit_code == 0, result.stderr
    assert [p.name for p in folder.iterdir()] == [f"report-{SAMPLE_AS_OF}.html"]
    assert f">{SECTION_TITLES[-1]}</h2>" in (folder / f"report-{SAMPLE_AS_OF}.html").read_text(encoding="utf-8")


def test_an_unchanged_rerun_verifies_the_month_and_publishes_nothing(local_runs: TwoRuns, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The second run's exact inputs again (data, settings, models, code): the month is found published
    from them, its files verified, and nothing is recomputed or written; --output gets the published report.
    After any change of its inputs (here the strategy's costs) the month is run and published again."""
    store = tmp_path / "artifacts"
    shutil.copytree(Path(local_runs.store.uri), store)
    warehouse = tmp_path / "warehouse.duckdb"
    shutil.copy(local_runs.warehouse, warehouse)
    group = ("--warehouse", str(warehouse), "--store", str(store))
    files = {p: p.read_bytes() for p in store.rglob("*") if p.is_file() and "locks" not in p.parts}
    monkeypatch.setenv("ROTATION_REPORT__DEFAULT_MODEL", "lstm")  # as the second run
    output = tmp_path / "out"
    output.mkdir()
    again = invoke(*group, "run", "--source", "sample", *FAST, "--output", str(output))
    assert again.exit_code == 0, again.stderr
    run_id = local_runs.manifest2["run_id"]
    assert f"{SAMPLE_AS_OF} is already published from identical inputs" in again.stdout
    assert f"run {run_id}" in again.stdout and "stage train_forecast" not in again.stderr
    after = {p: p.read_bytes() for p in store.rglob("*") if p.is_file() and "locks" not in p.parts}
    assert after == files  # not one byte written, manifest included
    report = next(a for a in local_runs.manifest2["artifacts"] if a["path"].endswith("report.html"))
    written = output / f"report-{SAMPLE_AS_OF}.html"
    assert hashlib.sha256(written.read_bytes()).hexdigest() == report["sha256"]

    # a damaged file of the month: verified, found, and the month is run again (and repaired)
    damaged = store / next(a["path"] for a in local_runs.manifest2["artifacts"] if a["path"].endswith(".parquet"))
    damaged.write_bytes(damaged.read_bytes()[:-5])
    repaired = invoke(*group, "run", "--source", "sample", *FAST)
    assert repaired.exit_code == 0, repaired.stderr
    assert "fail verification" in repaired.stderr and "already published" not in repaired.stdout
    manifest = read_manifest(open_store(str(store)), SAMPLE_AS_OF)
    assert manifest is not None and manifest["run_id"] > run_id
    assert verify_manifest(open_store(str(store)), manifest) == []

    # a truncated manifest is not a publication of anything: the month is run and published again
    manifest_file = store / "runs" / f"as_of={SAMPLE_AS_OF}" / "manifest.json"
    manifest_file.write_bytes(manifest_file.read_bytes()[:40])
    rewritten = invoke(*group, "run", "--source", "sample", *FAST)
    assert rewritten.exit_code == 0, rewritten.stderr
    manifest = read_manifest(open_store(str(store)), SAMPLE_AS_OF)
    assert manifest is not None and verify_manifest(open_store(str(store)), manifest) == []

    monkeypatch.setenv("ROTATION_STRATEGY__COST_BPS", "25")
    changed = invoke(*group, "run", "--source", "sample", *FAST)
    assert changed.exit_code == 0, changed.stderr
    assert "already published" not in changed.stdout
    assert read_manifest(open_store(str(store)), SAMPLE_AS_OF)["run_id"] > manifest["run_id"]  # type: ignore[index]


# ----------------------------------------------------------------------------------------------- browser

@pytest.mark.browser
def test_the_run_report_renders_in_headless_chromium(local_runs: TwoRuns, tmp_path: Path) -> None:
    """The run's report opens in a real browser: a 1280x2000 screenshot that is not blank."""
    assert_synthetic_report_rendered(screenshot(local_runs.output, tmp_path))


# ------------------------------------------------------------------------------------------ crash mid-run

def test_a_crash_mid_run_leaves_the_last_good_month_and_frees_the_lock(
        local_runs: TwoRuns, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        rotation: Callable[..., CliResult]) -> None:
    """The backtest raising mid-run: exit 1 with one line, the committed month reads as before, no lock."""
    store_dir = tmp_path / "artifacts"
    shutil.copytree(Path(local_runs.store.uri), store_dir)
    warehouse = tmp_path / "warehouse.duckdb"
    shutil.copy(local_runs.warehouse, warehouse)
    group = ("--warehouse", str(warehouse), "--store", str(store_dir))
    sql = "SELECT as_of, run_id, model, asset, weight FROM weights ORDER BY asset"
    before_rows = rotation(*group, "query", sql, "--format", "json")
    assert before_rows.exit_code == 0, before_rows.stderr
    store = open_store(str(store_dir))
    before = read_manifest(store, SAMPLE_AS_OF)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk on fire in the backtest")

    import job.backtest

    monkeypatch.setattr(job.backtest, "walk_forward", broken)
    crashed = rotation(*group, "run", "--skip-ingest", *FAST)
    assert crashed.exit_code == 1
    assert "disk on fire" in crashed.error and "Traceback" not in crashed.stderr
    assert read_manifest(store, SAMPLE_AS_OF) == before
    assert not store.exists("locks/run.lock")
    after_rows = rotation(*group, "query", sql, "--format", "json")
    assert after_rows.exit_code == 0 and after_rows.stdout == before_rows.stdout


# ------------------------------------------------------------------------------------------- real data

@pytest.mark.slow
def test_the_real_snapshot_end_to_end(snapshot_dir: Path, tmp_path: Path, rotation: Callable[..., CliResult],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Real data, ridge + tree + the small LSTM: published, weights sum to 1, metrics vs SPY, no banner.

    The LSTM refits every 60 months and the searches run every 36 (defaults 12 and 12): the test is about
    the real data end to end, not the schedule, and this keeps it at a third of the default run's time."""
    monkeypatch.setenv("ROTATION_MODELS__REFIT_MONTHS__LSTM", "60")
    monkeypatch.setenv("ROTATION_BACKTEST__TUNE_MONTHS", "36")
    store_dir = tmp_path / "artifacts"
    result = rotation("--warehouse", str(tmp_path / "w.duckdb"), "--store", str(store_dir), "run",
                      "--source", "snapshot", "--snapshot-dir", str(snapshot_dir), "--models", "ridge,tree,lstm")
    assert result.exit_code == 0, result.stderr[-3000:]
    store = open_store(str(store_dir))
    (key,) = [k for k in store.list("runs/") if k.endswith("manifest.json")]
    as_of = key.split("as_of=")[1].split("/")[0]
    manifest = read_manifest(store, as_of)
    assert manifest is not None and verify_manifest(store, manifest) == []
    assert manifest["synthetic"] is False and manifest["source"] == "snapshot"
    assert manifest["models"] == ["ridge", "tree", "lstm"]
    assert set(manifest["model_prefixes"]) >= {"ridge", "tree", "lstm"}
    assert "lookahead_audit" in manifest["timings"]

    weights = run_frames(store, manifest)["weights"]
    assert set(weights["model"]) == {"ridge", "tree", "lstm"}
    sums = weights.groupby("model")["weight"].sum()
    assert sums.to_numpy() == pytest.approx([1.0, 1.0, 1.0])
    assert (weights.groupby("model").size() == N_ASSETS).all()
    assert (weights["weight"] >= 0).all()

    metrics = run_frames(store, manifest)["metrics"]
    figures = metrics.set_index(["section", "model", "period", "metric"])["value"]
    assert set(metrics.loc[metrics["section"] == "models", "model"]) == {"ridge", "tree", "lstm"}
    assert metrics.loc[metrics["metric"] == "benchmark_asset", "value_text"].tolist() == ["SPY"]
    for period in ("full", "last_20pct"):
        months = figures[("benchmark", "benchmark", period, "months")]
        assert months > 0
        for model in ("ridge", "tree", "lstm"):
            assert figures[("models", model, period, "months")] == months
    assert (metrics["section"] == "lookahead_audit").any()

    html = store.get_bytes(next(a["path"] for a in manifest["artifacts"] if a["path"].endswith("report.html")))
    page = html.decode()
    assert SYNTHETIC_BANNER not in page and "synthetic" not in page.lower()
    assert "SYNTHETIC" not in result.stdout


# ------------------------------------------------------------------------------- exit codes, subprocess

@pytest.fixture(scope="module")
def committed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A warehouse and a local store with SAMPLE_AS_OF published (``--scheme static``), made once."""
    workdir = tmp_path_factory.mktemp("committed")
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.startswith("ROTATION_") and name != "ROTATION_SNAPSHOT_DIR":
                mp.delenv(name)
        mp.setenv("MPLCONFIGDIR", str(workdir / "mpl"))
        result = invoke("--warehouse", str(workdir / "warehouse.duckdb"), "--store", str(workdir / "artifacts"),
                        "run", "--source", "sample", "--scheme", "static", *FAST)
    assert result.exit_code == 0, result.stderr
    return workdir / "warehouse.duckdb", workdir / "artifacts"


def copy_committed(committed: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    warehouse, store = committed
    shutil.copy(warehouse, tmp_path / "warehouse.duckdb")
    shutil.copytree(store, tmp_path / "artifacts")
    return tmp_path / "warehouse.duckdb", tmp_path / "artifacts"


CORRUPTIONS = {
    # VITAX's closes from its June 2015 month-end on, times four: one +300 % month.
    "return-of-300-percent": ("UPDATE prices_daily SET close = close * 4 WHERE asset = 'VITAX' "
                              "AND date >= '2015-06-30'", "prices.returns_within_bounds"),
    # No VITAX prices in June 2015: the dataset cannot even be built; the checks still say why.
    "missing-month": ("DELETE FROM prices_daily WHERE asset = 'VITAX' AND date BETWEEN '2015-06-01' "
                      "AND '2015-06-30'", "prices.returns_complete"),
}


@pytest.mark.slow
@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_exit_3_when_validation_fails_writes_only_the_validation_result(
        corruption: str, committed: tuple[Path, Path], tmp_path: Path) -> None:
    """A corrupted warehouse (--skip-ingest): exit 3 naming the failed check, only validation/... is
    added to the store, the month's published manifest and results stay as they were."""
    import duckdb

    sql, check = CORRUPTIONS[corruption]
    warehouse, store_dir = copy_committed(committed, tmp_path)
    with duckdb.connect(str(warehouse)) as con:
        con.execute(sql)
    store = open_store(str(store_dir))
    before = store_files(store)
    proc = rotation_subprocess(tmp_path, "--warehouse", str(warehouse), "--store", str(store_dir), "run",
                               "--skip-ingest", *FAST)
    line = assert_one_error_line(proc, code=3, says=check)
    assert "VITAX" in line
    after = store_files(store)
    added = sorted(set(after) - set(before))
    assert len(added) == 1 and re.fullmatch(rf"validation/as_of={SAMPLE_AS_OF}/run_id=[^/]+/validation\.json",
                                            added[0]), added
    assert {k: after[k] for k in before} == before  # nothing changed, the manifest included
    assert json.loads(store.get_bytes(added[0]))["passed"] is False
    assert not store.exists("locks/run.lock")


@pytest.mark.slow
def test_exit_4_when_the_data_source_is_down(tmp_path: Path) -> None:
    """--source yahoo with every connection refused (a proxy on a closed port): exit 4, nothing published."""
    proxy = f"http://127.0.0.1:{free_port()}"
    proc = rotation_subprocess(tmp_path, "--log-format", "json", "--store", str(tmp_path / "artifacts"), "run",
                               "--source", "yahoo",
                               *FAST, timeout=120, HTTPS_PROXY=proxy, HTTP_PROXY=proxy, https_proxy=proxy,
                               http_proxy=proxy, NO_PROXY="", no_proxy="", ROTATION_DATA__DOWNLOAD_TIMEOUT_S="5")
    assert_one_error_line(proc, code=4, says="Yahoo Finance")
    assert all(line.startswith(("error: ", "{")) for line in stderr_lines(proc)), proc.stderr  # JSON logs only
    store = tmp_path / "artifacts"
    assert not [p for p in store.rglob("*") if p.is_file() and p.relative_to(store).parts[0] != "locks"]
    assert not (store / "locks" / "run.lock").exists()


@pytest.mark.slow
def test_exit_5_when_the_store_is_down(tmp_path: Path) -> None:
    """--store s3://... with the endpoint on a closed port: exit 5 before any work."""
    proc = rotation_subprocess(tmp_path, "--store", "s3://bucket/x", "run", *FAST, timeout=120,
                               AWS_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}", AWS_ACCESS_KEY_ID="testing",
                               AWS_SECRET_ACCESS_KEY="testing-secret", AWS_DEFAULT_REGION="us-east-1")
    line = assert_one_error_line(proc, code=5, says="s3://bucket/x")
    assert "testing-secret" not in proc.stderr + line
    assert not (tmp_path / "data").exists()  # no ingest either


@pytest.mark.slow
def test_exit_6_when_another_run_holds_the_lock(committed: tuple[Path, Path], tmp_path: Path) -> None:
    """A live lock of another run: the run waits store.lock_wait_s, then exits 6 naming the holder; the
    lock and the month are left alone."""
    from job.store.lock import LOCK_KEY, RunLock

    warehouse, store_dir = copy_committed(committed, tmp_path)
    store = open_store(str(store_dir))
    holder = RunLock(store, "other", 3600)
    holder.acquire()
    lock = store.get_bytes(LOCK_KEY)
    before = store_files(store)
    started = time.monotonic()
    proc = rotation_subprocess(tmp_path, "--warehouse", str(warehouse), "--store", str(store_dir), "run", *FAST,
                               ROTATION_STORE__LOCK_WAIT_S="2")
    assert time.monotonic() - started >= 2, "it waited for the holder before giving up"
    assert_one_error_line(proc, code=6, says="another run holds the store's run lock: other")
    assert store.get_bytes(LOCK_KEY) == lock
    assert store_files(store) == before
    holder.release()


@pytest.mark.slow
@pytest.mark.parametrize(("args", "says"), [
    (("run", "--models", "ridge,random-forest"), "unknown model(s) random-forest"),
    (("--config", "{config}", "run", *FAST), "unknown configuration key strategy.threshhold"),
], ids=["unknown-model", "unknown-toml-key"])
def test_exit_2_on_bad_configuration(args: tuple[str, ...], says: str, tmp_path: Path) -> None:
    """An unknown model name or a misspelt TOML key: exit 2 before anything is touched."""
    config = tmp_path / "typo.toml"
    config.write_text("[strategy]\nthreshhold = 0.2\n", encoding="utf-8")
    argv = [a.replace("{config}", str(config)) for a in args]
    proc = rotation_subprocess(tmp_path, "--store", str(tmp_path / "artifacts"), *argv, timeout=120)
    assert_one_error_line(proc, code=2, says=says)
    assert not (tmp_path / "artifacts").exists() and not (tmp_path / "data").exists()


@pytest.mark.slow
def test_sigterm_mid_run_releases_the_lock_and_publishes_nothing(committed: tuple[Path, Path],
                                                                  tmp_path: Path) -> None:
    """Kubernetes stopping the pod (SIGTERM) mid-run: exit 143 with one line, the lock is released at
    once (the next attempt is not locked out beyond one lease), the month's manifest is unchanged."""
    import signal
    import time

    warehouse, store_dir = copy_committed(committed, tmp_path)
    store = open_store(str(store_dir))
    before = read_manifest(store, SAMPLE_AS_OF)
    proc = subprocess.Popen([str(ROTATION_BIN), "--warehouse", str(warehouse), "--store", str(store_dir), "run",
                             "--skip-ingest", *FAST], cwd=tmp_path, env=subprocess_env(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = store_dir / "locks" / "run.lock"
    deadline = time.monotonic() + 120
    while not lock.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lock.exists(), "the run never took the lock"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    assert_one_error_line(done, code=128 + signal.SIGTERM, says="terminated by SIGTERM")
    assert not lock.exists()
    assert read_manifest(store, SAMPLE_AS_OF) == before


@pytest.mark.slow
@pytest.mark.swift
def test_a_run_into_openstack_swift(swift_bucket: Any, tmp_path: Path, rotation: Callable[..., CliResult]) -> None:
    """A production S3 implementation that checks signatures and has no conditional writes (so the
    best-effort lock): the run publishes, every artifact verifies, and the query reads the weights."""
    group = ("--warehouse", str(tmp_path / "warehouse.duckdb"), "--store", swift_bucket.uri)
    result = rotation(*group, "run", "--source", "sample", "--scheme", "static", *FAST)
    assert result.exit_code == 0, result.stderr[-3000:]
    store = open_store(swift_bucket.uri)
    manifest = read_manifest(store, SAMPLE_AS_OF)
    assert manifest is not None and verify_manifest(store, manifest) == []
    assert not store.exists("locks/run.lock")
    rows = rotation(*group, "query", "SELECT count(*) AS n, sum(weight) AS total FROM weights", "--format", "json")
    assert rows.exit_code == 0, rows.stderr
    (row,) = json.loads(rows.stdout)
    assert row["n"] == N_ASSETS and row["total"] == pytest.approx(1.0)
