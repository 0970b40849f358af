"""``rotation report``: re-render the report of a committed month from the store."""

from __future__ import annotations

import time
from pathlib import Path

import click

from job.app import App, pass_app
from job.logs import get_logger
from job.months import month_str, parse_month

log = get_logger("report")


@click.command()
@click.option("--as-of", "as_of", metavar="YYYY-MM", help="Month of the committed run.  [default: the latest]")
@click.option("--output", type=click.Path(path_type=Path), metavar="PATH",
              help="Also write the HTML here (a folder gets report-<as-of>.html).")
@click.option("--quiet", is_flag=True, help="Do not print the summary.")
@pass_app
def report(app: App, as_of: str | None, output: Path | None, quiet: bool) -> None:
    """Re-render the HTML report of a committed run and print its summary.

    Follows the month's manifest (runs/as_of=YYYY-MM/manifest.json) to the run's report_data.json,
    renders the self-contained HTML, writes it to reports/as_of=YYYY-MM/run_id=<id>/report.html in the
    store and, with --output, to a local file. Exit code 2 when the store has no committed run for the
    month, 5 when the store cannot be reached.
    """
    from job.report.artifacts import load_committed, store_rendered, write_output
    from job.report.html import render_html
    from job.report.text import render_text

    month = month_str(parse_month(as_of)) if as_of else None
    store = app.store()
    manifest, data = load_committed(store, month)
    started = time.perf_counter()
    html = render_html(data).encode("utf-8")
    log.info("report rendered", extra={"fields": {"as_of": data.as_of, "run_id": data.run_id,
                                                  "bytes": len(html),
                                                  "seconds": round(time.perf_counter() - started, 3)}})
    key = store_rendered(store, manifest, data, html)
    where = f"{store.uri.rstrip('/')}/{key}"
    if output is not None:
        target = output / f"report-{data.as_of}.html" if output.is_dir() else output
        where = str(write_output(target, html))
    if not quiet:
        click.echo(render_text(data, where=where), nl=False)
