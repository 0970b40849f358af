"""``rotation backtest``: walk-forward (or static) backtest of the models, metrics, optional parameter sweep."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click
import pandas as pd

from job.app import App, pass_app
from job.commands.options import compute_options
from job.months import month_str, parse_month
from job.strategy import MODES, PRESETS


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
@click.option("--n-jobs", type=int, help="Local worker processes for the fold fits.  [default: backtest.n_jobs]")
@click.option("--sweep", "do_sweep", is_flag=True,
              help="Also evaluate a grid of (threshold, factor, shrinkage) on the forecasts; writes a sweep table.")
@click.option("--sweep-thresholds", metavar="LIST", help="Comma-separated thresholds for --sweep.")
@click.option("--sweep-factors", metavar="LIST", help="Comma-separated factors for --sweep.")
@click.option("--sweep-shrinkages", metavar="LIST", help="Comma-separated shrinkages for --sweep.")
@compute_options
@pass_app
def backtest(app: App, as_of: str | None, models_text: str | None, scheme: str | None, start: str | None,
             preset: str | None, threshold: float | None, factor: float | None, shrinkage: float | None,
             mode: str | None, cost_bps: float | None, publication_lag: int | None, n_jobs: int | None,
             do_sweep: bool, sweep_thresholds: str | None, sweep_factors: str | None,
             sweep_shrinkages: str | None, recompute: bool = False,
             cluster: str | None = None) -> None:
    """Backtest the models month by month and publish backtest/ and metrics/ artifacts.

    The same backtest and metrics as `rotation run`'s, merged into the month's publication (the named
    models' rows replace theirs; every other artifact stays as published).

    Walk-forward: every forecast is made by a model fitted only on labels up to its decision month,
    refitted per models.refit_months. Reports CAGR, volatility, Sharpe, Sortino, drawdown, Calmar, hit
    rate vs SPY, turnover and costs, for the full out-of-sample span and the original's last-20 % window,
    with SPY and equal weight alongside, plus forecast MAE against persistence and historical-mean and
    the rank IC. Exit code 2 for bad options or too little history, 5 when the store is unreachable, 6 when
    another run keeps the lock.
    """
    from job.models.factory import parse_model_names
    from job.stages import data, evaluation
    from job.stages.session import session

    settings = app.settings
    params = evaluation.strategy_params(settings, preset=preset, threshold=threshold, factor=factor,
                                        shrinkage=shrinkage, mode=mode, cost_bps=cost_bps)
    names = parse_model_names(models_text, settings)
    grid = None
    if do_sweep:
        grid = (_floats(sweep_thresholds, evaluation.SWEEP_THRESHOLDS, "--sweep-thresholds"),
                _floats(sweep_factors, evaluation.SWEEP_FACTORS, "--sweep-factors"),
                _floats(sweep_shrinkages, evaluation.SWEEP_SHRINKAGES, "--sweep-shrinkages"))
    store = app.store()
    month_flag = parse_month(as_of) if as_of else None
    with session(store, settings, "backtest", as_of=month_str(month_flag) if month_flag else None) as run:
        with run.stage("dataset"):
            dataset, month = data.load(settings, app.warehouse, as_of=month_flag, publication_lag=publication_lag)
        with run.stage("backtest"):
            evaluated = evaluation.backtest(dataset, settings, names, params=params, scheme=scheme,
                                            start=parse_month(start) if start else None, n_jobs=n_jobs,
                                            sweep_grid=grid, store=store, recompute=recompute, cluster=cluster)
        if publication_lag is not None and publication_lag != settings.data.publication_lag_months:
            # A backtest at another lag (0: the original's look-ahead) must never replace the month's
            # point-in-time results; `rotation run` publishes the lag-0 audit beside them instead.
            click.echo(f"not published: --publication-lag {publication_lag} differs from the configured "
                       f"{settings.data.publication_lag_months}", err=True)
        else:
            with run.stage("publish"):
                publisher = run.publisher(month_str(month), mode="merge")
                evaluation.publish_backtest(publisher, evaluated)
            publisher.commit(run.timings)
    _echo_summary(evaluated.metrics, evaluated.sweep)


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
