"""Publication of a month: artifacts under a run_id, then the manifest (written last), then GC.

A publication writes its artifacts under its own ``run_id`` folder (paths from :mod:`job.artifacts`)::

    forecasts/as_of=2025-01/run_id=20261123T213000Z-3f9a2c/part-0.parquet

and makes them visible by writing ``runs/as_of=2025-01/manifest.json`` LAST. Readers follow
manifests, so a crash or ``kill -9`` at any point before that leaves only unreferenced files.

Two modes, one rule: **no publication hides what another published**.

``replace`` (``rotation run``)
    A complete publication of the month: the new manifest lists only this run's artifacts. It is the
    "complete newer publication" that supersedes the month.
``merge`` (the stage commands: ``forecast``, ``backtest``, ``report``)
    The new manifest lists the previous manifest's artifacts plus this publication's. A table kind with
    ``merge_on`` columns keeps the previous rows whose keys this publication does not carry (a
    ``forecast --models ridge`` after a ``run`` replaces ridge's rows and keeps the others); any other
    kind this publication writes replaces the previous file of that kind.

The manifest is written with a conditional put guarded by the previous manifest's ETag (If-Match, or
If-None-Match for a first publication), so a writer that lost the run lock cannot overwrite another's
publication; a 412 caused by botocore retrying our own write whose response was lost is recognised by
reading the manifest back. Stores without conditional writes (Swift) rely on the run lock alone.

Garbage collection, after the manifest landed, removes only run folders of the month that no current
manifest references, across every kind found in the store, keeping the ``retention_runs`` newest
unreferenced run ids (readers that read the previous manifest a moment ago still find its files).
"""

from __future__ import annotations

import hashlib
import io
import secrets
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from job import artifacts
from job.artifacts import RUN_PATH_RE, Kind, check_as_of, check_run_id
from job.errors import LockHeld
from job.jsonio import json_bytes
from job.logs import get_logger
from job.store.base import ArtifactNotFound, Store
from job.store.manifest import (
    SCHEMA_VERSION,
    DamagedManifest,
    check_artifact,
    list_manifests,
    manifest_key,
    parse_manifest,
    read_manifest,
    verify_manifest,
)

log = get_logger("store")

DEFAULT_RETENTION_RUNS = 2
PUBLICATION_HISTORY = 20
STRUCTURAL_KEYS = ("schema", "as_of", "run_id", "created_at", "command", "artifacts", "publications", "timings",
                   "complete")
# What a complete month holds: the kinds `rotation run` publishes.
COMPLETE_KINDS = ("forecasts", "weights", "backtest", "backtest_forecasts", "backtest_weights", "metrics",
                  "validation", "reports")
Mode = Literal["replace", "merge"]

__all__ = ["COMPLETE_KINDS", "Publisher", "garbage_collect", "json_bytes", "list_manifests", "new_run_id",
           "parquet_bytes", "read_manifest", "verify_manifest", "write_failed_validation"]


class HeldLock(Protocol):
    def assert_held(self) -> None: ...


def new_run_id(now: datetime | None = None) -> str:
    """A sortable, unique run id: UTC timestamp plus 6 random hex digits, e.g. ``20261123T213000Z-3f9a2c``."""
    now = now or datetime.now(UTC)
    return f"{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def table_bytes(table: pa.Table) -> bytes:
    """Deterministic parquet: the same table always gives the same bytes (no timestamps are written)."""
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", write_statistics=True, store_schema=True)
    return sink.getvalue()


def parquet_bytes(df: pd.DataFrame) -> bytes:
    """A frame outside the artifact contract (tests, tools) as deterministic parquet."""
    if any(name is not None for name in df.index.names):
        df = df.reset_index()
    return table_bytes(pa.Table.from_pandas(df, preserve_index=False))


def _kind(kind: Kind | str) -> Kind:
    return kind if isinstance(kind, Kind) else artifacts.get(kind)


class Publisher:
    """Writes one publication's artifacts and commits them with the month's manifest.

    Parameters
    ----------
    store:
        The artifact store.
    as_of:
        The month (``YYYY-MM``).
    run_id:
        This publication's id (:func:`new_run_id`).
    command:
        What publishes (``run``, ``forecast``, ``backtest``, ``report``), recorded in the manifest.
    mode:
        ``replace`` for a complete publication, ``merge`` for a stage command (module docstring).
    lock:
        The run lock this publication holds; checked right before the manifest is written.
    retention_runs:
        Unreferenced run ids of the month kept by GC (default: the store's, else 2).

    .. warning:: Nothing is visible to readers until :meth:`commit`.
    """

    def __init__(self, store: Store, as_of: str, run_id: str, *, command: str = "run", mode: Mode = "replace",
                 lock: HeldLock | None = None, retention_runs: int | None = None) -> None:
        self.store = store
        self.as_of = check_as_of(as_of)
        self.run_id = check_run_id(run_id)
        self.command = command
        self.mode = mode
        self.lock = lock
        self.retention_runs = int(retention_runs if retention_runs is not None
                                  else getattr(store, "retention_runs", DEFAULT_RETENTION_RUNS))
        self.artifacts: dict[str, dict[str, Any]] = {}
        self.committed: dict[str, Any] | None = None
        self._previous: tuple[dict[str, Any] | None, str | None] | None = None

    # -- the previous publication --------------------------------------------------------------------

    def previous(self) -> dict[str, Any] | None:
        """The month's current manifest (None: never published, or damaged: then it is replaced)."""
        return self._read_previous()[0]

    def _read_previous(self) -> tuple[dict[str, Any] | None, str | None]:
        if self._previous is None:
            key = manifest_key(self.as_of)
            etag: str | None = None
            try:
                if hasattr(self.store, "get_with_etag"):
                    data, etag = self.store.get_with_etag(key)  # type: ignore[attr-defined]
                else:
                    data = self.store.get_bytes(key)
            except ArtifactNotFound:
                self._previous = (None, None)
                return self._previous
            try:
                self._previous = (parse_manifest(data, key), etag)
            except DamagedManifest as exc:
                log.warning("%s; this publication replaces it", exc)
                self._previous = (None, etag)
        return self._previous

    # -- writing -------------------------------------------------------------------------------------

    def write_bytes(self, kind: Kind | str, data: bytes, file: str | None = None,
                    content_type: str | None = None) -> str:
        """Write ``data`` as ``file`` of ``kind`` under this run and record it; returns the key."""
        if self.committed is not None:
            raise RuntimeError("this publication is already committed")
        spec = _kind(kind)
        key = spec.key(self.as_of, self.run_id, file)
        self.store.put_bytes(key, data, content_type)
        self.artifacts[key] = {"path": key, "kind": spec.name, "run_id": self.run_id, "bytes": len(data),
                               "sha256": hashlib.sha256(data).hexdigest()}
        return key

    def write_table(self, kind: Kind | str, frame: pd.DataFrame) -> str:
        """Write ``frame`` as the kind's parquet (schema checked); in merge mode, merged with the
        previous publication's rows of the same kind (module docstring)."""
        spec = _kind(kind)
        table = spec.table(frame)
        if self.mode == "merge" and spec.merge_on:
            table = self._merged(spec, table)
        return self.write_bytes(spec, table_bytes(table), content_type="application/vnd.apache.parquet")

    def write_json(self, kind: Kind | str, obj: Any, file: str | None = None) -> str:
        """Write ``obj`` as stable JSON."""
        return self.write_bytes(kind, json_bytes(obj), file, "application/json")

    def _merged(self, spec: Kind, table: pa.Table) -> pa.Table:
        previous = self.previous()
        entries = [a for a in (previous or {}).get("artifacts", []) if a.get("kind") == spec.name]
        if not entries:
            return table
        kept: list[pa.Table] = []
        for entry in entries:
            try:
                data = self.store.get_bytes(entry["path"])
            except ArtifactNotFound:
                log.warning("%s is listed in the manifest but missing; its rows are not carried over",
                            entry["path"])
                continue
            problem = check_artifact(entry["path"], data, entry)
            if problem:
                log.warning("%s; its rows are not carried over", problem)
                continue
            try:
                old = pq.read_table(io.BytesIO(data))
            except (pa.ArrowException, OSError) as exc:
                log.warning("%s cannot be read (%s); its rows are not carried over", entry["path"], exc)
                continue
            if not old.schema.remove_metadata().equals(table.schema.remove_metadata()):
                log.info("%s has an older format; this publication replaces it", entry["path"])
                continue
            mask = pc.invert(_key_in(old, table, spec.merge_on))
            kept.append(old.filter(mask))
        if not kept:
            return table
        return pa.concat_tables([*kept, table]).combine_chunks()

    # -- committing ----------------------------------------------------------------------------------

    def commit(self, timings: dict[str, float] | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write the month's manifest (last), then garbage-collect; returns the manifest.

        Raises LockHeld (exit 6) when the run lock was lost or another writer published the month
        meanwhile; nothing of this publication is then visible. A GC failure is logged, never raised.
        """
        if self.committed is not None:
            return self.committed
        previous, etag = self._read_previous()
        written = {a["kind"] for a in self.artifacts.values()}
        carried: list[dict[str, Any]] = []
        base: dict[str, Any] = {}
        history: list[dict[str, Any]] = []
        if self.mode == "merge" and previous is not None:
            carried = [a for a in previous["artifacts"] if a.get("kind") not in written]
            base = {k: v for k, v in previous.items() if k not in STRUCTURAL_KEYS}
            history = list(previous.get("publications", []))
        created_at = datetime.now(UTC).isoformat(timespec="seconds")
        entries = sorted([*carried, *self.artifacts.values()], key=lambda a: a["path"])
        kinds = {a["kind"] for a in entries}
        history.append({"run_id": self.run_id, "command": self.command, "created_at": created_at,
                        "kinds": sorted(written)})
        manifest: dict[str, Any] = {
            **base, **(extra or {}),
            "schema": SCHEMA_VERSION,
            "as_of": self.as_of,
            "run_id": self.run_id,
            "command": self.command,
            "created_at": created_at,
            "complete": all(k in kinds for k in COMPLETE_KINDS),
            "artifacts": entries,
            "publications": history[-PUBLICATION_HISTORY:],
            "timings": {k: round(float(v), 3) for k, v in (timings or {}).items()},
        }
        if self.lock is not None:
            self.lock.assert_held()
        self._put_manifest(json_bytes(manifest), etag)
        self.committed = manifest
        log.info("published %s run %s (%s, %d artifacts)", self.as_of, self.run_id, self.command, len(entries),
                 extra={"fields": {"as_of": self.as_of, "run_id": self.run_id, "command": self.command,
                                   "artifacts": len(entries)}})
        try:
            garbage_collect(self.store, self.as_of, keep_manifests=[manifest, previous],
                            retention_runs=self.retention_runs, newest=self.run_id)
        except Exception as exc:  # published already: a GC failure must not fail the run
            log.warning("garbage collection of %s failed: %s", self.as_of, exc)
        return manifest

    def _put_manifest(self, data: bytes, etag: str | None) -> None:
        key = manifest_key(self.as_of)
        store: Any = self.store
        if not hasattr(store, "put_if_absent"):
            store.put_bytes(key, data, "application/json")  # local folder: the run lock makes it exclusive
            return
        from job.store.s3 import ConditionalWritesUnsupported

        try:
            done = store.put_if_match(key, data, etag) if etag else store.put_if_absent(key, data)
        except ConditionalWritesUnsupported:
            store.put_bytes(key, data, "application/json")  # Swift: the run lock's best effort alone
            return
        if done is not None:
            return
        # 412: either another writer published meanwhile, or botocore retried our own write whose
        # response was lost. The manifest tells which.
        try:
            current = store.get_bytes(key)
        except ArtifactNotFound:
            current = b""
        if current == data:
            return
        raise LockHeld(f"another process published {self.as_of} while this {self.command} was running; "
                       "nothing of this run was published",
                       hint="check that every writer of this store uses the run lock; run it again")


def _key_in(old: pa.Table, new: pa.Table, columns: tuple[str, ...]) -> pa.Array:
    """Boolean mask over ``old``: whether each row's ``columns`` values occur in ``new`` (nulls match)."""
    def keys(table: pa.Table) -> pa.Array:
        parts = [pc.fill_null(pc.cast(table[c], pa.string()), "\x00") for c in columns]
        return parts[0] if len(parts) == 1 else pc.binary_join_element_wise(*parts, "\x1f")

    return pc.is_in(keys(old), value_set=pc.unique(keys(new)))


def garbage_collect(store: Store, as_of: str, *, keep_manifests: list[dict[str, Any] | None],
                    retention_runs: int, newest: str | None = None) -> list[str]:
    """Delete the month's run folders that no manifest in ``keep_manifests`` references.

    Every kind found in the store counts (also kinds this version no longer writes). The
    ``retention_runs`` newest unreferenced run ids, and any run id sorting after ``newest`` (a run
    that started later), are kept. Returns the deleted folders.
    """
    referenced = {path.rsplit("/", 1)[0] + "/" for m in keep_manifests if m
                  for path in (str(a.get("path", "")) for a in m.get("artifacts", []))}
    folders: dict[str, list[str]] = {}
    run_of: dict[str, str] = {}
    for key in store.list(""):
        match = RUN_PATH_RE.match(key)
        if match and match["as_of"] == as_of:
            folder = key[: len(key) - len(match["file"])]
            folders.setdefault(folder, []).append(key)
            run_of[folder] = match["run_id"]
    unreferenced_runs = sorted({run_of[f] for f in folders if f not in referenced}, reverse=True)
    spared = set(unreferenced_runs[:max(retention_runs, 0)])
    doomed = [f for f in folders if f not in referenced and run_of[f] not in spared
              and (newest is None or run_of[f] < newest)]
    keys = [k for f in doomed for k in folders[f]]
    if keys:
        store.delete(keys)
        log.info("garbage-collected %d folder(s) of %s", len(doomed), as_of,
                 extra={"fields": {"as_of": as_of, "deleted": len(doomed)}})
    return sorted(doomed)


def write_failed_validation(store: Store, as_of: str, run_id: str, obj: Any) -> str:
    """Write ``validation/as_of=../run_id=../validation.json`` with NO manifest (a failed month)."""
    key = artifacts.VALIDATION.key(as_of, run_id)
    store.put_bytes(key, json_bytes(obj), "application/json")
    return key

