"""The run lock: one run per store; a second run fails with exit code 6 naming the holder."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from job.errors import ExitCode, LockHeld
from job.store import LOCK_KEY, LocalStore, RunLock


def test_a_second_run_gets_lock_held_naming_the_holder(artifact_store: Any) -> None:
    with RunLock(artifact_store, owner="rotation run 2025-01 first", ttl_s=600, settle_s=0.05):
        record = json.loads(artifact_store.get_bytes(LOCK_KEY))
        assert record["owner"] == "rotation run 2025-01 first"
        assert {"host", "pid", "acquired_at", "expires_at"} <= set(record)
        with pytest.raises(LockHeld) as info:
            RunLock(artifact_store, owner="second", ttl_s=600, settle_s=0.05).acquire()
        assert info.value.exit_code == ExitCode.LOCKED
        line = info.value.one_line()
        assert "rotation run 2025-01 first" in line and record["expires_at"] in line
        assert "\n" not in line
    assert not artifact_store.exists(LOCK_KEY), "released on exit"
    with RunLock(artifact_store, owner="third", ttl_s=600, settle_s=0.05):
        pass


def test_the_lock_is_released_when_the_run_fails(artifact_store: Any) -> None:
    with pytest.raises(RuntimeError), RunLock(artifact_store, owner="failing", ttl_s=600, settle_s=0.05):
        raise RuntimeError("stage failed")
    assert not artifact_store.exists(LOCK_KEY)


def test_an_expired_lock_is_taken_over(artifact_store: Any) -> None:
    """A lock left by a killed run (past its expiry) is taken over; the dead run's release leaves ours."""
    dead = RunLock(artifact_store, owner="killed run", ttl_s=-1, settle_s=0.05)
    dead.acquire()
    with RunLock(artifact_store, owner="next run", ttl_s=600, settle_s=0.05) as lock:
        assert json.loads(artifact_store.get_bytes(LOCK_KEY))["owner"] == "next run"
        dead.release()  # the old holder must not delete the new holder's lock
        assert json.loads(artifact_store.get_bytes(LOCK_KEY))["token"] == lock.token
    assert not artifact_store.exists(LOCK_KEY)


def _skip_best_effort(request: pytest.FixtureRequest) -> None:
    if request.node.callspec.params.get("artifact_store") == "swift":
        pytest.skip("Swift has no conditional put: its best-effort lock does not promise this (documented)")


def test_concurrent_runs_exactly_one_wins(artifact_store: Any, request: pytest.FixtureRequest) -> None:
    """Runs that start at the same moment: one holds the lock, every other gets LockHeld."""
    _skip_best_effort(request)
    n = 4
    barrier = threading.Barrier(n)
    won: list[str] = []
    lost: list[str] = []
    locks = [RunLock(artifact_store, owner=f"run-{i}", ttl_s=600) for i in range(n)]

    def attempt(lock: RunLock) -> None:
        barrier.wait()
        try:
            lock.acquire()
            won.append(lock.owner)
        except LockHeld:
            lost.append(lock.owner)

    threads = [threading.Thread(target=attempt, args=(lock,)) for lock in locks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(won) == 1 and len(lost) == n - 1
    for lock in locks:
        lock.release()
    assert not artifact_store.exists(LOCK_KEY)


def test_concurrent_takeover_of_an_expired_lock_has_one_winner(artifact_store: Any,
                                                              request: pytest.FixtureRequest) -> None:
    """Several runs find the same expired lock at once: exactly one takes it over."""
    _skip_best_effort(request)
    RunLock(artifact_store, owner="killed run", ttl_s=-1).acquire()
    n = 4
    barrier = threading.Barrier(n)
    won: list[RunLock] = []
    locks = [RunLock(artifact_store, owner=f"taker-{i}", ttl_s=600) for i in range(n)]

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
    assert len(won) == 1
    assert json.loads(artifact_store.get_bytes(LOCK_KEY))["token"] == won[0].token
    won[0].release()


@pytest.mark.swift
def test_swift_falls_back_to_the_best_effort_lock(swift_bucket: Any) -> None:
    """Swift answers NotImplemented to If-None-Match: the lock says so and still stops a second run."""
    from job.store import open_store

    store = open_store(swift_bucket.uri)
    with RunLock(store, owner="swift run", ttl_s=600, settle_s=0.05) as lock:
        assert lock.mode == "best-effort"
        with pytest.raises(LockHeld, match="swift run"):
            RunLock(store, owner="second", ttl_s=600, settle_s=0.05).acquire()
    assert not store.exists(LOCK_KEY)


def test_an_unreadable_lock_file_counts_as_expired(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put_bytes(LOCK_KEY, b"not json")
    with RunLock(store, owner="after garbage", ttl_s=600):
        assert json.loads(store.get_bytes(LOCK_KEY))["owner"] == "after garbage"
