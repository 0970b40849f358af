"""Exceptions that carry the job's documented exit codes.

Every failure a user can cause or meet (bad configuration, bad data, an upstream outage, an unreachable
store, a held lock) is raised as a :class:`RotationError` subclass. The CLI turns it into one line on
stderr and the exit code below; nothing else in the package calls ``sys.exit``.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes read by the CronJob's podFailurePolicy and by people (see README)."""

    OK = 0
    UNEXPECTED = 1
    USAGE = 2
    VALIDATION = 3
    UPSTREAM = 4
    STORE = 5
    LOCKED = 6


class RotationError(Exception):
    """Base class: a failure with a message a user can act on and an exit code."""

    exit_code: ExitCode = ExitCode.UNEXPECTED

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        """The single line printed on stderr: what failed, then what to do."""
        text = " ".join(self.message.split())
        return f"{text} ({self.hint})" if self.hint else text


class ConfigError(RotationError):
    """Bad usage or configuration: unknown option value, malformed TOML, missing secret."""

    exit_code = ExitCode.USAGE


class DataError(RotationError):
    """Input data that cannot be ingested (malformed CSV, non-numeric values, duplicated dates).

    Bad data is a validation failure: exit code 3, nothing written.
    """

    exit_code = ExitCode.VALIDATION


class ValidationFailed(RotationError):
    """A critical Great Expectations check failed; the month is not published."""

    exit_code = ExitCode.VALIDATION


class UpstreamUnavailable(RotationError):
    """A data source (Yahoo, FRED, a FRED-MD URL) could not be reached or returned nothing."""

    exit_code = ExitCode.UPSTREAM


class StoreUnavailable(RotationError):
    """The artifact store is unreachable or rejected the credentials."""

    exit_code = ExitCode.STORE


class LockHeld(RotationError):
    """Another run holds the store's run lock."""

    exit_code = ExitCode.LOCKED


class DamagedArtifact(RotationError):
    """A published manifest or artifact is unreadable or no longer matches its sha256.

    Exit code 3, like other bad data: readers skip it with a warning, ``rotation verify`` lists it, and
    the next complete ``rotation run`` of the month replaces it.
    """

    exit_code = ExitCode.VALIDATION
