"""``rotation report``: re-render the report of a published month from what its manifest lists."""

from __future__ import annotations

from pathlib import Path

import click

from job.app import App, pass_app
from job.errors import ConfigError
from job.logs import get_logger
from job.months import month_str, parse_month

log = get_logger("report")


@click.command()
@click.option("--as-of", "as_of", metavar="YYYY-MM", help="Published month.  [default: the latest]")
@click.option("--output", type=click.Path(path_type=Path), metavar="PATH",
              help="Also write the HTML here (a folder gets report-<as-of>.html).")
@click.option("--quiet", is_flag=True, help="Do not print the summary.")
@pass_app
def report(app: App, as_of: str | None, output: Path | None, quiet: bool) -> None:
    """Re-render the HTML report of a published month and print its summary.

    Follows the month's manifest (runs/as_of=YYYY-MM/manifest.json) to the artifacts it publishes
    (forecasts, weights, backtest tables, metrics, validation; each checked against its sha256) and the
    run's recorded context, and renders the self-contained HTML. When the rendering differs from the
    published report (a forecast or backtest was merged into the month since, or the code changed), it is
    merged into the month's publication under the run lock; otherwise the store is not touched. With
    --output the HTML is also written to a local file. Exit code 2 when the store has no published month
    for it or the month lacks an artifact the report needs (the line names it), 3 when its files are
    damaged, 5 when the store cannot be reached, 6 when another run keeps the lock.
    """
    from job import artifacts
    from job.report.artifacts import write_output
    from job.report.text import render_text
    from job.stages.report import render_published
    from job.stages.session import session
    from job.store.manifest import published_months, read_manifest

    store = app.store()
    months = published_months(store)
    month = month_str(parse_month(as_of)) if as_of else (months[-1] if months else None)
    if month is None or month not in months:
        known = ", ".join(months[-6:]) or "none"
        raise ConfigError(f"no published month {month or ''} in the store {store.uri}".replace("  ", " "),
                          hint=f"published months: {known}; run `rotation run` first")
    manifest = read_manifest(store, month)
    assert manifest is not None
    data, html, changed = render_published(store, manifest)
    published = [a["path"] for a in manifest["artifacts"] if a["kind"] == artifacts.REPORTS.name]
    key = published[0] if published else None
    if changed:
        with session(store, app.settings, "report", as_of=month) as run:
            publisher = run.publisher(month, mode="merge")
            key = publisher.write_bytes(artifacts.REPORTS, html, content_type="text/html")
            publisher.commit(run.timings)
        log.info("the published report differed from this rendering; merged the new one", extra={"fields": {
            "key": key}})
    where = f"{store.uri.rstrip('/')}/{key}"
    if output is not None:
        target = output / f"report-{data.as_of}.html" if output.is_dir() else output
        where = str(write_output(target, html))
    if not quiet:
        click.echo(render_text(data, where=where), nl=False)
