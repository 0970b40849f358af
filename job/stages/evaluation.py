"""Evaluation stages: the walk-forward backtest, its metrics, the sweep and the look-ahead audit.

``rotation run`` and ``rotation backtest`` both go through :func:`backtest` and :func:`publish_backtest`,
so they compute and publish the same kinds (backtest, backtest_forecasts, backtest_weights, metrics and,
with a sweep, sweep) with the same metrics.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from job import artifacts
from job.dataset import Dataset
from job.errors import ConfigError
from job.logs import get_logger
from job.strategy import PRESETS, StrategyParams

log = get_logger("backtest")

# The sweep's default grid: monthly predictions are mostly within +-3 %, so the thresholds sit there.
SWEEP_THRESHOLDS = (0.0, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.10, 0.15)
SWEEP_FACTORS = (1.0, 2.0, 3.0, 5.0, 10.0)
SWEEP_SHRINKAGES = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
SweepGrid = tuple[Sequence[float], Sequence[float], Sequence[float]]


def strategy_params(settings: Any, *, preset: str | None = None, **flags: Any) -> StrategyParams:
    """``settings.strategy`` < ``preset`` (threshold, factor, shrinkage, mode) < flags given (not None)."""
    params = StrategyParams.from_settings(settings)
    if preset:
        chosen = PRESETS[preset]
        params = params.replace(threshold=chosen.threshold, factor=chosen.factor, shrinkage=chosen.shrinkage,
                                mode=chosen.mode)
    try:
        return params.replace(**{k: v for k, v in flags.items() if v is not None})
    except ValueError as exc:
        raise ConfigError(f"strategy: {exc}") from None


@dataclass
class Evaluation:
    """A backtest, its metrics document and (optionally) the sweep table."""

    result: Any  # job.backtest.BacktestResult
    metrics: dict[str, Any]
    sweep: pd.DataFrame | None = None
    baseline_weights: pd.DataFrame | None = None  # the baselines run through the same allocation (job.scoreboard)
    baseline_portfolio: pd.DataFrame | None = None

    @property
    def run_facts(self) -> dict[str, Any]:
        """How this run computed the backtest (seconds, executor, fits fitted or reused): they belong in
        the manifest, not in the metrics, which are the same however the results were computed."""
        return {k: v for k, v in self.result.info.items() if k in RUN_FACTS}


# Keys of BacktestResult.info that describe the computation, not the results.
RUN_FACTS = ("seconds", "n_jobs", "executor", "fits_fitted", "fits_reused", "forecasts_reused", "fits_ran_on")


def _registry(store: Any) -> Any:
    if store is None:
        return None
    from job.models import ModelRegistry

    return ModelRegistry(store)


def backtest(dataset: Dataset, settings: Any, models: Sequence[str], *, params: StrategyParams,
             scheme: str | None = None, start: pd.Period | None = None, n_jobs: int | None = None,
             sweep_grid: SweepGrid | None = None, store: Any = None, recompute: bool = False,
             cluster: str | None = None) -> Evaluation:
    """Walk-forward (or static) backtest of ``models``, its metrics and, with ``sweep_grid``, the sweep.

    With ``store``, every fit and its forecasts are reused from (and stored in) the store's model
    registry by identity, so a rerun or the next month fits only what is new; ``recompute`` refits
    everything; ``cluster`` sends the fits to a Dask scheduler (default ``$DASK_SCHEDULER_ADDRESS``).
    """
    from job.backtest import booked_returns, sweep_result, walk_forward
    from job.metrics import decision_sections, summarise

    result = walk_forward(dataset, models, settings, scheme=scheme, start=start, n_jobs=n_jobs, params=params,
                          registry=_registry(store), recompute=recompute, cluster=cluster)
    warn_small_sample(result.portfolio, int(settings.backtest.min_oos_months))
    table = None
    if sweep_grid is not None:
        began = time.perf_counter()
        table = sweep_result(result, dataset, *sweep_grid, mode=params.mode, cost_bps=params.cost_bps,
                             original_rf=float(settings.backtest.original_sortino_rf))
        log.info("sweep done", extra={"fields": {"combinations": len(table),
                                                 "seconds": round(time.perf_counter() - began, 3)}})
    months = pd.PeriodIndex(result.forecasts["decision_month"].unique())
    booked = None if table is None else booked_returns(dataset, months)  # the sweep's own (executed) returns
    doc = summarise(result, settings, sweep=table, booked=booked)  # with a sweep: the deflated Sharpe of its best
    # How the results were computed (timings, fits reused) goes in the manifest (Evaluation.run_facts): the
    # metrics of a cold run, a rerun, a resumed run and a cluster run must be byte-identical.
    doc["backtest"] = {**{k: v for k, v in result.info.items() if k not in RUN_FACTS}, "folds": len(result.folds)}
    info = dataset.info
    doc["data"] = {"source": info.source, "universe": info.universe, "dataset_fingerprint": info.dataset_fingerprint,
                   "publication_lag_months": dataset.publication_lag_months}
    doc["benchmark_asset"] = dataset.benchmark
    # scoreboard, baselines' backtest, execution lag, leverage usage, verdict (job.metrics.decision_sections)
    sections, base_weights, base_portfolio = decision_sections(result, dataset, params, settings, models, doc)
    doc.update(sections)
    return Evaluation(result=result, metrics=doc, sweep=table, baseline_weights=base_weights,
                      baseline_portfolio=base_portfolio)


def warn_small_sample(portfolio: pd.DataFrame, minimum: int) -> int:
    """Log one warning when the out-of-sample span is under ``minimum`` months; returns the span."""
    from job.report.inputs import out_of_sample_months

    months = out_of_sample_months(portfolio)
    if months < minimum:
        log.warning("only %d out-of-sample months (backtest.min_oos_months = %d): the performance figures "
                    "cannot distinguish skill from luck", months, minimum,
                    extra={"fields": {"oos_months": months, "min_oos_months": minimum}})
    return months


AUDIT_MODELS = ("ridge",)


def lookahead_audit(lag0: Dataset, settings: Any, models: Sequence[str], *, params: StrategyParams,
                    scheme: str | None = None, store: Any = None,
                    recompute: bool = False, cluster: str | None = None) -> Evaluation | None:
    """The same backtest at publication lag 0 (the original notebook's look-ahead), for the models in
    :data:`AUDIT_MODELS` that were asked for; None when none was."""
    chosen = [m for m in models if m in AUDIT_MODELS]
    if not chosen:
        return None
    from job.backtest import walk_forward
    from job.metrics import summarise

    result = walk_forward(lag0, chosen, settings, scheme=scheme, params=params, registry=_registry(store),
                          recompute=recompute, cluster=cluster)
    return Evaluation(result=result, metrics=summarise(result, settings))


def metrics_frame(doc: dict[str, Any]) -> pd.DataFrame:
    """The metrics document as the ``metrics`` kind's long table (one row per section, model, period, metric)."""
    from job.query import flatten_metrics

    rows = flatten_metrics(doc)
    return pd.DataFrame(rows, columns=artifacts.METRICS.columns)


def backtest_forecasts(result: Any) -> pd.DataFrame:
    """Models' and baselines' walk-forward forecasts with the realised returns (``backtest_forecasts``)."""
    frames = [result.forecasts]
    if result.baselines is not None and not result.baselines.empty:
        frames.append(result.baselines)
    return pd.concat(frames, ignore_index=True)


def publish_backtest(publisher: Any, evaluation: Evaluation, *, audit: Evaluation | None = None) -> list[str]:
    """Write the backtest kinds of ``evaluation`` (and the audit's portfolio and metrics) through ``publisher``."""
    doc = dict(evaluation.metrics)
    if audit is not None:
        doc["lookahead_audit"] = audit.metrics
    result = evaluation.result
    portfolio, weights = result.portfolio, result.weights
    if evaluation.baseline_portfolio is not None and not evaluation.baseline_portfolio.empty:
        # the baselines' own allocation and returns, beside the models' (model = the baseline's name)
        portfolio = pd.concat([portfolio, evaluation.baseline_portfolio], ignore_index=True)
        weights = pd.concat([weights, evaluation.baseline_weights], ignore_index=True)
    keys = [publisher.write_table(artifacts.BACKTEST, portfolio),
            publisher.write_table(artifacts.BACKTEST_FORECASTS, backtest_forecasts(result)),
            publisher.write_table(artifacts.BACKTEST_WEIGHTS, weights),
            publisher.write_table(artifacts.METRICS, metrics_frame(doc))]
    if audit is not None:  # the look-ahead audit's lag-0 portfolio, for the report's section 5
        keys.append(publisher.write_table(artifacts.LOOKAHEAD_BACKTEST, audit.result.portfolio))
    if evaluation.sweep is not None:
        keys.append(publisher.write_table(artifacts.SWEEP, evaluation.sweep))
    return keys
