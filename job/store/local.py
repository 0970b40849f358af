"""The artifact store as a local folder (the embedded default, ``./artifacts``)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from job.errors import StoreUnavailable
from job.store.base import ArtifactNotFound


class LocalStore:
    """A folder on disk. Writes go to a temporary file in the same folder, then ``os.replace``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()

    @property
    def uri(self) -> str:
        return str(self.root)

    def url_for(self, key: str) -> str:
        """The absolute file path of ``key`` (what DuckDB reads)."""
        return str(self._path(key))

    def _path(self, key: str) -> Path:
        key = key.lstrip("/")
        path = (self.root / key).resolve()
        if self.root not in path.parents and path != self.root:
            raise ValueError(f"key {key!r} escapes the store root")
        return path

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                Path(tmp).replace(path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except PermissionError as exc:
            raise StoreUnavailable(f"cannot write to the artifact store {self.root}: {exc.strerror}",
                                   hint="check the folder's permissions") from None
        except OSError as exc:
            raise StoreUnavailable(f"cannot write to the artifact store {self.root}: {exc.strerror}") from None

    def get_bytes(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise ArtifactNotFound(f"no artifact {key} in {self.root}") from None
        except OSError as exc:
            raise StoreUnavailable(f"cannot read {key} from {self.root}: {exc.strerror}") from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> list[str]:
        """Keys starting with ``prefix`` (a plain string prefix, as on S3), sorted."""
        if not self.root.is_dir():
            return []
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self._path(folder) if folder else self.root
        if not start.is_dir():
            return []
        keys = []
        for path in start.rglob("*"):
            if path.is_file() and not path.name.startswith((".tmp-", ".run.lock.guard")):
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def delete(self, keys: list[str]) -> None:
        for key in keys:
            self._path(key).unlink(missing_ok=True)
