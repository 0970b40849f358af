"""``rotation query``: DuckDB SQL over the published results of the store (committed runs only)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import click

from job.app import App, pass_app
from job.errors import ConfigError

FORMATS = ("table", "csv", "json", "parquet")


@click.command("query")
@click.argument("sql", required=False)
@click.option("--file", "sql_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Read the SQL from a file, e.g. sql/queries/latest_weights.sql.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
              help="Output format.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the result to this file (required for parquet).")
@pass_app
def query(app: App, sql: str | None, sql_file: Path | None, fmt: str, output: Path | None) -> None:
    """Run SQL over the published results.

    Views: one per artifact table (forecasts, weights, backtest, backtest_forecasts, backtest_weights,
    metrics, sweep; as_of and run_id first, then the columns of job/artifacts.py), runs (one row per
    month: status ok or damaged, the problem, publications, timings) and artifacts (one row per
    manifest entry). Only files a manifest lists, and whose sha256 matches it, are visible; a damaged
    manifest or file is named in a warning and left out, and the other months still query.

    Exit codes: 2 bad SQL, 5 the store cannot be read (both one line).

    \b
    Examples:
      rotation query "SELECT * FROM weights WHERE as_of = (SELECT max(as_of) FROM runs)"
      rotation query --file sql/queries/model_leaderboard.sql --format csv
      rotation --store s3://bucket/prefix query "SELECT count(*) FROM forecasts"
    """
    from job.query import query as run_query

    if (sql is None) == (sql_file is None):
        raise ConfigError("give either SQL or --file", hint='e.g. rotation query "SELECT * FROM runs"')
    if fmt == "parquet" and output is None:
        raise ConfigError("--format parquet needs --output PATH")
    text = sql if sql is not None else sql_file.read_text(encoding="utf-8")  # type: ignore[union-attr]
    frame = run_query(app.store(), text, app.settings)

    if fmt == "parquet":
        assert output is not None
        output.parent.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(output, index=False)
        click.echo(f"wrote {len(frame)} rows to {output}", err=True)
        return
    if fmt == "csv":
        rendered = frame.to_csv(index=False)
    elif fmt == "json":
        rendered = frame.to_json(orient="records", date_format="iso", indent=2) + "\n"
    else:
        rendered = _table(frame)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(rendered, encoding="utf-8")
        click.echo(f"wrote {len(frame)} rows to {output}", err=True)
    else:
        sys.stdout.write(rendered)


def _table(frame: object) -> str:
    """A readable fixed-width table with every row and column, then the row count."""
    import pandas as pd

    assert isinstance(frame, pd.DataFrame)
    if frame.empty:
        columns = ", ".join(map(str, frame.columns)) or "no columns"
        return f"(0 rows; columns: {columns})\n"
    width = shutil.get_terminal_size((160, 40)).columns
    with pd.option_context("display.max_rows", None, "display.max_columns", None, "display.width", width,
                           "display.max_colwidth", 60):
        body = frame.to_string(index=False)
    return f"{body}\n({len(frame)} row{'s' if len(frame) != 1 else ''})\n"
