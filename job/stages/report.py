"""Report stages: assemble the ReportData of a run, publish it with its HTML, re-render a published month."""

from __future__ import annotations

import hashlib
from typing import Any

import pandas as pd

from job import artifacts
from job.dataset import Dataset
from job.months import month_str


def _sources_section(dataset: Dataset) -> list[dict[str, Any]]:
    """Data sources, ranges and vintages for the report, from the ingest details."""
    details = dict(dataset.info.ingest)
    source = dataset.info.source
    parts = details if "+" in source else {source: details}
    out: list[dict[str, Any]] = []
    for name, info in parts.items():
        if not isinstance(info, dict):
            continue
        prices = info.get("prices") or {}
        if prices:
            firsts = [v[0] for v in prices.values()]
            lasts = [v[1] for v in prices.values()]
            out.append({"name": f"{name}: prices", "kind": "prices", "first": max(firsts), "last": min(lasts),
                        "rows": None, "note": f"{len(prices)} assets; range shared by all of them"})
        for vintage in info.get("vintages") or []:
            out.append({"name": f"{name}: FRED-MD", "kind": "macro", "first": vintage.get("first_period", ""),
                        "last": vintage.get("last_period", ""), "vintage": vintage.get("vintage", ""),
                        "rows": vintage.get("rows"),
                        "note": f"{vintage.get('series')} series; dropped {vintage.get('dropped') or 'none'}"})
        if info.get("synthetic"):
            out.append({"name": "sample", "kind": "synthetic", "note": str(info.get("planted_signal", "")),
                        "first": str(info.get("months", ["", ""])[0]), "last": str(info.get("months", ["", ""])[1])})
        if info.get("risk_free"):
            out.append({"name": f"{name}: risk-free", "kind": "risk-free", "note": str(info["risk_free"])})
    if dataset.info.dropped_series:
        out.append({"name": "feature matrix", "kind": "features",
                    "note": f"{dataset.info.n_macro_features} macro features; left out (holes or stale "
                            f"in the window): {', '.join(dataset.info.dropped_series)}"})
    return out


def assemble(*, settings: Any, dataset: Dataset, as_of: pd.Period, run_id: str, created_at: str,
             models: list[str], weights: pd.DataFrame, evaluation: Any, audit: Any, validation: Any,
             params: Any, trained: dict[str, Any], timings: dict[str, float]) -> Any:
    """The ReportData of one run, from the outputs of the stages before it."""
    from job.report import collect_provenance
    from job.report.data import DataQualitySection, ReportData, ValidationSuite
    from job.report.inputs import (
        allocation_section,
        decision_section,
        forecast_quality_section,
        lookahead_section,
        performance_section,
    )
    from job.stages.evaluation import AUDIT_MODELS

    result, doc = evaluation.result, evaluation.metrics
    chosen = settings.report.default_model if settings.report.default_model in models else models[-1]
    sectors = dict(dataset.info.sectors) or {a: a for a in dataset.assets}
    predicted = weights[["model", "asset", "predicted"]]
    audit_models = [m for m in models if m in AUDIT_MODELS]
    data = ReportData(
        as_of=month_str(as_of),
        decision=decision_section(weights.drop(columns=["predicted"]), predicted,
                                  target_month=month_str(as_of + 1), chosen_model=chosen, sectors=sectors,
                                  threshold=params.threshold, factor=params.factor),
        performance=performance_section(result.portfolio, doc, benchmark=dataset.benchmark,
                                        cost_bps=params.cost_bps),
        forecast_quality=forecast_quality_section(result.forecasts, result.baselines, doc),
        allocation=allocation_section(result.weights, result.portfolio),
        lookahead=None if audit is None else lookahead_section(
            doc, audit.metrics, publication_lag_months=settings.data.publication_lag_months,
            portfolio_point_in_time=result.portfolio[result.portfolio["model"].isin(audit_models)],
            portfolio_lag0=audit.result.portfolio),
        data_quality=DataQualitySection(
            synthetic=dataset.synthetic, source=dataset.info.source, passed=validation.passed,
            suites=[ValidationSuite(name=s.name, checks=s.checks, failed=s.failed, warnings=s.warnings,
                                    worst=s.worst_example) for s in validation.suites],
            sources=_sources_section(dataset)),
        provenance=collect_provenance(
            settings, run_id=run_id, created_at=created_at,
            data_fingerprint=dataset.info.dataset_fingerprint,
            model_fingerprints={n: r.prefix for n, r in trained.items()},
            stage_timings=dict(timings)),
    )
    if audit is None:
        data.lookahead_not_run_reason = ("the look-ahead audit runs ridge with publication lag 0; "
                                         "ridge was not in --models, or --no-audit was given")
    return data


def publish_report(publisher: Any, data: Any) -> bytes:
    """Write the report data and its HTML through ``publisher``; returns the HTML."""
    from job.report.html import render_html

    html = render_html(data).encode("utf-8")
    publisher.write_bytes(artifacts.REPORT_DATA, data.to_json().encode("utf-8"), content_type="application/json")
    publisher.write_bytes(artifacts.REPORTS, html, content_type="text/html")
    return html


def render_published(store: Any, manifest: dict[str, Any]) -> tuple[Any, bytes, bool]:
    """Re-render a published month: ``(ReportData, html, changed)``; ``changed`` when the HTML differs
    from the published ``reports`` artifact (the rendering code changed since)."""
    from job.report.artifacts import load_report_data
    from job.report.html import render_html

    data = load_report_data(store, manifest)
    html = render_html(data).encode("utf-8")
    digest = hashlib.sha256(html).hexdigest()
    published = [a for a in manifest.get("artifacts", []) if a.get("kind") == artifacts.REPORTS.name]
    changed = not published or published[0].get("sha256") != digest
    return data, html, changed
