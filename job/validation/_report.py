"""Validation results: one :class:`CheckResult` per expectation, grouped into suites and one report."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from job.errors import ValidationFailed
from job.jsonio import plain
from job.months import month_str

MAX_EXAMPLES = 5


def _short(value: Any) -> str:
    value = plain(value)
    if value is None:
        return "missing"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_example(example: Any) -> str:
    """``asset=VGT month=2015-06 ret=3`` for a dict example, the value itself otherwise."""
    if isinstance(example, dict):
        return " ".join(f"{k}={_short(v)}" for k, v in example.items())
    return _short(example)


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one expectation: passed or not, with a human message and a few unexpected rows."""

    suite: str
    check: str
    frame: str
    expectation_type: str
    column: str | None
    severity: str
    success: bool
    message: str
    unexpected_count: int | None = None
    element_count: int | None = None
    examples: list[Any] = field(default_factory=list)
    observed_value: Any = None
    skipped: str | None = None  # why it did not run (no dataset); a skipped check neither passes nor fails
    headline: str = ""  # the message with one example only (for one-line errors)
    hint: str = ""  # what the user can do (the expectation's meta.hint)

    @property
    def failed(self) -> bool:
        return not self.success and self.skipped is None

    @property
    def critical(self) -> bool:
        return self.severity == "critical"

    def to_dict(self) -> dict[str, Any]:
        return plain({
            "suite": self.suite, "check": self.check, "frame": self.frame,
            "expectation_type": self.expectation_type, "column": self.column, "severity": self.severity,
            "success": self.success, "message": self.message, "unexpected_count": self.unexpected_count,
            "element_count": self.element_count, "unexpected_examples": self.examples[:MAX_EXAMPLES],
            "observed_value": self.observed_value,
        })


@dataclass(frozen=True)
class SuiteResult:
    """One suite: how many checks ran, how many failed (critical) or warned, and its worst example."""

    name: str
    results: list[CheckResult]

    @property
    def checks(self) -> int:
        return sum(1 for r in self.results if r.skipped is None)

    @property
    def failed(self) -> int:
        return sum(1 for r in self.results if r.failed and r.critical)

    @property
    def warnings(self) -> int:
        return sum(1 for r in self.results if r.failed and not r.critical)

    @property
    def skipped(self) -> int:
        return sum(1 for r in self.results if r.skipped is not None)

    @property
    def failures(self) -> list[CheckResult]:
        """Failed checks, critical ones first (in suite order)."""
        bad = [r for r in self.results if r.failed]
        return [r for r in bad if r.critical] + [r for r in bad if not r.critical]

    @property
    def worst(self) -> CheckResult | None:
        failures = self.failures
        return failures[0] if failures else None

    @property
    def worst_example(self) -> str:
        """``check: first unexpected row`` of the worst failure ('' when everything passed)."""
        worst = self.worst
        if worst is None:
            return ""
        example = format_example(worst.examples[0]) if worst.examples else worst.message
        return f"{worst.check}: {example}"


@dataclass(frozen=True)
class ValidationReport:
    """All suites of one validation run. ``passed`` is False when any critical check failed."""

    as_of: pd.Period
    suites: list[SuiteResult]
    configured_lag: int
    dataset_lag: int | None
    elapsed_s: float = 0.0

    @property
    def passed(self) -> bool:
        return not any(s.failed for s in self.suites)

    @property
    def failures(self) -> list[CheckResult]:
        """Every failed check, critical ones first."""
        bad = [r for s in self.suites for r in s.results if r.failed]
        return [r for r in bad if r.critical] + [r for r in bad if not r.critical]

    def result(self, suite: str, check: str) -> CheckResult:
        """The result of one check by suite and check name (KeyError when there is none)."""
        for s in self.suites:
            for r in s.results:
                if s.name == suite and r.check == check:
                    return r
        raise KeyError(f"{suite}.{check}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary: per suite counts, and every failing check with a few examples."""
        return plain({
            "as_of": month_str(self.as_of),
            "passed": self.passed,
            "publication_lag": {"configured": self.configured_lag, "dataset": self.dataset_lag},
            "elapsed_s": round(self.elapsed_s, 3),
            "suites": [{"name": s.name, "checks": s.checks, "failed": s.failed, "warnings": s.warnings,
                        "skipped": s.skipped, "worst_example": s.worst_example} for s in self.suites],
            "failures": [r.to_dict() for r in self.failures],
            "skipped": [{"suite": r.suite, "check": r.check, "reason": r.skipped}
                        for s in self.suites for r in s.results if r.skipped is not None],
        })

    def summary_table(self, width: int = 100) -> str:
        """A compact fixed-width table: suite, checks, failed, warnings, worst example."""
        rows = [("suite", "checks", "failed", "warnings", "worst example")]
        for s in self.suites:
            checks = f"{s.checks}" + (f" (+{s.skipped} skipped)" if s.skipped else "")
            rows.append((s.name, checks, str(s.failed), str(s.warnings), s.worst_example or "-"))
        w = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = []
        for r in rows:
            head = f"{r[0]:<{w[0]}}  {r[1]:>{w[1]}}  {r[2]:>{w[2]}}  {r[3]:>{w[3]}}  "
            tail = r[4] if len(head) + len(r[4]) <= width else r[4][: max(width - len(head) - 1, 10)] + "…"
            lines.append(head + tail)
        verdict = "passed" if self.passed else "FAILED"
        lines.append(f"validation {verdict} for {month_str(self.as_of)}: "
                     f"{sum(s.failed for s in self.suites)} critical, {sum(s.warnings for s in self.suites)} "
                     f"warning(s) in {self.elapsed_s:.1f} s")
        return "\n".join(lines)

    def raise_if_failed(self) -> None:
        """Raise :class:`job.errors.ValidationFailed` (exit 3) naming the first critical failure."""
        critical = [r for r in self.failures if r.critical]
        if not critical:
            return
        first = critical[0]
        more = f" (and {len(critical) - 1} more critical)" if len(critical) > 1 else ""
        raise ValidationFailed(f"data validation failed for {month_str(self.as_of)}: {first.suite}.{first.check}: "
                               f"{first.headline or first.message}{more}",
                               hint=first.hint or "see the validation result; fix the data or the suite in "
                                                  "expectations/")
