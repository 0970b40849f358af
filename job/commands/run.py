"""``rotation run``: the whole monthly job for one month, under one lock and one manifest."""

from __future__ import annotations

from pathlib import Path

import click

from job.app import App, pass_app
from job.commands.ingest import apply_source_options, source_options
from job.commands.options import compute_options
from job.months import parse_month


@click.command()
@source_options
@click.option("--as-of", "as_of", metavar="YYYY-MM",
              help="Last complete month (default: the last month the data supports); weights are for the next.")
@click.option("--models", "models_text", metavar="NAMES",
              help="Comma-separated models (default models.enabled: ridge,tree,lstm,ensemble).")
@click.option("--lstm-preset", type=click.Choice(["small", "seed"]), default=None,
              help="small (fast) or seed (the original 10.5M-parameter network).")
@click.option("--scheme", type=click.Choice(["walk-forward", "static"]), default=None,
              help="Backtest scheme.  [default: walk-forward]")
@click.option("--threshold", type=float, default=None, help="Leverage flag threshold.  [default: 0.15]")
@click.option("--factor", type=float, default=None, help="Leverage multiplier.  [default: 5]")
@click.option("--shrinkage", type=float, default=None, help="Shrinkage toward equal weight.  [default: 0.3]")
@click.option("--mode", type=click.Choice(["normalised", "levered"]), default=None,
              help="normalised (the original) or levered.  [default: normalised]")
@click.option("--cost-bps", type=float, default=None, help="Cost per unit of turnover.  [default: 10]")
@click.option("--audit/--no-audit", default=True, show_default=True,
              help="Also backtest ridge with publication lag 0 (the original's look-ahead), for the report.")
@click.option("--skip-ingest", is_flag=True, help="Use the warehouse as it is (no ingest).")
@click.option("--output", type=click.Path(path_type=Path), default=None,
              help="Also write the HTML report here (a file, or a folder: FOLDER/report-YYYY-MM.html).")
@compute_options
@pass_app
def run(app: App, source: str | None, snapshot_dir: str | None, universe: str | None, as_of: str | None,
        models_text: str | None, lstm_preset: str | None, scheme: str | None, threshold: float | None,
        factor: float | None, shrinkage: float | None, mode: str | None, cost_bps: float | None, audit: bool,
        skip_ingest: bool, output: Path | None, recompute: bool, cluster: str | None) -> None:
    """Run the monthly job end to end: ingest, validate, train or load, forecast, allocate, backtest,
    publish (manifest last) and report.

    Every fit (the live ones, each walk-forward fold, the look-ahead audit's) is stored in the model
    registry under its identity and reused by later runs, so a rerun or the next month fits only what is
    new (--recompute refits everything; --cluster runs the fits on a Dask cluster).

    A run is a complete publication of its month: its manifest replaces the month's previous one (stage
    commands merge into it instead). A run whose inputs (data, settings, models, code, libraries) are
    those the month was published from verifies the month and publishes nothing (--recompute runs it).

    Exit codes: 2 bad configuration, 3 validation failed (only validation.json is written), 4 data source
    down, 5 store unavailable, 6 another live run kept the lock for store.lock_wait_s.
    """
    from job.models import parse_model_names
    from job.pipeline import RunOptions, run_month

    names = apply_source_options(app, source, snapshot_dir, universe)
    app.override("models", lstm_preset=lstm_preset)
    app.override("strategy", threshold=threshold, factor=factor, shrinkage=shrinkage, mode=mode, cost_bps=cost_bps)
    models = parse_model_names(models_text, app.settings)
    result = run_month(app.settings, app.warehouse, app.store(),
                       RunOptions(sources=names, as_of=parse_month(as_of) if as_of else None, models=models,
                                  scheme=scheme, output=output, audit=audit, ingest=not skip_ingest,
                                  recompute=recompute, cluster=cluster))
    click.echo(result.summary_text)
    if not result.published:
        return
    timings = ", ".join(f"{k} {v:.1f}s" for k, v in result.timings.items())
    click.echo(f"published {result.as_of} run {result.run_id} to {result.store_uri} ({timings})")
