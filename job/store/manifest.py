"""Manifests: what a month's publication holds, and reading them back without trusting the store.

``runs/as_of=YYYY-MM/manifest.json`` is written last by every publication of a month (see
:mod:`job.store.publish`). It lists every artifact of the month with its kind, the run that wrote it,
its size and sha256::

    {"schema": 2, "as_of": "2025-01", "run_id": "<the newest publication>", "created_at": "...",
     "artifacts": [{"path": "weights/as_of=2025-01/run_id=.../part-0.parquet", "kind": "weights",
                    "run_id": "...", "bytes": 1234, "sha256": "..."}, ...],
     "publications": [{"run_id": "...", "command": "run", "created_at": "...", "kinds": [...]}, ...],
     "timings": {...}, ...}

Readers never trust a manifest blindly: :func:`scan_manifests` returns the readable ones and names each
damaged one in one line, so one truncated file never hides every other month.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from job.artifacts import check_as_of, kind_of
from job.errors import DamagedArtifact
from job.store.base import ArtifactNotFound, Store

MANIFEST_NAME = "manifest.json"
RUNS_PREFIX = "runs/"
MANIFEST_RE = re.compile(r"^runs/as_of=(?P<as_of>[^/]+)/manifest\.json$")
SCHEMA_VERSION = 2
_REPAIR = "the next `rotation run` of that month replaces it; `rotation verify` lists every damaged file"


class DamagedManifest(DamagedArtifact):
    """A manifest that cannot be parsed or does not have the manifest's shape (exit code 3)."""


def manifest_key(as_of: str) -> str:
    """``runs/as_of={as_of}/manifest.json``."""
    return f"{RUNS_PREFIX}as_of={check_as_of(as_of)}/{MANIFEST_NAME}"


def parse_manifest(data: bytes, key: str) -> dict[str, Any]:
    """The manifest in ``data``; DamagedManifest (one line naming ``key``) when it is not one."""
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DamagedManifest(f"{key}: not valid JSON ({getattr(exc, 'msg', exc)}, {len(data)} bytes)",
                              hint=_REPAIR) from None
    if not isinstance(obj, dict) or not isinstance(obj.get("artifacts"), list) or not obj.get("run_id"):
        raise DamagedManifest(f"{key}: not a manifest (no run_id or artifacts list)", hint=_REPAIR)
    for art in obj["artifacts"]:
        if not isinstance(art, dict) or not isinstance(art.get("path"), str) or not art.get("sha256"):
            raise DamagedManifest(f"{key}: an artifact entry has no path or sha256", hint=_REPAIR)
        # Manifests written before the artifact contract had no kind or run_id per entry.
        art.setdefault("kind", kind_of(art["path"]) or art["path"].split("/", 1)[0])
        art.setdefault("run_id", obj["run_id"])
    m = MANIFEST_RE.match(key)
    obj.setdefault("as_of", m["as_of"] if m else None)
    obj.setdefault("publications", [{"run_id": obj["run_id"], "command": obj.get("stage", "run"),
                                     "created_at": obj.get("created_at"),
                                     "kinds": sorted({a["kind"] for a in obj["artifacts"]})}])
    return obj


def read_manifest(store: Store, as_of: str) -> dict[str, Any] | None:
    """The month's manifest, None when the month was never published; DamagedManifest when unreadable."""
    key = manifest_key(as_of)
    try:
        data = store.get_bytes(key)
    except ArtifactNotFound:
        return None
    return parse_manifest(data, key)


@dataclass
class ManifestScan:
    """Every month's manifest that could be read, and one line for each that could not."""

    manifests: list[dict[str, Any]] = field(default_factory=list)
    damaged: dict[str, str] = field(default_factory=dict)  # as_of -> one line naming the file and problem


def published_months(store: Store) -> list[str]:
    """As-of months with a manifest file (readable or not), oldest first."""
    return sorted(m["as_of"] for key in store.list(RUNS_PREFIX) if (m := MANIFEST_RE.match(key)))


def scan_manifests(store: Store, max_workers: int = 8) -> ManifestScan:
    """Read every month's manifest (in parallel); damaged ones are named, never raised.

    StoreUnavailable from the store itself is raised (the caller's exit code 5).
    """
    months = published_months(store)
    scan = ManifestScan()
    if not months:
        return scan

    def fetch(as_of: str) -> tuple[str, dict[str, Any] | None, str | None]:
        try:
            return as_of, read_manifest(store, as_of), None
        except DamagedManifest as exc:
            return as_of, None, exc.message

    with ThreadPoolExecutor(max_workers=min(max_workers, len(months))) as pool:
        for as_of, manifest, problem in pool.map(fetch, months):
            if manifest is not None:
                scan.manifests.append(manifest)
            elif problem is not None:
                scan.damaged[as_of] = problem
    return scan


def list_manifests(store: Store) -> list[dict[str, Any]]:
    """Every readable manifest, sorted by ``as_of`` (damaged ones left out; see :func:`scan_manifests`)."""
    return scan_manifests(store).manifests


def check_artifact(path: str, data: bytes, entry: dict[str, Any]) -> str | None:
    """None when ``data`` matches the manifest entry's size and sha256, else one line saying how not."""
    if len(data) != entry.get("bytes"):
        return f"{path}: {len(data)} bytes, the manifest says {entry.get('bytes')}"
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry.get("sha256"):
        return f"{path}: sha256 {digest[:12]}… does not match the manifest's {str(entry.get('sha256'))[:12]}…"
    return None


def verify_manifest(store: Store, manifest: dict[str, Any]) -> list[str]:
    """Problems with a manifest's artifacts: missing files, size or sha256 mismatches ([] = all good)."""
    problems: list[str] = []
    for art in manifest.get("artifacts", []):
        path = art.get("path", "?")
        try:
            data = store.get_bytes(path)
        except ArtifactNotFound:
            problems.append(f"{path}: missing")
            continue
        problem = check_artifact(path, data, art)
        if problem:
            problems.append(problem)
    return problems


def referenced_prefixes(manifests: Iterable[dict[str, Any] | None]) -> set[str]:
    """``{kind}/as_of=../run_id=../`` folders that the given manifests reference."""
    out: set[str] = set()
    for manifest in manifests:
        for art in (manifest or {}).get("artifacts", []):
            path = str(art.get("path", ""))
            out.add(path.rsplit("/", 1)[0] + "/")
    return out
