"""``rotation ingest``: fetch a source's data into the DuckDB warehouse (one transaction)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from job.app import App, pass_app
from job.config import SOURCES
from job.sources import parse_sources

SOURCE_HELP = f"Comma-separated: {', '.join(SOURCES)} (live prices + macro: yahoo,fred-md)."


def source_options(func):  # type: ignore[no-untyped-def]
    """The options that say which data to use, shared by ingest and run."""
    func = click.option("--universe", default=None, help="Universe name from the configuration.")(func)
    func = click.option("--snapshot-dir", type=click.Path(file_okay=False), default=None,
                        help="Snapshot folder (default $ROTATION_SNAPSHOT_DIR, else ../shared/data).")(func)
    func = click.option("--source", default=None, help=SOURCE_HELP + "  [default: sample]")(func)
    return func


def apply_source_options(app: App, source: str | None, snapshot_dir: str | None, universe: str | None) -> list[str]:
    """Fold the source flags into the settings; returns the source names."""
    app.override("data", source=source, universe=universe)
    app.override("paths", snapshot_dir=snapshot_dir)
    names = parse_sources(app.settings.data.source)
    if len(names) == 1:
        app.override("data", source=names[0])
    return names


@click.command()
@source_options
@pass_app
def ingest(app: App, source: str | None, snapshot_dir: str | None, universe: str | None) -> None:
    """Fetch prices and macro data into the warehouse.

    Re-ingesting the same data changes nothing; a failed ingest leaves the previous tables intact.
    """
    from job.stages import data

    names = apply_source_options(app, source, snapshot_dir, universe)
    summary = data.ingest(app.settings, app.warehouse, names)
    click.echo(json.dumps({**summary, "warehouse": str(Path(app.warehouse))}, default=str))
