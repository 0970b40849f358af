"""One writer per store at a time: the lease lock ``locks/run.lock``.

The lock is a small JSON object::

    {owner, host, boot_id, pid_ns, pid, pid_start, lease_s, acquired_at, renewed_at, expires_at, token}

Its holder keeps a **lease** (``store.lock_lease_s``, default 120 s): a heartbeat thread renews it every
lease/4 while the holder's process lives, moving ``expires_at`` forward. So a holder that dies (SIGKILL,
an out-of-memory kill, a lost node) stops renewing, and the next run takes the lock over once
``expires_at`` has passed: a dead holder delays the next run by at most one lease. A holder on the same
host (same hostname, boot and PID namespace) whose process is gone (its pid absent, or reused by a
process with another start time, read from ``/proc/<pid>/stat``) is taken over at once.

A run that finds a live lock polls about once a second, with jitter, for up to ``store.lock_wait_s``
(default 60 s), then raises :class:`job.errors.LockHeld` (exit code 6) naming the holder (owner, host,
pid, since, lease expiry) and what to do.

If a renewal finds another run's token in the lock, the lease lapsed (the holder was paused, or could not
reach the store for a whole lease) and another run took it over: the lock is *lost*. The heartbeat logs
one error line and :meth:`RunLock.assert_held`, which a publisher calls right before it writes a
manifest, raises :class:`LockLost` (exit code 6, like LockHeld: another run holds the lock now, and a
retry waits for it). A renewal that fails because the store is unreachable is retried at the next beat;
the lease bounds the harm, and ``assert_held`` renews synchronously when the last confirmed renewal is
older than half a lease, so a publisher never writes on a lease it cannot confirm.

How each store takes, renews and releases the lock
---------------------------------------------------
Local folder
    Every read-modify-write of the lock file happens under ``flock`` on ``locks/.run.lock.guard``: take
    (absent, expired, or the holder's process gone), renew (only while the token is ours) and release
    (only our own token). The file is written to a temporary file and renamed, so readers see it whole.
S3 with conditional writes (AWS S3 since 2024, MinIO, moto)
    ``PutObject`` with ``If-None-Match: *`` creates the lock; 412 means it exists: read it. An expired
    (or dead-holder) lock is replaced with ``If-Match: <the ETag read>``, so of two runs that race for
    it exactly one wins. A renewal is ``If-Match`` on our last ETag. When a response is lost, botocore
    retries the same conditional write and gets 412 from the write that did land: so after any 412 the
    lock is read, and if it carries our token we hold it (and take its ETag); nobody else can have
    written our token. Release deletes with ``If-Match`` on our ETag (re-read once if our ETag is stale),
    so it never removes a lock another run has taken over. A store unreachable at release leaves one
    warning line; the lock then lapses within one lease.
S3 without conditional writes (OpenStack Swift's s3api answers NotImplemented)
    A documented best-effort lock, with a warning logged once per process: read the lock; if it is
    held and live, wait or LockHeld; otherwise write ours unconditionally, wait ``settle_s`` and read it
    back; if the token read back is not ours, another run wrote after us. Renewal re-reads the token
    before writing. Two runs that start within the same fraction of a second can still both believe
    they hold it; schedule runs so they do not overlap (the CronJob's ``concurrencyPolicy: Forbid``)
    where the store is Swift. Lease and heartbeat work as above.

Expiry compares ``expires_at`` (the holder's clock) with the reader's clock: hosts sharing a store need
synchronised clocks (NTP); a skew of s seconds shifts the takeover by s.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import secrets
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

from job.errors import ExitCode, LockHeld, RotationError, StoreUnavailable
from job.logs import get_logger
from job.store.base import ArtifactNotFound, Store
from job.store.local import LocalStore

log = get_logger("store.lock")

LOCK_KEY = "locks/run.lock"
GUARD_WAIT_S = 10.0  # local folder: the longest wait for the flock guard around a read-modify-write
POLL_S = 1.0  # how often a waiting run looks at the lock again (with +-20 % jitter)
_warned_best_effort = False
_HELD: set[RunLock] = set()  # acquired by this process and not (successfully) released


def unreleased_locks() -> list[RunLock]:
    """The locks this process acquired and could not release (a release cut short by a second signal,
    or a store unreachable at release): what the CLI's last line says about the lock."""
    return list(_HELD)


class LockLost(RotationError):
    """Our lease lapsed and another run took the lock over: do not publish.

    Exit code 6, like :class:`job.errors.LockHeld`: another run holds the store's lock now, and a retry
    (the CronJob retries exit 6 with backoff) waits for that run instead of racing it.
    """

    exit_code = ExitCode.LOCKED


# -- small helpers -----------------------------------------------------------------------------------------

def _now() -> datetime:
    return datetime.now(UTC)


def _stamp(value: datetime) -> str:
    return value.isoformat(timespec="milliseconds")


def _parse_time(text: Any) -> datetime | None:
    try:
        value = datetime.fromisoformat(str(text))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _read_text(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None


def process_start(pid: int) -> int | None:
    """The start time of process ``pid`` (clock ticks after boot, ``/proc/<pid>/stat`` field 22), or
    None when there is no such process (or no /proc)."""
    text = _read_text(f"/proc/{pid}/stat")
    if not text:
        return None
    try:  # the command name (field 2) may hold spaces and parentheses: split after its last ')'
        return int(text.rsplit(")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return None


def _pid_namespace() -> str | None:
    try:
        return str(Path("/proc/self/ns/pid").readlink())
    except OSError:
        return None


def _process_gone(record: dict[str, Any]) -> bool:
    """Whether the holder named by ``record`` is a process of this host (same hostname, boot and PID
    namespace) that no longer exists. False whenever that cannot be told: then only the lease decides."""
    if record.get("host") != socket.gethostname():
        return False
    boot_id = _read_text("/proc/sys/kernel/random/boot_id")
    if record.get("boot_id") and boot_id and record["boot_id"] != boot_id:
        return True  # the host rebooted since: every process of that boot is gone
    if record.get("pid_ns") != _pid_namespace():
        return False  # another container with the same hostname: its pids are not ours to look at
    try:
        pid = int(record["pid"])
    except (KeyError, TypeError, ValueError):
        return False
    if pid <= 0:
        return False
    started = record.get("pid_start")
    if started is None or not Path("/proc").is_dir():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except OSError:
            return False
        return False
    return process_start(pid) != started


def describe(record: dict[str, Any]) -> str:
    """``owner (host pid N) since T, lease expires T``: the holder, for messages."""
    owner = record.get("owner", "?")
    where = f"{record.get('host', '?')} pid {record.get('pid', '?')}"
    return f"{owner} ({where}) since {record.get('acquired_at', '?')}, lease expires {record.get('expires_at', '?')}"


def _encode(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, sort_keys=True, indent=2) + "\n").encode()


def _decode(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def _expired(record: dict[str, Any]) -> bool:
    """Past its ``expires_at``; an unreadable lock counts as expired."""
    expires = _parse_time(record.get("expires_at"))
    return expires is None or expires <= _now()


class RunLock:
    """Context manager holding the store's run lock as a lease renewed by a heartbeat thread.

    Parameters
    ----------
    store:
        The artifact store (LocalStore, S3Store, or any Store: best effort).
    owner:
        Who holds it, for the message a second run prints (e.g. ``"rotation run 2025-01 <run_id>"``).
    lease_s:
        The lease (``store.lock_lease_s``): renewed every lease/4 while we live; another run may take
        the lock over once a lease passes without a renewal.
    wait_s:
        How long to wait for a live lock of another run before LockHeld (``store.lock_wait_s``).
    settle_s:
        Best-effort mode only: how long to wait before reading the lock back.

    Raises :class:`job.errors.LockHeld` on entry when another run kept a live lock for ``wait_s``, and
    :class:`job.errors.StoreUnavailable` when the store cannot be reached.

    Examples
    --------
    >>> with run_lock(store, settings, owner="rotation run 2025-01") as lock:  # doctest: +SKIP
    ...     write_artifacts()
    ...     lock.assert_held()
    ...     write_manifest()
    """

    def __init__(self, store: Store, owner: str, lease_s: float, *, wait_s: float = 0.0,
                 settle_s: float = 0.5) -> None:
        if lease_s <= 0:
            raise ValueError(f"the lock lease must be positive, not {lease_s}")
        self.store = store
        self.owner = owner
        self.lease_s = float(lease_s)
        self.wait_s = max(0.0, float(wait_s))
        self.settle_s = settle_s
        self.token = secrets.token_hex(8)
        self.record: dict[str, Any] | None = None
        self.mode: str | None = None  # "local", "conditional-put" or "best-effort"
        self.lost_to: dict[str, Any] | None = None  # the record that replaced ours, once lost
        self.renewals = 0
        self._etag: str | None = None
        self._confirmed = 0.0  # time.monotonic() of the last write or read that proved the lock ours
        self._state = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- public --------------------------------------------------------------------------------------

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

    @property
    def held(self) -> bool:
        """Acquired, not released, and not known to be lost."""
        return self.record is not None and self.lost_to is None

    def acquire(self) -> dict[str, Any]:
        """Take the lock, waiting up to ``wait_s`` for a live holder, or raise LockHeld.

        Returns the lock record written; starts the heartbeat.
        """
        if self.record is not None:
            raise RuntimeError("this RunLock is already held")
        self._stop.clear()
        deadline = time.monotonic() + self.wait_s
        announced = False
        while True:
            holder = self._attempt()
            if holder is None:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._held(holder)
            if not announced:
                log.warning("the store's run lock is held by %s; waiting up to %.0f s for it",
                            describe(holder), self.wait_s)
                announced = True
            time.sleep(min(left, POLL_S * random.uniform(0.8, 1.2)))
        self.lost_to = None
        _HELD.add(self)
        self._start_heartbeat()
        log.debug("run lock taken (%s)", self.mode, extra={"fields": {"owner": self.owner}})
        assert self.record is not None
        return self.record

    def assert_held(self) -> None:
        """Raise :class:`LockLost` unless we still hold the lock (call right before publishing).

        When the last confirmed renewal is older than half a lease (renewals failing), renew now: a
        StoreUnavailable from that renewal propagates (exit 5), another token raises LockLost.
        """
        if self.record is None:
            raise LockLost("the store's run lock is not held by this run",
                           hint="nothing was published; rerun")
        if self.lost_to is None and time.monotonic() - self._confirmed > self.lease_s / 2:
            self._renew()
        if self.lost_to is not None:
            raise self._lost_error()

    def release(self) -> None:
        """Stop the heartbeat and delete the lock if it is still ours (never another run's lock).

        A store that cannot be reached gets one warning line: the lock then lapses within one lease.
        """
        self._stop_heartbeat()
        if self.record is None:
            return
        try:
            if self.lost_to is None and self.mode == "local":
                self._release_local()
            elif self.lost_to is None:
                self._release_remote()
            _HELD.discard(self)
        except StoreUnavailable as exc:  # do not mask the run's own outcome
            log.warning("could not release the run lock (%s); it lapses by itself within one lease (%.0f s)",
                        exc.one_line(), self.lease_s)
        finally:
            self.record = None
            self._etag = None

    # -- records -------------------------------------------------------------------------------------

    def _new_record(self) -> dict[str, Any]:
        now = _now()
        pid = os.getpid()
        return {
            "owner": self.owner,
            "host": socket.gethostname(),
            "boot_id": _read_text("/proc/sys/kernel/random/boot_id"),
            "pid_ns": _pid_namespace(),
            "pid": pid,
            "pid_start": process_start(pid),
            "lease_s": self.lease_s,
            "acquired_at": _stamp(now),
            "renewed_at": _stamp(now),
            "expires_at": _stamp(now + timedelta(seconds=self.lease_s)),
            "token": self.token,
        }

    def _renewed_record(self) -> dict[str, Any]:
        assert self.record is not None
        now = _now()
        return {**self.record, "renewed_at": _stamp(now),
                "expires_at": _stamp(now + timedelta(seconds=self.lease_s))}

    def _takeable(self, current: dict[str, Any]) -> bool:
        """Whether another run's lock may be taken over: lease expired, or its process gone."""
        if _expired(current):
            log.warning("taking over a run lock whose lease expired: %s", describe(current))
            return True
        if _process_gone(current):
            log.warning("taking over the run lock of a process that is gone: %s", describe(current))
            return True
        return False

    def _held(self, record: dict[str, Any]) -> LockHeld:
        waited = f" (waited {self.wait_s:.0f} s)" if self.wait_s else ""
        return LockHeld(f"another run holds the store's run lock: {describe(record)}{waited}",
                        hint="it is renewed while that run lives: let it finish and retry, or raise "
                             "store.lock_wait_s; a dead run's lease lapses by itself, so do not delete "
                             f"{LOCK_KEY} in {self.store.uri} while its holder may live")

    def _lost_error(self) -> LockLost:
        return LockLost(f"this run lost the store's run lock: its lease lapsed and "
                        f"{describe(self.lost_to or {})} took it over",
                        hint="nothing more was published by this run; retry after that run")

    def _confirm(self, record: dict[str, Any], etag: str | None) -> None:
        with self._state:
            if self._stop.is_set():  # a renewal that finished after release: the lock is no longer ours
                return
            self.record = record
            self._etag = etag
            self._confirmed = time.monotonic()

    def _mark_lost(self, current: dict[str, Any]) -> None:
        with self._state:
            if self._stop.is_set():  # a renewal racing our own release: nothing was lost
                return
            first = self.lost_to is None
            self.lost_to = current or {"owner": "nobody (the lock was deleted)"}
        if first:
            log.error("the store's run lock was lost: %s took it over after our lease lapsed; this run "
                      "will not publish", describe(self.lost_to))

    # -- one attempt: None when taken, else the holder's record -------------------------------------

    def _attempt(self) -> dict[str, Any] | None:
        record = self._new_record()
        if isinstance(self.store, LocalStore):
            self.mode = "local"
            return self._attempt_local(record)
        if self.mode != "best-effort" and hasattr(self.store, "put_if_absent"):
            from job.store.s3 import ConditionalWritesUnsupported

            self.mode = "conditional-put"
            try:
                return self._attempt_s3(record)
            except ConditionalWritesUnsupported:
                self._warn_best_effort()
        return self._attempt_best_effort(record)

    # -- heartbeat -------------------------------------------------------------------------------------

    def _start_heartbeat(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="run-lock-heartbeat", daemon=True)
        self._thread.start()

    def _stop_heartbeat(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            # A renewal in flight finishes on its own; release copes with the ETag it may leave stale.
            thread.join(timeout=min(5.0, self.lease_s / 4))

    def _beat(self) -> None:
        while not self._stop.wait(self.lease_s / 4):
            if self.record is None or self.lost_to is not None:
                return
            try:
                self._renew()
            except StoreUnavailable as exc:
                log.warning("could not renew the run lock (%s); retrying in %.0f s", exc.one_line(),
                            self.lease_s / 4)
            except Exception as exc:  # never let the heartbeat die silently
                log.warning("could not renew the run lock (%s: %s); retrying", type(exc).__name__, exc)

    def _renew(self) -> None:
        if self.record is None or self.lost_to is not None or self._stop.is_set():
            return
        if self.mode == "local":
            self._renew_local()
        elif self.mode == "conditional-put":
            self._renew_s3()
        else:
            self._renew_best_effort()
        if self.lost_to is None:
            self.renewals += 1

    # -- local folder --------------------------------------------------------------------------------

    def _local_paths(self) -> tuple[Path, Path]:
        assert isinstance(self.store, LocalStore)
        path = self.store.root / LOCK_KEY
        return path, path.with_name(".run.lock.guard")

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        path, guard = self._local_paths()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(guard, os.O_CREAT | os.O_RDWR, 0o644)
        except OSError as exc:
            raise StoreUnavailable(f"cannot create the run lock in {self.store.uri}: {exc.strerror}") from None
        try:
            # Held for a read and a write at most; a process stopped (SIGSTOP) inside it would block every
            # other run, so waiting for it is bounded.
            deadline = time.monotonic() + max(GUARD_WAIT_S, self.lease_s)
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise StoreUnavailable(
                            f"the run lock's guard {guard} stayed locked for "
                            f"{max(GUARD_WAIT_S, self.lease_s):.0f} s: a stopped or hung process holds it",
                            hint=f"find it with `fuser {guard}` and end it") from None
                    time.sleep(0.02)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _read_local(self) -> dict[str, Any] | None:
        path, _ = self._local_paths()
        try:
            return _decode(path.read_bytes())
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreUnavailable(f"cannot read the run lock in {self.store.uri}: {exc.strerror}") from None

    def _write_local(self, record: dict[str, Any]) -> None:
        path, _ = self._local_paths()
        try:
            fd, tmp = tempfile.mkstemp(prefix=".tmp-lock-", dir=path.parent)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(_encode(record))
                    handle.flush()
                    os.fsync(handle.fileno())
                Path(tmp).replace(path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise StoreUnavailable(f"cannot write the run lock in {self.store.uri}: {exc.strerror}") from None

    def _attempt_local(self, record: dict[str, Any]) -> dict[str, Any] | None:
        with self._guard():
            current = self._read_local()
            if current is not None and current.get("token") != self.token and not self._takeable(current):
                return current
            self._write_local(record)
        self._confirm(record, None)
        return None

    def _renew_local(self) -> None:
        with self._guard():
            current = self._read_local()
            if current is None or current.get("token") != self.token:
                self._mark_lost(current or {})
                return
            record = self._renewed_record()
            self._write_local(record)
        self._confirm(record, None)

    def _release_local(self) -> None:
        path, _ = self._local_paths()
        with self._guard():
            current = self._read_local()
            if current is None:
                return
            if current.get("token") == self.token:
                path.unlink(missing_ok=True)
            else:
                log.warning("the run lock was taken over by %s; leaving it", describe(current))

    # -- S3 with conditional writes -------------------------------------------------------------------

    def _read_s3(self) -> tuple[dict[str, Any], str] | None:
        store: Any = self.store
        try:
            body, etag = store.get_with_etag(LOCK_KEY)
        except ArtifactNotFound:
            return None
        return _decode(body), etag

    def _ours_after_412(self) -> tuple[dict[str, Any], str] | None:
        """After a 412 (or 404): the lock as read, when it carries our token (our own write landed and
        its response was lost); else None."""
        found = self._read_s3()
        if found is not None and found[0].get("token") == self.token:
            log.info("the run lock's conditional write was retried after a lost response; it is ours")
            return found
        return None

    def _attempt_s3(self, record: dict[str, Any]) -> dict[str, Any] | None:
        store: Any = self.store
        data = _encode(record)
        for _ in range(5):
            etag = store.put_if_absent(LOCK_KEY, data)
            if etag is not None:
                self._confirm(record, etag or self._etag_now())
                return None
            found = self._read_s3()
            if found is None:
                continue  # released between our put and our read: try again
            current, current_etag = found
            if current.get("token") == self.token:  # a lost response: botocore's retry met our own lock
                log.info("the run lock's create was retried after a lost response; it is ours")
                self._confirm(current, current_etag)
                return None
            if not self._takeable(current):
                return current
            etag = store.put_if_match(LOCK_KEY, data, current_etag)
            if etag is not None:
                self._confirm(record, etag or self._etag_now())
                return None
            mine = self._ours_after_412()
            if mine is not None:
                self._confirm(*mine)
                return None
            # Someone else replaced or released it after our read: look again.
        found = self._read_s3()
        return found[0] if found is not None else {"owner": "an unknown run (the lock kept changing)"}

    def _etag_now(self) -> str | None:
        found = self._read_s3()
        return found[1] if found is not None and found[0].get("token") == self.token else None

    def _renew_s3(self) -> None:
        store: Any = self.store
        record = self._renewed_record()
        etag = store.put_if_match(LOCK_KEY, _encode(record), self._etag or '"none"')
        if etag is not None:
            self._confirm(record, etag or self._etag_now())
            return
        mine = self._ours_after_412()
        if mine is not None:
            self._confirm(*mine)
            return
        found = self._read_s3()
        self._mark_lost(found[0] if found is not None else {})

    def _release_remote(self) -> None:
        store: Any = self.store
        if self.mode == "conditional-put" and hasattr(store, "delete_if_match"):
            if self._etag and store.delete_if_match(LOCK_KEY, self._etag):
                return
            found = self._read_s3()  # our ETag may be stale (a renewal whose answer we did not wait for)
            if found is None:
                return
            if found[0].get("token") == self.token:
                store.delete_if_match(LOCK_KEY, found[1])
            else:
                log.warning("the run lock was taken over by %s; leaving it", describe(found[0]))
            return
        try:
            current = _decode(store.get_bytes(LOCK_KEY))
        except ArtifactNotFound:
            return
        if current.get("token") == self.token:
            store.delete([LOCK_KEY])  # best effort: nobody takes over a live lock of ours before its expiry
        else:
            log.warning("the run lock was taken over by %s; leaving it", describe(current))

    # -- S3 without conditional writes (Swift): best effort -----------------------------------------

    def _warn_best_effort(self) -> None:
        global _warned_best_effort
        if not _warned_best_effort:
            log.warning("the S3 server at %s does not support conditional writes (If-None-Match); using a "
                        "best-effort run lock: do not start overlapping runs on this store", self.store.uri)
            _warned_best_effort = True

    def _read_plain(self) -> dict[str, Any] | None:
        try:
            return _decode(self.store.get_bytes(LOCK_KEY))
        except ArtifactNotFound:
            return None

    def _attempt_best_effort(self, record: dict[str, Any]) -> dict[str, Any] | None:
        self.mode = "best-effort"
        current = self._read_plain()
        if current is not None and current.get("token") != self.token and not self._takeable(current):
            return current
        self.store.put_bytes(LOCK_KEY, _encode(record), "application/json")
        time.sleep(self.settle_s)
        back = self._read_plain() or {}
        if back.get("token") != self.token:
            return back or {"owner": "an unknown run"}
        self._confirm(record, None)
        return None

    def _renew_best_effort(self) -> None:
        current = self._read_plain()
        if current is None or current.get("token") != self.token:
            self._mark_lost(current or {})
            return
        record = self._renewed_record()
        self.store.put_bytes(LOCK_KEY, _encode(record), "application/json")
        self._confirm(record, None)


def run_lock(store: Store, settings: Any, *, owner: str) -> RunLock:
    """The run lock for a command that writes to ``store``, with the lease and wait of ``settings.store``
    (``lock_lease_s``, ``lock_wait_s``). Use it as a context manager around every write."""
    store_settings = getattr(settings, "store", None)
    lease = float(getattr(store_settings, "lock_lease_s", 120))
    wait = float(getattr(store_settings, "lock_wait_s", 60))
    return RunLock(store, owner, lease, wait_s=wait)
