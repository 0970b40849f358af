"""The run lock: a lease renewed by a heartbeat, one writer per store, exit 6 naming a live holder.

Every test runs against real stores: a local folder, a moto S3 server on 127.0.0.1 (``s3``), and, where
the promise holds there, OpenStack Swift's best-effort lock. Holders that die or stall are real
subprocesses (SIGKILL, SIGSTOP); store faults come from the fault proxy in tests/s3_server.py. The only
timing assertions are the lease-bound promises (a dead or stalled holder, or one that lost the store at
release, delays the next run by at most one lease), with leases of 2-3 s.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from job.config import load_settings
from job.errors import ExitCode, LockHeld
from job.store import LOCK_KEY, LocalStore, LockLost, RunLock, open_store, run_lock
from job.store.lock import POLL_S
from tests.s3_server import lock_writes

REPO = Path(__file__).resolve().parents[1]
LEASE = 2.0
# A waiting run looks again every POLL_S (+20 % jitter); a look itself takes a few requests.
SLACK = POLL_S * 1.2 + 1.0

HOLDER = r"""
import json, sys
from job.errors import RotationError
from job.store import RunLock, open_store
lock = RunLock(open_store(sys.argv[1]), sys.argv[3], float(sys.argv[2]))
lock.acquire()
print("held", lock.token, flush=True)
sys.stdin.readline()  # the test says when to go on (after a SIGSTOP/SIGCONT, say)
try:
    lock.assert_held()
except RotationError as exc:
    print(json.dumps({"code": int(exc.exit_code), "error": exc.one_line()}), flush=True)
    lock.release()
    sys.exit(int(exc.exit_code))
print(json.dumps({"code": 0}), flush=True)
lock.release()
"""


def _record(store: Any) -> dict[str, Any]:
    return json.loads(store.get_bytes(LOCK_KEY))


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def lock_store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """A local folder or a moto bucket: the stores whose lock is exact (Swift's is best effort)."""
    if request.param == "local":
        return open_store(str(tmp_path / "artifacts"))
    return open_store(request.getfixturevalue("s3_bucket").uri)


class Holder:
    """A real process holding the run lock (``HOLDER`` above), optionally in its own PID namespace."""

    def __init__(self, store: Any, lease_s: float, owner: str = "holder process", *,
                 own_pid_namespace: bool = False) -> None:
        argv = [sys.executable, "-c", HOLDER, store.uri, str(lease_s), owner]
        if own_pid_namespace:  # like a container on the same node: its pids are not ours to look at
            argv = ["unshare", "--pid", "--fork", "--kill-child", *argv]
        self.proc = subprocess.Popen(argv, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line.startswith("held "):
            self.proc.kill()
            raise AssertionError(f"the holder did not take the lock: {line!r} {self.proc.communicate()[1][-2000:]}")
        self.token = line.split()[1]

    def finish(self) -> tuple[int, dict[str, Any]]:
        """Let it go on (assert_held, then release): its exit code and what it printed."""
        out, err = self.proc.communicate("go\n", timeout=60)
        lines = out.strip().splitlines()
        return self.proc.returncode, json.loads(lines[-1]) if lines else {"stderr": err}

    def kill(self) -> None:
        self.proc.kill()
        self.proc.communicate(timeout=30)


@pytest.fixture
def holders() -> Iterator[list[Holder]]:
    made: list[Holder] = []
    yield made
    for holder in made:
        if holder.proc.poll() is None:
            holder.proc.send_signal(signal.SIGCONT)
            holder.proc.kill()
            holder.proc.communicate(timeout=30)


@pytest.fixture
def lock_log() -> Iterator[list[logging.LogRecord]]:
    """The lock's log records at WARNING and above (the job's logger does not propagate to caplog)."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("rotation.store.lock")
    handler = Keep(logging.WARNING)
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def _stop(holder: Holder, store: Any) -> None:
    """SIGSTOP the holder, but not inside the local lock's flock guard (a read and a write take a few ms):
    a process stopped there is another failure (the guard's bounded wait), not a stalled lease."""
    import fcntl

    for _ in range(50):
        holder.proc.send_signal(signal.SIGSTOP)
        if not isinstance(store, LocalStore):
            return
        fd = os.open(store.root / "locks" / ".run.lock.guard", os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return
        except BlockingIOError:
            holder.proc.send_signal(signal.SIGCONT)
            time.sleep(0.01)
        finally:
            os.close(fd)
    raise AssertionError("the holder was always inside the lock's guard")


def _unshare_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    done = subprocess.run(["unshare", "--pid", "--fork", "--kill-child", "true"], capture_output=True, check=False)
    return done.returncode == 0


# -- one holder at a time -------------------------------------------------------------------------------

def test_a_second_run_gets_lock_held_naming_the_holder(artifact_store: Any) -> None:
    with RunLock(artifact_store, "rotation run 2025-01 first", 600, settle_s=0.05) as lock:
        record = _record(artifact_store)
        assert record["owner"] == "rotation run 2025-01 first" and record["token"] == lock.token
        assert record["pid"] == os.getpid() and record["host"]
        assert {"pid_start", "acquired_at", "renewed_at", "expires_at"} <= set(record)
        with pytest.raises(LockHeld) as info:
            RunLock(artifact_store, "second", 600, settle_s=0.05).acquire()
        assert info.value.exit_code == ExitCode.LOCKED
        line = info.value.one_line()
        for part in ("rotation run 2025-01 first", record["host"], f"pid {os.getpid()}", record["acquired_at"],
                     "lease expires", "store.lock_wait_s"):
            assert part in line
        assert "\n" not in line
        assert _record(artifact_store)["token"] == lock.token, "a failed attempt leaves the holder's lock"
    assert not artifact_store.exists(LOCK_KEY), "released on exit"
    with RunLock(artifact_store, "third", 600, settle_s=0.05):
        pass


def test_the_lock_is_released_when_the_run_fails(artifact_store: Any) -> None:
    with pytest.raises(RuntimeError), RunLock(artifact_store, "failing", 600, settle_s=0.05):
        raise RuntimeError("stage failed")
    assert not artifact_store.exists(LOCK_KEY)


def test_the_heartbeat_keeps_the_lock_past_its_lease(artifact_store: Any) -> None:
    """A holder that lives longer than its lease keeps the lock: a second run still gets LockHeld."""
    with RunLock(artifact_store, "long run", LEASE, settle_s=0.05) as lock:
        first = _record(artifact_store)
        time.sleep(2.5 * LEASE)
        with pytest.raises(LockHeld, match="long run"):
            RunLock(artifact_store, "second", LEASE, settle_s=0.05).acquire()
        now = _record(artifact_store)
        assert now["token"] == lock.token and now["acquired_at"] == first["acquired_at"]
        assert now["expires_at"] > first["expires_at"] and lock.renewals >= 2
        lock.assert_held()
    assert not artifact_store.exists(LOCK_KEY)


def test_a_waiting_run_gets_the_lock_once_the_holder_releases(lock_store: Any) -> None:
    holder = RunLock(lock_store, "short run", 30)
    holder.acquire()
    threading.Timer(1.0, holder.release).start()
    with RunLock(lock_store, "patient run", 30, wait_s=60) as lock:
        assert _record(lock_store)["token"] == lock.token


def test_a_run_waits_for_lock_wait_s_then_exits_6_naming_the_holder(lock_store: Any,
                                                                     lock_log: list[logging.LogRecord]) -> None:
    with RunLock(lock_store, "rotation run 2025-02 holder", 30):
        start = time.monotonic()
        with pytest.raises(LockHeld) as info:
            RunLock(lock_store, "waiter", 30, wait_s=1.5).acquire()
        assert time.monotonic() - start >= 1.5
    line = info.value.one_line()
    assert line.startswith("another run holds the store's run lock: rotation run 2025-02 holder")
    assert "waited 2 s" in line and info.value.exit_code == ExitCode.LOCKED
    waits = [r for r in lock_log if "waiting up to" in r.getMessage()]
    assert len(waits) == 1, "the wait is announced once, not at every poll"


def test_run_lock_reads_the_lease_and_the_wait_from_the_settings(tmp_path: Path) -> None:
    settings = load_settings(environ={"ROTATION_STORE__LOCK_LEASE_S": "7", "ROTATION_STORE__LOCK_WAIT_S": "3"})
    lock = run_lock(LocalStore(tmp_path), settings, owner="rotation forecast 2025-01")
    assert (lock.lease_s, lock.wait_s, lock.owner) == (7.0, 3.0, "rotation forecast 2025-01")
    defaults = run_lock(LocalStore(tmp_path), load_settings(environ={}), owner="x")
    assert (defaults.lease_s, defaults.wait_s) == (120.0, 60.0)


def test_an_unreadable_lock_file_counts_as_expired(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put_bytes(LOCK_KEY, b"not json")
    with RunLock(store, "after garbage", 600):
        assert _record(store)["owner"] == "after garbage"


# -- dead, stalled and killed holders ---------------------------------------------------------------------

def test_a_dead_process_on_this_host_is_taken_over_at_once(lock_store: Any, holders: list[Holder]) -> None:
    """SIGKILL (an OOM kill) on the same host: the next run takes the lock at once, lease or not."""
    holder = Holder(lock_store, 600)
    holders.append(holder)
    holder.kill()
    assert _record(lock_store)["token"] == holder.token, "a SIGKILLed holder leaves its lock behind"
    with RunLock(lock_store, "next run", 600, wait_s=0) as lock:  # no waiting at all
        assert _record(lock_store)["token"] == lock.token


def test_a_reused_pid_is_not_mistaken_for_the_holder(lock_store: Any) -> None:
    """The holder's pid now belongs to another process (another start time): the lock is taken at once."""
    with RunLock(lock_store, "old run", 600):
        record = _record(lock_store)
    lock_store.put_bytes(LOCK_KEY, json.dumps({**record, "pid_start": int(record["pid_start"]) - 1}).encode())
    with RunLock(lock_store, "next run", 600, wait_s=0) as lock:
        assert _record(lock_store)["token"] == lock.token


@pytest.mark.parametrize("namespace", ["this-pid-namespace", "own-pid-namespace"])
def test_a_killed_holder_delays_the_next_run_by_at_most_one_lease(lock_store: Any, holders: list[Holder],
                                                                   namespace: str) -> None:
    """A holder SIGKILLed in a PID namespace we cannot look into (a container on the same node, or
    another host) is taken over once its lease lapses: the next run waits at most one lease."""
    own = namespace == "own-pid-namespace"
    if own and not _unshare_works():
        pytest.skip("unshare --pid is not permitted here")
    lease = 3.0
    holder = Holder(lock_store, lease, own_pid_namespace=own)
    holders.append(holder)
    holder.kill()
    killed = time.monotonic()
    with RunLock(lock_store, "next run", lease, wait_s=3 * lease) as lock:
        waited = time.monotonic() - killed
        assert _record(lock_store)["token"] == lock.token
    assert waited <= lease + SLACK, f"waited {waited:.1f} s for a dead holder with a {lease} s lease"


def test_a_stalled_holder_loses_the_lock_after_one_lease_and_cannot_publish(lock_store: Any,
                                                                            holders: list[Holder]) -> None:
    """A holder that stops renewing (SIGSTOP: a paused VM, a hung process) while its process lives: the
    next run takes over after at most one lease; the old holder, resumed, finds its lock lost
    (assert_held: exit 6) and its release leaves the new holder's lock alone."""
    holder = Holder(lock_store, LEASE, owner="stalled run")
    holders.append(holder)
    _stop(holder, lock_store)
    stalled = time.monotonic()
    with RunLock(lock_store, "next run", LEASE, wait_s=4 * LEASE) as lock:
        waited = time.monotonic() - stalled
        holder.proc.send_signal(signal.SIGCONT)
        code, said = holder.finish()
        assert code == ExitCode.LOCKED, said
        assert "lost the store's run lock" in said["error"] and "next run" in said["error"]
        assert _record(lock_store)["token"] == lock.token, "the old holder's release left our lock"
        lock.assert_held()
    assert waited <= LEASE + SLACK, f"waited {waited:.1f} s for a stalled holder with a {LEASE} s lease"
    assert not lock_store.exists(LOCK_KEY)


def test_a_renewal_that_finds_another_token_loses_the_lock(lock_store: Any,
                                                           lock_log: list[logging.LogRecord]) -> None:
    """The lock now carries another run's token (it took over a lapsed lease): the heartbeat logs one
    error, assert_held raises LockLost (exit 6), and release leaves the other run's lock."""
    lock = RunLock(lock_store, "overtaken run", LEASE)
    lock.acquire()
    other = {**_record(lock_store), "owner": "the run that took over", "token": "0123456789abcdef"}
    lock_store.put_bytes(LOCK_KEY, json.dumps(other).encode())
    deadline = time.monotonic() + 4 * LEASE
    while lock.held and time.monotonic() < deadline:
        time.sleep(0.05)
    with pytest.raises(LockLost) as info:
        lock.assert_held()
    assert info.value.exit_code == ExitCode.LOCKED and "the run that took over" in info.value.one_line()
    assert len([r for r in lock_log if r.levelno == logging.ERROR]) == 1
    lock.release()
    assert _record(lock_store)["token"] == other["token"]


# -- racing runs -----------------------------------------------------------------------------------------

def _race(locks: list[RunLock]) -> list[RunLock]:
    barrier = threading.Barrier(len(locks))
    won: list[RunLock] = []

    def attempt(lock: RunLock) -> None:
        barrier.wait()
        try:
            lock.acquire()
            won.append(lock)
        except LockHeld:
            pass

    threads = [threading.Thread(target=attempt, args=(lock,)) for lock in locks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return won


def test_racing_runs_exactly_one_wins(lock_store: Any) -> None:
    locks = [RunLock(lock_store, f"run-{i}", 600) for i in range(4)]
    won = _race(locks)
    assert len(won) == 1
    assert _record(lock_store)["token"] == won[0].token
    for lock in locks:
        lock.release()
    assert not lock_store.exists(LOCK_KEY)


def test_racing_takeovers_of_a_dead_holders_lock_have_one_winner(lock_store: Any, holders: list[Holder]) -> None:
    holder = Holder(lock_store, 600)
    holders.append(holder)
    holder.kill()
    won = _race([RunLock(lock_store, f"taker-{i}", 600) for i in range(4)])
    assert len(won) == 1
    assert _record(lock_store)["token"] == won[0].token
    won[0].release()


# -- S3 faults: lost responses, 503s, an outage at release -----------------------------------------------

def _via(proxy: Any, s3_bucket: Any, **options: Any) -> Any:
    from job.store.s3 import S3Store

    return S3Store.from_uri(s3_bucket.uri, None, endpoint_url=proxy.endpoint, **options)


@pytest.mark.s3
def test_a_lost_response_to_the_lock_create_is_recognised_as_ours(s3_bucket: Any, fault_proxy: Any) -> None:
    """The create lands but its answer is lost; botocore's retry gets 412: we read our token, no exit 6."""
    proxy = fault_proxy(s3_bucket.endpoint)
    store = _via(proxy, s3_bucket)
    proxy.drop_responses(1, lock_writes)
    with RunLock(store, "unlucky run", 600) as lock:
        assert proxy.dropped == 1
        assert [o for m, p, o in proxy.log if lock_writes(m, p, {})] == ["drop", "forward"], proxy.log
        assert _record(open_store(s3_bucket.uri))["token"] == lock.token
        lock.assert_held()
    assert not open_store(s3_bucket.uri).exists(LOCK_KEY), "released with the ETag read back"


@pytest.mark.s3
def test_a_lost_response_to_a_takeover_is_recognised_as_ours(s3_bucket: Any, fault_proxy: Any,
                                                            holders: list[Holder]) -> None:
    direct = open_store(s3_bucket.uri)
    holder = Holder(direct, 600)
    holders.append(holder)
    holder.kill()
    proxy = fault_proxy(s3_bucket.endpoint)
    proxy.drop_responses(1, lambda m, p, h: lock_writes(m, p, h) and "If-Match" in h)
    with RunLock(_via(proxy, s3_bucket), "taker", 600, wait_s=0) as lock:
        assert proxy.dropped == 1
        assert _record(direct)["token"] == lock.token
    assert not direct.exists(LOCK_KEY)


@pytest.mark.s3
def test_a_lost_response_to_a_renewal_keeps_the_lock(s3_bucket: Any, fault_proxy: Any) -> None:
    proxy = fault_proxy(s3_bucket.endpoint)
    direct = open_store(s3_bucket.uri)
    with RunLock(_via(proxy, s3_bucket), "renewing run", LEASE) as lock:
        proxy.drop_responses(1, lock_writes)
        deadline = time.monotonic() + 10 * LEASE
        while (proxy.dropped < 1 or lock.renewals < 2) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert proxy.dropped == 1 and lock.renewals >= 2
        lock.assert_held()
        with pytest.raises(LockHeld):
            RunLock(direct, "second", LEASE).acquire()
    assert not direct.exists(LOCK_KEY)


@pytest.mark.s3
def test_the_lock_survives_a_share_of_503s(s3_bucket: Any, fault_proxy: Any) -> None:
    """A third of all requests fail with 503: botocore's retries carry acquire, renewals and release."""
    proxy = fault_proxy(s3_bucket.endpoint, share=0.3, seed=12)
    with RunLock(_via(proxy, s3_bucket), "run on a flaky store", LEASE) as lock:
        time.sleep(1.5 * LEASE)
        lock.assert_held()
        assert lock.renewals >= 2
    assert proxy.failed > 0
    assert not open_store(s3_bucket.uri).exists(LOCK_KEY)


@pytest.mark.s3
def test_an_outage_at_release_delays_the_next_run_by_at_most_one_lease(s3_bucket: Any, fault_proxy: Any,
                                                                       lock_log: list[logging.LogRecord]) -> None:
    """Every request 503 from the end of the run on: release warns in one line; once the store is back,
    the next run (this very process is still alive) gets the lock within one lease."""
    proxy = fault_proxy(s3_bucket.endpoint)
    lock = RunLock(_via(proxy, s3_bucket, max_attempts=2), "run that lost the store", LEASE)
    lock.acquire()
    proxy.outage()
    lock.release()
    released = time.monotonic()
    warnings = [r.getMessage() for r in lock_log if "could not release" in r.getMessage()]
    assert len(warnings) == 1 and "\n" not in warnings[0] and "within one lease" in warnings[0]
    direct = open_store(s3_bucket.uri)
    assert _record(direct)["token"] == lock.token, "the lock was left behind"
    proxy.recover()
    with RunLock(_via(proxy, s3_bucket), "next run", LEASE, wait_s=4 * LEASE) as nxt:
        waited = time.monotonic() - released
        assert _record(direct)["token"] == nxt.token
    assert waited <= LEASE + SLACK, f"waited {waited:.1f} s after a failed release with a {LEASE} s lease"


# -- Swift: best effort ----------------------------------------------------------------------------------

@pytest.mark.swift
def test_swift_falls_back_to_the_best_effort_lock(swift_bucket: Any) -> None:
    """Swift answers NotImplemented to If-None-Match: the lock says so and still stops a second run."""
    store = open_store(swift_bucket.uri)
    with RunLock(store, "swift run", 600, settle_s=0.05) as lock:
        assert lock.mode == "best-effort"
        with pytest.raises(LockHeld, match="swift run"):
            RunLock(store, "second", 600, settle_s=0.05).acquire()
    assert not store.exists(LOCK_KEY)
