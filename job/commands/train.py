"""``rotation train``: fit the models as of a month and save them in the model registry."""

from __future__ import annotations

from typing import Any

import click
import numpy as np

from job.app import App, pass_app
from job.months import month_str, parse_month

LSTM_PRESETS = ("small", "seed")


def model_options(func: Any) -> Any:
    """The options ``train`` and ``forecast`` share: --as-of, --models, --lstm-preset, --publication-lag."""
    options = [
        click.option("--as-of", "as_of", metavar="YYYY-MM",
                     help="Last complete month: train on labels up to it.  [default: the warehouse's latest]"),
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


def load_for_models(app: App, as_of: str | None, lstm_preset: str | None,
                    publication_lag: int | None) -> tuple[Any, Any]:
    """Apply the shared flags, then load the point-in-time dataset: ``(dataset, as-of month)``."""
    from job.warehouse import load_dataset

    app.override("models", lstm_preset=lstm_preset)
    if publication_lag is not None:
        app.override("data", publication_lag_months=publication_lag)
    return load_dataset(app.settings, app.warehouse, as_of=parse_month(as_of) if as_of else None,
                        publication_lag=publication_lag)


def echo_models(trained: dict[str, Any]) -> None:
    """One line per model: stored prefix, trained or reused, validation MAE next to both baselines."""
    baselines = {n: float(np.mean(trained[n].model.validation_mae_)) for n in ("persistence", "historical-mean")
                 if n in trained}
    for name, result in trained.items():
        mae = float(np.mean(result.model.validation_mae_))
        ratios = "  ".join(f"{mae / v:.3f} x {b}" for b, v in baselines.items() if b != name and v > 0)
        how = "reused" if result.reused else f"trained in {result.fit_seconds:.1f}s"
        params = getattr(result.model, "best_params_", None) or getattr(result.model, "weights_", None)
        if params:
            params = {k: round(v, 3) if isinstance(v, float) else v for k, v in params.items()}
        click.echo(f"{name:16s} validation MAE {100 * mae:5.2f}%  {ratios}  {how}  {result.prefix}"
                   + (f"  {params}" if params else ""))


@click.command()
@model_options
@click.option("--force/--no-force", default=True, show_default=True,
              help="Refit the named models even when a fresh compatible one is stored.")
@pass_app
def train(app: App, as_of: str | None, models_text: str | None, lstm_preset: str | None,
          publication_lag: int | None, force: bool) -> None:
    """Fit the models on every label up to the as-of month and save them in the model registry.

    Models go to models/<name>/train_end=YYYY-MM/<fingerprint>/ in the artifact store (skops for
    scikit-learn, .keras for the LSTM) with their metadata and checksums. Both baselines (persistence,
    historical mean) are fitted too, and every model's validation MAE is shown against them. Exit code 2
    for an unknown model or bad month, 5 when the store is unreachable.
    """
    from job.models import ModelRegistry, data_fingerprint, parse_model_names, train_models

    names = parse_model_names(models_text, app.settings)
    dataset, month = load_for_models(app, as_of, lstm_preset, publication_lag)
    registry = ModelRegistry(app.store())
    trained = train_models(names, dataset, app.settings, month, registry, data_fingerprint=data_fingerprint(dataset),
                           force=force)
    click.echo(f"as of {month_str(month)}: {len(trained)} models in {app.store_uri}")
    echo_models(trained)
