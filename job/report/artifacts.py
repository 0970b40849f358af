"""What the report records about the run (provenance, secrets masked) and writing its HTML to a local file.

The report itself is rebuilt from the month's published artifacts (:mod:`job.report.published`).
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
from job.errors import ConfigError
from job.logs import get_logger
from job.report.data import ProvenanceSection

log = get_logger("report")

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
