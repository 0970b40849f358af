"""Retries for the network sources (Yahoo, FRED/ALFRED, FRED-MD URLs): exponential backoff with jitter.

Only transient failures are retried: timeouts, HTTP 429 (rate limited; a ``Retry-After`` of a few
seconds is honoured) and HTTP 5xx. Anything else (no DNS, connection refused, 4xx, a bad answer) fails
at once. Retrying stops after ``data.retry_attempts`` attempts or when the next attempt would start past
the source's deadline (``job/sources/deadline.py``), whichever comes first; the last failure then
becomes :class:`UpstreamUnavailable` (exit 4), so one 429 among ~130 ALFRED calls no longer fails the run.
"""

from __future__ import annotations

import socket
import time
import urllib.error
from collections.abc import Callable
from typing import Any, TypeVar

import tenacity

from job.errors import UpstreamUnavailable
from job.logs import get_logger

log = get_logger("sources.retry")
T = TypeVar("T")

DEFAULT_ATTEMPTS = 5
DEFAULT_INITIAL_WAIT_S = 1.0
MAX_WAIT_S = 30.0
MAX_RETRY_AFTER_S = 60.0


class TransientUpstream(Exception):
    """A failure worth retrying (rate limited, a 5xx, a timeout), raised by a source's own checks."""

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def http_status(exc: BaseException) -> int | None:
    """The HTTP status of a requests or urllib error, when it carries one."""
    if isinstance(exc, urllib.error.HTTPError):
        return int(exc.code)
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return int(status) if isinstance(status, int) else None


def is_transient(exc: BaseException) -> bool:
    """Timeouts, HTTP 429 and 5xx (and our own :class:`TransientUpstream`)."""
    if isinstance(exc, TransientUpstream):
        return True
    status = http_status(exc)
    if status is not None:
        return status == 429 or 500 <= status < 600
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return True
    try:
        import requests

        if isinstance(exc, requests.Timeout):
            return True
    except ImportError:  # pragma: no cover - requests is a dependency
        pass
    if isinstance(exc, urllib.error.URLError):
        return isinstance(exc.reason, (TimeoutError, socket.timeout))
    return False


def retry_after(exc: BaseException | None) -> float | None:
    """Seconds asked for by a ``Retry-After`` header (or a TransientUpstream), when given as a number."""
    if exc is None:
        return None
    if isinstance(exc, TransientUpstream):
        return exc.retry_after_s
    headers: Any = getattr(exc, "headers", None) or getattr(getattr(exc, "response", None), "headers", None)
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return min(float(value), MAX_RETRY_AFTER_S) if value is not None else None
    except (TypeError, ValueError):
        return None


def describe(exc: BaseException) -> str:
    status = http_status(exc)
    return f"HTTP {status}" if status is not None else f"{type(exc).__name__}: {exc}"


def with_retries(fn: Callable[[], T], *, what: str, deadline_at: float, attempts: int = DEFAULT_ATTEMPTS,
                 initial_wait_s: float = DEFAULT_INITIAL_WAIT_S, hint: str | None = None) -> T:
    """``fn()``, retried on transient failures until ``attempts`` or ``deadline_at`` (``time.monotonic``).

    A non-transient exception propagates unchanged at once (the caller maps it); exhausted retries raise
    UpstreamUnavailable naming the last failure.
    """
    backoff = tenacity.wait_exponential_jitter(multiplier=initial_wait_s, max=MAX_WAIT_S, jitter=initial_wait_s)

    def wait(state: tenacity.RetryCallState) -> float:
        asked = retry_after(state.outcome.exception() if state.outcome else None)
        return max(backoff(state), asked or 0.0)

    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning("%s: %s; retry %d of %d in %.1f s", what, describe(exc) if exc else "failed",
                    state.attempt_number, attempts - 1, state.next_action.sleep if state.next_action else 0.0)

    def past_deadline(state: tenacity.RetryCallState) -> bool:
        upcoming = state.upcoming_sleep if state.upcoming_sleep else 0.0
        return time.monotonic() + upcoming >= deadline_at

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(is_transient),
        wait=wait,
        stop=tenacity.stop_after_attempt(max(1, attempts)) | past_deadline,
        before_sleep=before_sleep,
        reraise=True,
        sleep=time.sleep,
    )
    try:
        return retrying(fn)
    except BaseException as exc:
        if is_transient(exc):
            raise UpstreamUnavailable(f"{what} failed after retries ({describe(exc)})",
                                      hint=hint or "retry later; the CronJob retries this") from None
        raise


def retry_settings(settings: Any) -> dict[str, Any]:
    """``attempts`` and ``initial_wait_s`` from ``data.retry_attempts`` / ``data.retry_initial_wait_s``.

    Read leniently (attribute, then the raw configuration, then the defaults here) so that the keys work
    whichever way the configuration layer exposes them.
    """
    data = getattr(settings, "data", None)
    raw = (getattr(settings, "raw", None) or {}).get("data", {})

    def get(key: str, default: Any) -> Any:
        value = getattr(data, key, None)
        return raw.get(key, default) if value is None else value

    return {"attempts": int(get("retry_attempts", DEFAULT_ATTEMPTS)),
            "initial_wait_s": float(get("retry_initial_wait_s", DEFAULT_INITIAL_WAIT_S))}
