"""The report: one self-contained HTML page and a terminal summary, rendered from :class:`ReportData`.

A :class:`ReportData` (the input contract, :mod:`job.report.data`) is rebuilt from the artifacts a month
publishes (:func:`job.report.published.report_data`): ``rotation run`` renders its report from what it
has just written, ``rotation report`` re-renders a published month from its manifest alone.
"""

from __future__ import annotations

from job.report.artifacts import collect_provenance, mask_secrets
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
    "mask_secrets",
    "render_html",
    "render_text",
]
