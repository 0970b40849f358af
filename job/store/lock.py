"""One run per store at a time: the lock object ``locks/run.lock``.

The lock is a small JSON object ``{owner, host, pid, acquired_at, expires_at, token}``. A second run
fails fast with :class:`job.errors.LockHeld` (exit code 6) naming the holder and its expiry. A lock
left behind by a killed run can be taken over once it has expired (``store.lock_ttl_s``).

How each store takes the lock
-----------------------------
Local folder
    ``os.open(O_CREAT | O_EXCL)`` creates the lock file atomically. Checking for expiry and replacing
    an expired lock happen under ``flock`` on ``locks/.run.lock.guard``, so two runs that both find the
    same expired lock cannot both take it over.
S3 with conditional writes (AWS S3 since 2024, MinIO, moto)
    ``PutObject`` with ``If-None-Match: *`` creates the lock; 412 means it is held. An expired lock is
    replaced with ``If-Match: <the ETag we read>``, so of two runs that race for the same expired lock
    exactly one wins; the other re-reads the new holder and fails with LockHeld. Release deletes with
    ``If-Match`` on our own ETag, so it never removes a lock another run has taken over.
S3 without conditional writes (OpenStack Swift's s3api answers NotImplemented)
    A documented best-effort lock, with a warning logged once per process: read the lock; if it is
    held and live, LockHeld; otherwise write ours unconditionally, wait ``settle_s`` and read it back;
    if the token read back is not ours, another run wrote after us and we fail with LockHeld. Two runs
    that start within the same fraction of a second can still both believe they hold it (the last
    writer wins the object, the first may have read back before the second wrote); schedule runs so
    they do not overlap (the CronJob's ``concurrencyPolicy: Forbid``) where the store is Swift.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

from job.errors import LockHeld, StoreUnavailable
from job.logs import get_logger
from job.store.base import ArtifactNotFound, Store
from job.store.local import LocalStore

log = get_logger("store.lock")

LOCK_KEY = "locks/run.lock"
_warned_best_effort = False


def _now() -> datetime:
    return datetime.now(UTC)


def _parse_time(text: Any) -> datetime | None:
    try:
        value = datetime.fromisoformat(str(text))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _describe(record: dict[str, Any]) -> str:
    owner = record.get("owner", "?")
    where = f"{record.get('host', '?')} pid {record.get('pid', '?')}"
    return f"{owner} ({where}) since {record.get('acquired_at', '?')}, expires {record.get('expires_at', '?')}"


class RunLock:
    """Context manager holding the store's run lock.

    Parameters
    ----------
    store:
        The artifact store (LocalStore, S3Store, or any Store: best effort).
    owner:
        Who holds it, for the message a second run prints (e.g. ``"rotation run 2025-01 <run_id>"``).
    ttl_s:
        Seconds after which the lock may be taken over by another run (``store.lock_ttl_s``).
    settle_s:
        Best-effort mode only: how long to wait before reading the lock back.

    Raises :class:`job.errors.LockHeld` on entry when a live lock is held by another run, and
    :class:`job.errors.StoreUnavailable` when the store cannot be reached.

    Examples
    --------
    >>> with RunLock(store, owner="rotation run 2025-01", ttl_s=7200):  # doctest: +SKIP
    ...     publish()
    """

    def __init__(self, store: Store, owner: str, ttl_s: int, *, settle_s: float = 0.5) -> None:
        self.store = store
        self.owner = owner
        self.ttl_s = int(ttl_s)
        self.settle_s = settle_s
        self.token = secrets.token_hex(8)
        self.record: dict[str, Any] | None = None
        self._etag: str | None = None
        self.mode: str | None = None  # "exclusive-create", "conditional-put" or "best-effort"

    # -- public --------------------------------------------------------------------------------------

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

    def acquire(self) -> dict[str, Any]:
        """Take the lock or raise LockHeld; returns the lock record written."""
        record = self._new_record()
        if isinstance(self.store, LocalStore):
            self._acquire_local(record)
        elif hasattr(self.store, "put_if_absent"):
            self._acquire_s3(record)
        else:
            self._acquire_best_effort(record)
        self.record = record
        log.debug("run lock taken (%s)", self.mode, extra={"fields": {"owner": self.owner}})
        return record

    def release(self) -> None:
        """Delete the lock if we still hold it (never another run's lock)."""
        if self.record is None:
            return
        try:
            if isinstance(self.store, LocalStore):
                self._release_local()
            else:
                self._release_remote()
        except StoreUnavailable as exc:  # the lock expires by itself; do not mask the run's own outcome
            log.warning("could not release the run lock: %s", exc.one_line())
        finally:
            self.record = None
            self._etag = None

    # -- records -------------------------------------------------------------------------------------

    def _new_record(self) -> dict[str, Any]:
        now = _now()
        return {
            "owner": self.owner,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "acquired_at": now.isoformat(timespec="seconds"),
            "expires_at": (now + timedelta(seconds=self.ttl_s)).isoformat(timespec="seconds"),
            "token": self.token,
        }

    @staticmethod
    def _encode(record: dict[str, Any]) -> bytes:
        return (json.dumps(record, sort_keys=True, indent=2) + "\n").encode()

    @staticmethod
    def _decode(data: bytes) -> dict[str, Any]:
        try:
            value = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            return {}
        return value if isinstance(value, dict) else {}

    @staticmethod
    def _expired(record: dict[str, Any]) -> bool:
        """A lock is expired past its ``expires_at``; an unreadable lock counts as expired."""
        expires = _parse_time(record.get("expires_at"))
        return expires is None or expires <= _now()

    def _held(self, record: dict[str, Any]) -> LockHeld:
        return LockHeld(f"another run holds the store's run lock: {_describe(record)}",
                        hint=f"wait for it to finish; if that run is dead, delete {LOCK_KEY} in "
                             f"{self.store.uri} or wait until it expires")

    # -- local folder --------------------------------------------------------------------------------

    def _local_paths(self) -> tuple[Path, Path]:
        assert isinstance(self.store, LocalStore)
        path = self.store.root / LOCK_KEY
        return path, path.with_name(".run.lock.guard")

    @contextlib.contextmanager
    def _guard(self) -> Any:
        path, guard = self._local_paths()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(guard, os.O_CREAT | os.O_RDWR, 0o644)
        except OSError as exc:
            raise StoreUnavailable(f"cannot create the run lock in {self.store.uri}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _acquire_local(self, record: dict[str, Any]) -> None:
        path, _ = self._local_paths()
        self.mode = "exclusive-create"
        with self._guard():
            for _ in range(2):
                try:
                    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                except FileExistsError:
                    try:
                        current = self._decode(path.read_bytes())
                    except FileNotFoundError:
                        continue
                    if not self._expired(current):
                        raise self._held(current) from None
                    log.warning("taking over an expired run lock: %s", _describe(current))
                    path.unlink(missing_ok=True)
                    continue
                except OSError as exc:
                    raise StoreUnavailable(f"cannot create the run lock in {self.store.uri}: {exc.strerror}") from None
                with os.fdopen(fd, "wb") as handle:
                    handle.write(self._encode(record))
                    handle.flush()
                    os.fsync(handle.fileno())
                return
        raise StoreUnavailable(f"could not create the run lock in {self.store.uri}")

    def _release_local(self) -> None:
        path, _ = self._local_paths()
        with self._guard():
            try:
                current = self._decode(path.read_bytes())
            except FileNotFoundError:
                return
            if current.get("token") == self.token:
                path.unlink(missing_ok=True)
            else:
                log.warning("the run lock was taken over by %s; leaving it", _describe(current))

    # -- S3 ------------------------------------------------------------------------------------------

    def _acquire_s3(self, record: dict[str, Any]) -> None:
        from job.store.s3 import ConditionalWritesUnsupported

        store: Any = self.store
        data = self._encode(record)
        self.mode = "conditional-put"
        try:
            for _ in range(3):
                if store.put_if_absent(LOCK_KEY, data):
                    self._etag = self._etag_of_ours()
                    return
                try:
                    body, etag = store.get_with_etag(LOCK_KEY)
                except ArtifactNotFound:
                    continue  # released between our put and our read: try again
                current = self._decode(body)
                if not self._expired(current):
                    raise self._held(current)
                log.warning("taking over an expired run lock: %s", _describe(current))
                if store.put_if_match(LOCK_KEY, data, etag):
                    self._etag = self._etag_of_ours()
                    return
                # Someone else replaced or released it after our read: look again.
        except ConditionalWritesUnsupported:
            self._warn_best_effort()
            self._acquire_best_effort(record)
            return
        try:
            current = self._decode(store.get_bytes(LOCK_KEY))
        except ArtifactNotFound:
            current = {}
        raise self._held(current)

    def _etag_of_ours(self) -> str | None:
        store: Any = self.store
        try:
            body, etag = store.get_with_etag(LOCK_KEY)
        except ArtifactNotFound:
            return None
        return etag if self._decode(body).get("token") == self.token else None

    def _warn_best_effort(self) -> None:
        global _warned_best_effort
        if not _warned_best_effort:
            log.warning("the S3 server at %s does not support conditional writes (If-None-Match); using a "
                        "best-effort run lock: do not start overlapping runs on this store", self.store.uri)
            _warned_best_effort = True

    def _acquire_best_effort(self, record: dict[str, Any]) -> None:
        self.mode = "best-effort"
        try:
            current = self._decode(self.store.get_bytes(LOCK_KEY))
        except ArtifactNotFound:
            current = None
        if current is not None and current.get("token") != self.token:
            if not self._expired(current):
                raise self._held(current)
            log.warning("taking over an expired run lock: %s", _describe(current))
        self.store.put_bytes(LOCK_KEY, self._encode(record), "application/json")
        time.sleep(self.settle_s)
        try:
            back = self._decode(self.store.get_bytes(LOCK_KEY))
        except ArtifactNotFound:
            back = {}
        if back.get("token") != self.token:
            raise self._held(back or {"owner": "an unknown run"})

    def _release_remote(self) -> None:
        store: Any = self.store
        if self._etag and hasattr(store, "delete_if_match"):
            store.delete_if_match(LOCK_KEY, self._etag)
            return
        try:
            current = self._decode(store.get_bytes(LOCK_KEY))
        except ArtifactNotFound:
            return
        if current.get("token") == self.token:
            # Best effort: between this read and the delete nobody can take over a live lock of ours
            # except after its expiry.
            store.delete([LOCK_KEY])
        else:
            log.warning("the run lock was taken over by %s; leaving it", _describe(current))
