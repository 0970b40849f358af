"""``rotation train``: fit the models as of a month and save them in the model registry."""

from __future__ import annotations

import click

from job.app import App, pass_app
from job.commands.options import compute_options, echo_models, load_month, model_options
from job.months import month_str


@click.command()
@model_options
@compute_options
@click.option("--force/--no-force", default=True, show_default=True,
              help="Refit the named models even when a fresh compatible one is stored.")
@pass_app
def train(app: App, as_of: str | None, models_text: str | None, lstm_preset: str | None,
          publication_lag: int | None, force: bool, recompute: bool = False,
          cluster: str | None = None) -> None:
    """Fit the models on every label up to the as-of month and save them in the model registry.

    Models go to models/<name>/train_end=YYYY-MM/<fingerprint>/ in the artifact store (skops for
    scikit-learn, .keras for the LSTM) with their metadata and checksums, under the store's run lock.
    Both baselines (persistence, historical mean) are fitted too, and every model's validation MAE is
    shown against them. Nothing is published: no month's manifest changes. Exit code 2 for an unknown
    model or bad month, 5 when the store is unreachable, 6 when another run keeps the lock.
    """
    from job.models import parse_model_names
    from job.stages import models
    from job.stages.session import session

    names = parse_model_names(models_text, app.settings)
    dataset, month = load_month(app, as_of, lstm_preset, publication_lag)
    store = app.store()
    with session(store, app.settings, "train", as_of=month_str(month)):
        trained = models.train(dataset, app.settings, month, store, names, force=force or recompute,
                               cluster=cluster)
    click.echo(f"as of {month_str(month)}: {len(trained)} models in {app.store_uri}")
    echo_models(trained)
