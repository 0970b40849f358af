"""Where walk-forward fits run: in this process, in a local process pool, or on a Dask cluster.

An executor runs one function, ``fn(task, shared)``, over tasks submitted one by one, and yields
``(task, result)`` pairs as they complete, in completion order; more tasks may be submitted while
iterating (a refit that carries a hyperparameter search's choice is submitted when that search ends).
``shared`` (the dataset) travels to each worker once: to each pool worker in its initializer, to a Dask
cluster with ``client.scatter(shared, broadcast=True)``.

- :class:`InProcess`: sequential, in this process (``n_jobs=1``, and the LSTM locally: TensorFlow uses
  both cores for one fit, and a worker would import its own TensorFlow, about 2 GB).
- :class:`LocalPool`: a ``spawn`` process pool whose workers die with this process (Linux
  ``PR_SET_PDEATHSIG``): a run killed with SIGKILL leaves no worker behind. Tasks marked ``local_only``
  run in this process after the pool's tasks.
- :class:`DaskCluster`: every task (the LSTM's included) on the cluster at ``address``; each worker
  process imports its own TensorFlow. A worker that dies costs only its task: the scheduler runs it
  again elsewhere, and after ``distributed.scheduler.allowed-failures`` deaths the run stops with
  :class:`WorkerLost`, one line; whatever finished is already stored by the caller.

:func:`executor` chooses: a scheduler address (argument, else ``DASK_SCHEDULER_ADDRESS``) gives a Dask
cluster; otherwise a pool of ``n_jobs`` processes, or this process when ``n_jobs == 1``.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import pickle
import signal
import sys
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, CancelledError, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from types import TracebackType
from typing import Any, Protocol

from job.errors import ExitCode, RotationError
from job.logs import get_logger

log = get_logger("cluster")

SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
TaskFn = Callable[[Any, Any], Any]


class WorkerLost(RotationError):
    """A worker process died (killed, out of memory) and its task could not be completed."""

    exit_code = ExitCode.UNEXPECTED


class ClusterUnavailable(RotationError):
    """The Dask scheduler could not be reached."""

    exit_code = ExitCode.UNEXPECTED


class Executor(Protocol):
    """Runs ``fn(task, shared)`` for submitted tasks; see the module docstring."""

    kind: str

    def submit(self, task: Any, *, label: str, local_only: bool = False) -> None:
        """Queue ``task``; ``label`` names it in logs and errors."""
        ...

    def completed(self) -> Iterator[tuple[Any, Any]]:
        """``(task, result)`` as tasks finish; ends when nothing is left. Re-raises a task's exception."""
        ...

    def close(self, *, failed: bool = False) -> None:
        """Release workers; ``failed``: stop running tasks instead of waiting for them."""
        ...


def scheduler_address(cluster: str | None = None) -> str | None:
    """``cluster``, else ``$DASK_SCHEDULER_ADDRESS``, else None (no cluster)."""
    return cluster or os.environ.get(SCHEDULER_ENV) or None


def executor(fn: TaskFn, shared: Any, *, n_jobs: int = 1, cluster: str | None = None) -> Executor:
    """The executor for this run (see the module docstring). Nothing starts until the first submit."""
    address = scheduler_address(cluster)
    if address:
        return DaskCluster(fn, shared, address)
    if n_jobs > 1:
        return LocalPool(fn, shared, n_jobs)
    return InProcess(fn, shared)


class _Base:
    kind = "base"

    def __enter__(self) -> _Base:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close(failed=exc_type is not None)

    def close(self, *, failed: bool = False) -> None:
        return None


class InProcess(_Base):
    """Runs each task in this process when :meth:`completed` reaches it."""

    kind = "in-process"

    def __init__(self, fn: TaskFn, shared: Any) -> None:
        self._fn, self._shared = fn, shared
        self._queue: deque[tuple[Any, str]] = deque()

    def submit(self, task: Any, *, label: str, local_only: bool = False) -> None:
        self._queue.append((task, label))

    def completed(self) -> Iterator[tuple[Any, Any]]:
        while self._queue:
            task, _ = self._queue.popleft()
            yield task, self._fn(task, self._shared)


# ---- the local pool ------------------------------------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def die_with_parent(parent: int) -> None:
    """Ask Linux to SIGKILL this process when its parent dies (no-op elsewhere); exit at once if the
    parent is already gone (it died between the spawn and this call)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
    if os.getppid() != parent:
        os._exit(1)


def _init_worker(parent: int, payload: bytes) -> None:
    # First, before unpickling the function and the dataset (imports of pandas, scikit-learn: seconds on a
    # loaded machine), so that a parent killed meanwhile takes this worker with it.
    die_with_parent(parent)
    # Ctrl-C reaches the whole process group; the parent decides what stops (and terminates the pool).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _WORKER["fn"], _WORKER["shared"] = pickle.loads(payload)  # from our own parent process, not from storage


def _run_in_worker(task: Any) -> Any:
    return _WORKER["fn"](task, _WORKER["shared"])


class LocalPool(_Base):
    """``n_jobs`` spawned worker processes that die with this process; ``local_only`` tasks run here."""

    kind = "local-pool"

    def __init__(self, fn: TaskFn, shared: Any, n_jobs: int) -> None:
        self._fn, self._shared, self._n_jobs = fn, shared, n_jobs
        self._pool: ProcessPoolExecutor | None = None
        self._futures: dict[Future[Any], tuple[Any, str]] = {}
        self._local: deque[tuple[Any, str]] = deque()

    def _ensure_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self._n_jobs, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_init_worker,
                                             initargs=(os.getpid(), pickle.dumps((self._fn, self._shared))))
        return self._pool

    def submit(self, task: Any, *, label: str, local_only: bool = False) -> None:
        if local_only:
            self._local.append((task, label))
            return
        self._futures[self._ensure_pool().submit(_run_in_worker, task)] = (task, label)

    def completed(self) -> Iterator[tuple[Any, Any]]:
        while self._futures or self._local:
            if not self._futures:
                task, _ = self._local.popleft()
                yield task, self._fn(task, self._shared)
                continue
            done, _ = wait(list(self._futures), return_when=FIRST_COMPLETED)
            for future in done:
                task, label = self._futures.pop(future)
                try:
                    result = future.result()
                except BrokenProcessPool:
                    raise WorkerLost(f"a local worker process died while fitting {label} (killed, or out of memory)",
                                     hint="fits finished before it are stored; run again to resume") from None
                yield task, result

    @property
    def pids(self) -> list[int]:
        """The worker processes' ids (for tests)."""
        return [p.pid for p in getattr(self._pool, "_processes", {}).values() if p.pid]

    def close(self, *, failed: bool = False) -> None:
        if self._pool is None:
            return
        if failed:
            # An LSTM or seed-size fit can run for minutes; do not wait for it after a failure or a signal.
            # (ProcessPoolExecutor has no public terminate before Python 3.14.)
            for process in list(getattr(self._pool, "_processes", {}).values()):
                process.terminate()
        self._pool.shutdown(wait=True, cancel_futures=failed)
        self._pool = None


# ---- Dask ---------------------------------------------------------------------------------------------------

class DaskCluster(_Base):
    """Tasks on the Dask cluster at ``address``; ``shared`` scattered to every worker once."""

    kind = "dask"

    def __init__(self, fn: TaskFn, shared: Any, address: str, *, connect_timeout_s: float = 30.0) -> None:
        self._fn, self._shared, self.address = fn, shared, address
        self._timeout = connect_timeout_s
        self._client: Any = None
        self._shared_future: Any = None
        self._pending: Any = None
        self._tasks: dict[str, tuple[Any, str]] = {}
        self._futures: dict[str, Any] = {}
        self._resent = 0
        self.max_resends = 3

    def _connect(self) -> None:
        from distributed import Client, as_completed

        try:
            self._client = Client(self.address, timeout=self._timeout, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise ClusterUnavailable(f"cannot reach the Dask scheduler at {self.address}: {exc}",
                                     hint="check --cluster / DASK_SCHEDULER_ADDRESS and that the scheduler runs; "
                                          "without it the run uses the local pool") from None
        workers = self._client.scheduler_info().get("workers", {})
        log.info("dask cluster %s: %d workers", self.address, len(workers),
                 extra={"fields": {"scheduler": self.address, "workers": len(workers)}})
        self._shared_future = self._client.scatter(self._shared, broadcast=True, hash=False)
        self._pending = as_completed(with_results=False, loop=self._client.loop)

    def submit(self, task: Any, *, label: str, local_only: bool = False) -> None:
        if self._client is None:
            self._connect()
        key = f"fit-{label}-{uuid.uuid4().hex[:8]}".replace("/", "_")
        future = self._client.submit(self._fn, task, self._shared_future, key=key, pure=False)
        self._tasks[future.key] = (task, label)
        self._futures[future.key] = future
        self._pending.add(future)

    def completed(self) -> Iterator[tuple[Any, Any]]:
        if self._pending is None:
            return
        from distributed import KilledWorker

        for future in self._pending:
            task, label = self._tasks.pop(future.key)
            self._futures.pop(future.key, None)
            try:
                result = future.result()
            except KilledWorker:
                raise WorkerLost(f"Dask workers died running the fit {label} (KilledWorker)",
                                 hint="fits finished before it are stored; check the workers' memory limit, "
                                      "then run again to resume") from None
            except CancelledError:
                # Every worker holding the scattered dataset died at once (it lives only on workers): send it
                # again and resubmit, a bounded number of times.
                if self._resent >= self.max_resends:
                    raise WorkerLost(f"Dask workers died running the fit {label} and the dataset was lost "
                                     f"{self._resent + 1} times",
                                     hint="fits finished before it are stored; check the workers, then run "
                                          "again to resume") from None
                self._resent += 1
                log.warning("the dataset was lost with the workers holding it; sending it again (%s)", label)
                self._shared_future = self._client.scatter(self._shared, broadcast=True, hash=False)
                self.submit(task, label=label)
                continue
            yield task, result

    def close(self, *, failed: bool = False) -> None:
        if self._client is None:
            return
        try:
            if self._futures:
                self._client.cancel(list(self._futures.values()))
            self._client.close()
        finally:
            self._client = None


__all__ = ["SCHEDULER_ENV", "ClusterUnavailable", "DaskCluster", "Executor", "InProcess", "LocalPool", "WorkerLost",
           "die_with_parent", "executor", "scheduler_address"]
