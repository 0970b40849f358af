"""The ``rotation`` command line: one click group, one subcommand per stage.

Options that say where things live are on the group; options that describe the work are on each
command. Subcommands are imported lazily (TensorFlow and Great Expectations are slow to import), so
``rotation --help`` and ``rotation config show`` answer at once.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
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
    and the run lock is released instead of blocking the next attempt until its lease lapses."""


class Interrupted(BaseException):
    """SIGINT (Ctrl-C) turned into an exception, like :class:`Terminated`.

    Not KeyboardInterrupt: click turns that into Abort ("error: aborted", exit 1) after printing an
    empty line, and libraries catch it. Both classes derive from BaseException so that no ``except
    Exception`` in a stage swallows them.
    """


# The signal received, remembered: a library may turn our exception into its own (DuckDB raises
# "RuntimeError: Query interrupted"; a store call may fail half-way), and main() must still exit 130/143.
_signalled: int | None = None
_reported = False  # the one error line was written
# After a signal the process exits within this many seconds whatever hangs on the way out (a library's
# cleanup, a store call at release); Kubernetes sends SIGKILL 60 s after SIGTERM.
SHUTDOWN_GRACE_S = 30.0


def _force_exit(signum: int) -> None:
    if not _reported:
        os.write(2, f"error: {_what(signum)} (stopping took over {SHUTDOWN_GRACE_S:.0f} s, so this run exited "
                    "without finishing its clean-up: the run lock, if it held it, lapses by itself within one "
                    "lease)\n".encode())
    os._exit(128 + int(signum))


def _what(signum: int) -> str:
    return "terminated by SIGTERM" if signum == signal.SIGTERM else "interrupted by Ctrl-C (SIGINT)"


def _on_signal(signum: int, frame: Any) -> None:
    global _signalled
    if _signalled is None:
        _signalled = signum
        watchdog = threading.Timer(SHUTDOWN_GRACE_S, _force_exit, args=(signum,))
        watchdog.daemon = True
        watchdog.start()
    # A second signal while unwinding raises again: the user can stop a slow release (the lock then
    # lapses within one lease); main() reports the first signal.
    raise Terminated if signum == signal.SIGTERM else Interrupted


def _exit_signalled(signum: int) -> None:
    """One line for the signal, then exit 128 + its number (130 SIGINT, 143 SIGTERM)."""
    global _reported
    from job.store.lock import unreleased_locks

    lock = ("the run lock could not be released: it lapses by itself within one lease" if unreleased_locks()
            else "the run lock, if this run held it, was released")
    click.echo(f"error: {_what(signum)} ({lock}; a month is published only once its manifest is written)",
               err=True)
    _reported = True
    sys.exit(128 + int(signum))


def _install(signum: int) -> Any:
    """Install _on_signal for ``signum``, returning the previous handler (None: left alone).

    SIGINT is left alone when it is ignored (a background job of a non-interactive shell, nohup)."""
    previous = signal.getsignal(signum)
    if signum == signal.SIGINT and previous == signal.SIG_IGN:
        return None
    signal.signal(signum, _on_signal)
    return previous


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the CLI and map failures to the documented exit codes."""
    global _signalled, _reported
    _signalled, _reported = None, False
    verbose = any(a in ("-v", "--verbose") for a in (argv if argv is not None else sys.argv[1:]))
    on_main_thread = threading.current_thread() is threading.main_thread()  # signal handlers live there only
    previous: dict[int, Any] = {}
    if on_main_thread:
        for signum in (signal.SIGTERM, signal.SIGINT):
            handler = _install(signum)
            if handler is not None:
                previous[signum] = handler
    try:
        try:
            cli.main(args=argv, prog_name="rotation", standalone_mode=False)
        except (Terminated, Interrupted, KeyboardInterrupt) as exc:
            signum = _signalled or (signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)
            _exit_signalled(signum)
        except BaseException:
            if _signalled is not None:  # a library turned the signal into its own exception
                _exit_signalled(_signalled)
            raise
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
    except Exception as exc:  # the last line of defence: one line, no traceback unless -v
        if verbose:
            get_logger().exception("unexpected error")
        click.echo(redact(f"error: unexpected {type(exc).__name__}: {exc} (run with -v for the traceback; "
                          "the last published results are unchanged)"), err=True)
        sys.exit(ExitCode.UNEXPECTED)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
    sys.exit(ExitCode.OK)
