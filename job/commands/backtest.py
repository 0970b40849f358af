"""``rotation backtest``: walk-forward (or static) backtest of the models, metrics, optional parameter sweep."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import click
import pandas as pd

from job.app import App, pass_app
from job.logs import get_logger
from job.months import month_str, parse_month
from job.strategy import MODES, PRESETS, StrategyParams

log = get_logger("backtest")

# The sweep's default grid: monthly predictions are mostly within +-3 %, so the thresholds sit there.
SWEEP_THRESHOLDS = (0.0, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.10, 0.15)
SWEEP_FACTORS = (1.0, 2.0, 3.0, 5.0, 10.0)
SWEEP_SHRINKAGES = (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)


def strategy_params(settings: Any, *, preset: str | None = None, **flags: Any) -> StrategyParams:
    """``settings.strategy`` < ``preset`` (threshold, factor, shrinkage, mode) < flags given (not None)."""
    params = StrategyParams.from_settings(settings)
    if preset:
        chosen = PRESETS[preset]
        params = params.replace(threshold=chosen.threshold, factor=chosen.factor, shrinkage=chosen.shrinkage,
                                mode=chosen.mode)
    try:
        return params.replace(**flags)
    except ValueError as exc:
        from job.errors import ConfigError

        raise ConfigError(f"strategy: {exc}") from None


def backtest_stage(dataset: Any, settings: Any, model_names: Sequence[str], *, params: StrategyParams,
                   scheme: str | None = None, start: pd.Period | None = None, n_jobs: int | None = None,
                   sweep_grid: tuple[Sequence[float], Sequence[float], Sequence[float]] | None = None,
                   ) -> tuple[Any, dict[str, Any], pd.DataFrame | None]:
    """Run the backtest, its metrics and (with ``sweep_grid``) the parameter sweep; no I/O.

    Returns ``(BacktestResult, metrics document, sweep table or None)`` (what :func:`write_artifacts`
    publishes); the ``run`` command calls this too.
    """
    from job.backtest import sweep_result, walk_forward
    from job.metrics import summarise

    result = walk_forward(dataset, model_names, settings, scheme=scheme, start=start, n_jobs=n_jobs, params=params)
    summary = summarise(result, None, settings)
    summary["backtest"] = {**result.info, "folds": len(result.folds)}
    summary["data"] = {k: dataset.info.get(k) for k in ("source", "universe", "as_of", "data_fingerprint",
                                                        "look_ahead") if k in dataset.info}
    summary["data"]["publication_lag_months"] = dataset.publication_lag_months
    table = None
    if sweep_grid is not None:
        began = time.perf_counter()
        table = sweep_result(result, dataset, *sweep_grid, mode=params.mode, cost_bps=params.cost_bps,
                             original_rf=float(settings.backtest.original_sortino_rf))
        log.info("sweep done", extra={"fields": {"combinations": len(table),
                                                 "seconds": round(time.perf_counter() - began, 3)}})
    return result, summary, table


def write_artifacts(publisher: Any, result: Any, summary: dict[str, Any], sweep: pd.DataFrame | None) -> list[str]:
    """Write ``backtest`` (one row per model and month), ``backtest_positions`` (one row per model, month
    and asset: forecast, realised, weight, flag, multiplier, exposure), ``metrics/metrics.json`` and
    ``sweep`` through a :class:`job.store.publish.Publisher`; returns the keys (commit is the caller's).
    """
    from job.backtest import as_table

    positions = result.forecasts.merge(result.weights, on=["model", "decision_month", "target_month", "asset"],
                                       how="left", validate="one_to_one")
    keys = [publisher.write_table("backtest", as_table(result.portfolio)),
            publisher.write_table("backtest_positions", as_table(positions)),
            publisher.write_json("metrics", "metrics.json", summary)]
    if sweep is not None:
        keys.append(publisher.write_table("sweep", sweep))
    return keys


def _floats(text: str | None, default: Sequence[float], name: str) -> tuple[float, ...]:
    if not text:
        return tuple(default)
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of numbers", param_hint=name) from None


@click.command()
@click.option("--as-of", "as_of", metavar="YYYY-MM",
              help="Last complete month: the backtest uses data up to it.  [default: the warehouse's latest]")
@click.option("--models", "models_text", metavar="NAMES", help="Comma-separated models.  [default: models.enabled]")
@click.option("--scheme", type=click.Choice(["walk-forward", "static"]),
              help="walk-forward (expanding window) or static (the original 80/20 split).  [default: backtest.scheme]")
@click.option("--start", metavar="YYYY-MM", help="First decision month (walk-forward).  [default: first with "
              "backtest.min_train_months of training rows]")
@click.option("--preset", type=click.Choice(list(PRESETS)),
              help="Rule parameters: default (0.15, 5, 0.3) or notebook (0.10, 10, 0: the original).")
@click.option("--threshold", type=float, help="Leverage flag when the predicted monthly return exceeds this.")
@click.option("--factor", type=float, help="Leverage multiplier of flagged assets (>= 1).")
@click.option("--shrinkage", type=float, help="Share of the weight spread equally, in [0, 1].")
@click.option("--mode", type=click.Choice(MODES), help="normalised (the original: divide by capital deployed) "
              "or levered (carry it, pay the risk-free rate on the borrowing).")
@click.option("--cost-bps", type=float, help="Transaction cost per unit of turnover, basis points.")
@click.option("--publication-lag", type=int, metavar="MONTHS",
              help="Macro publication lag; 0 reproduces the original's look-ahead.  "
              "[default: data.publication_lag_months]")
@click.option("--n-jobs", type=int, help="joblib workers for the fold fits.  [default: backtest.n_jobs]")
@click.option("--sweep", "do_sweep", is_flag=True,
              help="Also evaluate a grid of (threshold, factor, shrinkage) on the forecasts; writes a sweep table.")
@click.option("--sweep-thresholds", metavar="LIST", help="Comma-separated thresholds for --sweep.")
@click.option("--sweep-factors", metavar="LIST", help="Comma-separated factors for --sweep.")
@click.option("--sweep-shrinkages", metavar="LIST", help="Comma-separated shrinkages for --sweep.")
@pass_app
def backtest(app: App, as_of: str | None, models_text: str | None, scheme: str | None, start: str | None,
             preset: str | None, threshold: float | None, factor: float | None, shrinkage: float | None,
             mode: str | None, cost_bps: float | None, publication_lag: int | None, n_jobs: int | None,
             do_sweep: bool, sweep_thresholds: str | None, sweep_factors: str | None,
             sweep_shrinkages: str | None) -> None:
    """Backtest the models month by month and publish backtest/ and metrics/ artifacts.

    Walk-forward: every forecast is made by a model fitted only on labels up to its decision month,
    refitted per models.refit_months. Reports CAGR, volatility, Sharpe, Sortino, drawdown, Calmar, hit
    rate vs SPY, turnover and costs, for the full out-of-sample span and the original's last-20 % window,
    with SPY and equal weight alongside, plus forecast MAE against persistence and historical-mean and
    the rank IC. Exit code 2 for bad options or too little history, 5 when the store is unreachable.
    """
    from job.models.factory import parse_model_names
    from job.store.publish import Publisher, new_run_id
    from job.warehouse import load_dataset

    settings = app.settings
    params = strategy_params(settings, preset=preset, threshold=threshold, factor=factor, shrinkage=shrinkage,
                             mode=mode, cost_bps=cost_bps)
    names = parse_model_names(models_text, settings)
    grid = None
    if do_sweep:
        grid = (_floats(sweep_thresholds, SWEEP_THRESHOLDS, "--sweep-thresholds"),
                _floats(sweep_factors, SWEEP_FACTORS, "--sweep-factors"),
                _floats(sweep_shrinkages, SWEEP_SHRINKAGES, "--sweep-shrinkages"))
    timings: dict[str, float] = {}
    began = time.perf_counter()
    dataset, month = load_dataset(settings, app.warehouse, as_of=parse_month(as_of) if as_of else None,
                                  publication_lag=publication_lag)
    timings["load"] = time.perf_counter() - began
    began = time.perf_counter()
    result, summary, table = backtest_stage(dataset, settings, names, params=params, scheme=scheme,
                                            start=parse_month(start) if start else None, n_jobs=n_jobs,
                                            sweep_grid=grid)
    timings["backtest"] = time.perf_counter() - began
    run_id = new_run_id()
    summary["as_of"], summary["run_id"] = month_str(month), run_id
    publisher = Publisher(app.store(), month_str(month), run_id)
    write_artifacts(publisher, result, summary, table)
    publisher.commit(timings=timings, extra={"stage": "backtest"})
    _echo_summary(summary, table)


def _echo_summary(summary: dict[str, Any], table: pd.DataFrame | None) -> None:
    """One line per model and period, then SPY and equal weight; the sweep's best Sharpe per model."""
    def line(name: str, period: str, m: dict[str, Any]) -> str:
        def pct(key: str) -> str:
            v = m.get(key)
            return "   n/a" if v is None else f"{100 * v:6.2f}%"

        def num(key: str) -> str:
            v = m.get(key)
            return "  n/a" if v is None else f"{v:5.2f}"

        return (f"{name:16s} {period:15s} {m['start']}..{m['end']}  CAGR {pct('cagr')}  vol {pct('annual_volatility')}"
                f"  Sharpe {num('sharpe')}  Sortino {num('sortino')}  maxDD {pct('max_drawdown')}")

    for model, periods in summary["models"].items():
        for period, m in periods.items():
            click.echo(line(model, period, m))
    for name in ("benchmark", "equal_weight"):
        for period, m in summary.get(name, {}).items():
            click.echo(line(name, period, m))
    for model, q in summary["forecast_quality"]["by_model"].items():
        ratio = q.get("mae_ratio_historical_mean")
        click.echo(f"{model:16s} MAE {q['mae']:.4f}"
                   + (f" ({ratio:.3f} x historical mean)" if ratio is not None else "")
                   + (f"  rank IC {q['rank_ic_mean']:+.3f} (t {q['rank_ic_t']:+.2f})"
                      if q.get("rank_ic_t") is not None else ""))
    if table is not None and not table.empty:
        best = table.sort_values("sharpe_net", ascending=False).groupby("model", sort=False).head(1)
        for row in best.itertuples():
            click.echo(f"sweep best {row.model}: threshold {row.threshold:g} factor {row.factor:g} "
                       f"shrinkage {row.shrinkage:g}  net Sharpe {row.sharpe_net:.2f} "
                       f"(of {int((table['model'] == row.model).sum())} combinations)")
