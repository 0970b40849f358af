"""Options and output helpers that several subcommands share (the click side only; no stage logic)."""

from __future__ import annotations

from typing import Any

import click

from job.app import App
from job.months import parse_month

LSTM_PRESETS = ("small", "seed")


def model_options(func: Any) -> Any:
    """The options ``train``, ``forecast`` and ``backtest`` share: --as-of, --models, --lstm-preset,
    --publication-lag."""
    options = [
        click.option("--as-of", "as_of", metavar="YYYY-MM",
                     help="Last complete month: use labels up to it.  [default: the warehouse's latest]"),
        click.option("--models", "models_text", metavar="NAMES",
                     help="Comma-separated: persistence, historical-mean, ridge, tree, lstm, ensemble.  "
                          "[default: models.enabled]"),
        click.option("--lstm-preset", type=click.Choice(LSTM_PRESETS),
                     help="small (fast) or seed (the original 10.5M-parameter network).  "
                          "[default: models.lstm_preset]"),
        click.option("--publication-lag", type=int, metavar="MONTHS",
                     help="Macro publication lag; 0 reproduces the original's look-ahead.  "
                          "[default: data.publication_lag_months]"),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def compute_options(func: Any) -> Any:
    """--recompute and --cluster: where the fits run and whether stored ones are reused."""
    func = click.option("--cluster", metavar="ADDRESS", default=None,
                        help="Dask scheduler for the fits, e.g. tcp://scheduler:8786.  "
                             "[default: $DASK_SCHEDULER_ADDRESS, else local processes]")(func)
    func = click.option("--recompute", is_flag=True,
                        help="Refit every model and forecast every month again instead of reusing the fits "
                             "stored in the model registry.")(func)
    return func


def load_month(app: App, as_of: str | None, lstm_preset: str | None, publication_lag: int | None) -> tuple[Any, Any]:
    """Apply the shared model flags, then load the point-in-time dataset: ``(dataset, as-of month)``."""
    from job.stages import data

    app.override("models", lstm_preset=lstm_preset)
    if publication_lag is not None:
        app.override("data", publication_lag_months=publication_lag)
    return data.load(app.settings, app.warehouse, as_of=parse_month(as_of) if as_of else None,
                     publication_lag=publication_lag)


def echo_models(trained: dict[str, Any]) -> None:
    """One line per model: stored prefix, trained or reused, and its own fit's validation MAE.

    That MAE is a diagnostic of each fit, measured on different rows per model (CV test rows for ridge,
    tree and the baselines, the last 20 % for the LSTM, their intersection for the ensemble), so no ratio
    between models is printed: models are compared on the backtest's scoreboard (job/scoreboard.py).
    """
    for name, result in trained.items():
        stored = result.metadata.get("validation_mae_mean")
        mae = float("nan") if stored is None else float(stored)
        how = "reused" if result.reused else f"trained in {result.fit_seconds:.1f}s"
        params = result.params
        if params:
            params = {k: round(v, 3) if isinstance(v, float) else v for k, v in params.items()}
        click.echo(f"{name:16s} own-fit validation MAE {100 * mae:5.2f}% (diagnostic, not comparable across "
                   f"models)  {how}  {result.prefix}"
                   + (f"  {params}" if params else ""))
