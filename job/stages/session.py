"""One writing command's session: the run lock, a run id, the log context, stage timings, a Publisher.

Every command that writes to the store (``run``, ``train``, ``forecast``, ``backtest``, ``report``,
``validate`` when it records a failure) opens a :class:`Session` first, so no two writers ever overlap
and a month's manifest is only written by a lock holder.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from job.logs import bind, get_logger, set_context
from job.store.base import Store
from job.store.publish import Mode, Publisher, new_run_id

log = get_logger("run")


class Session:
    """What a writing command holds while it works (see :func:`session`)."""

    def __init__(self, store: Store, settings: Any, command: str, lock: Any, run_id: str) -> None:
        self.store = store
        self.settings = settings
        self.command = command
        self.lock = lock
        self.run_id = run_id
        self.timings: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the stage ``name`` and log its start and end."""
        log.info("stage %s", name, extra={"fields": {"stage": name, "event": "start"}})
        began = time.perf_counter()
        try:
            yield
        finally:
            seconds = time.perf_counter() - began
            self.timings[name] = self.timings.get(name, 0.0) + seconds
            log.info("stage %s done in %.1f s", name, seconds,
                     extra={"fields": {"stage": name, "event": "end", "seconds": round(seconds, 3)}})

    def publisher(self, as_of: str, *, mode: Mode) -> Publisher:
        """A Publisher for ``as_of`` under this session's run id and lock (and ``as_of`` on every log line)."""
        set_context(as_of=as_of)
        return Publisher(self.store, as_of, self.run_id, command=self.command, mode=mode, lock=self.lock)


@contextmanager
def session(store: Store, settings: Any, command: str, *, as_of: str | None = None) -> Iterator[Session]:
    """Take the store's run lock for ``command`` (waiting up to ``store.lock_wait_s``) and yield a Session.

    Every log line inside carries the run id and, once known, the month (:func:`job.logs.bind`).
    Raises LockHeld (exit 6) when a live holder keeps the lock longer than the wait, StoreUnavailable
    (exit 5) when the store cannot be reached. The lock is released on every way out.
    """
    from job.store.lock import run_lock

    run_id = new_run_id()
    owner = f"rotation {command}{' ' + as_of if as_of else ''} {run_id}"  # the lock adds host and pid
    with bind(run_id=run_id, as_of=as_of), run_lock(store, settings, owner=owner) as lock:
        yield Session(store, settings, command, lock, run_id)
