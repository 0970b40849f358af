"""Artifact stores: a local folder or S3-compatible object storage behind one interface.

- :func:`open_store` opens ``s3://bucket/prefix`` (boto3) or a local folder.
- :mod:`job.store.publish`: run ids, :class:`Publisher` (artifacts, then the manifest, then GC),
  manifests. :mod:`job.store.lock`: :class:`RunLock`, a lease lock (one writer per store at a time),
  and :func:`run_lock`, which builds it from ``settings.store`` (``lock_lease_s``, ``lock_wait_s``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from job.store.base import ArtifactNotFound, Store
from job.store.local import LocalStore
from job.store.lock import LOCK_KEY, LockLost, RunLock, run_lock

if TYPE_CHECKING:
    from job.store.publish import (
        Publisher,
        list_manifests,
        new_run_id,
        read_manifest,
        verify_manifest,
        write_failed_validation,
    )

_PUBLISH_NAMES = {"Publisher", "list_manifests", "new_run_id", "read_manifest", "verify_manifest",
                  "write_failed_validation"}

__all__ = [
    "LOCK_KEY",
    "ArtifactNotFound",
    "LocalStore",
    "LockLost",
    "Publisher",
    "RunLock",
    "Store",
    "list_manifests",
    "new_run_id",
    "open_store",
    "read_manifest",
    "run_lock",
    "verify_manifest",
    "write_failed_validation",
]


def open_store(uri: str, settings: Any | None = None) -> Store:
    """Open ``uri``: ``s3://bucket/prefix`` for S3, anything else a local folder.

    For S3 the bucket is probed at once, so an unreachable endpoint, rejected credentials or a missing
    bucket raise :class:`job.errors.StoreUnavailable` (exit code 5) before any work starts. The store
    carries ``retention_runs`` and ``lock_lease_s`` from ``settings.store`` (defaults 2 and 120 s); the
    run lock itself is made by :func:`run_lock` from the settings.
    """
    store: Any
    if uri.startswith("s3://"):
        from job.store.s3 import S3Store  # imported lazily: boto3 is slow to import

        store = S3Store.from_uri(uri, settings)
    else:
        store = LocalStore(uri)
    store_settings = getattr(settings, "store", None)
    store.retention_runs = int(getattr(store_settings, "retention_runs", 2))
    store.lock_lease_s = int(getattr(store_settings, "lock_lease_s", 120))
    return store


def __getattr__(name: str) -> Any:
    """Import the publication names lazily: they pull in pandas and pyarrow (about a second)."""
    if name in _PUBLISH_NAMES:
        from job.store import publish

        return getattr(publish, name)
    raise AttributeError(f"module 'job.store' has no attribute {name!r}")
