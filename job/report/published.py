"""The report of a published month, rebuilt from what the month publishes (the artifact contract).

:func:`report_data` is the one way a :class:`~job.report.data.ReportData` is made: ``rotation run`` calls
it on the artifacts it has just written (before its manifest lands, so the run writes its report once),
``rotation report`` on a month's manifest. Each section reads the kinds of :mod:`job.artifacts` the
manifest lists, through the manifest (size and sha256 checked):

========================  ===========================================================================
section                   artifacts
========================  ===========================================================================
1. decision               ``weights`` (weights, flags, multipliers), ``forecasts`` (predicted returns)
2. performance            ``backtest`` (models and the baselines' allocation), ``metrics``
3. forecast quality       ``backtest_forecasts``, ``metrics``
4. allocation history     ``backtest_weights``, ``backtest``
5. look-ahead audit       ``lookahead_backtest`` and the ``metrics`` section ``lookahead_audit`` (when run)
6. data quality           ``validation`` and the run's context (sources, asset first months)
7. provenance             the run's context
========================  ===========================================================================

What only the run knows (the masked configuration, library versions, git commit, model fingerprints,
stage timings, the ingested sources, the chosen model, the universe's sectors) is recorded by the run in
its manifest under :data:`CONTEXT_KEY` (:func:`job.stages.report.context`); ``forecast``, ``backtest``
and ``report`` merge into a month and keep it. A merged month therefore re-renders from its merged
tables: after ``rotation forecast --models ridge`` the decision shows ridge's new forecasts.

The ``metrics`` document is rebuilt from the long table's ``path`` column (:func:`metrics_document`):
numbers come back as floats (an integer count ``89`` as ``89.0``), a NaN as None, and empty
sections are absent, which is all the report's sections read.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from job import artifacts
from job.artifacts import Kind
from job.errors import ConfigError, DamagedArtifact
from job.months import month_str
from job.report.data import DataQualitySection, ProvenanceSection, ReportData, ValidationSuite
from job.report.inputs import (
    allocation_section,
    analytics_sections,
    decision_section,
    execution_section,
    forecast_quality_section,
    leverage_section,
    lookahead_section,
    performance_section,
    scoreboard_section,
    verdict_sentences,
)
from job.store.base import ArtifactNotFound, Store

CONTEXT_KEY = "report"
"""The manifest key under which ``rotation run`` records what only the run knows (module docstring)."""

NEEDED: tuple[Kind, ...] = (artifacts.FORECASTS, artifacts.WEIGHTS, artifacts.BACKTEST, artifacts.BACKTEST_FORECASTS,
                            artifacts.BACKTEST_WEIGHTS, artifacts.METRICS, artifacts.VALIDATION)
"""The kinds every report needs; ``lookahead_backtest`` is read when the month has it."""

AUDIT_SECTION = "lookahead_audit"  # the metrics section holding the lag-0 backtest's document
MONTH_COLUMNS = ("decision_month", "target_month")
AUDIT_NOT_RUN = ("the look-ahead audit runs ridge with publication lag 0; ridge was not in --models, "
                     "or --no-audit was given")


class MissingArtifact(ConfigError):
    """The month's manifest lacks something the report needs (exit code 2)."""


# ------------------------------------------------------------------------------------------- reading


def read_artifact(store: Store, manifest: Mapping[str, Any], kind: Kind, *, required: bool = True) -> bytes | None:
    """The bytes of the month's ``kind`` artifact, checked against the manifest's size and sha256.

    MissingArtifact (exit 2) naming the kind when the manifest lists none and ``required``; None when it
    lists none and not ``required``; DamagedArtifact (exit 3) when the listed file is missing or damaged.
    """
    from job.store.manifest import check_artifact

    as_of = manifest.get("as_of")
    entries = [a for a in manifest.get("artifacts", []) if a.get("kind") == kind.name]
    if not entries:
        if not required:
            return None
        raise MissingArtifact(f"the published month {as_of} has no {kind.name} artifact, which its report needs",
                              hint=f"run `rotation run --as-of {as_of}` to publish the month in full")
    entry = entries[-1]
    try:
        data = store.get_bytes(entry["path"])
    except ArtifactNotFound:
        raise DamagedArtifact(f"{entry['path']} is listed in the manifest but missing",
                            hint="run `rotation verify`, then re-run the month") from None
    problem = check_artifact(entry["path"], data, entry)
    if problem:
        raise DamagedArtifact(problem, hint="the store was modified after publication; re-run the month")
    return data


def read_table(store: Store, manifest: Mapping[str, Any], kind: Kind, *, required: bool = True
               ) -> pd.DataFrame | None:
    """A table kind of the month as a frame; ``decision_month``/``target_month`` as monthly Periods."""
    data = read_artifact(store, manifest, kind, required=required)
    if data is None:
        return None
    try:
        frame = pq.read_table(io.BytesIO(data)).to_pandas()
    except (pa.ArrowException, OSError) as exc:
        raise DamagedArtifact(f"the {kind.name} artifact of {manifest.get('as_of')} cannot be read: {exc}") from None
    for column in MONTH_COLUMNS:
        if column in frame.columns:
            frame[column] = pd.PeriodIndex(frame[column], freq="M")
    return frame


def metrics_document(frame: pd.DataFrame) -> dict[str, Any]:
    """The metrics document that :func:`job.query.flatten_metrics` flattened into ``frame``.

    Each row's ``path`` is the document's keys joined by ``.``; its first key is ``section`` and its last
    ``metric`` (so a ticker such as ``BRK.B`` as the last key comes back whole). Values are ``value``
    (a float) or ``value_text``; a dict whose keys are ``0..n-1`` becomes a list again.
    """
    doc: dict[str, Any] = {}
    for section, metric, path, value, text in frame[["section", "metric", "path", "value", "value_text"]].itertuples(
            index=False, name=None):
        keys = _path_keys(section, metric, str(path))
        node = doc
        for key in keys[:-1]:
            child = node.get(key)
            if not isinstance(child, dict):
                child = node[key] = {}
            node = child
        number = None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
        node[keys[-1]] = number if number is not None else (None if text is None or pd.isna(text) else str(text))
    return _lists(doc)


def _path_keys(section: Any, metric: Any, path: str) -> list[str]:
    if section is None or pd.isna(section):
        return [path]  # a top-level scalar: the path is its one key
    head, tail = f"{section}.", f".{metric}"
    if path == f"{section}.{metric}":
        return [str(section), str(metric)]
    if path.startswith(head) and path.endswith(tail) and len(path) > len(head) + len(tail):
        return [str(section), *path[len(head):-len(tail)].split("."), str(metric)]
    return path.split(".")


def _lists(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    out = {k: _lists(v) for k, v in node.items()}
    if out and sorted(out) == sorted(str(i) for i in range(len(out))):
        return [out[str(i)] for i in range(len(out))]
    return out


# ------------------------------------------------------------------------------------------ the report


def report_context(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """What the run recorded for its report (:data:`CONTEXT_KEY`); MissingArtifact when it did not."""
    context = manifest.get(CONTEXT_KEY)
    if isinstance(context, dict):
        return context
    as_of = manifest.get("as_of")
    kinds = {a.get("kind") for a in manifest.get("artifacts", [])}
    if "report_data" in kinds:
        raise MissingArtifact(f"the published month {as_of} was written by an older version (report_data.json), "
                              "whose report this version does not re-render",
                              hint=f"re-run the month: `rotation run --as-of {as_of}`")
    raise MissingArtifact(f"the published month {as_of} has no report context (only `rotation run` records it)",
                          hint=f"run `rotation run --as-of {as_of}` to publish the month in full")


def report_data(store: Store, manifest: Mapping[str, Any]) -> ReportData:
    """Every section of the month's report, from the artifacts ``manifest`` lists and the run's context.

    MissingArtifact (exit 2, one line naming the kind) when the manifest lacks a kind in :data:`NEEDED`
    or the run's context; DamagedArtifact (exit 3) when a listed file is missing or damaged.
    """
    from job.backtest import BASELINES

    context = report_context(manifest)
    tables = {kind.name: read_table(store, manifest, kind) for kind in NEEDED if kind.is_table}
    validation = json.loads(read_artifact(store, manifest, artifacts.VALIDATION) or b"{}")
    lag0 = read_table(store, manifest, artifacts.LOOKAHEAD_BACKTEST, required=False)
    doc = metrics_document(tables["metrics"])
    as_of = pd.Period(str(manifest["as_of"]), freq="M")
    strategy = context.get("strategy") or {}

    weights, forecasts = tables["weights"], tables["forecasts"]
    portfolio, forecasts_bt, weights_bt = tables["backtest"], tables["backtest_forecasts"], tables["backtest_weights"]
    models_portfolio = portfolio[~portfolio["model"].isin(BASELINES)]
    quality = forecasts_bt[~forecasts_bt["model"].isin(BASELINES)]
    audit = doc.get(AUDIT_SECTION)
    lookahead = None
    if lag0 is not None and isinstance(audit, dict):
        lookahead = lookahead_section(
            doc, audit, publication_lag_months=int(context.get("publication_lag_months", 1)),
            portfolio_point_in_time=models_portfolio[models_portfolio["model"].isin(set(lag0["model"]))],
            portfolio_lag0=lag0)
    quality_context = context.get("data_quality") or {}
    provenance = dict(context.get("provenance") or {})
    provenance["stage_timings"] = dict(provenance.get("stage_timings") or [])
    data = ReportData(
        as_of=month_str(as_of),
        decision=decision_section(weights[["model", "asset", "weight", "flag", "multiplier"]], forecasts,
                                  target_month=month_str(as_of + 1), chosen_model=str(context["chosen_model"]),
                                  sectors=dict(context.get("sectors") or []), threshold=strategy.get("threshold"),
                                  factor=strategy.get("factor")),
        performance=performance_section(portfolio, doc, benchmark=str(doc.get("benchmark_asset") or "SPY"),
                                        cost_bps=strategy.get("cost_bps"),
                                        min_oos_months=context.get("min_oos_months")),
        forecast_quality=forecast_quality_section(quality, forecasts_bt[forecasts_bt["model"].isin(BASELINES)], doc),
        allocation=allocation_section(weights_bt[~weights_bt["model"].isin(BASELINES)], models_portfolio),
        lookahead=lookahead,
        data_quality=DataQualitySection(
            synthetic=bool(quality_context.get("synthetic")), source=str(quality_context.get("source", "")),
            passed=bool(validation.get("passed", True)),
            suites=[ValidationSuite(name=s["name"], checks=s["checks"], failed=s["failed"],
                                    warnings=s.get("warnings", 0), worst=s.get("worst_example") or "")
                    for s in validation.get("suites", [])],
            sources=list(quality_context.get("sources") or []),
            asset_first_months=dict(quality_context.get("asset_first_months") or []),
            asset_first_held_months=dict(quality_context.get("asset_first_held_months") or [])),
        provenance=ProvenanceSection(**provenance),
        verdict=verdict_sentences(doc), scoreboard=scoreboard_section(doc), execution=execution_section(doc),
        leverage=leverage_section(doc), analytics=analytics_sections(doc),
    )
    if lookahead is None:
        data.lookahead_not_run_reason = AUDIT_NOT_RUN
    return data
