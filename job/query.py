"""DuckDB SQL over the published (committed) results of an artifact store.

:func:`connect` opens an in-memory DuckDB and defines, from the manifests only:

``forecasts``, ``weights``, ``backtest`` (and any other parquet kind a manifest lists)
    ``read_parquet([exact files of the committed runs], hive_partitioning=true)``, with the partition
    columns ``as_of`` and ``run_id`` first. A half-written, crashed or superseded run_id never shows,
    because its files are in no manifest.
``metrics``
    One row per value in each committed ``metrics.json``: ``as_of, run_id, section, model, period,
    metric, value, value_text, path`` (see :func:`flatten_metrics`).
``runs``
    One row per published month: ``as_of, run_id, created_at, artifacts, bytes, total_seconds,
    timings`` (JSON text) and ``extra`` (the manifest's other keys, JSON text).
``artifacts``
    One row per artifact of each manifest: ``as_of, run_id, kind, path, bytes, sha256``.

An empty store gives the same views, empty. S3 stores are read by DuckDB's own ``httpfs`` (loaded
offline from the ``duckdb-ext-httpfs`` wheel) with a secret made from the store's boto3 credentials
and endpoint; the secret lives only in the in-memory connection.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlparse

import duckdb
import pandas as pd

from job.errors import ConfigError
from job.store import Store, open_store
from job.store.publish import RUN_PATH_RE, list_manifests

PARQUET_KINDS = ("forecasts", "weights", "backtest")
WRAPPER_KEYS = {"models", "by_model", "results", "metrics"}
IDENT_RE = re.compile(r"^[a-z_][a-z0-9_]*$")


class QueryError(ConfigError):
    """The SQL failed (syntax, unknown table or column): exit code 2 with DuckDB's message."""


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _one_line(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and not ln.strip().startswith("^")]
    keep = [lines[0]] if lines else [type(exc).__name__]
    keep += [ln for ln in lines[1:] if ln.startswith(("Candidate", "Did you mean"))]
    return " ".join(keep)


# -- metrics.json flattening ---------------------------------------------------------------------------

def flatten_metrics(obj: Any) -> list[dict[str, Any]]:
    """Flatten a metrics document into rows ``{section, model, period, metric, value, value_text, path}``.

    Shapes understood (the job writes the first; anything else is flattened generically):

    - ``{"models": {model: {period: {metric: value}}}, "benchmark": {period: {metric: value}}, ...}``:
      below a wrapper key (``models``, ``by_model``, ``results``, ``metrics``) at any depth, the next key
      is the model; elsewhere the top-level key is the model (``benchmark``, ``equal_weight``);
    - ``{model: {period: {metric: value}}}``: the first key is the model;
    - records with ``"model"`` / ``"period"`` string fields (``[{"model": "ridge", "sharpe": 1.1}]``).

    The last key is the metric and the keys between model and metric (joined by ``/``) the period.
    ``section`` is the top-level key. Numbers and booleans go to ``value`` (float), other scalars to
    ``value_text``. ``path`` is the full dotted path, for anything the columns do not capture.
    """
    rows: list[dict[str, Any]] = []

    def leaf(value: Any, path: list[str], ctx: dict[str, str]) -> None:
        if not path:
            return
        metric, middle = path[-1], list(path[:-1])
        model = ctx.get("model")
        wrapped = [i for i, key in enumerate(middle[:-1]) if key in WRAPPER_KEYS]
        if wrapped:
            i = wrapped[-1]
            model = model or middle[i + 1]
            middle = middle[i + 2:]
        elif model is None and middle:
            model = middle.pop(0)
        period = ctx.get("period") or ("/".join(middle) or None)
        number: float | None = None
        text: str | None = None
        if isinstance(value, int | float):  # bool included
            number = float(value)
        elif value is not None:
            text = str(value)
        rows.append({"section": path[0] if len(path) > 1 else None, "model": model, "period": period,
                     "metric": metric, "value": number, "value_text": text, "path": ".".join(path)})

    def walk(node: Any, path: list[str], ctx: dict[str, str]) -> None:
        if isinstance(node, dict):
            local = dict(ctx)
            consumed = set()
            for field in ("model", "period"):
                if isinstance(node.get(field), str):
                    local[field] = node[field]
                    consumed.add(field)
            for key, value in node.items():
                if key not in consumed:
                    walk(value, [*path, str(key)], local)
        elif isinstance(node, list):
            for i, value in enumerate(node):
                is_record = isinstance(value, dict) and isinstance(value.get("model"), str)
                walk(value, path if is_record else [*path, str(i)], ctx)
        else:
            leaf(node, path, ctx)

    walk(obj, [], {})
    return rows


# -- the connection ------------------------------------------------------------------------------------

def _duckdb() -> duckdb.DuckDBPyConnection:
    import duckdb_ext

    return duckdb_ext.init(duckdb.connect())


def _configure_s3(con: duckdb.DuckDBPyConnection, store: Any) -> None:
    """LOAD httpfs and create an in-memory S3 secret from the store's credentials and endpoint."""
    con.sql("LOAD httpfs")
    creds = store.credentials()
    parts = [
        "TYPE s3",
        f"KEY_ID {_sql_str(creds['key_id'] or '')}",
        f"SECRET {_sql_str(creds['secret'] or '')}",
        f"REGION {_sql_str(store.options.region)}",
        f"SCOPE {_sql_str(f's3://{store.bucket}')}",
    ]
    if creds.get("session_token"):
        parts.append(f"SESSION_TOKEN {_sql_str(creds['session_token'])}")
    if store.options.endpoint_url:
        url = urlparse(store.options.endpoint_url)
        parts.append(f"ENDPOINT {_sql_str(url.netloc or url.path)}")
        parts.append(f"USE_SSL {'true' if url.scheme == 'https' else 'false'}")
    parts.append(f"URL_STYLE {_sql_str('path' if store.options.path_style else 'vhost')}")
    con.sql(f"CREATE OR REPLACE SECRET rotation_store ({', '.join(parts)})")


def _fetch_json(store: Store, keys: list[str]) -> list[Any]:
    if not keys:
        return []
    with ThreadPoolExecutor(max_workers=min(8, len(keys))) as pool:
        return list(pool.map(lambda k: json.loads(store.get_bytes(k)), keys))


def _artifact_rows(manifests: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for man in manifests:
        for art in man.get("artifacts", []):
            path = str(art.get("path", ""))
            match = RUN_PATH_RE.match(path)
            rows.append({"as_of": man.get("as_of"), "run_id": man.get("run_id"),
                         "kind": match["kind"] if match else path.split("/", 1)[0],
                         "path": path, "bytes": art.get("bytes"), "sha256": art.get("sha256")})
    return rows


def _table(con: duckdb.DuckDBPyConnection, name: str, ddl: str, rows: list[dict[str, Any]]) -> None:
    """Create the typed table ``_name`` from ``rows`` and the view ``name`` over it."""
    con.sql(f"CREATE OR REPLACE TABLE _{name} ({ddl})")
    if rows:
        columns = [c.split()[0] for c in ddl.split(",")]
        frame = pd.DataFrame(rows, columns=columns)  # noqa: F841  (read by DuckDB's replacement scan)
        con.sql(f"INSERT INTO _{name} SELECT * FROM frame")
    con.sql(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM _{name}")


def connect(store: Store | str, settings: Any | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the views over ``store``'s committed runs (see the module docstring).

    Raises :class:`job.errors.StoreUnavailable` when the store cannot be read.
    """
    return _connect(store, settings)[0]


def _connect(store: Store | str, settings: Any | None) -> tuple[duckdb.DuckDBPyConnection, int]:
    if isinstance(store, str):
        store = open_store(store, settings)
    manifests = list_manifests(store)
    con = _duckdb()
    if hasattr(store, "credentials") and hasattr(store, "bucket"):
        _configure_s3(con, store)
    url_for = getattr(store, "url_for", None)
    if url_for is None:
        raise ConfigError(f"store {store.uri} cannot be queried: it has no file URLs")

    artifacts = _artifact_rows(manifests)
    parquet: dict[str, list[str]] = {kind: [] for kind in PARQUET_KINDS}
    for art in artifacts:
        if art["path"].endswith(".parquet") and IDENT_RE.match(art["kind"]):
            parquet.setdefault(art["kind"], []).append(url_for(art["path"]))
    for kind, files in parquet.items():
        if files:
            listing = "[" + ", ".join(_sql_str(f) for f in files) + "]"
            con.sql(f"CREATE OR REPLACE VIEW {kind} AS SELECT as_of, run_id, * EXCLUDE (as_of, run_id) "
                    f"FROM read_parquet({listing}, hive_partitioning=true, union_by_name=true, "
                    "hive_types={'as_of': VARCHAR, 'run_id': VARCHAR})")
        else:
            con.sql(f"CREATE OR REPLACE VIEW {kind} AS SELECT NULL::VARCHAR AS as_of, NULL::VARCHAR AS run_id "
                    "WHERE false")

    metric_arts = [a for a in artifacts if a["kind"] == "metrics" and a["path"].endswith(".json")]
    metric_rows = []
    for art, doc in zip(metric_arts, _fetch_json(store, [a["path"] for a in metric_arts]), strict=True):
        metric_rows += [{"as_of": art["as_of"], "run_id": art["run_id"], **row} for row in flatten_metrics(doc)]
    _table(con, "metrics", "as_of VARCHAR, run_id VARCHAR, section VARCHAR, model VARCHAR, period VARCHAR, "
           "metric VARCHAR, value DOUBLE, value_text VARCHAR, path VARCHAR", metric_rows)

    run_rows = []
    for man in manifests:
        timings = man.get("timings") or {}
        rest = {k: v for k, v in man.items() if k not in ("as_of", "run_id", "created_at", "artifacts", "timings")}
        run_rows.append({
            "as_of": man.get("as_of"), "run_id": man.get("run_id"),
            "created_at": pd.Timestamp(man["created_at"]).tz_convert(None) if man.get("created_at") else None,
            "artifacts": len(man.get("artifacts", [])),
            "bytes": sum(int(a.get("bytes") or 0) for a in man.get("artifacts", [])),
            "total_seconds": float(sum(float(v) for v in timings.values() if isinstance(v, int | float))),
            "timings": json.dumps(timings, sort_keys=True), "extra": json.dumps(rest, sort_keys=True, default=str),
        })
    _table(con, "runs", "as_of VARCHAR, run_id VARCHAR, created_at TIMESTAMP, artifacts INTEGER, bytes BIGINT, "
           "total_seconds DOUBLE, timings VARCHAR, extra VARCHAR", run_rows)
    _table(con, "artifacts", "as_of VARCHAR, run_id VARCHAR, kind VARCHAR, path VARCHAR, bytes BIGINT, "
           "sha256 VARCHAR", artifacts)
    return con, len(manifests)


def query(store: Store | str, sql: str, settings: Any | None = None) -> pd.DataFrame:
    """Run ``sql`` (one or more statements; the last one's result is returned) over the committed runs.

    Raises :class:`QueryError` (exit code 2) with DuckDB's one-line message when the SQL fails, and
    :class:`job.errors.StoreUnavailable` (exit code 5) when the store cannot be read.
    """
    if isinstance(store, str):
        store = open_store(store, settings)
    con, published = _connect(store, settings)
    try:
        result = con.execute(sql)
        if result.description is None:
            return pd.DataFrame()
        return result.df()
    except duckdb.IOException as exc:
        from job.errors import StoreUnavailable

        raise StoreUnavailable(f"DuckDB could not read the published files in {store.uri}: {_one_line(exc)}") from None
    except duckdb.Error as exc:
        raise QueryError(f"query failed: {_one_line(exc)}",
                         hint=f"the store {store.uri} has no published runs yet" if not published else None) from None
    finally:
        con.close()
