"""One monthly run: ingest, validate, train or load, forecast, allocate, backtest, publish, report.

Everything happens under one run lock and one ``run_id``, and is published by one manifest written
last. A failure at any stage leaves the month's previous manifest (and so what readers see) untouched;
a critical validation failure publishes only ``validation/as_of=.../run_id=.../validation.json``.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from job.app import App
from job.dataset import Dataset
from job.errors import ConfigError, DataError
from job.logs import get_logger
from job.months import month_str

log = get_logger("run")


@dataclass
class RunOptions:
    """What ``rotation run`` was asked to do (flags already folded into the settings)."""

    sources: list[str]
    as_of: pd.Period | None = None
    models: list[str] = field(default_factory=list)
    scheme: str | None = None
    output: Path | None = None
    audit: bool = True
    ingest: bool = True


@dataclass
class RunResult:
    as_of: str
    run_id: str
    manifest: dict[str, Any]
    summary_text: str
    store_uri: str
    timings: dict[str, float]


class Stages:
    """Times each stage, logs it, and keeps the timings for the manifest."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        log.info("stage %s", name, extra={"fields": {"stage": name, "event": "start"}})
        began = time.perf_counter()
        try:
            yield
        finally:
            seconds = time.perf_counter() - began
            self.timings[name] = self.timings.get(name, 0.0) + seconds
            log.info("stage %s done in %.1f s", name, seconds,
                     extra={"fields": {"stage": name, "event": "end", "seconds": round(seconds, 3)}})


def next_month_weights(forecasts: pd.DataFrame, dataset: Dataset, params: Any) -> pd.DataFrame:
    """Weights for the target month from each model's forecasts (one row per model and asset)."""
    from job.strategy import allocate

    wide = forecasts.pivot(index="model", columns="asset", values="predicted_return")
    wide = wide.reindex(index=list(dict.fromkeys(forecasts["model"])), columns=dataset.assets)
    alloc = allocate(wide.to_numpy(dtype=np.float64), params)
    exposure = alloc.exposures(params.mode)
    rows = []
    for i, model in enumerate(wide.index):
        for j, asset in enumerate(wide.columns):
            rows.append({"as_of": forecasts["as_of"].iloc[0], "target_month": forecasts["target_month"].iloc[0],
                         "model": model, "asset": asset, "sector": dataset.info.get("sectors", {}).get(asset, asset),
                         "predicted_return": float(wide.iloc[i, j]), "weight": float(alloc.weights[i, j]),
                         "flag": bool(alloc.flags[i, j]), "multiplier": float(alloc.multipliers[i, j]),
                         "exposure": float(exposure[i, j]), "capital_deployed": float(alloc.capital[i]),
                         "mode": params.mode})
    return pd.DataFrame(rows)


def _sources_section(dataset: Dataset) -> list[dict[str, Any]]:
    """Data sources, ranges and vintages for the report, from the ingest details."""
    details = dataset.info.get("ingest", {})
    source = str(dataset.info.get("source", ""))
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
    if dataset.info.get("dropped_series"):
        out.append({"name": "feature matrix", "kind": "features",
                    "note": f"{dataset.info.get('n_macro_features')} macro features; left out (holes or stale "
                            f"in the window): {', '.join(dataset.info['dropped_series'])}"})
    return out


def run_month(app: App, options: RunOptions) -> RunResult:
    """Run every stage for one month; see the module docstring for the failure semantics."""
    from job import warehouse
    from job.backtest import as_table, walk_forward
    from job.commands.forecast import forecast_stage
    from job.commands.ingest import run_ingest
    from job.metrics import summarise
    from job.report import collect_provenance, render_text, report_artifacts
    from job.report.data import DataQualitySection, ReportData, ValidationSuite
    from job.report.inputs import (
        allocation_section,
        decision_section,
        forecast_quality_section,
        lookahead_section,
        performance_section,
    )
    from job.store.lock import RunLock
    from job.store.publish import Publisher, new_run_id, write_failed_validation
    from job.strategy import StrategyParams
    from job.validation import validate

    settings = app.settings
    if options.output is not None and not options.output.is_dir():
        try:  # an unusable --output fails now, not after the month is published
            options.output.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"--output {options.output}: cannot create its folder ({exc.strerror})",
                              hint="choose a writable path; nothing was run") from None
    store = app.store()
    run_id = new_run_id()
    stage = Stages()
    created_at = datetime.now(UTC).isoformat(timespec="seconds")
    owner = f"{socket.gethostname()}:{os.getpid()}:{run_id}"
    models = options.models or list(settings.models.enabled)
    with RunLock(store, owner, settings.store.lock_lease_s):
        if options.ingest:
            with stage("ingest"):
                ingest_summary = run_ingest(app, options.sources)
        else:
            ingest_summary = {}
        build_error: DataError | None = None
        with warehouse.connect(app.warehouse, read_only=True) as con:
            with stage("dataset"):
                try:
                    dataset, as_of = warehouse.build_dataset(con, settings, as_of=options.as_of)
                except DataError as exc:  # e.g. a month without prices: the checks still say which and why
                    dataset, build_error = None, exc
                    as_of = options.as_of or warehouse.default_as_of(con, settings)
            with stage("validate"):
                report = validate(con, settings, dataset, as_of)
            lag0 = None
            if options.audit and report.passed and build_error is None:
                with stage("dataset_lag0"):
                    lag0, _ = warehouse.build_dataset(con, settings, as_of=as_of, publication_lag=0)
        as_of_text = month_str(as_of)
        if not report.passed:
            key = write_failed_validation(store, as_of_text, run_id, report.to_dict())
            log.error("validation failed; only %s was written", key)
            report.raise_if_failed()
        if build_error is not None or dataset is None:
            raise build_error or DataError(f"no dataset could be built for {as_of_text}")

        with stage("train_forecast"):
            forecasts, trained = forecast_stage(dataset, settings, as_of, store, models)
        params = StrategyParams.from_settings(settings)
        with stage("allocate"):
            weights = next_month_weights(forecasts[forecasts["model"].isin(models)], dataset, params)
        with stage("backtest"):
            result = walk_forward(dataset, models, settings, scheme=options.scheme)
            doc = summarise(result, None, settings)
        audit_doc, audit_result = None, None
        audit_models = [m for m in models if m == "ridge"]
        if lag0 is not None and audit_models:
            with stage("lookahead_audit"):
                audit_result = walk_forward(lag0, audit_models, settings, scheme=options.scheme)
                audit_doc = summarise(audit_result, None, settings)

        with stage("publish"):
            publisher = Publisher(store, as_of_text, run_id)
            publisher.write_table("forecasts", forecasts)
            publisher.write_table("weights", weights)
            publisher.write_table("backtest", as_table(result.portfolio))
            publisher.write_table("backtest_forecasts", as_table(result.forecasts))
            publisher.write_table("backtest_weights", as_table(result.weights))
            publisher.write_json("metrics", "metrics.json", {"as_of": as_of_text, "run_id": run_id, **doc,
                                                             "benchmark_asset": dataset.benchmark,
                                                             "lookahead_audit": audit_doc})
            publisher.write_json("validation", "validation.json", report.to_dict())

            chosen = settings.report.default_model if settings.report.default_model in models else models[-1]
            sectors = dataset.info.get("sectors") or {a: a for a in dataset.assets}
            predicted = weights[["model", "asset", "predicted_return"]].rename(
                columns={"predicted_return": "predicted"})
            data = ReportData(
                as_of=as_of_text,
                decision=decision_section(weights.drop(columns=["predicted_return"]), predicted,
                                          target_month=month_str(as_of + 1), chosen_model=chosen, sectors=sectors,
                                          threshold=params.threshold, factor=params.factor),
                performance=performance_section(result.portfolio, doc, benchmark=dataset.benchmark,
                                                cost_bps=params.cost_bps),
                forecast_quality=forecast_quality_section(result.forecasts, result.baselines, doc),
                allocation=allocation_section(result.weights, result.portfolio),
                lookahead=None if audit_doc is None else lookahead_section(
                    doc, audit_doc, publication_lag_months=settings.data.publication_lag_months,
                    portfolio_point_in_time=result.portfolio[result.portfolio["model"].isin(audit_models)],
                    portfolio_lag0=audit_result.portfolio),
                data_quality=DataQualitySection(
                    synthetic=dataset.synthetic, source=str(dataset.info.get("source")), passed=report.passed,
                    suites=[ValidationSuite(name=s.name, checks=s.checks, failed=s.failed, warnings=s.warnings,
                                            worst=s.worst_example) for s in report.suites],
                    sources=_sources_section(dataset)),
                provenance=collect_provenance(
                    settings, run_id=run_id, created_at=created_at,
                    data_fingerprint=str(dataset.info.get("data_fingerprint")),
                    model_fingerprints={n: r.prefix for n, r in trained.items()},
                    stage_timings=dict(stage.timings)),
            )
            if audit_doc is None:
                data.lookahead_not_run_reason = ("the look-ahead audit runs ridge with publication lag 0; "
                                                 "ridge was not in --models, or --no-audit was given")
            rendered = report_artifacts(data)
            for key, blob in rendered.items():
                publisher.write_bytes(key, blob, "text/html" if key.endswith(".html") else "application/json")
        # The manifest records every stage that ran before it, publish included; writing it is the
        # "commit" stage, which is logged and printed but cannot be timed inside itself.
        with stage("commit"):
            manifest = publisher.commit(stage.timings, extra={
                "synthetic": dataset.synthetic, "source": dataset.info.get("source"),
                "models": models, "scheme": result.scheme, "strategy": params.as_dict(),
                "data_fingerprint": dataset.info.get("data_fingerprint"),
                "model_prefixes": {n: r.prefix for n, r in trained.items()}, "ingest": ingest_summary})
        html_key = next(k for k in rendered if k.endswith(".html"))
        if options.output is not None:
            from job.report.artifacts import write_output

            target = options.output / f"report-{as_of_text}.html" if options.output.is_dir() else options.output
            write_output(target, rendered[html_key])
            log.info("report written to %s", target)
    summary = render_text(data, where=f"{store.uri}/{html_key}")
    return RunResult(as_of=as_of_text, run_id=run_id, manifest=manifest, summary_text=summary,
                     store_uri=store.uri, timings=dict(stage.timings))
