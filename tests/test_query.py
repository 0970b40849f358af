"""`rotation query`: DuckDB SQL over committed runs, locally and over s3:// from a moto server."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from job.cli import cli, main
from job.errors import ExitCode
from job.query import QueryError, connect, flatten_metrics, query
from job.store import LocalStore, open_store
from job.store.publish import Publisher

REPO_ROOT = Path(__file__).resolve().parents[1]
QUERIES = sorted((REPO_ROOT / "sql" / "queries").glob("*.sql"))
ASSETS = ["SPY", "VDE", "VGT", "VHT"]
MODELS = ["ridge", "tree"]


def backtest_frames(as_of: str, seed: int) -> dict[str, pd.DataFrame]:
    """Frames shaped like the backtest's output (job/backtest.py): 6 decision months up to ``as_of``."""
    rng = np.random.default_rng(seed)
    months = pd.period_range(end=pd.Period(as_of, "M"), periods=6, freq="M")
    rows, weights, portfolio = [], [], []
    for model in MODELS:
        for month in months:
            predicted = rng.normal(0.01, 0.05, len(ASSETS))
            realised = rng.normal(0.01, 0.05, len(ASSETS)) if month < months[-1] else [np.nan] * len(ASSETS)
            flags = predicted > 0.05
            w = np.full(len(ASSETS), 1 / len(ASSETS))
            for i, asset in enumerate(ASSETS):
                common = {"model": model, "decision_month": str(month), "target_month": str(month + 1),
                          "asset": asset}
                rows.append({**common, "predicted": predicted[i], "realised": realised[i]})
                weights.append({**common, "weight": w[i], "flag": bool(flags[i]),
                                "multiplier": 5.0 if flags[i] else 1.0, "exposure": w[i]})
            portfolio.append({"model": model, "decision_month": str(month), "target_month": str(month + 1),
                              "portfolio_return": float(np.nanmean(realised)) if month < months[-1] else None,
                              "benchmark_return": 0.01, "equal_weight_return": 0.01,
                              "capital_deployed": 1 + 4 * float(flags.mean()), "gross_exposure": 1.0,
                              "turnover": 0.2, "levered_assets": int(flags.sum())})
    return {"forecasts": pd.DataFrame(rows), "weights": pd.DataFrame(weights), "backtest": pd.DataFrame(portfolio)}


def metrics_doc(seed: int) -> dict[str, Any]:
    """A metrics.json shaped like job.metrics.summarise's."""
    return {
        "scheme": "walk-forward",
        "strategy": {"threshold": 0.15, "factor": 5.0},
        "models": {m: {"full": {"sharpe": 0.5 + i + seed / 10, "cagr": 0.08, "max_drawdown": -0.2},
                       "last_20pct": {"sharpe": 0.4}} for i, m in enumerate(MODELS)},
        "benchmark": {"full": {"sharpe": 0.6, "cagr": 0.09}},
        "forecast_quality": {"by_model": {"ridge": {"mae": 0.04}}, "mae_by_asset": {"ridge": {"SPY": 0.03}}},
    }


def publish_month(store: Any, as_of: str, run_id: str, seed: int, *, commit: bool = True) -> Publisher:
    pub = Publisher(store, as_of, run_id)
    for kind, frame in backtest_frames(as_of, seed).items():
        pub.write_table(kind, frame)
    pub.write_json("metrics", "metrics.json", metrics_doc(seed))
    if commit:
        pub.commit(timings={"train": 1.5, "backtest": 2.0}, extra={"code_version": "0.1.0"})
    return pub


@pytest.fixture
def published(artifact_store: Any) -> Any:
    """Two published months, plus an uncommitted (crashed) rerun of the second."""
    publish_month(artifact_store, "2025-01", "20260101T000000Z-aaaaaa", 1)
    publish_month(artifact_store, "2025-02", "20260201T000000Z-bbbbbb", 2)
    publish_month(artifact_store, "2025-02", "20260202T000000Z-cccccc", 3, commit=False)
    return artifact_store


# -- metrics flattening ----------------------------------------------------------------------------------

def test_flatten_metrics_of_the_jobs_shape() -> None:
    rows = pd.DataFrame(flatten_metrics(metrics_doc(0)))
    ridge = rows[(rows.section == "models") & (rows.model == "ridge") & (rows.period == "full")]
    assert dict(zip(ridge.metric, ridge.value, strict=True)) == {"sharpe": 0.5, "cagr": 0.08, "max_drawdown": -0.2}
    bench = rows[rows.model == "benchmark"]
    assert set(bench.metric) == {"sharpe", "cagr"} and set(bench.period) == {"full"}
    fq = rows[(rows.section == "forecast_quality") & (rows.metric == "mae")]
    assert fq.model.tolist() == ["ridge"]
    assert rows[rows.metric == "scheme"].value_text.tolist() == ["walk-forward"]


def test_flatten_metrics_of_other_shapes() -> None:
    plain = flatten_metrics({"ridge": {"full": {"sharpe": 1.0}}})
    assert plain == [{"section": "ridge", "model": "ridge", "period": "full", "metric": "sharpe", "value": 1.0,
                      "value_text": None, "path": "ridge.full.sharpe"}]
    records = flatten_metrics([{"model": "tree", "period": "full", "sharpe": 2.0, "ok": True}])
    assert [(r["model"], r["period"], r["metric"], r["value"]) for r in records] == [
        ("tree", "full", "sharpe", 2.0), ("tree", "full", "ok", 1.0)]


# -- views over committed runs ---------------------------------------------------------------------------

def test_views_show_committed_runs_only(published: Any) -> None:
    runs = query(published, "SELECT as_of, run_id, artifacts, total_seconds, extra FROM runs ORDER BY as_of")
    assert runs[["as_of", "run_id"]].values.tolist() == [["2025-01", "20260101T000000Z-aaaaaa"],
                                                         ["2025-02", "20260201T000000Z-bbbbbb"]]
    assert runs.artifacts.tolist() == [4, 4] and runs.total_seconds.tolist() == [3.5, 3.5]
    assert json.loads(runs.extra[0]) == {"code_version": "0.1.0"}
    counts = query(published, "SELECT as_of, count(*) AS n, count(DISTINCT run_id) AS runs FROM forecasts "
                              "GROUP BY as_of ORDER BY as_of")
    assert counts.values.tolist() == [["2025-01", 48, 1], ["2025-02", 48, 1]]
    assert "20260202T000000Z-cccccc" not in set(query(published, "SELECT run_id FROM weights").run_id)
    metrics = query(published, "SELECT as_of, model, value FROM metrics WHERE section = 'models' AND "
                               "period = 'full' AND metric = 'sharpe' ORDER BY as_of, model")
    assert metrics.values.tolist() == [["2025-01", "ridge", 0.6], ["2025-01", "tree", 1.6],
                                       ["2025-02", "ridge", 0.7], ["2025-02", "tree", 1.7]]
    cols = query(published, "SELECT * FROM weights LIMIT 1").columns.tolist()
    assert cols[:2] == ["as_of", "run_id"] and "weight" in cols


@pytest.mark.parametrize("path", QUERIES, ids=[p.stem for p in QUERIES])
def test_ready_queries_run(path: Path, published: Any) -> None:
    """Every file in sql/queries/ runs on published results and returns rows."""
    frame = query(published, path.read_text(encoding="utf-8"))
    assert len(frame) > 0, f"{path.name} returned nothing"


def test_latest_weights_are_the_next_months(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    publish_month(store, "2025-01", "20260101T000000Z-aaaaaa", 1)
    publish_month(store, "2025-02", "20260201T000000Z-bbbbbb", 2)
    frame = query(store, (REPO_ROOT / "sql/queries/latest_weights.sql").read_text())
    assert set(frame.as_of) == {"2025-02"} and set(frame.target_month) == {"2025-03"}
    assert len(frame) == len(MODELS) * len(ASSETS)


def test_an_empty_store_has_empty_views(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "never-written")
    for view in ("forecasts", "weights", "backtest", "metrics", "runs", "artifacts"):
        assert query(store, f"SELECT count(*) AS n FROM {view}")["n"][0] == 0
    with pytest.raises(QueryError) as info:
        query(store, "SELECT weight FROM weights")
    assert "no published runs" in info.value.one_line()


def test_bad_sql_is_query_error_with_duckdbs_message(tmp_path: Path) -> None:
    with pytest.raises(QueryError) as info:
        query(LocalStore(tmp_path), "SELEC 1")
    assert info.value.exit_code == ExitCode.USAGE
    assert "syntax error" in info.value.one_line() and "\n" not in info.value.one_line()


def test_connect_gives_a_connection_with_the_views(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    publish_month(store, "2025-01", "20260101T000000Z-aaaaaa", 1)
    con = connect(store)
    assert con.sql("SELECT count(*) FROM backtest").fetchone() == (12,)
    con.close()


# -- the command -----------------------------------------------------------------------------------------

def test_cli_formats(tmp_path: Path) -> None:
    """Table, csv, json and parquet output of `rotation query`."""
    store_dir = tmp_path / "artifacts"
    publish_month(LocalStore(store_dir), "2025-01", "20260101T000000Z-aaaaaa", 1)
    runner = CliRunner()
    sql = "SELECT model, count(*) AS n FROM weights GROUP BY model ORDER BY model"
    table = runner.invoke(cli, ["--store", str(store_dir), "query", sql])
    assert table.exit_code == 0, table.output
    assert "ridge" in table.output and "(2 rows)" in table.output
    csv = runner.invoke(cli, ["--store", str(store_dir), "query", "--format", "csv", sql])
    assert pd.read_csv(io.StringIO(csv.output)).to_dict("records") == [{"model": "ridge", "n": 24},
                                                                       {"model": "tree", "n": 24}]
    js = runner.invoke(cli, ["--store", str(store_dir), "query", "--format", "json", sql])
    assert json.loads(js.output) == [{"model": "ridge", "n": 24}, {"model": "tree", "n": 24}]
    out = tmp_path / "out" / "w.parquet"
    pq = runner.invoke(cli, ["--store", str(store_dir), "query", "--format", "parquet", "--output", str(out), sql])
    assert pq.exit_code == 0 and pd.read_parquet(out)["n"].tolist() == [24, 24]
    ready = runner.invoke(cli, ["--store", str(store_dir), "query", "--file",
                                str(REPO_ROOT / "sql/queries/model_leaderboard.sql")])
    assert ready.exit_code == 0 and "tree" in ready.output


@pytest.mark.parametrize(("argv", "needle"), [
    (["query", "SELECT nope FROM weights"], "query failed"),
    (["query"], "give either SQL or --file"),
    (["query", "--format", "parquet", "SELECT 1"], "--output"),
])
def test_cli_usage_errors_exit_2(argv: list[str], needle: str, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--store", str(tmp_path / "a"), *argv])
    assert info.value.code == ExitCode.USAGE
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1 and "Traceback" not in err


# -- over s3:// ------------------------------------------------------------------------------------------

@pytest.mark.s3
def test_rotation_query_reads_parquet_over_s3_from_the_moto_server(s3_bucket: Any) -> None:
    """DuckDB's httpfs reads the published parquet from the server: through CliRunner, then the real binary."""
    store = open_store(s3_bucket.uri)
    publish_month(store, "2025-01", "20260101T000000Z-aaaaaa", 1)
    publish_month(store, "2025-01", "20260102T000000Z-bbbbbb", 2, commit=False)
    sql = "SELECT run_id, count(*) AS n FROM weights GROUP BY run_id"
    result = CliRunner().invoke(cli, ["--store", s3_bucket.uri, "query", "--format", "json", sql])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == [{"run_id": "20260101T000000Z-aaaaaa", "n": 48}]

    rotation = Path(sys.executable).with_name("rotation")
    proc = subprocess.run([str(rotation), "--store", s3_bucket.uri, "query", "--format", "csv",
                           "--file", str(REPO_ROOT / "sql/queries/latest_weights.sql")],
                          capture_output=True, text=True, timeout=120, env=dict(os.environ), check=False)
    assert proc.returncode == 0, proc.stderr
    frame = pd.read_csv(io.StringIO(proc.stdout))
    assert len(frame) == len(MODELS) * len(ASSETS) and set(frame.run_id) == {"20260101T000000Z-aaaaaa"}
    assert os.environ["AWS_SECRET_ACCESS_KEY"] not in proc.stdout + proc.stderr


@pytest.mark.s3
def test_rotation_query_on_a_down_store_exits_5(s3_bucket: Any, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{sock.getsockname()[1]}")
    monkeypatch.setenv("ROTATION_STORE__MAX_ATTEMPTS", "1")
    with pytest.raises(SystemExit) as info:
        main(["--store", s3_bucket.uri, "query", "SELECT 1"])
    assert info.value.code == ExitCode.STORE
    err = capsys.readouterr().err.strip()
    assert "cannot reach" in err and len(err.splitlines()) == 1


# -- the plain DuckDB recipe of the README ---------------------------------------------------------------

def _plain_duckdb(store_root: str, s3: Any | None = None) -> Any:
    """A DuckDB connection set up as the README tells a user: secret (for S3), variable, sql/store_views.sql."""
    import duckdb
    import duckdb_ext

    con = duckdb_ext.init(duckdb.connect())
    if s3 is not None:
        con.sql("LOAD httpfs")
        con.sql(f"CREATE SECRET (TYPE s3, KEY_ID '{os.environ['AWS_ACCESS_KEY_ID']}', "
                f"SECRET '{os.environ['AWS_SECRET_ACCESS_KEY']}', REGION 'us-east-1', "
                f"ENDPOINT '{s3.endpoint.removeprefix('http://')}', URL_STYLE 'path', USE_SSL false)")
    con.sql(f"SET VARIABLE store = '{store_root}'")
    con.execute((REPO_ROOT / "sql" / "store_views.sql").read_text())  # what `.read` does in the shell
    return con


@pytest.mark.parametrize("where", ["local", pytest.param("s3", marks=pytest.mark.s3)])
def test_plain_duckdb_views_show_committed_runs_while_globs_show_all(where: str, tmp_path: Path,
                                                                     request: pytest.FixtureRequest) -> None:
    if where == "local":
        store: Any = LocalStore(tmp_path / "artifacts")
        root, s3 = str(store.root), None
    else:
        s3 = request.getfixturevalue("s3_bucket")
        store = open_store(s3.uri)
        root = s3.uri
    publish_month(store, "2025-01", "20260101T000000Z-aaaaaa", 1)
    publish_month(store, "2025-01", "20260102T000000Z-bbbbbb", 2, commit=False)
    con = _plain_duckdb(root, s3)
    committed = con.sql("SELECT DISTINCT run_id FROM weights").fetchall()
    assert committed == [("20260101T000000Z-aaaaaa",)]
    raw = con.sql(f"SELECT count(DISTINCT run_id) FROM read_parquet('{root}/weights/*/*/*.parquet', "
                  "hive_partitioning = true)").fetchone()
    assert raw == (2,), "a raw glob also sees the uncommitted run: hence the views"
    con.close()
