"""``rotation verify``: check every committed artifact against its manifest (read-only)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import click

from job.app import App, pass_app
from job.errors import ConfigError, ExitCode, RotationError


class ArtifactsDamaged(RotationError):
    """``rotation verify`` found a damaged manifest or artifact: exit code 3 (like failed data checks)."""

    exit_code = ExitCode.VALIDATION


def _check(store: Any, as_of: str, entry: dict[str, Any]) -> str | None:
    from job.query import check_entry
    from job.store.base import ArtifactNotFound

    path = str(entry.get("path", "?"))
    try:
        data = store.get_bytes(path)
    except ArtifactNotFound:
        return f"{as_of}: {path}: missing from the store"
    except ValueError as exc:  # a path that escapes the store root
        return f"{as_of}: {path}: not a path in the store ({exc})"
    problem = check_entry(entry, data, full=True)
    return f"{as_of}: {problem}" if problem else None


@click.command("verify")
@click.option("--as-of", "as_of", metavar="YYYY-MM", help="Check this month only (default: every published month).")
@pass_app
def verify(app: App, as_of: str | None) -> None:
    """Check every committed artifact against its manifest.

    For every published month (or --as-of M): the manifest must parse; every file it lists must exist
    with the manifest's size and sha256; parquet tables must open, every row group, with their kind's
    schema (job/artifacts.py). Prints one line per problem on stdout, then a summary. Read-only: it never
    deletes or rewrites anything.

    \b
    Exit codes: 0 everything matches; 3 something is damaged (the lines say what; `rotation query` leaves
    those files and months out with a warning); 5 the store cannot be read; 2 --as-of has no manifest.
    """
    from job.artifacts import check_as_of
    from job.store.manifest import DamagedManifest, read_manifest, scan_manifests

    store = app.store()
    manifests: list[dict[str, Any]]
    problems: list[str] = []
    if as_of is not None:
        check_as_of(as_of)
        try:
            manifest = read_manifest(store, as_of)
        except DamagedManifest as exc:
            manifest, problems = None, [f"{as_of}: {exc}"]
        if manifest is None and not problems:
            raise ConfigError(f"{as_of} has no published manifest in {store.uri}",
                              hint="`rotation query \"SELECT as_of, status FROM runs\"` lists the published months")
        manifests = [manifest] if manifest is not None else []
    else:
        scan = scan_manifests(store)
        manifests = sorted(scan.manifests, key=lambda m: str(m.get("as_of")))
        problems = [f"{month}: {line}" for month, line in sorted(scan.damaged.items())]
    months = len(manifests) + len(problems)
    jobs = [(str(m.get("as_of")), a) for m in manifests for a in m["artifacts"]]
    if jobs:
        with ThreadPoolExecutor(max_workers=min(8, len(jobs))) as pool:
            problems += [p for p in pool.map(lambda job: _check(store, *job), jobs) if p]
    for line in problems:
        click.echo(line)
    checked = f"{len(jobs)} artifact{'s' if len(jobs) != 1 else ''} of {months} month{'s' if months != 1 else ''}"
    if problems:
        raise ArtifactsDamaged(f"{len(problems)} problem{'s' if len(problems) != 1 else ''} in {store.uri} "
                               f"({checked} checked)",
                               hint="the lines above name each file; rerun `rotation run --as-of M` for a damaged "
                                    "month to publish it again")
    click.echo(f"ok: {checked} in {store.uri} match their manifests")
