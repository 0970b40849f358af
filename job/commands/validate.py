"""``rotation validate``: run the Great Expectations suites on the warehouse and the dataset of one month."""

from __future__ import annotations

import json
from pathlib import Path

import click

from job.app import App, pass_app
from job.errors import DataError, StoreUnavailable
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
    from job import warehouse
    from job.validation import validate as run_validation

    settings = app.settings
    month = parse_month(as_of) if as_of else None
    build_error: DataError | None = None
    with warehouse.connect(app.warehouse, read_only=True) as con:
        try:
            dataset, month = warehouse.build_dataset(con, settings, as_of=month, publication_lag=publication_lag)
        except DataError as exc:  # e.g. a month without prices: still show which checks fail and why
            dataset, build_error = None, exc
            month = month or warehouse.default_as_of(con, settings)
        report = run_validation(con, settings, dataset, month)
    click.echo(report.summary_table())
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    if not report.passed and publish_failure:
        _publish_failure(app, month_str(month), report.to_dict())
    report.raise_if_failed()
    if build_error is not None:
        raise build_error


def _publish_failure(app: App, as_of: str, result: dict) -> None:
    """Write the failed result to the store; an unreachable store is logged, the exit stays 3."""
    from job.store.publish import new_run_id, write_failed_validation

    try:
        key = write_failed_validation(app.store(), as_of, new_run_id(), result)
    except StoreUnavailable as exc:
        log.warning("could not write the validation result to the store: %s", exc.one_line())
        return
    log.info("validation result written to %s/%s", app.store_uri.rstrip("/"), key)
