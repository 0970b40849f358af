"""Artifact stores: a local folder or S3-compatible object storage behind one interface."""

from __future__ import annotations

from job.store.base import ArtifactNotFound, Store
from job.store.local import LocalStore

__all__ = ["ArtifactNotFound", "LocalStore", "Store", "open_store"]


def open_store(uri: str, settings: object | None = None) -> Store:
    """Open ``uri``: ``s3://bucket/prefix`` for S3, anything else a local folder."""
    if uri.startswith("s3://"):
        from job.store.s3 import S3Store  # imported lazily: boto3 is slow to import

        return S3Store.from_uri(uri, settings)
    return LocalStore(uri)
