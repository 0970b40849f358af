"""Atomic publication of one month's results: artifacts under a run_id, then the manifest, then GC.

A run writes every artifact under its own ``run_id`` partition::

    forecasts/as_of=2025-01/run_id=20261123T213000Z-3f9a2c/part-0.parquet
    metrics/as_of=2025-01/run_id=20261123T213000Z-3f9a2c/metrics.json

and publishes them by writing ``runs/as_of=2025-01/manifest.json`` LAST (size and sha256 of every
artifact). Readers follow manifests, so until the manifest lands the month's previous run stays what
everyone sees; a crash or ``kill -9`` at any point before it leaves only unreferenced files, which the
next successful commit of that month garbage-collects.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
import secrets
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from job.errors import ConfigError
from job.logs import get_logger
from job.store.base import ArtifactNotFound, Store

log = get_logger("store")

MANIFEST_NAME = "manifest.json"
DEFAULT_RETENTION_RUNS = 2
RUNS_PREFIX = "runs/"
TABLE_KINDS = ("forecasts", "weights", "backtest")
RUN_KINDS = ("forecasts", "weights", "backtest", "metrics", "validation", "reports")
AS_OF_RE = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
RUN_ID_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]*$")
KIND_RE = re.compile(r"^[a-z][a-z0-9_-]*$")
RUN_PATH_RE = re.compile(r"^(?P<kind>[^/]+)/as_of=(?P<as_of>[^/]+)/run_id=(?P<run_id>[^/]+)/")
MANIFEST_RE = re.compile(r"^runs/as_of=(?P<as_of>[^/]+)/manifest\.json$")


def new_run_id(now: datetime | None = None) -> str:
    """A sortable, unique run id: UTC timestamp plus 6 random hex digits, e.g. ``20261123T213000Z-3f9a2c``."""
    now = now or datetime.now(UTC)
    return f"{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def _check_as_of(as_of: str) -> str:
    if not AS_OF_RE.match(as_of):
        raise ConfigError(f"as-of month {as_of!r} is not YYYY-MM")
    return as_of


def _check_run_id(run_id: str) -> str:
    if not RUN_ID_RE.match(run_id):
        raise ConfigError(f"run id {run_id!r} may hold only letters, digits, '.', '_' and '-'")
    return run_id


def run_prefix(kind: str, as_of: str, run_id: str) -> str:
    """``{kind}/as_of={as_of}/run_id={run_id}/``: the folder of one run's artifacts of one kind."""
    if not KIND_RE.match(kind):
        raise ConfigError(f"artifact kind {kind!r} must be lower-case letters, digits, '_' or '-'")
    return f"{kind}/as_of={_check_as_of(as_of)}/run_id={_check_run_id(run_id)}/"


def manifest_key(as_of: str) -> str:
    """``runs/as_of={as_of}/manifest.json``."""
    return f"{RUNS_PREFIX}as_of={_check_as_of(as_of)}/{MANIFEST_NAME}"


def parquet_bytes(df: pd.DataFrame) -> bytes:
    """Serialise ``df`` to parquet deterministically: the same frame always gives the same bytes.

    A named index (or MultiIndex) becomes ordinary columns; an unnamed default index is dropped.
    pyarrow writes no timestamps of its own (only its version string and the pandas schema), so a
    repeated run with identical results writes identical files with identical sha256.
    """
    if any(name is not None for name in df.index.names):
        df = df.reset_index()
    table = pa.Table.from_pandas(df, preserve_index=False)
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", write_statistics=True, store_schema=True)
    return sink.getvalue()


def json_bytes(obj: Any) -> bytes:
    """Stable JSON (sorted keys, 2-space indent, trailing newline); NaN and infinities become null."""
    return (json.dumps(_finite(obj), sort_keys=True, indent=2, default=_json_default, allow_nan=False)
            + "\n").encode("utf-8")


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy scalars
        return _finite(obj.item())
    if hasattr(obj, "tolist"):  # numpy arrays
        return _finite(obj.tolist())
    if isinstance(obj, datetime | pd.Timestamp):
        return obj.isoformat()
    if isinstance(obj, pd.Period):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


class Publisher:
    """Writes one run's artifacts and publishes them with a manifest.

    Parameters
    ----------
    store:
        The artifact store.
    as_of:
        The month the run is for (``YYYY-MM``).
    run_id:
        This run's id (:func:`new_run_id`).
    retention_runs:
        Run ids of the month kept after a commit (newest first); the committed one and the previously
        committed one are always kept. None: the store's ``retention_runs`` (set by ``open_store`` from
        ``settings.store.retention_runs``), else 2.

    Each ``write_*`` method returns the key written and records its size and sha256; :meth:`commit`
    writes the manifest last.

    .. warning:: Nothing is visible to readers until :meth:`commit`; a Publisher that is never
       committed leaves only unreferenced files behind.
    """

    def __init__(self, store: Store, as_of: str, run_id: str, retention_runs: int | None = None) -> None:
        self.store = store
        self.as_of = _check_as_of(as_of)
        self.run_id = _check_run_id(run_id)
        self.retention_runs = int(retention_runs if retention_runs is not None
                                  else getattr(store, "retention_runs", DEFAULT_RETENTION_RUNS))
        self.artifacts: dict[str, dict[str, Any]] = {}
        self.committed: dict[str, Any] | None = None

    def key(self, kind: str, filename: str) -> str:
        """``{kind}/as_of=../run_id=../{filename}`` for this run."""
        if not filename.strip("/") or ".." in filename.split("/"):
            raise ConfigError(f"bad artifact file name {filename!r}")
        return run_prefix(kind, self.as_of, self.run_id) + filename.strip("/")

    def write_bytes(self, key_under_store: str, data: bytes, content_type: str | None = None) -> str:
        """Write ``data`` at ``key_under_store`` and record it for the manifest; returns the key."""
        if self.committed is not None:
            raise RuntimeError("this run is already committed")
        key = key_under_store.lstrip("/")
        self.store.put_bytes(key, data, content_type)
        self.artifacts[key] = {"path": key, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        return key

    def write_table(self, kind: str, df: pd.DataFrame) -> str:
        """Write ``df`` as ``{kind}/as_of=../run_id=../part-0.parquet`` (deterministic bytes)."""
        return self.write_bytes(self.key(kind, "part-0.parquet"), parquet_bytes(df),
                                "application/vnd.apache.parquet")

    def write_json(self, kind: str, filename: str, obj: Any) -> str:
        """Write ``obj`` as stable JSON at ``{kind}/as_of=../run_id=../{filename}``."""
        return self.write_bytes(self.key(kind, filename), json_bytes(obj), "application/json")

    def commit(self, timings: dict[str, float] | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Publish: write ``runs/as_of=../manifest.json`` last, then garbage-collect old run ids.

        Returns the manifest. Until the manifest is written, readers see the month's previous run.
        A failure of the garbage collection is logged, never raised: the run is published by then.
        """
        if self.committed is not None:
            return self.committed
        previous = read_manifest(self.store, self.as_of)
        manifest: dict[str, Any] = {
            **(extra or {}),
            "as_of": self.as_of,
            "run_id": self.run_id,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "artifacts": sorted(self.artifacts.values(), key=lambda a: a["path"]),
            "timings": {k: round(float(v), 3) for k, v in (timings or {}).items()},
        }
        self.store.put_bytes(manifest_key(self.as_of), json_bytes(manifest), "application/json")
        self.committed = manifest
        log.info("published %s run %s (%d artifacts)", self.as_of, self.run_id, len(self.artifacts),
                 extra={"fields": {"as_of": self.as_of, "run_id": self.run_id}})
        keep = {self.run_id}
        if previous and previous.get("run_id"):
            keep.add(str(previous["run_id"]))
        try:
            kinds = set(RUN_KINDS) | _kinds(manifest) | _kinds(previous)
            garbage_collect(self.store, self.as_of, keep=keep, retention_runs=self.retention_runs,
                            kinds=sorted(kinds), newest=self.run_id)
        except Exception as exc:  # published already: a GC failure must not fail the run
            log.warning("garbage collection of %s failed: %s", self.as_of, exc)
        return manifest


def _kinds(manifest: dict[str, Any] | None) -> set[str]:
    if not manifest:
        return set()
    out = set()
    for art in manifest.get("artifacts", []):
        match = RUN_PATH_RE.match(str(art.get("path", "")))
        if match:
            out.add(match["kind"])
    return out


def run_ids_of_month(store: Store, as_of: str, kinds: list[str] | tuple[str, ...] = RUN_KINDS) -> dict[str, list[str]]:
    """``{run_id: [keys]}`` of every run (committed or not) that wrote ``kinds`` for ``as_of``."""
    out: dict[str, list[str]] = {}
    for kind in kinds:
        for key in store.list(f"{kind}/as_of={as_of}/"):
            match = RUN_PATH_RE.match(key)
            if match and match["as_of"] == as_of:
                out.setdefault(match["run_id"], []).append(key)
    return out


def garbage_collect(store: Store, as_of: str, *, keep: set[str], retention_runs: int,
                    kinds: list[str] | tuple[str, ...] = RUN_KINDS, newest: str | None = None) -> list[str]:
    """Delete run ids of ``as_of`` beyond the ``retention_runs`` newest; never those in ``keep``.

    Run ids sorting after ``newest`` (a run that started later, e.g. under clock skew) are never
    deleted either. Returns the deleted run ids.
    """
    runs = run_ids_of_month(store, as_of, kinds)
    ordered = sorted(runs, reverse=True)
    retained = set(ordered[:max(retention_runs, 0)]) | set(keep)
    doomed = [r for r in ordered if r not in retained and (newest is None or r < newest)]
    keys = [k for r in doomed for k in runs[r]]
    if keys:
        store.delete(keys)
        log.info("garbage-collected %d old run(s) of %s", len(doomed), as_of,
                 extra={"fields": {"as_of": as_of, "deleted_runs": ",".join(doomed)}})
    return doomed


def write_failed_validation(store: Store, as_of: str, run_id: str, obj: Any) -> str:
    """Write ``validation/as_of=../run_id=../validation.json`` with NO manifest (a failed month)."""
    key = run_prefix("validation", as_of, run_id) + "validation.json"
    store.put_bytes(key, json_bytes(obj), "application/json")
    return key


def read_manifest(store: Store, as_of: str) -> dict[str, Any] | None:
    """The month's published manifest, or None when the month was never published."""
    try:
        data = store.get_bytes(manifest_key(as_of))
    except ArtifactNotFound:
        return None
    return json.loads(data)


def list_manifests(store: Store, max_workers: int = 8) -> list[dict[str, Any]]:
    """Every published month's manifest, sorted by ``as_of`` (fetched in parallel)."""
    months = sorted(m["as_of"] for key in store.list(RUNS_PREFIX) if (m := MANIFEST_RE.match(key)))
    if not months:
        return []

    def fetch(as_of: str) -> dict[str, Any] | None:
        return read_manifest(store, as_of)

    with ThreadPoolExecutor(max_workers=min(max_workers, len(months))) as pool:
        found = list(pool.map(fetch, months))
    return [m for m in found if m is not None]


def verify_manifest(store: Store, manifest: dict[str, Any]) -> list[str]:
    """Problems with a manifest's artifacts: missing files, size or sha256 mismatches ([] = all good)."""
    problems: list[str] = []
    for art in manifest.get("artifacts", []):
        path = art.get("path", "?")
        try:
            data = store.get_bytes(path)
        except ArtifactNotFound:
            problems.append(f"{path}: missing")
            continue
        if len(data) != art.get("bytes"):
            problems.append(f"{path}: {len(data)} bytes, manifest says {art.get('bytes')}")
        digest = hashlib.sha256(data).hexdigest()
        if digest != art.get("sha256"):
            recorded = str(art.get("sha256"))[:12]
            problems.append(f"{path}: sha256 {digest[:12]}… does not match the manifest's {recorded}…")
    return problems
