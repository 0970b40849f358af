"""Logging: text or one JSON object per line, secrets redacted everywhere, progress as log lines."""

from __future__ import annotations

import io
import json
import logging

import pytest

from job.logs import configure, get_logger, log_format, redact
from job.progress import Progress, progress

SECRET = "supersecretvalue123"


@pytest.fixture
def stream() -> io.StringIO:
    buffer = io.StringIO()
    yield buffer
    configure()  # back to the default handler on stderr


def _log_everything(logger: logging.Logger) -> None:
    logger.info("calling %s", f"https://api/?api_key={SECRET}", extra={"fields": {"url": f"?api_key={SECRET}"}})
    try:
        raise ValueError(f"rejected key {SECRET}")
    except ValueError:
        logger.exception("download failed")


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_secrets_are_redacted_in_messages_fields_and_tracebacks(monkeypatch, stream, fmt: str) -> None:
    """The FRED key never reaches a log line, not even via structured fields or an exception's text."""
    monkeypatch.setenv("FRED_API_KEY", SECRET)
    configure(verbose=True, fmt=fmt, stream=stream)
    _log_everything(get_logger("test"))
    text = stream.getvalue()
    assert SECRET not in text
    assert text.count("****") >= 3
    assert redact(f"x{SECRET}y") == "x****y"


def test_json_format_is_one_object_per_line_with_fields(stream) -> None:
    configure(fmt="json", stream=stream)
    assert log_format() == "json"
    get_logger("warehouse").info("ingested %d rows", 5, extra={"fields": {"source": "sample", "rows": 5}})
    get_logger("warehouse").debug("not shown without -v")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["msg"] == "ingested 5 rows"
    assert record["level"] == "info"
    assert record["logger"] == "rotation.warehouse"
    assert record["source"] == "sample" and record["rows"] == 5
    assert "ts" in record


def test_text_format_shows_fields_and_verbose_debug(stream) -> None:
    configure(verbose=True, fmt="text", stream=stream)
    get_logger().debug("detail", extra={"fields": {"k": "v"}})
    line = stream.getvalue().strip()
    assert "debug" in line and "detail" in line and "k=v" in line


def test_configure_is_idempotent(stream) -> None:
    """Configuring twice (one per CLI invocation in a process) never duplicates log lines."""
    configure(fmt="text", stream=stream)
    configure(fmt="text", stream=stream)
    get_logger().info("once")
    assert stream.getvalue().count("once") == 1


def test_progress_off_a_terminal_logs_structured_steps(stream) -> None:
    """Without a TTY, progress becomes log lines with step/total fields (what a CronJob's log shows)."""
    configure(fmt="json", stream=stream)
    assert list(progress(range(3), "folds", model="ridge")) == [0, 1, 2]
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert records[0]["step"] == 1 and records[-1]["step"] == 3
    assert all(r["total"] == 3 and r["model"] == "ridge" for r in records)
    with Progress("epochs", None, min_interval_s=3600) as bar:
        bar.update(loss=0.5)
    assert json.loads(stream.getvalue().splitlines()[-1])["loss"] == 0.5
