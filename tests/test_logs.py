"""Logging: text or one JSON object per line, secrets redacted everywhere, progress as log lines, and the
run's run_id and as_of on every line of it (threads included)."""

from __future__ import annotations

import io
import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from job.logs import bind, configure, get_logger, log_context, log_format, redact, set_context
from job.progress import Progress, progress

SECRET = "supersecretvalue123"
RUN_ID = "20250203T040506Z-3f9a2c"


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


def _records(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_of_a_run_carry_run_id_and_as_of_and_only_inside_it(stream) -> None:
    """One month's lines can be picked out of a Kubernetes log stream by as_of or run_id."""
    configure(fmt="json", stream=stream)
    log = get_logger("stage")
    log.info("before the run")
    with bind(run_id=RUN_ID, as_of="2025-01"):
        log.info("stage %s", "ingest", extra={"fields": {"stage": "ingest"}})
        log.warning("deep inside")
    log.info("after the run")
    before, inside, warning, after = _records(stream)
    assert "run_id" not in before and "as_of" not in before
    assert inside["run_id"] == RUN_ID and inside["as_of"] == "2025-01" and inside["stage"] == "ingest"
    assert warning["run_id"] == RUN_ID and warning["as_of"] == "2025-01"
    assert "run_id" not in after and "as_of" not in after


def test_text_lines_of_a_run_start_with_as_of_and_run_id(stream) -> None:
    configure(fmt="text", stream=stream)
    with bind(run_id=RUN_ID, as_of="2025-01"):
        get_logger().info("published", extra={"fields": {"rows": 12}})
    get_logger().info("outside")
    inside, outside = stream.getvalue().splitlines()
    assert f"info    [2025-01 {RUN_ID}] published  rows=12" in inside
    assert "[" not in outside and outside.endswith("info    outside")


def test_threads_started_in_a_run_carry_its_context(stream) -> None:
    """Pool threads (started before the run, with an empty context) and new threads log the run's ids."""
    configure(fmt="json", stream=stream)
    log = get_logger("pool")
    with ThreadPoolExecutor(max_workers=2) as pool:
        pool.submit(log.info, "warm-up").result()  # the pool's thread exists before the run binds
        with bind(run_id=RUN_ID, as_of="2025-01"):
            pool.submit(log.info, "from the pool").result()
            thread = threading.Thread(target=log.info, args=("from a thread",))
            thread.start()
            thread.join()
        pool.submit(log.info, "pool after the run").result()
    by_msg = {r["msg"]: r for r in _records(stream)}
    assert "run_id" not in by_msg["warm-up"]
    for msg in ("from the pool", "from a thread"):
        assert (by_msg[msg]["run_id"], by_msg[msg]["as_of"]) == (RUN_ID, "2025-01"), msg
    assert "run_id" not in by_msg["pool after the run"]


def test_nested_bind_restores_and_set_context_is_a_plain_setter(stream) -> None:
    configure(fmt="json", stream=stream)
    with bind(run_id=RUN_ID, as_of="2025-01"):
        with bind(as_of="2024-12"):  # e.g. a backtest month inside the run
            assert log_context() == {"run_id": RUN_ID, "as_of": "2024-12"}
        assert log_context() == {"run_id": RUN_ID, "as_of": "2025-01"}
    assert log_context() == {}
    try:
        set_context(run_id=RUN_ID, as_of="2025-02")
        get_logger().info("set")
        assert _records(stream)[-1]["as_of"] == "2025-02"
        set_context(as_of=None)  # None removes a field
        assert log_context() == {"run_id": RUN_ID}
    finally:
        set_context(run_id=None, as_of=None)
    assert log_context() == {}


def test_progress_lines_carry_the_run_context(stream) -> None:
    configure(fmt="json", stream=stream)
    with bind(run_id=RUN_ID, as_of="2025-01"):
        list(progress(range(2), "folds"))
    assert all(r["run_id"] == RUN_ID and r["as_of"] == "2025-01" for r in _records(stream))
