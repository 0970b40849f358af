"""Report artifacts: writing the report to the store and reading a committed month's report data back.

The report's two artifact kinds (job/artifacts.py) are ``report_data`` (the ReportData as JSON, for exact
re-rendering) and ``reports`` (the HTML). ``rotation report`` follows a month's manifest to its
report data (:func:`load_report_data`) and re-renders it.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from job import __version__
from job.config import SECRET_ENV, Settings, masked_environment, settings_as_dict
from job.errors import ConfigError, RotationError
from job.logs import get_logger
from job.report.data import ProvenanceSection, ReportData
from job.store.base import ArtifactNotFound, Store

log = get_logger("report")

REPORT_DATA_NAME = "report_data.json"
REPORT_HTML_NAME = "report.html"
LIBRARIES = ("pandas", "numpy", "scikit-learn", "tensorflow-cpu", "tensorflow", "keras", "duckdb",
             "great-expectations", "pyarrow", "matplotlib", "skops", "boto3", "yfinance", "fredapi", "click")
_SECRET_KEY = re.compile(r"(secret|password|passwd|token|api_key|apikey|access_key|credential)", re.I)
_URL_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.I)


def mask_secrets(obj: Any, environ: Mapping[str, str] | None = None) -> Any:
    """A copy of ``obj`` with secret-looking keys masked, URL credentials removed and the values of
    secret environment variables (FRED_API_KEY, AWS keys) replaced by ``****`` wherever they appear."""
    environ = os.environ if environ is None else environ
    secrets = [environ[n] for n in SECRET_ENV if len(environ.get(n, "")) >= 4]

    def walk(value: Any, key: str = "") -> Any:
        if isinstance(value, Mapping):
            return {k: walk(v, str(k)) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [walk(v, key) for v in value]
        if isinstance(value, str):
            if value and _SECRET_KEY.search(key):
                return "****"
            value = _URL_USERINFO.sub(r"\g<scheme>****@", value)
            for secret in secrets:
                value = value.replace(secret, "****")
        return value

    return walk(obj)


def git_commit(cwd: Path | None = None) -> str | None:
    """The source tree's commit (with ``-dirty`` when modified), else ``$GIT_COMMIT``, else None."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                              timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
        return head + ("-dirty" if dirty else "") if head else None
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("GIT_COMMIT") or None


def library_versions(names: tuple[str, ...] = LIBRARIES) -> dict[str, str]:
    """Installed versions of the libraries that shape the results (absent ones left out)."""
    out = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def collect_provenance(settings: Settings, *, run_id: str, created_at: str, data_fingerprint: str,
                       model_fingerprints: Mapping[str, str] | None = None,
                       stage_timings: Mapping[str, float] | None = None,
                       environ: Mapping[str, str] | None = None) -> ProvenanceSection:
    """The provenance section: code and library versions, git commit, and the effective configuration
    with secrets masked (:func:`mask_secrets`) plus which secrets are set (:func:`masked_environment`)."""
    return ProvenanceSection(
        run_id=run_id, created_at=created_at, code_version=__version__, git_commit=git_commit(),
        library_versions=library_versions(), data_fingerprint=data_fingerprint,
        model_fingerprints=dict(model_fingerprints or {}),
        configuration=mask_secrets(settings_as_dict(settings), environ),
        secrets=masked_environment(environ), stage_timings=dict(stage_timings or {}))


def write_output(path: Path, html: bytes) -> Path:
    """Write the HTML to a local ``path`` (a folder gets ``report-<as_of>.html``); ConfigError when the
    path cannot be written."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(html)
    except OSError as exc:
        raise ConfigError(f"cannot write the report to {path}: {exc.strerror}",
                          hint="choose a writable --output path") from None
    return path


# ------------------------------------------------------------------------------------------- reading

def load_report_data(store: Store, manifest: Mapping[str, Any]) -> ReportData:
    """The ReportData of a published month, from the ``report_data`` artifact its manifest lists.

    The file's size and sha256 are checked against the manifest. RotationError (exit 1) when the month
    has no report data (only stage commands published it) or the file is damaged.
    """
    from job.store.manifest import check_artifact

    entries = [a for a in manifest.get("artifacts", []) if a.get("kind") == "report_data"]
    if not entries:
        raise ConfigError(f"the published month {manifest.get('as_of')} has no report data",
                          hint=f"run `rotation run --as-of {manifest.get('as_of')}` to publish the month in full")
    entry = entries[0]
    try:
        content = store.get_bytes(entry["path"])
    except ArtifactNotFound:
        raise RotationError(f"{entry['path']} is listed in the manifest but missing",
                            hint="run `rotation verify`, then re-run the month") from None
    problem = check_artifact(entry["path"], content, entry)
    if problem:
        raise RotationError(problem, hint="the store was modified after publication; re-run the month")
    try:
        return ReportData.from_json(content)
    except (ValueError, KeyError, TypeError) as exc:
        raise RotationError(f"{entry['path']} is not valid report data: {exc}") from None
