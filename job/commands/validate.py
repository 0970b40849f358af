"""``rotation validate``: run the Great Expectations suites on the warehouse and the dataset of one month."""

from __future__ import annotations

import json
from pathlib import Path

import click

from job.app import App, pass_app
from job.errors import LockHeld, StoreUnavailable
from job.logs import get_logger
from job.months import month_str, parse_month

log = get_logger("validate")


@click.command()
@click.option("--as-of", "as_of", metavar="YYYY-MM", envvar="ROTATION_AS_OF",
              help="Last complete month to validate for.  [default: the last month the data supports]")
@click.option("--publication-lag", type=click.IntRange(min=0), metavar="N",
              help="Build the dataset with this macro publication lag instead of data.publication_lag_months "
                   "(0 reproduces the original notebook's look-ahead, which the look-ahead suite rejects).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the full validation result (JSON) to this file.")
@click.option("--publish-failure/--no-publish-failure", default=True, show_default=True,
              help="On a critical failure, write the result to the store as validation/as_of=.../run_id=.../"
                   "validation.json (nothing else is published).")
@pass_app
def validate(app: App, as_of: str | None, publication_lag: int | None, json_path: Path | None,
             publish_failure: bool) -> None:
    """Check the data for gaps, duplicates, bad values and look-ahead.

    Runs every suite in expectations/ and prints one line per suite (checks, critical failures,
    warnings, worst example). Exits with status 3 when a critical check fails; the failing result is
    then written to the store (validation/...), and no manifest, so the month stays unpublished.
    """
    from job.stages import data

    month = data.prepare(app.settings, app.warehouse, as_of=parse_month(as_of) if as_of else None,
                         publication_lag=publication_lag)
    report = month.validation
    click.echo(report.summary_table())
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    if not report.passed and publish_failure:
        _publish_failure(app, month_str(month.as_of), report.to_dict())
    report.raise_if_failed()
    if month.build_error is not None:
        raise month.build_error


def _publish_failure(app: App, as_of: str, result: dict) -> None:
    """Write the failed result to the store under the run lock (no manifest: nothing is published);
    an unreachable or locked store is logged, the exit stays 3."""
    from job.stages.session import session
    from job.store.publish import write_failed_validation

    try:
        store = app.store()
        with session(store, app.settings, "validate", as_of=as_of) as run:
            key = write_failed_validation(store, as_of, run.run_id, result)
    except (StoreUnavailable, LockHeld) as exc:
        log.warning("could not write the validation result to the store: %s", exc.one_line())
        return
    log.info("validation result written to %s/%s", app.store_uri.rstrip("/"), key)
