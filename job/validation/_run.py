"""Run the suites with Great Expectations: one ephemeral context per run, pandas batches, no progress bars."""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import duckdb
import pandas as pd

from job.config import Settings
from job.dataset import Dataset
from job.logs import get_logger
from job.validation._frames import FRAMES, FrameContext, expectation_parameters
from job.validation._report import MAX_EXAMPLES, CheckResult, SuiteResult, ValidationReport, format_example, plain
from job.validation._suites import Check, Suite, load_suites

log = get_logger("validation")


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence GX's warnings and info logging for the run (``--verbose`` still shows its log)."""
    gx_logger = logging.getLogger("great_expectations")
    level = gx_logger.level
    if not log.isEnabledFor(logging.DEBUG):
        gx_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        gx_logger.setLevel(level)


def _context() -> Any:
    """An ephemeral GX context with progress bars off and a pandas data source named ``frames``."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    return ctx


def _message(check: Check, result: dict[str, Any], examples: list[Any], error: str | None, shown: int = 3) -> str:
    """One human line: what the check promises, what was found, and the first ``shown`` unexpected rows."""
    if error:
        return f"{check.description}: could not run ({error})"
    count, total = result.get("unexpected_count"), result.get("element_count")
    if count is not None:
        text = "; ".join(format_example(e) for e in examples[:shown])
        return f"{check.description}: {count} of {total} rows unexpected" + (f", e.g. {text}" if text else "")
    kwargs = check.config.get("kwargs", {})
    expected = {k: kwargs[k] for k in ("value", "min_value", "max_value") if k in kwargs}
    wanted = " ".join(f"{k}={plain(v)}" for k, v in expected.items())
    return f"{check.description}: observed {plain(result.get('observed_value'))}" + (
        f", expected {wanted}" if wanted else "")


def _examples(result: dict[str, Any], column: str | None) -> list[Any]:
    """A few unexpected rows: the index-column dicts GX returns, else the unexpected values."""
    rows = result.get("partial_unexpected_index_list") or []
    if rows and isinstance(rows[0], dict):
        # Put the key columns first and the checked column last: "asset=VGT month=2015-06 ret=3".
        cols = [c for c in (column or "").split(",") if c]
        return [{**{k: v for k, v in r.items() if k not in cols}, **{k: r[k] for k in cols if k in r}}
                for r in rows[:MAX_EXAMPLES]]
    return list(result.get("partial_unexpected_list") or [])[:MAX_EXAMPLES]


def _check_result(check: Check, outcome: Any) -> CheckResult:
    result = dict(outcome.result or {})
    info = outcome.exception_info or {}
    error = None
    if info.get("raised_exception"):
        error = str(info.get("exception_message") or "error").splitlines()[0]
    elif info and "raised_exception" not in info:  # several metrics failed: {metric_id: {...}}
        messages = [v.get("exception_message") for v in info.values() if isinstance(v, dict)
                    and v.get("raised_exception")]
        if messages:
            error = str(messages[0]).splitlines()[0]
    examples = _examples(result, check.column)
    bad = not outcome.success or error is not None
    return CheckResult(
        suite=check.suite, check=check.name, frame=check.frame, expectation_type=check.expectation_type,
        column=check.column, severity=check.severity, success=bool(outcome.success) and error is None,
        message=_message(check, result, examples, error) if bad else check.description,
        headline=_message(check, result, examples, error, shown=1) if bad else check.description,
        unexpected_count=result.get("unexpected_count"), element_count=result.get("element_count"),
        examples=plain(examples), observed_value=plain(result.get("observed_value")), hint=check.hint,
    )


def _skipped(check: Check, reason: str) -> CheckResult:
    return CheckResult(suite=check.suite, check=check.name, frame=check.frame,
                       expectation_type=check.expectation_type, column=check.column, severity=check.severity,
                       success=False, message=f"{check.description}: not run ({reason})", skipped=reason)


def run_suites(suites: list[Suite], fctx: FrameContext) -> list[SuiteResult]:
    """Build each frame the suites need once, validate its expectations in one GX call per frame."""
    import great_expectations as gx

    ctx = _context()
    source = ctx.data_sources.add_pandas("frames")
    params = expectation_parameters(fctx)
    frames: dict[str, pd.DataFrame] = {}
    outcomes: dict[tuple[str, str], CheckResult] = {}
    by_frame: dict[str, list[Check]] = {}
    for suite in suites:
        for check in suite.checks:
            by_frame.setdefault(check.frame, []).append(check)
    for name, checks in by_frame.items():
        frame = FRAMES[name]
        if frame.needs_dataset and fctx.dataset is None:
            for check in checks:
                outcomes[(check.suite, check.name)] = _skipped(check, "no dataset: it could not be built")
            continue
        started = time.perf_counter()
        frames[name] = frame.build(fctx)
        batch = (source.add_dataframe_asset(name).add_batch_definition_whole_dataframe(name)
                 .get_batch(batch_parameters={"dataframe": frames[name]}))
        suite = gx.ExpectationSuite(name=f"frame.{name}", expectations=[c.config for c in checks])
        keys = [k for k in frame.keys if k in frames[name].columns]
        validated = batch.validate(suite, expectation_parameters=params, result_format={
            "result_format": "SUMMARY", "partial_unexpected_count": MAX_EXAMPLES,
            "unexpected_index_column_names": keys})
        # GX returns results in suite order; match them by the expectation's meta.check to be safe.
        by_name = {r.expectation_config.meta.get("check"): r for r in validated.results}
        for check, outcome in zip(checks, validated.results, strict=True):
            outcome = by_name.get(check.config["meta"].get("check"), outcome)
            outcomes[(check.suite, check.name)] = _check_result(check, outcome)
        log.debug("validated frame %s (%d rows, %d checks) in %.2f s", name, len(frames[name]), len(checks),
                  time.perf_counter() - started)
    return [SuiteResult(name=s.name, results=[outcomes[(s.name, c.name)] for c in s.checks]) for s in suites]


def validate(con: duckdb.DuckDBPyConnection, settings: Settings, dataset: Dataset | None,
             as_of: pd.Period, *, suites: list[Suite] | None = None) -> ValidationReport:
    """Run every suite in ``expectations/`` on the warehouse and the dataset for ``as_of``.

    ``dataset`` is what the models will get (``warehouse.build_dataset``); its ``publication_lag_months``
    is the lag it was built with, compared with ``settings.data.publication_lag_months`` by the
    look-ahead suite. With ``dataset=None`` (it could not be built) only the warehouse checks run and
    the others are reported as skipped. Never raises for bad data: see :meth:`ValidationReport.passed`
    and :meth:`ValidationReport.raise_if_failed`; a broken suite file raises ConfigError (exit 2).
    ``suites`` replaces the suites of ``expectations/`` (see :func:`load_suites`).
    """
    started = time.perf_counter()
    fctx = FrameContext(con=con, settings=settings, dataset=dataset, as_of=as_of)
    with _quiet():
        suites = load_suites() if suites is None else suites
        results = run_suites(suites, fctx)
    report = ValidationReport(as_of=as_of, suites=results, configured_lag=settings.data.publication_lag_months,
                              dataset_lag=None if dataset is None else int(dataset.publication_lag_months),
                              elapsed_s=time.perf_counter() - started)
    log.info("validation %s: %d checks, %d critical failure(s), %d warning(s) in %.1f s",
             "passed" if report.passed else "FAILED", sum(s.checks for s in results),
             sum(s.failed for s in results), sum(s.warnings for s in results), report.elapsed_s,
             extra={"fields": {"as_of": str(as_of), "passed": report.passed}})
    return report
