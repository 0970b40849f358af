"""The ``rotation`` command line: one click group, one subcommand per stage.

Options that say where things live are on the group; options that describe the work are on each
command. Subcommands are imported lazily (TensorFlow and Great Expectations are slow to import), so
``rotation --help`` and ``rotation config show`` answer at once.
"""

from __future__ import annotations

import importlib
import importlib.util
import signal
import sys
import threading
from typing import Any

import click

from job import __version__
from job.app import App
from job.config import load_settings
from job.errors import ExitCode, RotationError
from job.logs import configure, get_logger, redact

# name -> "module:attribute" of the click command; each stage owns its module in job/commands/.
COMMANDS: dict[str, str] = {
    "ingest": "job.commands.ingest:ingest",
    "validate": "job.commands.validate:validate",
    "train": "job.commands.train:train",
    "forecast": "job.commands.forecast:forecast",
    "backtest": "job.commands.backtest:backtest",
    "report": "job.commands.report:report",
    "run": "job.commands.run:run",
    "query": "job.commands.query:query",
    "verify": "job.commands.verify:verify",
    "config": "job.commands.config:config",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported only when used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name, target in COMMANDS.items() if _available(target)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None or not _available(target):
            return None
        module, _, attr = target.partition(":")
        return getattr(importlib.import_module(module), attr)


def _available(target: str) -> bool:
    module = target.partition(":")[0]
    return importlib.util.find_spec(module) is not None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_file", type=click.Path(dir_okay=False), envvar="ROTATION_CONFIG",
              help="TOML file overriding the package defaults.")
@click.option("--warehouse", type=click.Path(dir_okay=False),
              help="DuckDB warehouse file.  [default: ./data/warehouse.duckdb]")
@click.option("--store", "store_uri", metavar="URI",
              help="Artifact store: a local folder or s3://bucket/prefix.  [default: ./artifacts]")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging; tracebacks on errors.")
@click.option("--log-format", type=click.Choice(["text", "json"]), envvar="ROTATION_LOG_FORMAT",
              default="text", show_default=True, help="json: one JSON object per line (Kubernetes).")
@click.version_option(__version__, prog_name="rotation")
@click.pass_context
def cli(ctx: click.Context, config_file: str | None, warehouse: str | None, store_uri: str | None,
        verbose: bool, log_format: str) -> None:
    """Monthly machine-learning sector rotation.

    Ingests prices and macro data into DuckDB, validates them with Great Expectations, trains or loads
    the models, forecasts next month's sector returns, allocates, backtests, publishes artifacts and
    writes a report. `rotation run` does it all for one month.
    """
    configure(verbose=verbose, fmt=log_format)
    overrides: dict[str, Any] = {}
    if warehouse:
        overrides.setdefault("paths", {})["warehouse"] = warehouse
    if store_uri:
        overrides.setdefault("paths", {})["store"] = store_uri
    ctx.obj = App(settings=load_settings(config_file, overrides=overrides), verbose=verbose,
                  log_format=log_format)


class Terminated(BaseException):
    """SIGTERM (Kubernetes stopping the pod) turned into an exception, so that ``with`` blocks unwind
    and the run lock is released instead of blocking the next attempt until it expires."""


_terminated = False


def _on_sigterm(signum: int, frame: Any) -> None:
    global _terminated
    _terminated = True  # remembered: a library may turn the exception into its own (DuckDB: "Query interrupted")
    raise Terminated


def _exit_terminated() -> None:
    click.echo("error: terminated by SIGTERM (the run lock, if this run held it, was released; a month is "
               "published only once its manifest is written)", err=True)
    sys.exit(128 + signal.SIGTERM)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the CLI and map failures to the documented exit codes."""
    verbose = any(a in ("-v", "--verbose") for a in (argv if argv is not None else sys.argv[1:]))
    on_main_thread = threading.current_thread() is threading.main_thread()  # signal handlers live there only
    previous = signal.getsignal(signal.SIGTERM)
    if on_main_thread:
        signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        cli.main(args=argv, prog_name="rotation", standalone_mode=False)
    except Terminated:
        _exit_terminated()
    except click.exceptions.Abort:
        click.echo("error: aborted", err=True)
        sys.exit(ExitCode.UNEXPECTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(ExitCode.USAGE)
    except RotationError as exc:
        if verbose:
            get_logger().exception("failed")
        click.echo(f"error: {redact(exc.one_line())}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("error: interrupted; nothing was published for this run", err=True)
        sys.exit(130)
    except Exception as exc:  # the last line of defence: one line, no traceback unless -v
        if _terminated:
            _exit_terminated()
        if verbose:
            get_logger().exception("unexpected error")
        click.echo(redact(f"error: unexpected {type(exc).__name__}: {exc} (run with -v for the traceback; "
                          "the last published results are unchanged)"), err=True)
        sys.exit(ExitCode.UNEXPECTED)
    finally:
        if on_main_thread:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
    sys.exit(ExitCode.OK)
