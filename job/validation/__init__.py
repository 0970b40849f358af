"""Data validation with Great Expectations: gaps, duplicates, bad values and look-ahead.

The suites live in ``expectations/*.json`` (GX 1.x ExpectationSuite JSON; see ``expectations/README.md``).
Each expectation runs on a named frame: a DuckDB query in ``sql/validation/`` or a view of the Dataset
the models will get. :func:`validate` runs them all for one as-of month and returns a
:class:`ValidationReport`; a critical failure means the month must not be published
(:meth:`ValidationReport.raise_if_failed` raises :class:`job.errors.ValidationFailed`, exit code 3).

Example::

    with warehouse.connect(path, read_only=True) as con:
        dataset, as_of = warehouse.build_dataset(con, settings)
        report = validate(con, settings, dataset, as_of)
    print(report.summary_table())
    report.raise_if_failed()
"""

from __future__ import annotations

from job.validation._frames import FRAMES, Frame, FrameContext
from job.validation._report import CheckResult, SuiteResult, ValidationReport
from job.validation._run import run_suites, validate
from job.validation._suites import SEVERITIES, Check, Suite, load_suites, parse_suite

__all__ = [
    "FRAMES",
    "SEVERITIES",
    "Check",
    "CheckResult",
    "Frame",
    "FrameContext",
    "Suite",
    "SuiteResult",
    "ValidationReport",
    "load_suites",
    "parse_suite",
    "run_suites",
    "validate",
]
