"""Run a blocking call under the job's own deadline (yfinance and fredapi can hang for minutes)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from job.errors import UpstreamUnavailable

T = TypeVar("T")


def call_with_deadline(fn: Callable[[], T], *, seconds: float, what: str) -> T:
    """Return ``fn()``, or raise UpstreamUnavailable when it takes longer than ``seconds``.

    ``fn`` runs in a daemon thread that is abandoned on timeout, so the process can exit with code 4
    at once. (A ThreadPoolExecutor worker would not do: the interpreter joins those at exit, so a hung
    download kept the process alive for minutes after the deadline.) Exceptions of ``fn`` propagate.
    """
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = fn()
        except BaseException as exc:  # handed to the caller's thread below
            result["error"] = exc

    worker = threading.Thread(target=target, name=f"deadline:{what}", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise UpstreamUnavailable(f"{what} did not answer within {seconds:g} s",
                                  hint="check the network, or raise data.download_timeout_s")
    if "error" in result:
        raise result["error"]
    return result["value"]
