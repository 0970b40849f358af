"""The artifact store interface shared by the local folder and S3 implementations.

Keys are POSIX-style paths relative to the store root (``weights/as_of=2025-01/run_id=.../part-0.parquet``).
Implementations raise :class:`ArtifactNotFound` for a missing key and
:class:`job.errors.StoreUnavailable` when the store itself cannot be reached or refuses the credentials.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from job.errors import RotationError


class ArtifactNotFound(RotationError, KeyError):
    """The key does not exist in the store."""


@runtime_checkable
class Store(Protocol):
    """Byte-level access to an artifact store (local folder or ``s3://bucket/prefix``)."""

    @property
    def uri(self) -> str:
        """Where the store lives, e.g. ``/abs/artifacts`` or ``s3://bucket/prefix``."""
        ...

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        """Write ``data`` at ``key`` atomically (readers see the old object or the whole new one)."""
        ...

    def get_bytes(self, key: str) -> bytes:
        """Read the object at ``key``; ArtifactNotFound when absent."""
        ...

    def exists(self, key: str) -> bool:
        """Whether ``key`` exists."""
        ...

    def list(self, prefix: str = "") -> list[str]:
        """All keys under ``prefix`` (recursive), sorted."""
        ...

    def delete(self, keys: list[str]) -> None:
        """Delete ``keys``; missing keys are ignored."""
        ...
