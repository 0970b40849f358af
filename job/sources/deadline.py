"""Run a blocking call under the job's own deadline (yfinance and fredapi can hang for minutes)."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from typing import TypeVar

from job.errors import UpstreamUnavailable

T = TypeVar("T")


def call_with_deadline(fn: Callable[[], T], *, seconds: float, what: str) -> T:
    """Return ``fn()``, or raise UpstreamUnavailable when it takes longer than ``seconds``.

    The worker thread is abandoned (daemon) on timeout: the process exits with code 4 anyway.
    """
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="deadline")
    future = pool.submit(fn)
    try:
        return future.result(timeout=seconds)
    except concurrent.futures.TimeoutError:
        raise UpstreamUnavailable(f"{what} did not answer within {seconds:.0f} s",
                                  hint="check the network, or raise data.download_timeout_s") from None
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
