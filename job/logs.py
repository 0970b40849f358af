"""Logging: human text on a terminal, one JSON object per line for Kubernetes (``--log-format json``).

Structured fields go in ``extra={"fields": {...}}``; both formats show them. Secrets never reach a log:
:class:`RedactSecrets` replaces the value of any secret environment variable in every message.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any

from job.config import SECRET_ENV

LOGGER_NAME = "rotation"


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
        payload.update(getattr(record, "fields", {}) or {})
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return redact(json.dumps(payload, default=str))


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        extra = getattr(record, "fields", {}) or {}
        tail = " ".join(f"{k}={v}" for k, v in extra.items())
        line = f"{ts} {record.levelname.lower():7s} {record.getMessage()}" + (f"  {tail}" if tail else "")
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
