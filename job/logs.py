"""Logging: human text on a terminal, one JSON object per line for Kubernetes (``--log-format json``).

Structured fields go in ``extra={"fields": {...}}``; both formats show them. Secrets never reach a log:
:class:`RedactSecrets` replaces the value of any secret environment variable in every message.

Every line of a run carries its ``run_id`` and ``as_of`` month, so one month's lines can be picked out of
a Kubernetes log stream: the stage layer calls :func:`bind` (a context manager) or :func:`set_context` as
soon as it knows them, and :class:`AddContext` puts the bound values on every record (JSON: fields of
the object; text: a ``[as_of run_id]`` prefix). The values live in a context variable, with a
process-wide copy as the fallback for threads started inside the run (thread pools start with an empty
context).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from job.config import SECRET_ENV

LOGGER_NAME = "rotation"
CONTEXT_KEYS = ("as_of", "run_id")  # shown first, in this order, by the text format

_context: ContextVar[Mapping[str, str]] = ContextVar("rotation_log_context", default=MappingProxyType({}))
_process_context: Mapping[str, str] = MappingProxyType({})  # for threads that did not inherit the context


def _updated(base: Mapping[str, str], fields: dict[str, Any]) -> Mapping[str, str]:
    out = dict(base)
    for key, value in fields.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = str(value)
    return MappingProxyType(out)


def log_context() -> dict[str, str]:
    """The values every log record gets now (``{"run_id": ..., "as_of": ...}`` inside a run)."""
    return {**_process_context, **_context.get()}


def set_context(**fields: Any) -> None:
    """Put ``fields`` on every later log line of this process (``None`` removes a field).

    Sets the current context and the process-wide fallback, so threads started later carry them too.
    """
    global _process_context
    _context.set(_updated(_context.get(), fields))
    _process_context = _updated(_process_context, fields)


@contextmanager
def bind(**fields: Any) -> Iterator[dict[str, str]]:
    """``with bind(run_id=r, as_of="2025-01"):`` every log line inside carries them, threads included.

    The previous values are restored on the way out, so nested or successive runs in one process (tests)
    never leak their ids into each other's lines.
    """
    global _process_context
    token = _context.set(_updated(_context.get(), fields))
    previous = _process_context
    _process_context = _updated(_process_context, fields)
    try:
        yield log_context()
    finally:
        _context.reset(token)
        _process_context = previous


class AddContext(logging.Filter):
    """Put the bound context (:func:`bind`) on each record as ``record.context``."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.context = log_context()
        return True


def _context_of(record: logging.LogRecord) -> Mapping[str, str]:
    context = getattr(record, "context", None)
    return log_context() if context is None else context


def get_logger(name: str | None = None) -> logging.Logger:
    """A child of the job's logger (``rotation.<name>``)."""
    return logging.getLogger(LOGGER_NAME if not name else f"{LOGGER_NAME}.{name}")


def _secrets() -> list[str]:
    return [os.environ[n] for n in SECRET_ENV if len(os.environ.get(n, "")) >= 4]


def redact(text: str) -> str:
    """``text`` with the value of every secret environment variable replaced by ``****``."""
    for secret in _secrets():
        text = text.replace(secret, "****")
    return text


class RedactSecrets(logging.Filter):
    """Replace secret values (FRED_API_KEY, AWS keys) by ``****`` in a record's message.

    The formatters below also redact their whole output line, which covers structured ``fields`` and
    tracebacks (an exception message can quote a URL holding the API key).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if _secrets():
            record.msg, record.args = redact(record.getMessage()), None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        payload.update(_context_of(record))
        payload.update(getattr(record, "fields", {}) or {})
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return redact(json.dumps(payload, default=str))


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        extra = getattr(record, "fields", {}) or {}
        tail = " ".join(f"{k}={v}" for k, v in extra.items())
        context = _context_of(record)
        ordered = [context[k] for k in CONTEXT_KEYS if k in context]
        ordered += [f"{k}={v}" for k, v in context.items() if k not in CONTEXT_KEYS]
        prefix = f"[{' '.join(ordered)}] " if ordered else ""
        line = f"{ts} {record.levelname.lower():7s} {prefix}{record.getMessage()}" + (f"  {tail}" if tail else "")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return redact(line)


def configure(*, verbose: bool = False, fmt: str = "text", stream: Any = None) -> None:
    """Set up the job's logger once per invocation (idempotent: replaces earlier handlers)."""
    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RedactSecrets())
    handler.addFilter(AddContext())
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False
    # Third-party chatter stays out of the job's log unless asked for.
    for noisy in ("great_expectations", "botocore", "boto3", "urllib3", "yfinance", "tensorflow",
                  "absl", "matplotlib", "numexpr", "h5py"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)
    _state["format"] = fmt


_state: dict[str, str] = {"format": "text"}


def log_format() -> str:
    """The format chosen by :func:`configure` (``text`` or ``json``)."""
    return _state["format"]
