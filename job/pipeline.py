"""``rotation run``: every stage of one month composed, under one run lock, published by one manifest.

ingest -> prepare (dataset + validation) -> forecast -> allocate -> backtest -> look-ahead audit ->
publish, the report last, rendered from what was just written (as ``rotation report`` re-renders it).
The stages live in :mod:`job.stages`; this module only composes them.

A run is a complete publication of its month (``replace`` mode, see :mod:`job.store.publish`): until its
manifest is written, readers see the month's previous publication. A critical validation failure
publishes only ``validation/as_of=.../run_id=.../validation.json`` (no manifest).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from job.errors import ConfigError, DataError
from job.logs import get_logger, set_context
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
    recompute: bool = False
    cluster: str | None = None


@dataclass
class RunResult:
    as_of: str
    run_id: str
    manifest: dict[str, Any]
    summary_text: str
    store_uri: str
    timings: dict[str, float]
    published: bool = True  # False: the month was already published from identical inputs


def _check_output(output: Path | None) -> None:
    if output is not None and not output.is_dir():
        try:  # an unusable --output fails now, not after the month is published
            output.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"--output {output}: cannot create its folder ({exc.strerror})",
                              hint="choose a writable path; nothing was run") from None


def run_month(settings: Any, warehouse_path: Path, store: Any, options: RunOptions) -> RunResult:
    """Run every stage for one month; see the module docstring for the failure semantics."""
    from job import artifacts
    from job.report import render_text
    from job.report.published import CONTEXT_KEY
    from job.run_inputs import INPUTS_KEY
    from job.stages import data, evaluation, models, report
    from job.stages.session import session
    from job.store.publish import write_failed_validation

    _check_output(options.output)
    names = options.models or list(settings.models.enabled)
    created_at = datetime.now(UTC).isoformat(timespec="seconds")
    with session(store, settings, "run", as_of=month_str(options.as_of) if options.as_of else None) as run:
        ingest_summary: dict[str, Any] = {}
        if options.ingest:
            with run.stage("ingest"):
                ingest_summary = data.ingest(settings, warehouse_path, options.sources)
        inputs = data.run_inputs(settings, warehouse_path, as_of=options.as_of, models=names,
                                 scheme=options.scheme, audit=options.audit)
        if inputs is not None and not options.recompute:
            done = _already_published(store, inputs, options.output)
            if done is not None:
                return done
        month = data.prepare(settings, warehouse_path, as_of=options.as_of, audit=options.audit, timed=run.stage)
        as_of_text = month_str(month.as_of)
        set_context(as_of=as_of_text)
        if not month.validation.passed:
            key = write_failed_validation(store, as_of_text, run.run_id, month.validation.to_dict())
            log.error("validation failed; only %s was written", key)
            month.validation.raise_if_failed()
        if month.build_error is not None or month.dataset is None:
            raise month.build_error or DataError(f"no dataset could be built for {as_of_text}")
        dataset = month.dataset

        params = evaluation.strategy_params(settings)
        with run.stage("train_forecast"):
            forecasts, trained = models.forecast(dataset, settings, month.as_of, store, names,
                                                 recompute=options.recompute, cluster=options.cluster)
        with run.stage("allocate"):
            weights = models.allocate(forecasts[forecasts["model"].isin(names)], dataset, params)
        with run.stage("backtest"):
            evaluated = evaluation.backtest(dataset, settings, names, params=params, scheme=options.scheme,
                                            store=store, recompute=options.recompute, cluster=options.cluster)
        audit = None
        if month.lag0 is not None:
            with run.stage("lookahead_audit"):
                audit = evaluation.lookahead_audit(month.lag0, settings, names, params=params, scheme=options.scheme,
                                                   store=store, recompute=options.recompute, cluster=options.cluster)

        with run.stage("publish"):
            publisher = run.publisher(as_of_text, mode="replace")
            publisher.write_table(artifacts.FORECASTS, forecasts)
            publisher.write_table(artifacts.WEIGHTS, weights)
            evaluation.publish_backtest(publisher, evaluated, audit=audit)
            publisher.write_json(artifacts.VALIDATION, month.validation.to_dict())
            # the report is rendered from the artifacts just written, as `rotation report` re-renders it
            recorded = report.context(settings=settings, dataset=dataset, run_id=run.run_id, created_at=created_at,
                                      models=names, params=params, trained=trained, timings=run.timings)
            report_data, html = report.publish_report(publisher, recorded)
        # The manifest records every stage before it, publish included; writing it is the "commit"
        # stage, which is logged and printed but cannot be timed inside itself.
        with run.stage("commit"):
            manifest = publisher.commit(run.timings, extra={
                "synthetic": dataset.synthetic, "source": dataset.info.source,
                "models": names, "scheme": evaluated.result.scheme, "strategy": params.as_dict(),
                "dataset_fingerprint": dataset.info.dataset_fingerprint,
                "model_prefixes": {n: r.prefix for n, r in trained.items()}, "ingest": ingest_summary,
                INPUTS_KEY: inputs,
                "computation": {"backtest": evaluated.run_facts,
                                "lookahead_audit": audit.run_facts if audit is not None else None},
                CONTEXT_KEY: recorded})
        html_key = artifacts.REPORTS.key(as_of_text, run.run_id)
        if options.output is not None:
            from job.report.artifacts import write_output

            target = options.output / f"report-{as_of_text}.html" if options.output.is_dir() else options.output
            write_output(target, html)
            log.info("report written to %s", target)
        summary = render_text(report_data, where=f"{store.uri}/{html_key}")
        return RunResult(as_of=as_of_text, run_id=run.run_id, manifest=manifest, summary_text=summary,
                         store_uri=store.uri, timings=dict(run.timings))


def _already_published(store: Any, inputs: dict[str, Any], output: Path | None) -> RunResult | None:
    """The month's publication when it was made from exactly ``inputs`` and every file verifies (then
    nothing is recomputed or published; ``--output`` gets the published report); None otherwise."""
    from job import artifacts
    from job.run_inputs import already_published
    from job.store.manifest import DamagedManifest, read_manifest, verify_manifest

    as_of = inputs["as_of"]
    set_context(as_of=as_of)
    try:
        manifest = read_manifest(store, as_of)
    except DamagedManifest:  # unreadable: not a publication of these inputs; the run replaces it
        return None
    if not already_published(manifest, inputs):
        return None
    assert manifest is not None
    problems = verify_manifest(store, manifest)
    if problems:
        log.warning("%s was published from these inputs but %d file(s) fail verification (%s); running it again",
                    as_of, len(problems), problems[0])
        return None
    run_id = str(manifest["run_id"])
    html_key = artifacts.REPORTS.key(as_of, run_id)
    log.info("%s is already published from identical inputs (run %s, %d files verified); nothing to do",
             as_of, run_id, len(manifest["artifacts"]),
             extra={"fields": {"published_run_id": run_id, "inputs": inputs["fingerprint"][:16]}})
    if output is not None:
        from job.report.artifacts import write_output

        target = output / f"report-{as_of}.html" if output.is_dir() else output
        write_output(target, store.get_bytes(html_key))
        log.info("report written to %s", target)
    summary = (f"{as_of} is already published from identical inputs (data, configuration, models, code and "
               f"libraries): run {run_id}, every file verified; nothing was recomputed or published "
               f"(--recompute runs it again).\nreport: {store.uri}/{html_key}")
    return RunResult(as_of=as_of, run_id=run_id, manifest=manifest, summary_text=summary, store_uri=store.uri,
                     timings={}, published=False)
