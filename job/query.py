"""DuckDB SQL over the published (committed) results of an artifact store, checked before it is served.

:func:`connect` opens an in-memory DuckDB and defines, from the manifests only
(``runs/as_of=YYYY-MM/manifest.json``) and the artifact contract (:mod:`job.artifacts`):

one view per table kind of :data:`job.artifacts.TABLE_KINDS` (``forecasts``, ``weights``, ``backtest``, ...)
    ``as_of`` and ``run_id`` first (from the manifest entry, i.e. the file's path), then the kind's
    columns with the contract's types, over exactly the files the manifests list. A half-written,
    crashed or superseded run_id never shows, because its files are in no manifest. Typed even when
    the store is empty. Where a month's manifest lists several files of a kind (stage commands merge
    into the month's publication), rows of an older file are replaced by the newer file's rows with the
    same ``merge_on`` values (``model``): one row per (model, asset) per month, never two.
``runs``
    One row per month with a manifest file: ``as_of, run_id, created_at, artifacts, bytes,
    publications`` (JSON text), ``status`` (``ok`` or ``damaged``), ``problem`` (the first problem, one
    line), ``total_seconds``, ``timings`` (JSON text) and ``extra`` (the manifest's other keys, JSON).
``artifacts``
    One row per manifest entry: ``as_of, run_id, kind, path, bytes, sha256, status`` (``ok`` or
    ``damaged``).

**Damage.** A manifest that cannot be read (truncated, not JSON, wrong shape) and an artifact that is
missing, has another size or sha256 than its manifest entry says (altered, truncated, corrupted) or
is not a parquet file of its kind's schema are each named in one warning line; the artifact is left
out of its view and its month shows ``status = 'damaged'`` in ``runs``; every other month still
queries. Nothing is ever served that does not match the manifest's sha256.

**How it is checked, and why this way.** The manifest's sha256 is the only statement of what was
published, so every listed file is hashed before DuckDB may read it (a parquet footer alone would
accept an altered but valid file):

- local store: each listed file is read and hashed in place, then DuckDB reads that file. The files
  are small (kilobytes to a few megabytes a month) and hashing runs at about 1 GB/s, so this costs
  milliseconds; a cache would cost more than it saves. Published files are never rewritten in place
  (every publication writes a new run_id folder), so what was hashed is what DuckDB reads.
- S3: every listed file is downloaded once into a local content-addressed cache
  (``$ROTATION_CACHE_DIR`` or ``~/.cache/sector-rotation``, ``artifacts/sha256/ab/<sha256>``),
  verified on download and written atomically, and DuckDB reads the cached copies. A file whose
  content changes gets a new sha256 in a new manifest and so a new cache entry; a stale entry can
  never be served. Repeated queries download nothing, and a store failure (a 503 after boto3's
  retries, a refused connection) surfaces from one place, before any SQL runs, as one exit-5 line,
  instead of a 4-line DuckDB httpfs error halfway through a scan.

S3 stores also get an in-memory DuckDB secret (``httpfs`` from the ``duckdb-ext-httpfs`` wheel), so SQL
may still read ``s3://`` paths of the store directly; the secret lives only in the connection.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from job import artifacts as contract
from job.errors import ConfigError, StoreUnavailable
from job.logs import get_logger
from job.store import Store, open_store
from job.store.base import ArtifactNotFound
from job.store.manifest import check_artifact, scan_manifests

WRAPPER_KEYS = {"models", "by_model", "results", "metrics"}
CACHE_ENV = "ROTATION_CACHE_DIR"
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
# pyarrow type -> DuckDB type, for the contract's column types.
DUCKDB_TYPES = {"string": "VARCHAR", "large_string": "VARCHAR", "double": "DOUBLE", "float": "FLOAT",
                "bool": "BOOLEAN", "int64": "BIGINT", "int32": "INTEGER", "date32[day]": "DATE"}
RUNS_DDL = ("as_of VARCHAR, run_id VARCHAR, created_at TIMESTAMP, artifacts INTEGER, bytes BIGINT, "
            "publications VARCHAR, status VARCHAR, problem VARCHAR, total_seconds DOUBLE, timings VARCHAR, "
            "extra VARCHAR")
ARTIFACTS_DDL = ("as_of VARCHAR, run_id VARCHAR, kind VARCHAR, path VARCHAR, bytes BIGINT, sha256 VARCHAR, "
                 "status VARCHAR")
STORE_VIEWS_SQL = Path(__file__).resolve().parents[1] / "sql" / "store_views.sql"

Warn = Callable[[str], None]


class QueryError(ConfigError):
    """The SQL failed (syntax, unknown table or column): exit code 2 with DuckDB's message."""


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _one_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and not ln.strip().startswith("^")]
    keep = [lines[0]] if lines else [type(exc).__name__]
    keep += [ln for ln in lines[1:] if ln.startswith(("Candidate", "Did you mean"))]
    return " ".join(keep)


def duckdb_type(arrow_type: pa.DataType) -> str:
    """The DuckDB type of a contract column."""
    try:
        return DUCKDB_TYPES[str(arrow_type)]
    except KeyError:
        raise ConfigError(f"no DuckDB type for the contract's arrow type {arrow_type}") from None


# -- the metrics document to the long metrics table -----------------------------------------------------

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


# -- checking artifacts against the manifest and the contract -------------------------------------------

def served_kind(entry: dict[str, Any]) -> contract.Kind | None:
    """The table kind whose view shows this manifest entry; None for JSON/HTML, retired or unknown kinds."""
    kind = contract.BY_NAME.get(str(entry.get("kind")))
    if kind is None or not kind.is_table:
        return None
    name = str(entry.get("path", "")).rsplit("/", 1)[-1]
    return kind if name in kind.files else None


def check_schema(kind: contract.Kind, path: str, schema: pa.Schema) -> str | None:
    """None when ``schema`` (a parquet file's) has exactly the kind's columns and types, else one line."""
    assert kind.schema is not None
    names = set(schema.names)
    missing = [c for c in kind.schema.names if c not in names]
    extra = [c for c in schema.names if c not in kind.schema.names and c not in ("as_of", "run_id")]
    if missing:
        return f"{path}: not the {kind.name} schema (missing column(s) {', '.join(missing)})"
    if extra and not kind.open_columns:
        return f"{path}: not the {kind.name} schema (unexpected column(s) {', '.join(extra)})"
    for fld in kind.schema:
        got = schema.field(fld.name).type
        if got != fld.type and not pa.types.is_null(got):
            return f"{path}: not the {kind.name} schema (column {fld.name} is {got}, the contract says {fld.type})"
    return None


def check_parquet(kind: contract.Kind, path: str, source: bytes | str, *, full: bool = False) -> str | None:
    """None when ``source`` (bytes or a local file) is a parquet file of ``kind``'s schema, else one line.

    ``full`` reads every row group too (``rotation verify``); otherwise the footer only (the sha256 has
    already proved the bytes are the ones the writer published).
    """
    handle: Any = pa.BufferReader(source) if isinstance(source, bytes) else source
    try:
        schema = pq.read_table(handle).schema if full else pq.read_schema(handle)
    except (pa.ArrowException, OSError, ValueError) as exc:
        return f"{path}: not a readable parquet file ({_one_line(exc)})"
    return check_schema(kind, path, schema)


def check_entry(entry: dict[str, Any], data: bytes, *, full: bool = True) -> str | None:
    """Every check of one published file: size and sha256 against its manifest entry, then, for a table
    kind, that it opens as parquet with the kind's schema. None when all good, else one line."""
    path = str(entry.get("path", "?"))
    problem = check_artifact(path, data, entry)
    if problem is None and (kind := served_kind(entry)) is not None:
        problem = check_parquet(kind, path, data, full=full)
    return problem


def cache_dir() -> Path:
    """The content-addressed artifact cache: ``$ROTATION_CACHE_DIR/artifacts/sha256`` (default under
    ``~/.cache/sector-rotation``); a folder under the temporary directory when that cannot be written."""
    base = os.environ.get(CACHE_ENV) or str(Path.home() / ".cache" / "sector-rotation")
    path = Path(base).expanduser() / "artifacts" / "sha256"
    try:
        path.mkdir(parents=True, exist_ok=True)
        if os.access(path, os.W_OK):
            return path
    except OSError:
        pass
    fallback = Path(tempfile.gettempdir()) / f"sector-rotation-{os.getuid()}" / "artifacts" / "sha256"
    fallback.mkdir(parents=True, exist_ok=True)
    return fallback


def _cache_put(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (readers see no file or the whole file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class Checked:
    """One manifest entry after checking: where DuckDB may read it (None when damaged or not a table)."""

    as_of: str
    entry: dict[str, Any]
    seq: int
    problem: str | None = None
    local: str | None = None


@dataclass
class Publication:
    """What :func:`load_publication` found: checked entries, the manifests, and every problem line."""

    manifests: list[dict[str, Any]] = field(default_factory=list)
    damaged_manifests: dict[str, str] = field(default_factory=dict)
    entries: list[Checked] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        return [*self.damaged_manifests.values(), *(c.problem for c in self.entries if c.problem)]


def _publication_order(manifest: dict[str, Any]) -> dict[str, int]:
    """run_id -> position among the month's publications (later = newer)."""
    order = {str(p.get("run_id")): i for i, p in enumerate(manifest.get("publications") or [])
             if isinstance(p, dict)}
    order.setdefault(str(manifest.get("run_id")), len(order))
    return order


def load_publication(store: Store, max_workers: int = 8) -> Publication:
    """Read every manifest and check every file it lists (see the module docstring for how and why).

    Raises :class:`StoreUnavailable` when the store itself cannot be read; damage is never raised.
    """
    scan = scan_manifests(store)
    pub = Publication(manifests=sorted(scan.manifests, key=lambda m: str(m.get("as_of"))),
                      damaged_manifests=dict(scan.damaged))
    for man in pub.manifests:
        order = _publication_order(man)
        for art in man["artifacts"]:
            seq = order.get(str(art.get("run_id")), -1)
            pub.entries.append(Checked(str(man.get("as_of")), art, seq))
    cache = None if hasattr(store, "root") else cache_dir()

    def check(item: Checked) -> None:
        entry, path = item.entry, str(item.entry["path"])
        kind = served_kind(entry)
        sha = str(entry.get("sha256"))
        if cache is not None and SHA256_RE.match(sha):  # anything else fails its check below
            cached = cache / sha[:2] / f"{sha}{Path(path).suffix}"
            if cached.is_file() and cached.stat().st_size == entry.get("bytes"):
                # Verified when it was downloaded and written atomically under its own sha256.
                item.problem = check_parquet(kind, path, str(cached)) if kind else None
                item.local = None if item.problem else str(cached)
                return
        try:
            data = store.get_bytes(path)
        except ArtifactNotFound:
            item.problem = f"{path}: missing from the store"
            return
        except ValueError as exc:  # a path that escapes the store root: a damaged manifest entry
            item.problem = f"{path}: not a path in the store ({exc})"
            return
        item.problem = check_entry(entry, data, full=False)
        if item.problem:
            return
        if cache is None:
            item.local = store.url_for(path)  # type: ignore[attr-defined]
        else:
            cached = cache / sha[:2] / f"{sha}{Path(path).suffix}"  # sha matched: 64 hex digits
            _cache_put(cached, data)
            item.local = str(cached)

    if pub.entries:
        with ThreadPoolExecutor(max_workers=min(max_workers, len(pub.entries))) as pool:
            list(pool.map(check, pub.entries))
    return pub


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


def _table(con: duckdb.DuckDBPyConnection, name: str, ddl: str, rows: list[dict[str, Any]]) -> None:
    """Create the typed table ``_name`` from ``rows`` and the view ``name`` over it."""
    con.sql(f"CREATE OR REPLACE TABLE _{name} ({ddl})")
    if rows:
        columns = [c.split()[0] for c in ddl.split(",")]
        frame = pd.DataFrame(rows, columns=columns)  # noqa: F841  (read by DuckDB's replacement scan)
        con.sql(f"INSERT INTO _{name} SELECT * FROM frame")
    con.sql(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM _{name}")


def _columns_sql(kind: contract.Kind, source: str) -> str:
    assert kind.schema is not None
    return ", ".join(f"{source}.{_ident(f.name)}::{duckdb_type(f.type)} AS {_ident(f.name)}" for f in kind.schema)


def _kind_view(con: duckdb.DuckDBPyConnection, kind: contract.Kind, items: list[Checked]) -> None:
    """The view of one table kind over the checked files ``items`` (typed and empty when there are none)."""
    assert kind.schema is not None
    if not items:
        nulls = ", ".join(f"NULL::{duckdb_type(f.type)} AS {_ident(f.name)}" for f in kind.schema)
        con.sql(f"CREATE OR REPLACE VIEW {kind.name} AS SELECT NULL::VARCHAR AS as_of, NULL::VARCHAR AS run_id, "
                f"{nulls} WHERE false")
        return
    files = pd.DataFrame([{"file": c.local, "as_of": c.as_of, "run_id": str(c.entry.get("run_id")), "seq": c.seq}
                          for c in items])
    con.register("_files_frame", files)
    con.sql(f"CREATE OR REPLACE TABLE _files_{kind.name} AS SELECT * FROM _files_frame")
    con.unregister("_files_frame")
    listing = "[" + ", ".join(_sql_str(f) for f in dict.fromkeys(str(c.local) for c in items)) + "]"
    extra = ""
    if kind.open_columns:
        excluded = ", ".join(_ident(c) for c in ["filename", *kind.columns])
        extra = f", t.* EXCLUDE ({excluded})"
    merge = ""
    per_month = pd.Series([c.as_of for c in items]).value_counts()
    if (per_month > 1).any():
        # Several publications of this kind in one month: newer rows replace older ones per merge_on.
        partition = ", ".join(["m.as_of", *(f"t.{_ident(c)}" for c in kind.merge_on)])
        merge = f" QUALIFY dense_rank() OVER (PARTITION BY {partition} ORDER BY m.seq DESC, m.run_id DESC) = 1"
    con.sql(f"CREATE OR REPLACE VIEW {kind.name} AS SELECT m.as_of, m.run_id, {_columns_sql(kind, 't')}{extra} "
            f"FROM read_parquet({listing}, filename = true, union_by_name = true, hive_partitioning = false) AS t "
            f"JOIN _files_{kind.name} AS m ON m.file = t.filename{merge}")


def _run_rows(pub: Publication) -> list[dict[str, Any]]:
    problems: dict[str, list[str]] = {}
    for item in pub.entries:
        if item.problem:
            problems.setdefault(item.as_of, []).append(item.problem)
    rows = []
    for man in pub.manifests:
        as_of = str(man.get("as_of"))
        arts = man.get("artifacts", [])
        timings = man.get("timings") if isinstance(man.get("timings"), dict) else {}
        rest = {k: v for k, v in man.items()
                if k not in ("as_of", "run_id", "created_at", "artifacts", "timings", "publications")}
        found = problems.get(as_of, [])
        created = None
        with contextlib.suppress(ValueError, TypeError):
            stamp = pd.Timestamp(man["created_at"]) if man.get("created_at") else None
            created = stamp.tz_convert(None) if stamp is not None and stamp.tzinfo else stamp
        rows.append({
            "as_of": as_of, "run_id": man.get("run_id"), "created_at": created, "artifacts": len(arts),
            "bytes": sum(int(a.get("bytes") or 0) for a in arts),
            "publications": json.dumps(man.get("publications") or [], sort_keys=True, default=str),
            "status": "damaged" if found else "ok",
            "problem": (found[0] + (f" (and {len(found) - 1} more)" if len(found) > 1 else "")) if found else None,
            "total_seconds": float(sum(float(v) for v in timings.values() if isinstance(v, int | float))),
            "timings": json.dumps(timings, sort_keys=True), "extra": json.dumps(rest, sort_keys=True, default=str),
        })
    for as_of, problem in pub.damaged_manifests.items():
        rows.append({"as_of": as_of, "run_id": None, "created_at": None, "artifacts": None, "bytes": None,
                     "publications": None, "status": "damaged", "problem": problem, "total_seconds": None,
                     "timings": None, "extra": None})
    return sorted(rows, key=lambda r: str(r["as_of"]))


def _artifact_rows(pub: Publication) -> list[dict[str, Any]]:
    return [{"as_of": c.as_of, "run_id": c.entry.get("run_id"), "kind": c.entry.get("kind"),
             "path": c.entry.get("path"), "bytes": c.entry.get("bytes"), "sha256": c.entry.get("sha256"),
             "status": "damaged" if c.problem else "ok"} for c in pub.entries]


def _log_warning(line: str) -> None:
    get_logger("query").warning(line)


def connect(store: Store | str | Path, settings: Any | None = None, *,
            warn: Warn | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the views over ``store``'s committed runs (see the module docstring).

    Each damaged manifest or artifact is passed to ``warn`` as one line (default: a logged warning).
    Raises :class:`job.errors.StoreUnavailable` when the store cannot be read.
    """
    return _connect(store, settings, warn or _log_warning)[0]


def _connect(store: Store | str | Path, settings: Any | None, warn: Warn) -> tuple[duckdb.DuckDBPyConnection, int]:
    if isinstance(store, str | Path):
        store = open_store(str(store), settings)
    pub = load_publication(store)
    for line in pub.damaged_manifests.values():
        warn(f"damaged manifest, month left out of the views: {line}")
    for item in pub.entries:
        if item.problem:
            warn(f"damaged artifact, left out of its view: {item.problem}")
    con = _duckdb()
    try:
        if hasattr(store, "credentials") and hasattr(store, "bucket"):
            _configure_s3(con, store)
        served: dict[str, list[Checked]] = {k.name: [] for k in contract.TABLE_KINDS}
        for item in pub.entries:
            kind = served_kind(item.entry)
            if kind is not None and item.local is not None:
                served[kind.name].append(item)
        for kind in contract.TABLE_KINDS:
            _kind_view(con, kind, served[kind.name])
        _table(con, "runs", RUNS_DDL, _run_rows(pub))
        _table(con, "artifacts", ARTIFACTS_DDL, _artifact_rows(pub))
    except BaseException:
        con.close()
        raise
    return con, len(pub.manifests) + len(pub.damaged_manifests)


def query(store: Store | str | Path, sql: str, settings: Any | None = None, *,
          warn: Warn | None = None) -> pd.DataFrame:
    """Run ``sql`` (one or more statements; the last one's result is returned) over the committed runs.

    Raises :class:`QueryError` (exit code 2) with DuckDB's one-line message when the SQL fails, and
    :class:`job.errors.StoreUnavailable` (exit code 5) when the store cannot be read.
    """
    if isinstance(store, str | Path):
        store = open_store(str(store), settings)
    con, published = _connect(store, settings, warn or _log_warning)
    try:
        result = con.execute(sql)
        if result.description is None:
            return pd.DataFrame()
        return result.df()
    except (duckdb.IOException, duckdb.HTTPException) as exc:
        raise StoreUnavailable(f"could not read the published files of {store.uri}: {_one_line(exc)}",
                               hint="retry later; `rotation verify` checks every artifact") from None
    except duckdb.Error as exc:
        raise QueryError(f"query failed: {_one_line(exc)}",
                         hint=f"the store {store.uri} has no published runs yet" if not published else None) from None
    except BaseException:  # Ctrl-C / SIGTERM: stop DuckDB's threads, or close() waits for the query to end
        con.interrupt()
        raise
    finally:
        con.close()


# -- sql/store_views.sql, generated from the contract ---------------------------------------------------

STORE_VIEWS_HEADER = """\
-- GENERATED from the artifact contract (job/artifacts.py) by job.query.store_views_sql(); do not edit.
-- Regenerate: .venv/bin/python -c "import job.query as q; q.write_store_views()"
--
-- Views over the COMMITTED artifacts of a store, for a plain DuckDB shell (what `rotation query` defines
-- for you, minus its checks). A file is committed when a month's runs/as_of=YYYY-MM/manifest.json lists
-- it; raw globs over weights/*/*/*.parquet also show crashed or superseded run_ids, these views do not.
-- Unlike `rotation query`, these views do NOT check sha256 and fail on a damaged manifest or file: run
-- `rotation verify` first when in doubt. A month with several files of a kind (stage commands merge into
-- the month's publication) shows each file's rows; `rotation query` keeps only the newest per model.
--
-- Usage (duckdb CLI or Python), after pointing DuckDB at the store:
--   SET VARIABLE store = 's3://my-bucket/rotation';          -- or a local folder: '/path/to/artifacts'
--   -- for S3: LOAD httpfs; CREATE SECRET (TYPE s3, KEY_ID '...', SECRET '...', REGION 'us-east-1',
--   --         ENDPOINT 'minio:9000', URL_STYLE 'path', USE_SSL false);   -- ENDPOINT only off AWS
--   .read sql/store_views.sql
--   SELECT * FROM weights WHERE as_of = (SELECT max(as_of) FROM committed_runs);
-- Every view reads the footers of all the store's parquet files (one glob, and a typed empty row set
-- UNION ALL BY NAME, so that a kind never published, such as the sweep without --sweep, gives an empty
-- view instead of an error); an empty store makes the views fail with "No files found". The sweep's
-- metric columns are only in `rotation query`'s sweep view.

CREATE OR REPLACE VIEW committed_runs AS
SELECT as_of, run_id, created_at
FROM read_json(getvariable('store') || '/runs/*/manifest.json',
               columns = {as_of: 'VARCHAR', run_id: 'VARCHAR', created_at: 'TIMESTAMPTZ'},
               hive_partitioning = false);

CREATE OR REPLACE VIEW committed_artifacts AS
SELECT m.as_of, split_part(a.path, '/', 1) AS kind, a.path, a.sha256, a.bytes,
       getvariable('store') || '/' || a.path AS url
FROM read_json(getvariable('store') || '/runs/*/manifest.json',
               columns = {as_of: 'VARCHAR', artifacts: 'STRUCT(path VARCHAR, bytes BIGINT, sha256 VARCHAR)[]'},
               hive_partitioning = false) AS m,
     unnest(m.artifacts) AS u(a);
"""


def store_views_sql() -> str:
    """The text of ``sql/store_views.sql``: one view per table kind of the contract."""
    parts = [STORE_VIEWS_HEADER]
    for kind in contract.TABLE_KINDS:
        assert kind.schema is not None
        typed = ",\n               ".join(f"NULL::{duckdb_type(f.type)} AS {_ident(f.name)}" for f in kind.schema)
        columns = ", ".join(_ident(c) for c in kind.columns)
        parts.append(
            f"\n-- {kind.description}\n"
            f"CREATE OR REPLACE VIEW {kind.name} AS\n"
            f"SELECT as_of, run_id, {columns}\n"
            f"FROM (SELECT NULL::VARCHAR AS as_of, NULL::VARCHAR AS run_id,\n"
            f"               {typed}\n"
            f"      WHERE false\n"
            f"      UNION ALL BY NAME\n"
            f"      SELECT t.* FROM read_parquet(getvariable('store') || '/*/as_of=*/run_id=*/*.parquet',\n"
            f"                                   filename = true, hive_partitioning = true, union_by_name = true,\n"
            f"                                   hive_types = {{'as_of': VARCHAR, 'run_id': VARCHAR}}) AS t\n"
            f"      SEMI JOIN committed_artifacts AS c ON c.url = t.filename AND c.kind = '{kind.name}');\n")
    return "".join(parts)


def write_store_views(path: Path = STORE_VIEWS_SQL) -> Path:
    """(Re)write ``sql/store_views.sql`` from the contract."""
    path.write_text(store_views_sql(), encoding="utf-8")
    return path


