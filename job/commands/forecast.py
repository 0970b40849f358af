"""``rotation forecast``: next month's return of every asset from every model, trained or loaded."""

from __future__ import annotations

import click

from job.app import App, pass_app
from job.commands.options import compute_options, echo_models, load_month, model_options
from job.months import month_str


@click.command()
@model_options
@compute_options
@click.option("--publish/--no-publish", default=True, show_default=True,
              help="Merge the forecasts into the month's publication (forecasts/as_of=YYYY-MM/...).")
@pass_app
def forecast(app: App, as_of: str | None, models_text: str | None, lstm_preset: str | None,
             publication_lag: int | None, publish: bool, recompute: bool = False,
          cluster: str | None = None) -> None:
    """Forecast next month's return of every asset with every model.

    Loads the newest compatible stored model (same features and configuration, trained for the as-of
    month or within models.refit_months) or trains it when missing, stale or corrupt
    (models.on_corrupt_model), then prints the forecasts and merges them into the month's publication:
    the named models' rows replace theirs, every other artifact of the month stays as published. Both
    baselines are always included. Exit code 2 for bad options, 3 for a corrupt model with
    on_corrupt_model=fail, 5 when the store is unreachable, 6 when another run keeps the lock.
    """
    from job import artifacts
    from job.models import parse_model_names
    from job.stages import models
    from job.stages.session import session

    names = parse_model_names(models_text, app.settings)
    dataset, month = load_month(app, as_of, lstm_preset, publication_lag)
    store = app.store()
    with session(store, app.settings, "forecast", as_of=month_str(month)) as run:
        with run.stage("train_forecast"):
            frame, trained = models.forecast(dataset, app.settings, month, store, names, recompute=recompute,
                                             cluster=cluster)
        echo_models(trained)
        table = frame.pivot(index="asset", columns="model", values="predicted").reindex(
            index=dataset.assets, columns=list(trained))
        click.echo(f"forecast of {month_str(month + 1)} returns (%), as of {month_str(month)}:")
        click.echo((100 * table).round(2).to_string())
        if publish:
            publisher = run.publisher(month_str(month), mode="merge")
            key = publisher.write_table(artifacts.FORECASTS, frame)
            publisher.commit(run.timings)
            click.echo(f"published {key}")
