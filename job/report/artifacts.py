"""Report artifacts: writing the report to the store and reading a committed month's report data back.

Keys (DESIGN.md layout)::

    reports/as_of=YYYY-MM/run_id=<id>/report_data.json   the ReportData, for exact re-rendering
    reports/as_of=YYYY-MM/run_id=<id>/report.html        the report

``rotation run`` calls :func:`report_artifacts` (or :func:`write_report`) before it writes the manifest,
so both files are listed in the manifest with their sha256. ``rotation report`` follows the manifest of
a month (:func:`load_committed`) and re-renders from ``report_data.json``.
"""

from __future__ import annotations

import hashlib
import json
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
from job.report.html import render_html
from job.store.base import ArtifactNotFound, Store

log = get_logger("report")

REPORT_DATA_NAME = "report_data.json"
REPORT_HTML_NAME = "report.html"
LIBRARIES = ("pandas", "numpy", "scikit-learn", "tensorflow-cpu", "tensorflow", "keras", "duckdb",
             "great-expectations", "pyarrow", "matplotlib", "skops", "boto3", "yfinance", "fredapi", "click")
_SECRET_KEY = re.compile(r"(secret|password|passwd|token|api_key|apikey|access_key|credential)", re.I)
_URL_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.I)


def report_prefix(as_of: str, run_id: str) -> str:
    """``reports/as_of=YYYY-MM/run_id=<id>/``."""
    return f"reports/as_of={as_of}/run_id={run_id}/"


def report_keys(as_of: str, run_id: str) -> tuple[str, str]:
    """(report_data.json key, report.html key) of one run."""
    prefix = report_prefix(as_of, run_id)
    return prefix + REPORT_DATA_NAME, prefix + REPORT_HTML_NAME


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


def report_artifacts(data: ReportData) -> dict[str, bytes]:
    """``{key: content}`` of the report's two artifacts (data JSON and HTML), ready to publish."""
    data_key, html_key = report_keys(data.as_of, data.run_id)
    return {data_key: data.to_json().encode("utf-8"), html_key: render_html(data).encode("utf-8")}


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


def write_report(data: ReportData, store: Store, *, output: Path | None = None) -> list[str]:
    """Put ``report_data.json`` and ``report.html`` into ``store`` (and the HTML at ``output``);
    return the store keys written, for the manifest."""
    artifacts = report_artifacts(data)
    for key, content in artifacts.items():
        store.put_bytes(key, content, "text/html" if key.endswith(".html") else "application/json")
    if output is not None:
        write_output(output, artifacts[report_keys(data.as_of, data.run_id)[1]])
    return list(artifacts)


# ------------------------------------------------------------------------------------------- reading

def committed_months(store: Store) -> list[str]:
    """As-of months with a committed manifest, oldest first."""
    months = []
    for key in store.list("runs/"):
        match = re.fullmatch(r"runs/as_of=(\d{4}-\d{2})/manifest\.json", key)
        if match:
            months.append(match.group(1))
    return sorted(months)


def load_manifest(store: Store, as_of: str | None) -> dict[str, Any]:
    """The committed manifest of ``as_of`` (default: the latest committed month).

    ConfigError (exit 2) when the store has no committed run for it; StoreUnavailable (exit 5) comes
    from the store itself.
    """
    if as_of is None:
        months = committed_months(store)
        if not months:
            raise ConfigError(f"no committed run in the store {store.uri}",
                              hint="run `rotation run` first, or point --store at the right place")
        as_of = months[-1]
    key = f"runs/as_of={as_of}/manifest.json"
    try:
        manifest = json.loads(store.get_bytes(key))
    except ArtifactNotFound:
        known = committed_months(store)
        raise ConfigError(f"no committed run for {as_of} in the store {store.uri}",
                          hint=f"committed months: {', '.join(known[-6:])}" if known
                          else "run `rotation run --as-of " + as_of + "` first") from None
    except json.JSONDecodeError as exc:
        raise RotationError(f"the manifest {key} is not valid JSON ({exc.msg})") from None
    manifest.setdefault("as_of", as_of)
    return manifest


def _artifact_paths(manifest: Mapping[str, Any]) -> list[str]:
    return [str(a["path"] if isinstance(a, Mapping) else a) for a in manifest.get("artifacts", [])]


def load_committed(store: Store, as_of: str | None = None) -> tuple[dict[str, Any], ReportData]:
    """(manifest, ReportData) of a committed month, from the ``report_data.json`` its manifest lists.

    The file's sha256 is checked against the manifest when recorded. RotationError (exit 1) when the
    manifest lists no report data (a run published before the report stage existed) or it is corrupt.
    """
    manifest = load_manifest(store, as_of)
    entries = {str(a["path"]): a for a in manifest.get("artifacts", []) if isinstance(a, Mapping)}
    candidates = [p for p in _artifact_paths(manifest) if p.endswith("/" + REPORT_DATA_NAME)]
    if not candidates and manifest.get("report_data"):
        candidates = [str(manifest["report_data"])]
    if not candidates:
        raise RotationError(f"the committed run {manifest.get('run_id')} of {manifest['as_of']} has no "
                            f"{REPORT_DATA_NAME}", hint="re-run the month with `rotation run` to produce it")
    key = candidates[0]
    content = store.get_bytes(key)
    expected = entries.get(key, {}).get("sha256")
    if expected and hashlib.sha256(content).hexdigest() != expected:
        raise RotationError(f"{key} does not match the sha256 recorded in the manifest",
                            hint="the store was modified after publication; re-run the month")
    try:
        data = ReportData.from_json(content)
    except (ValueError, KeyError, TypeError) as exc:
        raise RotationError(f"{key} is not valid report data: {exc}") from None
    return manifest, data


def store_rendered(store: Store, manifest: Mapping[str, Any], data: ReportData, html: bytes) -> str:
    """Write a re-rendered report back to the store without breaking the manifest; return its key.

    The report goes to ``report.html`` of the run unless the manifest already records that file with a
    different sha256 (the code that renders changed since): then a committed artifact is never
    overwritten and the new rendering goes beside it as ``report.rerendered-<sha8>.html``.
    """
    html_key = report_keys(data.as_of, data.run_id)[1]
    recorded = {str(a["path"]): a.get("sha256") for a in manifest.get("artifacts", []) if isinstance(a, Mapping)}
    digest = hashlib.sha256(html).hexdigest()
    if html_key in recorded and recorded[html_key] and recorded[html_key] != digest:
        key = html_key.replace(REPORT_HTML_NAME, f"report.rerendered-{digest[:8]}.html")
        log.info("the committed report differs from this rendering; writing it beside it",
                 extra={"fields": {"key": key}})
    else:
        key = html_key
    if not (store.exists(key) and hashlib.sha256(store.get_bytes(key)).hexdigest() == digest):
        store.put_bytes(key, html, "text/html")
    return key
