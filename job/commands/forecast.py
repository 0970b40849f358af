"""``rotation forecast``: next month's return of every asset from every model, trained or loaded."""

from __future__ import annotations

from typing import Any

import click
import pandas as pd

from job.app import App, pass_app
from job.commands.train import echo_models, load_for_models, model_options
from job.months import month_str


def forecast_stage(dataset: Any, settings: Any, month: pd.Period, store: Any, names: list[str],
                   ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Train or load ``names`` (and both baselines) as of ``month``; return the forecasts and the models.

    The forecasts frame has one row per (model, asset) with columns
    :data:`job.models.FORECAST_COLUMNS`; the target month is ``month + 1``. No publication here (the
    ``run`` command publishes with its other artifacts).
    """
    from job.models import ModelRegistry, data_fingerprint, forecast_frame, train_models

    registry = ModelRegistry(store)
    trained = train_models(names, dataset, settings, month, registry, data_fingerprint=data_fingerprint(dataset))
    sectors = dataset.info.get("sectors") or _sectors(settings, dataset.assets)
    frame = forecast_frame({n: (r.model, r.prefix) for n, r in trained.items()}, dataset, month,
                           settings.models.lookback_months, sectors=sectors)
    return frame, trained


def _sectors(settings: Any, assets: list[str]) -> dict[str, str]:
    """Asset -> sector from the configured universe that holds exactly these assets."""
    for universe in settings.universes.values():
        if universe.tickers == list(assets):
            return dict(universe.assets)
    return {}


@click.command()
@model_options
@click.option("--publish/--no-publish", default=True, show_default=True,
              help="Write forecasts/as_of=YYYY-MM/run_id=.../part-0.parquet and its manifest to the store.")
@pass_app
def forecast(app: App, as_of: str | None, models_text: str | None, lstm_preset: str | None,
             publication_lag: int | None, publish: bool) -> None:
    """Forecast next month's return of every asset with every model.

    Loads the newest compatible stored model (same features and configuration, trained for the as-of
    month or within models.refit_months) or trains it when missing, stale or corrupt
    (models.on_corrupt_model), then prints the forecasts and publishes them. Both baselines are always
    included. Exit code 2 for bad options, 3 for a corrupt model with on_corrupt_model=fail, 5 when the
    store is unreachable.
    """
    from job.models import parse_model_names
    from job.store.publish import Publisher, new_run_id

    names = parse_model_names(models_text, app.settings)
    dataset, month = load_for_models(app, as_of, lstm_preset, publication_lag)
    store = app.store()
    frame, trained = forecast_stage(dataset, app.settings, month, store, names)
    echo_models(trained)
    table = frame.pivot(index="asset", columns="model", values="predicted").reindex(
        index=dataset.assets, columns=list(trained))
    click.echo(f"forecast of {month_str(month + 1)} returns (%), as of {month_str(month)}:")
    click.echo((100 * table).round(2).to_string())
    if publish:
        publisher = Publisher(store, month_str(month), new_run_id())
        key = publisher.write_table("forecasts", frame)
        publisher.commit(extra={"stage": "forecast"})
        click.echo(f"published {key}")
