"""The report: one self-contained HTML page and a terminal summary, rendered from :class:`ReportData`.

``rotation run`` builds a :class:`ReportData` (the input contract, :mod:`job.report.data`), then calls
:func:`write_report` (or :func:`report_artifacts` to publish the bytes itself) before the manifest;
``rotation report`` re-renders a committed month from its stored ``report_data.json``.
"""

from __future__ import annotations

from job.report.artifacts import (
    collect_provenance,
    load_committed,
    mask_secrets,
    report_artifacts,
    report_keys,
    write_report,
)
from job.report.data import (
    BASELINES,
    BENCHMARK_KEY,
    DISCLAIMER,
    EQUAL_WEIGHT_KEY,
    METRICS,
    PERIODS,
    SECTION_TITLES,
    SECTIONS,
    SYNTHETIC_BANNER,
    AllocationSection,
    DataQualitySection,
    DataSource,
    DecisionSection,
    ForecastQualitySection,
    LookaheadSection,
    MetricSpec,
    MetricTable,
    PerformanceSection,
    ProvenanceSection,
    ReportData,
    ValidationSuite,
)
from job.report.html import render_html
from job.report.text import render_text

__all__ = [
    "BASELINES",
    "BENCHMARK_KEY",
    "DISCLAIMER",
    "EQUAL_WEIGHT_KEY",
    "METRICS",
    "PERIODS",
    "SECTIONS",
    "SECTION_TITLES",
    "SYNTHETIC_BANNER",
    "AllocationSection",
    "DataQualitySection",
    "DataSource",
    "DecisionSection",
    "ForecastQualitySection",
    "LookaheadSection",
    "MetricSpec",
    "MetricTable",
    "PerformanceSection",
    "ProvenanceSection",
    "ReportData",
    "ValidationSuite",
    "collect_provenance",
    "load_committed",
    "mask_secrets",
    "render_html",
    "render_text",
    "report_artifacts",
    "report_keys",
    "write_report",
]
