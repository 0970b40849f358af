"""Report stages: record what only the run knows, render the report from what the month publishes
(:mod:`job.report.published`), re-render a published month."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pandas as pd

from job import artifacts
from job.dataset import Dataset
from job.jsonio import json_bytes
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
    built = dataset.info
    if built.dropped_series or built.expired_series:
        notes = [f"{built.n_macro_features} macro features"]
        if built.dropped_series:
            notes.append(f"left out (no value at the first month): {', '.join(built.dropped_series)}")
        if built.expired_series:
            notes.append("not used by fits from the month they went stale or missing: "
                         + ", ".join(f"{s} from {m}" for s, m in built.expired_series.items()))
        out.append({"name": "feature matrix", "kind": "features", "note": "; ".join(notes)})
    return out


def context(*, settings: Any, dataset: Dataset, run_id: str, created_at: str, models: list[str], params: Any,
            trained: dict[str, Any], timings: dict[str, float]) -> dict[str, Any]:
    """What only the run knows for its report, recorded in its manifest under
    :data:`job.report.published.CONTEXT_KEY`: the chosen model, the universe's sectors, the strategy, the
    masked configuration, versions, git commit, model fingerprints and stage timings (provenance), the
    ingested sources and each asset's first months (data quality). Ordered maps are lists of pairs, so
    the manifest's sorted JSON keeps their order; the value is returned as the manifest will hold it."""
    from job.report import collect_provenance

    provenance = vars(collect_provenance(
        settings, run_id=run_id, created_at=created_at, data_fingerprint=dataset.info.dataset_fingerprint,
        model_fingerprints={n: r.prefix for n, r in trained.items()}, stage_timings=dict(timings)))
    provenance["stage_timings"] = list(provenance["stage_timings"].items())
    held = [(a, month_str(pd.Period(m, freq="M") + 1) if m else None)
            for a, m in dataset.info.asset_entry_months.items()]
    recorded = {
        "chosen_model": settings.report.default_model if settings.report.default_model in models else models[-1],
        "sectors": list((dict(dataset.info.sectors) or {a: a for a in dataset.assets}).items()),
        "strategy": params.as_dict(),
        "min_oos_months": int(settings.backtest.min_oos_months),
        "publication_lag_months": int(settings.data.publication_lag_months),
        "data_quality": {"synthetic": dataset.synthetic, "source": dataset.info.source,
                         "sources": _sources_section(dataset),
                         "asset_first_months": list(dataset.info.asset_first_months.items()),
                         "asset_first_held_months": held},
        "provenance": provenance,
    }
    return json.loads(json_bytes(recorded))


def publish_report(publisher: Any, recorded: dict[str, Any]) -> tuple[Any, bytes]:
    """Render the report from what ``publisher`` has written so far and the run's ``recorded`` context
    (:func:`context`), exactly as ``rotation report`` re-renders the month later, and write its HTML
    through ``publisher``; returns ``(ReportData, html)``."""
    from job.report.html import render_html
    from job.report.published import CONTEXT_KEY, report_data

    pending = {"as_of": publisher.as_of, "run_id": publisher.run_id, CONTEXT_KEY: recorded,
               "artifacts": list(publisher.artifacts.values())}
    data = report_data(publisher.store, pending)
    html = render_html(data).encode("utf-8")
    publisher.write_bytes(artifacts.REPORTS, html, content_type="text/html")
    return data, html


def render_published(store: Any, manifest: dict[str, Any]) -> tuple[Any, bytes, bool]:
    """Re-render a published month from the artifacts its manifest lists: ``(ReportData, html, changed)``;
    ``changed`` when the HTML differs from the published ``reports`` artifact (the month's tables were
    merged into since, or the rendering code changed)."""
    from job.report.html import render_html
    from job.report.published import report_data

    data = report_data(store, manifest)
    html = render_html(data).encode("utf-8")
    digest = hashlib.sha256(html).hexdigest()
    published = [a for a in manifest.get("artifacts", []) if a.get("kind") == artifacts.REPORTS.name]
    changed = not published or published[0].get("sha256") != digest
    return data, html, changed
