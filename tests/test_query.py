"""`rotation query` over the output of real `rotation run`s: views from the artifact contract, the ready
queries, damage that is named and skipped, and the exit codes (2 bad SQL, 5 store unreadable).

Every fixture comes from running the real stages (tests/real_run.py); damage tests copy that store and
then truncate a manifest, corrupt a parquet's bytes, or rewrite a parquet with altered values.
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from job import artifacts as contract
from job.errors import ExitCode, StoreUnavailable
from job.model_names import BASELINES, FITTED_BASELINES
from job.query import QueryError, connect, duckdb_type, flatten_metrics, query, store_views_sql
from job.store import LocalStore, open_store
from tests.conftest import CliResult
from tests.real_run import MODELS, MONTHS, N_ASSETS, RealRun, copy_store, real_run

REPO_ROOT = Path(__file__).resolve().parents[1]
QUERIES = sorted((REPO_ROOT / "sql" / "queries").glob("*.sql"))
LATEST, EARLIER = MONTHS[-1], MONTHS[0]
Rotation = Callable[..., CliResult]


@pytest.fixture(scope="session")
def run(tmp_path_factory: pytest.TempPathFactory) -> RealRun:
    """Two months published by real `rotation run`s (sample source, ridge and tree)."""
    return real_run(tmp_path_factory)


@pytest.fixture
def damaged(run: RealRun, tmp_path: Path) -> LocalStore:
    """A copy of the real run's store, for a test to damage."""
    return LocalStore(copy_store(run, tmp_path / "artifacts"))


def sql_file(name: str) -> str:
    return (REPO_ROOT / "sql" / "queries" / f"{name}.sql").read_text(encoding="utf-8")


def entry(store: LocalStore, as_of: str, kind: str) -> dict[str, Any]:
    """The manifest entry of ``kind`` in ``as_of``'s manifest."""
    manifest = json.loads((store.root / f"runs/as_of={as_of}/manifest.json").read_text())
    (found,) = [a for a in manifest["artifacts"] if a["kind"] == kind]
    return found


def warnings_of(result: CliResult) -> list[str]:
    return [line for line in result.stderr.splitlines() if "warning" in line]


# -- metrics flattening (the publisher turns the metrics document into the metrics table with it) -------

METRICS_DOC = {
    "scheme": "walk-forward",
    "models": {"ridge": {"full": {"sharpe": 0.5, "cagr": 0.08}, "last_20pct": {"sharpe": 0.4}}},
    "benchmark": {"full": {"sharpe": 0.6}},
    "forecast_quality": {"by_model": {"ridge": {"mae": 0.04}}},
}


def test_flatten_metrics_of_the_jobs_shape() -> None:
    rows = pd.DataFrame(flatten_metrics(METRICS_DOC))
    ridge = rows[(rows.section == "models") & (rows.model == "ridge") & (rows.period == "full")]
    assert dict(zip(ridge.metric, ridge.value, strict=True)) == {"sharpe": 0.5, "cagr": 0.08}
    assert rows[rows.model == "benchmark"].metric.tolist() == ["sharpe"]
    assert rows[(rows.section == "forecast_quality")].model.tolist() == ["ridge"]
    assert rows[rows.metric == "scheme"].value_text.tolist() == ["walk-forward"]
    assert list(rows.columns) == contract.METRICS.columns


def test_flatten_metrics_of_other_shapes() -> None:
    plain = flatten_metrics({"ridge": {"full": {"sharpe": 1.0}}})
    assert plain == [{"section": "ridge", "model": "ridge", "period": "full", "metric": "sharpe", "value": 1.0,
                      "value_text": None, "path": "ridge.full.sharpe"}]
    records = flatten_metrics([{"model": "tree", "period": "full", "sharpe": 2.0, "ok": True}])
    assert [(r["model"], r["period"], r["metric"], r["value"]) for r in records] == [
        ("tree", "full", "sharpe", 2.0), ("tree", "full", "ok", 1.0)]


# -- the views are the contract's ------------------------------------------------------------------------

def test_an_empty_store_has_every_view_typed_and_empty(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "never-written")
    con = connect(store)
    try:
        for kind in contract.TABLE_KINDS:
            described = con.sql(f"DESCRIBE {kind.name}").fetchall()
            assert [(r[0], r[1]) for r in described] == [
                ("as_of", "VARCHAR"), ("run_id", "VARCHAR"),
                *((f.name, duckdb_type(f.type)) for f in kind.schema)], kind.name  # type: ignore[union-attr]
            assert con.sql(f"SELECT count(*) FROM {kind.name}").fetchone() == (0,)
        assert [r[0] for r in con.sql("DESCRIBE runs").fetchall()] == [
            "as_of", "run_id", "created_at", "artifacts", "bytes", "publications", "status", "problem",
            "total_seconds", "timings", "extra"]
        assert [r[0] for r in con.sql("DESCRIBE artifacts").fetchall()] == [
            "as_of", "run_id", "kind", "path", "bytes", "sha256", "status"]
    finally:
        con.close()
    with pytest.raises(QueryError) as info:
        query(store, "SELECT nope FROM weights")
    assert "no published runs" in info.value.one_line()


def test_store_views_sql_is_generated_from_the_contract() -> None:
    text = (REPO_ROOT / "sql" / "store_views.sql").read_text(encoding="utf-8")
    assert text == store_views_sql(), (
        'sql/store_views.sql is stale: .venv/bin/python -c "import job.query as q; q.write_store_views()"')
    views = re.findall(r"CREATE OR REPLACE VIEW (\w+) AS", text)
    assert views == ["committed_runs", "committed_artifacts", *(k.name for k in contract.TABLE_KINDS)]


def test_views_show_every_committed_month_once_per_model_and_asset(run: RealRun) -> None:
    runs = query(run.store, "SELECT * FROM runs ORDER BY as_of")
    assert runs.as_of.tolist() == list(MONTHS)
    assert runs.status.tolist() == ["ok", "ok"] and runs.problem.isna().all()
    assert (runs.artifacts > 0).all() and (runs.bytes > 0).all()
    for pubs in runs.publications:
        assert [p["command"] for p in json.loads(pubs)] == ["run"]
    for kind in ("forecasts", "weights"):
        frame = query(run.store, f"SELECT * FROM {kind}")
        assert list(frame.columns) == ["as_of", "run_id", *contract.get(kind).columns]
        counts = frame.groupby(["as_of", "model"]).size()
        assert set(counts.values) == {N_ASSETS}, kind  # every model (and baseline) forecasts every asset
        models = frame.groupby("as_of").model.agg(lambda m: tuple(sorted(set(m))))
        assert models.index.tolist() == list(MONTHS) and models.nunique() == 1, kind
        assert set(MODELS) <= set(models.iloc[0]), kind
        if kind == "forecasts":  # the fitted baselines forecast next month too
            assert set(FITTED_BASELINES) <= set(models.iloc[0])
        assert not frame.duplicated(["as_of", "model", "asset"]).any()
        assert (frame.target_month == frame.as_of.map(lambda m: str(pd.Period(m, "M") + 1))).all()
        assert frame.groupby("as_of").run_id.nunique().eq(1).all()
    weights = query(run.store, "SELECT as_of, model, sum(exposure) AS gross FROM weights GROUP BY ALL")
    assert (weights.gross > 0).all()
    backtest = query(run.store, "SELECT as_of, model, count(*) AS n, count(DISTINCT decision_month) AS d "
                                "FROM backtest GROUP BY ALL")
    assert set(zip(backtest.as_of, backtest.model, strict=True)) == {(m, x) for m in MONTHS
                                                                      for x in (*MODELS, *BASELINES)}
    assert (backtest.n == backtest.d).all() and (backtest.n > 12).all()
    arts = query(run.store, "SELECT kind, status FROM artifacts")
    assert set(arts.status) == {"ok"}
    assert {"forecasts", "weights", "backtest", "backtest_forecasts", "backtest_weights", "metrics"} <= set(arts.kind)


def test_the_plain_duckdb_views_show_what_rotation_query_shows(run: RealRun, tmp_path: Path) -> None:
    """sql/store_views.sql, as the README tells a user to load it; a crashed run's leftovers stay hidden."""
    import duckdb
    import duckdb_ext

    store = copy_store(run, tmp_path / "artifacts")
    leftover = entry(LocalStore(store), LATEST, "weights")["path"]
    crashed = store / re.sub(r"run_id=[^/]+", "run_id=20991231T000000Z-crashd", leftover)
    crashed.parent.mkdir(parents=True)
    crashed.write_bytes((store / leftover).read_bytes())  # a run that died before its manifest
    con = duckdb_ext.init(duckdb.connect())
    con.sql(f"SET VARIABLE store = '{store}'")
    con.execute((REPO_ROOT / "sql" / "store_views.sql").read_text())
    for kind in contract.TABLE_KINDS:
        if not (store / kind.name).is_dir():
            continue
        plain = con.sql(f"SELECT as_of, run_id, count(*) AS n FROM {kind.name} GROUP BY ALL ORDER BY ALL").fetchall()
        ours = query(store, f"SELECT as_of, run_id, count(*) AS n FROM {kind.name} GROUP BY ALL ORDER BY ALL")
        assert plain == [tuple(r) for r in ours.itertuples(index=False)], kind.name
    con.close()


# -- the ready queries, on a real run --------------------------------------------------------------------

@pytest.mark.parametrize("path", QUERIES, ids=[p.stem for p in QUERIES])
def test_every_ready_query_runs_on_a_real_run(path: Path, run: RealRun, rotation: Rotation) -> None:
    result = rotation("--store", str(run.store), "query", "--file", str(path), "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert len(json.loads(result.stdout)) > 0, f"{path.name} returned nothing"


def test_latest_weights_are_next_months_for_every_model_and_asset(run: RealRun) -> None:
    frame = query(run.store, sql_file("latest_weights"))
    assert set(frame.as_of) == {LATEST} and set(frame.decision_month) == {LATEST}
    assert set(frame.target_month) == {str(pd.Period(LATEST, "M") + 1)}
    assert frame.groupby("model").size().to_dict() == dict.fromkeys(MODELS, N_ASSETS)
    assert not frame.duplicated(["model", "asset"]).any()
    assert frame.weight.notna().all() and frame.run_id.nunique() == 1


def test_forecast_vs_realised_covers_every_model_and_asset_out_of_sample(run: RealRun) -> None:
    frame = query(run.store, sql_file("forecast_vs_realised"))
    assert set(frame.as_of) == {LATEST}
    assert set(MODELS) <= set(frame.model)
    per_model = frame.groupby("model").asset.nunique()
    assert (per_model == N_ASSETS).all(), per_model
    assert not frame.duplicated(["model", "asset"]).any()
    assert (frame.months > 12).all() and (frame.last_month <= LATEST).all()
    assert frame.mae.gt(0).all() and frame.sign_hit_rate.between(0, 1).all()


def test_leverage_usage_has_one_row_per_model(run: RealRun) -> None:
    frame = query(run.store, sql_file("leverage_usage"))
    # the baselines run through the same allocation and are published beside the models (job/scoreboard.py)
    baselines = ("persistence", "historical-mean", "momentum")
    assert frame.model.tolist() == sorted([*MODELS, *baselines]) and set(frame.as_of) == {LATEST}
    assert (frame.months > 12).all() and frame.share_months_levered.between(0, 1).all()
    assert frame.avg_capital_deployed.ge(0).all() and frame.most_levered_asset.notna().all()


def test_model_leaderboard_ranks_the_models_of_every_month(run: RealRun) -> None:
    frame = query(run.store, sql_file("model_leaderboard"))
    assert sorted(set(frame.as_of)) == list(MONTHS)
    for as_of, month in frame.groupby("as_of"):
        assert set(MODELS) | {"benchmark", "equal_weight"} <= set(month.model), as_of
        assert not month.model.duplicated().any()
        assert month["rank"].min() == 1 and month.sharpe.notna().all()


# -- damage is named, skipped and shown; everything else still queries ---------------------------------

def test_a_truncated_manifest_is_named_and_its_month_shown_damaged(damaged: LocalStore, rotation: Rotation) -> None:
    path = damaged.root / f"runs/as_of={EARLIER}/manifest.json"
    path.write_bytes(path.read_bytes()[:200])
    result = rotation("--store", str(damaged.root), "query", "--format", "json",
                      "SELECT as_of, status, problem FROM runs ORDER BY as_of")
    assert result.exit_code == 0, result.stderr
    (warning,) = warnings_of(result)
    assert f"runs/as_of={EARLIER}/manifest.json" in warning and "not valid JSON" in warning
    rows = json.loads(result.stdout)
    assert [(r["as_of"], r["status"]) for r in rows] == [(EARLIER, "damaged"), (LATEST, "ok")]
    assert "manifest.json" in rows[0]["problem"]
    weights = query(damaged, "SELECT as_of, count(*) AS n FROM weights GROUP BY ALL")
    assert weights.to_dict("records") == [{"as_of": LATEST, "n": len(MODELS) * N_ASSETS}]


def test_a_manifest_of_the_wrong_shape_is_named_too(damaged: LocalStore, rotation: Rotation) -> None:
    (damaged.root / f"runs/as_of={LATEST}/manifest.json").write_text('{"artifacts": "nope"}')
    result = rotation("--store", str(damaged.root), "query", "SELECT count(*) AS n FROM weights")
    assert result.exit_code == 0, result.stderr
    assert len(warnings_of(result)) == 1 and "not a manifest" in result.stderr
    assert query(damaged, "SELECT DISTINCT as_of FROM forecasts").as_of.tolist() == [EARLIER]


def test_a_corrupt_parquet_is_left_out_and_runs_still_answers(damaged: LocalStore, rotation: Rotation) -> None:
    art = entry(damaged, LATEST, "weights")
    path = damaged.root / art["path"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = b"\x00" * 64  # structurally corrupt, same size
    data[-8:-4] = b"\xff\xff\xff\x7f"                       # footer length past the file
    path.write_bytes(bytes(data))
    result = rotation("--store", str(damaged.root), "query", "--format", "json", "SELECT * FROM runs")
    assert result.exit_code == 0, result.stderr
    (warning,) = warnings_of(result)
    assert art["path"] in warning and "sha256" in warning
    runs = {r["as_of"]: r for r in json.loads(result.stdout)}
    assert runs[LATEST]["status"] == "damaged" and art["path"] in runs[LATEST]["problem"]
    assert runs[EARLIER]["status"] == "ok"
    assert query(damaged, "SELECT DISTINCT as_of FROM weights").as_of.tolist() == [EARLIER]
    assert set(query(damaged, "SELECT DISTINCT as_of FROM forecasts").as_of) == set(MONTHS)
    arts = query(damaged, f"SELECT status FROM artifacts WHERE path = '{art['path']}'")
    assert arts.status.tolist() == ["damaged"]


def test_an_altered_but_valid_parquet_is_never_served(damaged: LocalStore, rotation: Rotation) -> None:
    art = entry(damaged, LATEST, "weights")
    path = damaged.root / art["path"]
    table = pq.read_table(path)
    doubled = pa.compute.multiply(table["weight"], 2.0)
    pq.write_table(table.set_column(table.schema.get_field_index("weight"), "weight", doubled), path)
    assert pq.read_table(path).num_rows == table.num_rows  # a perfectly valid parquet file
    result = rotation("--store", str(damaged.root), "query", "--format", "json",
                      "SELECT as_of, count(*) AS n FROM weights GROUP BY ALL ORDER BY ALL")
    assert result.exit_code == 0, result.stderr
    (warning,) = warnings_of(result)
    assert art["path"] in warning and "the manifest" in warning
    assert json.loads(result.stdout) == [{"as_of": EARLIER, "n": len(MODELS) * N_ASSETS}]
    assert query(damaged, f"SELECT status FROM runs WHERE as_of = '{LATEST}'").status.tolist() == ["damaged"]


# -- exit codes ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("sql", "needle"), [("SELEC 1", "syntax error"),
                                             ("SELECT nope FROM weights", "nope"),
                                             ("SELECT * FROM no_such_view", "no_such_view")])
def test_bad_sql_exits_2_in_one_line(sql: str, needle: str, run: RealRun, rotation: Rotation) -> None:
    result = rotation("--store", str(run.store), "query", sql)
    assert result.exit_code == ExitCode.USAGE
    assert "query failed" in result.error and needle in result.error
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(("argv", "needle"), [
    (["query"], "give either SQL or --file"),
    (["query", "--format", "parquet", "SELECT 1"], "--output"),
])
def test_usage_errors_exit_2(argv: list[str], needle: str, tmp_path: Path, rotation: Rotation) -> None:
    result = rotation("--store", str(tmp_path / "a"), *argv)
    assert result.exit_code == ExitCode.USAGE and needle in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_output_formats(run: RealRun, tmp_path: Path, rotation: Rotation) -> None:
    group = ("--store", str(run.store))
    sql = f"SELECT model, count(*) AS n FROM weights WHERE as_of = '{LATEST}' GROUP BY model ORDER BY model"
    expected = [{"model": m, "n": N_ASSETS} for m in sorted(MODELS)]
    table = rotation(*group, "query", sql)
    assert table.exit_code == 0 and "ridge" in table.stdout and "(2 rows)" in table.stdout
    csv = rotation(*group, "query", "--format", "csv", sql)
    assert pd.read_csv(io.StringIO(csv.stdout)).to_dict("records") == expected
    assert json.loads(rotation(*group, "query", "--format", "json", sql).stdout) == expected
    out = tmp_path / "out" / "w.parquet"
    written = rotation(*group, "query", "--format", "parquet", "--output", str(out), sql)
    assert written.exit_code == 0 and pd.read_parquet(out).to_dict("records") == expected


# -- over s3:// ------------------------------------------------------------------------------------------

def upload(run: RealRun, s3: Any) -> None:
    """The real run's store, copied object by object into the bucket."""
    for path in sorted(run.store.rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            key = f"{s3.prefix}/{path.relative_to(run.store).as_posix()}"
            s3.client.put_object(Bucket=s3.bucket, Key=key, Body=path.read_bytes())


@pytest.mark.s3
def test_query_over_s3_reads_verified_cached_copies(run: RealRun, s3_bucket: Any, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch, rotation: Rotation) -> None:
    upload(run, s3_bucket)
    cache = tmp_path / "cache"
    monkeypatch.setenv("ROTATION_CACHE_DIR", str(cache))
    sql = "SELECT as_of, count(*) AS n FROM weights GROUP BY ALL ORDER BY ALL"
    expected = [{"as_of": m, "n": len(MODELS) * N_ASSETS} for m in MONTHS]
    first = rotation("--store", s3_bucket.uri, "query", "--format", "json", sql)
    assert first.exit_code == 0, first.stderr
    assert json.loads(first.stdout) == expected
    cached = {p.name.split(".")[0] for p in cache.rglob("*") if p.is_file()}
    listed = set(query(s3_bucket.uri, "SELECT sha256 FROM artifacts").sha256)
    assert listed == cached  # every listed file, once, under its sha256
    # An altered object in the bucket has another sha256: named, never served (the cache is by content).
    art = query(s3_bucket.uri, f"SELECT path FROM artifacts WHERE kind = 'weights' AND as_of = '{EARLIER}'")
    key = f"{s3_bucket.prefix}/{art.path[0]}"
    s3_bucket.client.put_object(Bucket=s3_bucket.bucket, Key=key, Body=b"PAR1 not any more")
    for path in cache.rglob("*"):  # a cold cache: the object is downloaded again and checked
        if path.is_file():
            path.unlink()
    again = rotation("--store", s3_bucket.uri, "query", "--format", "json", sql)
    assert again.exit_code == 0, again.stderr
    assert json.loads(again.stdout) == expected[1:]
    assert art.path[0] in again.stderr and len(warnings_of(again)) == 1
    assert os.environ["AWS_SECRET_ACCESS_KEY"] not in again.stdout + again.stderr


@pytest.mark.s3
def test_a_503_during_a_query_exits_5_in_one_line(run: RealRun, s3_bucket: Any, fault_proxy: Any, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch, rotation: Rotation) -> None:
    upload(run, s3_bucket)
    proxy = fault_proxy(s3_bucket.endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
    monkeypatch.setenv("ROTATION_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("ROTATION_STORE__MAX_ATTEMPTS", "2")
    store = open_store(s3_bucket.uri)  # the bucket answers the probe ...
    proxy.failures = 10**9             # ... then every request gets 503
    with pytest.raises(StoreUnavailable) as info:
        query(store, "SELECT count(*) FROM weights")
    assert s3_bucket.uri in info.value.one_line() and "503" in info.value.one_line()
    result = rotation("--store", s3_bucket.uri, "query", "SELECT * FROM runs")
    assert result.exit_code == ExitCode.STORE, result.stderr
    assert s3_bucket.uri in result.error and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
