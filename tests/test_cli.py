"""The `rotation` command line end to end: in-process (CliRunner) and as the installed console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from job.cli import COMMANDS

BIN = Path(sys.executable).parent


def test_help_lists_the_stages_and_group_options(rotation) -> None:
    result = rotation("--help")
    assert result.exit_code == 0
    for option in ("--config", "--warehouse", "--store", "--verbose", "--log-format"):
        assert option in result.stdout
    assert "ingest" in result.stdout and "config" in result.stdout
    assert set(COMMANDS) >= {"ingest", "validate", "train", "forecast", "backtest", "report", "run", "query",
                             "config"}


def test_ingest_sample_end_to_end(rotation, tmp_path: Path) -> None:
    """`rotation --warehouse W ingest --source sample` prints a JSON summary and fills the warehouse."""
    path = tmp_path / "sub" / "w.duckdb"
    result = rotation("--warehouse", str(path), "ingest", "--source", "sample")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["source"] == "sample" and summary["universe"] == "original"
    assert summary["warehouse"] == str(path)
    assert summary["price_rows"] > 60_000 and summary["changed_rows"] == summary["price_rows"] + summary["macro_rows"]
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM decision_months").fetchone()[0] > 250
    again = rotation("--warehouse", str(path), "ingest", "--source", "sample")
    assert json.loads(again.stdout)["changed_rows"] == 0
    assert json.loads(again.stdout)["fingerprint"] == summary["fingerprint"]


def test_combined_sources_are_accepted(rotation, monkeypatch, tmp_path: Path) -> None:
    """`--source yahoo,<macro source>` (the live combination) ingests prices and macro together."""
    import pandas as pd

    from job.config import load_settings

    tickers = load_settings(environ={}).universe("yahoo").tickers
    closes = pd.DataFrame({t: [100.0, 101.0, 99.0] for t in tickers},
                          index=pd.to_datetime(["2024-01-31", "2024-02-29", "2024-03-28"]))
    monkeypatch.setattr("job.sources.yahoo._download", lambda *a, **k: pd.concat({"Close": closes}, axis=1))
    result = rotation("--warehouse", str(tmp_path / "w.duckdb"), "ingest", "--source", "yahoo,sample")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["source"] == "yahoo+sample" and summary["price_rows"] == 3 * len(tickers)
    assert summary["macro_rows"] > 10_000


def test_warehouse_from_the_environment(rotation, tmp_path: Path) -> None:
    path = tmp_path / "env.duckdb"
    result = rotation("ingest", env={"ROTATION_WAREHOUSE": str(path)})
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["warehouse"] == str(path) and path.is_file()


def test_json_logs_are_one_object_per_line(rotation, tmp_path: Path, snapshot_dir: Path) -> None:
    """--log-format json: every log line on stderr is a JSON object (what Kubernetes collects)."""
    result = rotation("-v", "--log-format", "json", "--warehouse", str(tmp_path / "w.duckdb"), "ingest",
                      "--source", "snapshot", "--snapshot-dir", str(snapshot_dir))
    assert result.exit_code == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines
    records = [json.loads(line) for line in lines]
    assert all({"ts", "level", "logger", "msg"} <= set(r) for r in records)
    assert any("FRED-MD 2019-10" in r["msg"] and r.get("dropped") for r in records)


@pytest.mark.parametrize(("args", "code", "needle"), [
    (("nosuchcommand",), 2, "No such command"),
    (("ingest", "--source", "bloomberg"), 2, "data.source must be one of"),
    (("ingest", "--source", "yahoo,bloomberg"), 2, "data.source must be one of"),
    (("ingest", "--bogus"), 2, "No such option"),
    (("--log-format", "xml", "config", "show"), 2, "Invalid value"),
])
def test_usage_errors_exit_2(rotation, tmp_path: Path, args: tuple[str, ...], code: int, needle: str) -> None:
    result = rotation("--warehouse", str(tmp_path / "w.duckdb"), *args)
    assert result.exit_code == code
    assert needle in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "w.duckdb").exists()


def test_unexpected_errors_are_one_line_and_verbose_shows_the_traceback(rotation, monkeypatch,
                                                                        tmp_path: Path) -> None:
    """A bug is exit 1 with one line; -v adds the traceback for whoever debugs it."""
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("something broke")

    monkeypatch.setattr("job.stages.data.ingest", boom)
    quiet = rotation("--warehouse", str(tmp_path / "w.duckdb"), "ingest")
    assert quiet.exit_code == 1
    assert quiet.error.startswith("error: unexpected RuntimeError: something broke")
    assert "Traceback" not in quiet.stderr
    loud = rotation("-v", "--warehouse", str(tmp_path / "w.duckdb"), "ingest")
    assert loud.exit_code == 1 and "Traceback" in loud.stderr


@pytest.mark.slow
def test_console_script_ingests_the_sample(tmp_path: Path) -> None:
    """The installed `rotation` command, in a fresh process, exits 0 and writes the warehouse."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROTATION_")}
    done = subprocess.run([str(BIN / "rotation"), "--warehouse", "w.duckdb", "ingest", "--source", "sample"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["source"] == "sample"
    assert (tmp_path / "w.duckdb").is_file()


@pytest.mark.slow
def test_console_script_failure_is_one_line_without_traceback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROTATION_")}
    done = subprocess.run([str(BIN / "rotation"), "--warehouse", "w.duckdb", "ingest", "--source", "snapshot",
                           "--snapshot-dir", str(tmp_path / "missing")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: snapshot folder not found: {tmp_path / 'missing'} (pass --snapshot-dir or set ROTATION_SNAPSHOT_DIR)"]
    assert not (tmp_path / "w.duckdb").exists()


@pytest.mark.slow
def test_python_dash_m_job(tmp_path: Path) -> None:
    """`python -m job` is the same command."""
    done = subprocess.run([sys.executable, "-m", "job", "--help"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0 and "Usage: rotation" in done.stdout
    version = subprocess.run([sys.executable, "-m", "job", "--version"], cwd=tmp_path, capture_output=True,
                             text=True, timeout=120, check=False)
    assert version.returncode == 0 and version.stdout.startswith("rotation, version")


# -- signals: Ctrl-C exits 130, SIGTERM 143, one line, the run lock released ------------------------------

SIGNALS = {"SIGINT": (130, "error: interrupted by Ctrl-C (SIGINT)"),
           "SIGTERM": (143, "error: terminated by SIGTERM")}


# Starts the command with Ctrl-C's default disposition: a shell running pytest in the background ignores
# SIGINT for its children, and the job, like any program, leaves an ignored SIGINT ignored.
DEFAULT_SIGINT = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                  "os.execv(sys.argv[1], sys.argv[1:])")


def _start(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    """``rotation ARGS`` as a fresh process, stderr piped."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROTATION_")}
    env.update({"MPLCONFIGDIR": str(tmp_path / "mpl"), "TF_CPP_MIN_LOG_LEVEL": "2",
                "ROTATION_CACHE_DIR": str(tmp_path / "cache")})
    return subprocess.Popen([sys.executable, "-c", DEFAULT_SIGINT, str(BIN / "rotation"), *args], cwd=tmp_path,
                            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)


def _assert_one_signal_line(code: int, stderr: str, signame: str) -> str:
    want_code, says = SIGNALS[signame]
    assert code == want_code, stderr[-3000:]
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith(says), stderr[-3000:]
    assert "Traceback" not in stderr and "aborted" not in stderr and "unexpected" not in stderr, stderr[-3000:]
    return errors[0]


@pytest.mark.slow
@pytest.mark.parametrize(("signame", "stage", "where"), [
    ("SIGINT", "ingest", "local"),
    pytest.param("SIGTERM", "validate", "s3", marks=pytest.mark.s3),
])
def test_a_signal_mid_run_exits_128_plus_n_with_one_line_and_releases_the_lock(
        request: pytest.FixtureRequest, tmp_path: Path, signame: str, stage: str, where: str) -> None:
    """Ctrl-C during ingest (DuckDB writing the warehouse) into a local store, SIGTERM (Kubernetes stopping
    the pod) during validation into an S3 store: exit 130 / 143, one `error:` line that says the lock was
    released, no traceback, the lock gone and nothing published."""
    import signal

    from job.store import LOCK_KEY, open_store

    store_uri = (request.getfixturevalue("s3_bucket").uri if where == "s3" else str(tmp_path / "artifacts"))
    proc = _start(tmp_path, "--warehouse", str(tmp_path / "w.duckdb"), "--store", store_uri,
                  "run", "--source", "sample", "--models", "ridge", "--no-audit")
    assert proc.stderr is not None
    seen: list[str] = []
    try:
        for line in proc.stderr:
            seen.append(line)
            if f"stage={stage} event=start" in line:
                break
        else:
            raise AssertionError(f"the run ended before its {stage} stage: {''.join(seen)[-3000:]}")
        store = open_store(store_uri)
        assert store.exists(LOCK_KEY), "the run holds the lock during its stages"
        proc.send_signal(getattr(signal, signame))
        _, rest = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    line = _assert_one_signal_line(proc.returncode, "".join(seen) + rest, signame)
    assert "the run lock, if this run held it, was released" in line
    assert not store.exists(LOCK_KEY), "the lock was released, so a retry is not locked out"
    assert not store.list("runs/"), "nothing was published"


@pytest.mark.slow
@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_a_signal_during_a_long_duckdb_query_exits_128_plus_n(tmp_path: Path, signame: str) -> None:
    """DuckDB turns the interrupt into "RuntimeError: Query interrupted"; the job still exits 130 / 143
    with its one line (not exit 1, "unexpected RuntimeError"), and does not wait for the query to end."""
    import signal
    import time

    started = tmp_path / "started.csv"
    sql = f"COPY (SELECT 1 AS x) TO '{started}'; SELECT sum(i) FROM range(100000000000000) t(i)"
    proc = _start(tmp_path, "--store", str(tmp_path / "artifacts"), "query", sql)
    try:
        while not started.exists() and proc.poll() is None:
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        proc.send_signal(getattr(signal, signame))
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    _assert_one_signal_line(proc.returncode, err, signame)
