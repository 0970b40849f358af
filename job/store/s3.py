"""The artifact store on S3-compatible object storage (AWS S3, MinIO, Swift s3api, moto) via boto3.

``s3://bucket/prefix``: every key is stored as ``prefix/key``. The endpoint comes from
``settings.store.endpoint_url``, else ``$AWS_ENDPOINT_URL``, else the AWS default; credentials come from
the standard boto3 chain (environment, profile, instance role) and are never logged. botocore retries
throttling and 5xx answers with backoff (retry mode ``standard``, ``max_attempts`` tries in all);
connect and read timeouts come from the settings; objects above ``multipart_threshold`` are uploaded
in parts by boto3's transfer manager.

Every failure to reach the store, a rejected credential or a missing bucket becomes
:class:`job.errors.StoreUnavailable` (exit code 5) with a one-line message.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import boto3
import botocore.exceptions
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from job.errors import StoreUnavailable
from job.logs import get_logger
from job.store.base import ArtifactNotFound

log = get_logger("store")

CREDENTIAL_ERRORS = {"SignatureDoesNotMatch", "InvalidAccessKeyId", "InvalidToken", "ExpiredToken",
                     "InvalidSecurity", "AuthorizationHeaderMalformed", "TokenRefreshRequired"}
DENIED_ERRORS = {"AccessDenied", "AllAccessDisabled", "AccountProblem", "403", "Forbidden"}
MISSING_KEY_ERRORS = {"NoSuchKey", "404", "NotFound"}
PRECONDITION_ERRORS = {"PreconditionFailed", "412", "ConditionalRequestConflict"}
NOT_IMPLEMENTED_ERRORS = {"NotImplemented", "501"}
DEFAULT_MULTIPART_THRESHOLD = 64 * 1024 * 1024
DEFAULT_MULTIPART_CHUNKSIZE = 16 * 1024 * 1024


class ConditionalWritesUnsupported(Exception):
    """The server answered NotImplemented to a conditional request (Swift's s3api does)."""


class PreconditionFailed(Exception):
    """A conditional request's precondition did not hold (HTTP 412)."""


@dataclass(frozen=True)
class S3Options:
    """Client settings, from ``settings.store`` (see ``job/defaults.toml`` ``[store]``)."""

    endpoint_url: str | None = None
    region: str = "us-east-1"
    path_style: bool = True
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 60.0
    max_attempts: int = 5
    retry_mode: str = "standard"
    multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD
    multipart_chunksize: int = DEFAULT_MULTIPART_CHUNKSIZE
    page_size: int = 1000

    @classmethod
    def from_settings(cls, settings: Any | None, **overrides: Any) -> S3Options:
        """Options from a :class:`job.config.Settings` (or None: defaults) plus keyword overrides."""
        values: dict[str, Any] = {}
        store = getattr(settings, "store", None)
        if store is not None:
            values = {
                "endpoint_url": store.endpoint_url or None,
                "region": store.region,
                "path_style": store.path_style,
                "connect_timeout_s": float(store.connect_timeout_s),
                "read_timeout_s": float(store.read_timeout_s),
                "max_attempts": int(store.max_attempts),
            }
        values.update(overrides)
        if not values.get("endpoint_url"):
            values["endpoint_url"] = os.environ.get("AWS_ENDPOINT_URL") or None
        return cls(**values)


def _error_code(exc: botocore.exceptions.ClientError) -> tuple[str, int]:
    response = exc.response or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return code, status


def _add_content_md5(request: Any, **_: Any) -> None:
    """DeleteObjects needs Content-MD5 on Swift's s3api (boto3 >= 1.36 sends only a CRC32)."""
    body = request.body or b""
    if isinstance(body, str):
        body = body.encode()
    if isinstance(body, bytes | bytearray):
        request.headers["Content-MD5"] = base64.b64encode(hashlib.md5(body).digest()).decode()


class S3Store:
    """An artifact store at ``s3://bucket/prefix``.

    Parameters
    ----------
    bucket, prefix:
        Where the store lives; ``prefix`` may be empty.
    options:
        Endpoint, region, addressing style, timeouts, retries and multipart settings.
    check:
        Probe the bucket at once (one ListObjectsV2 with MaxKeys=1), so that a wrong endpoint,
        rejected credentials or a missing bucket fail before any work is done.
    """

    def __init__(self, bucket: str, prefix: str = "", options: S3Options | None = None,
                 *, check: bool = True) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.options = options or S3Options.from_settings(None)
        self.session = boto3.session.Session()
        config = Config(
            region_name=self.options.region,
            connect_timeout=self.options.connect_timeout_s,
            read_timeout=self.options.read_timeout_s,
            retries={"mode": self.options.retry_mode, "max_attempts": self.options.max_attempts},
            s3={"addressing_style": "path" if self.options.path_style else "auto"},
            # Only checksum when an operation requires it: S3-compatible servers (Swift, older MinIO)
            # reject or ignore the CRC32 trailers that boto3 >= 1.36 sends by default.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self.client = self.session.client("s3", endpoint_url=self.options.endpoint_url, config=config)
        self.client.meta.events.register("before-sign.s3.DeleteObjects", _add_content_md5)
        self.transfer = TransferConfig(multipart_threshold=self.options.multipart_threshold,
                                       multipart_chunksize=self.options.multipart_chunksize,
                                       max_concurrency=4, use_threads=True)
        if check:
            self.check()

    @classmethod
    def from_uri(cls, uri: str, settings: Any | None = None, **overrides: Any) -> S3Store:
        """Open ``s3://bucket/prefix`` with client options from ``settings.store``."""
        parsed = urlparse(uri)
        if parsed.scheme != "s3" or not parsed.netloc:
            from job.errors import ConfigError

            raise ConfigError(f"not an S3 store URI: {uri!r}", hint="use s3://bucket/prefix")
        return cls(parsed.netloc, parsed.path, S3Options.from_settings(settings, **overrides))

    # -- naming ------------------------------------------------------------------------------------

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    @property
    def endpoint(self) -> str:
        """The endpoint URL in use (for messages and for DuckDB's secret)."""
        return self.client.meta.endpoint_url

    def _key(self, key: str) -> str:
        key = key.lstrip("/")
        if ".." in key.split("/"):
            raise ValueError(f"key {key!r} escapes the store root")
        return f"{self.prefix}/{key}" if self.prefix else key

    def url_for(self, key: str) -> str:
        """``s3://bucket/prefix/key``: the address DuckDB's httpfs reads."""
        return f"s3://{self.bucket}/{self._key(key)}"

    def credentials(self) -> dict[str, str | None]:
        """The resolved credentials (for DuckDB's CREATE SECRET; never log them)."""
        creds = self.session.get_credentials()
        if creds is None:
            raise StoreUnavailable(f"no AWS credentials found for {self.uri}",
                                   hint="set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or AWS_PROFILE")
        frozen = creds.get_frozen_credentials()
        return {"key_id": frozen.access_key, "secret": frozen.secret_key, "session_token": frozen.token}

    # -- errors ------------------------------------------------------------------------------------

    @contextmanager
    def _errors(self, action: str, key: str | None = None, *, conditional: bool = False) -> Iterator[None]:
        """Translate botocore failures into StoreUnavailable / ArtifactNotFound with one-line text."""
        where = f"{self.uri} at {self.endpoint}"
        try:
            yield
        except botocore.exceptions.ClientError as exc:
            code, status = _error_code(exc)
            if key is not None and (code in MISSING_KEY_ERRORS or status == 404) and code != "NoSuchBucket":
                raise ArtifactNotFound(f"no artifact {key} in {self.uri}") from None
            if conditional and (code in PRECONDITION_ERRORS or status == 412):
                raise PreconditionFailed(code) from None
            if conditional and (code in NOT_IMPLEMENTED_ERRORS or status == 501):
                raise ConditionalWritesUnsupported(code) from None
            if code in CREDENTIAL_ERRORS:
                raise StoreUnavailable(f"the S3 store {where} rejected the credentials ({code}) while trying to "
                                       f"{action}", hint="check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY") from None
            if code in DENIED_ERRORS or status == 403:
                raise StoreUnavailable(f"the S3 store {where} refused access (403 {code or 'Forbidden'}: credentials "
                                       f"rejected or not allowed) while trying to {action}",
                                       hint="check the credentials and the bucket policy") from None
            if code == "NoSuchBucket":
                raise StoreUnavailable(f"bucket {self.bucket!r} does not exist at {self.endpoint}",
                                       hint="create it, or fix the store URI / endpoint") from None
            if status >= 500 or code in {"SlowDown", "Throttling", "RequestTimeout", "ServiceUnavailable"}:
                raise StoreUnavailable(f"the S3 store {where} kept failing ({status} {code}) after "
                                       f"{self.options.max_attempts} attempts to {action}",
                                       hint="retry later; the last published results are unchanged") from None
            raise StoreUnavailable(f"the S3 store {where} answered {status} {code} to {action}") from None
        except botocore.exceptions.NoCredentialsError:
            raise StoreUnavailable(f"no AWS credentials found for {self.uri}",
                                   hint="set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or AWS_PROFILE") from None
        except (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectTimeoutError,
                botocore.exceptions.ReadTimeoutError, botocore.exceptions.ConnectionClosedError,
                botocore.exceptions.ConnectionError) as exc:
            kind = type(exc).__name__
            raise StoreUnavailable(f"cannot reach the S3 store {where} ({kind}) to {action}",
                                   hint="check the endpoint (AWS_ENDPOINT_URL / store.endpoint_url) and the network; "
                                        "the last published results are unchanged") from None
        except botocore.exceptions.BotoCoreError as exc:
            raise StoreUnavailable(f"S3 store {where} error while trying to {action}: {exc}") from None

    # -- the Store protocol ------------------------------------------------------------------------

    def check(self) -> None:
        """Probe the bucket: StoreUnavailable unless it answers a listing with these credentials."""
        with self._errors("list the bucket"):
            self.client.list_objects_v2(Bucket=self.bucket, Prefix=self._key(""), MaxKeys=1)

    def put_bytes(self, key: str, data: bytes, content_type: str | None = None) -> None:
        """Write ``data`` at ``key``; S3 objects appear whole or not at all. Multipart above the threshold."""
        extra = {"ContentType": content_type} if content_type else {}
        with self._errors(f"write {key}"):
            if len(data) >= self.options.multipart_threshold:
                self.client.upload_fileobj(io.BytesIO(data), self.bucket, self._key(key),
                                           ExtraArgs=extra or None, Config=self.transfer)
            else:
                self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **extra)

    def get_bytes(self, key: str) -> bytes:
        with self._errors(f"read {key}", key):
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()

    def exists(self, key: str) -> bool:
        try:
            with self._errors(f"look up {key}", key):
                self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ArtifactNotFound:
            return False
        return True

    def list(self, prefix: str = "") -> list[str]:
        """All keys under ``prefix`` (relative to the store root), sorted; pages through the listing."""
        full = self._key(prefix) if prefix else (f"{self.prefix}/" if self.prefix else "")
        strip = len(self.prefix) + 1 if self.prefix else 0
        keys: list[str] = []
        with self._errors(f"list {prefix or 'the store'}"):
            paginator = self.client.get_paginator("list_objects_v2")
            pages = paginator.paginate(Bucket=self.bucket, Prefix=full,
                                       PaginationConfig={"PageSize": self.options.page_size})
            for page in pages:
                keys.extend(obj["Key"][strip:] for obj in page.get("Contents", []))
        return sorted(keys)

    def delete(self, keys: list[str]) -> None:
        """Delete ``keys`` in batches of 1000; missing keys are ignored."""
        keys = list(dict.fromkeys(keys))
        for start in range(0, len(keys), 1000):
            batch = [{"Key": self._key(k)} for k in keys[start:start + 1000]]
            with self._errors("delete objects"):
                answer = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            errors = [e for e in answer.get("Errors", []) if e.get("Code") != "NoSuchKey"]
            if errors:
                first = errors[0]
                raise StoreUnavailable(f"could not delete {len(errors)} objects from {self.uri}: "
                                       f"{first.get('Key')}: {first.get('Code')} {first.get('Message', '')}".strip())

    # -- conditional operations (the run lock) -----------------------------------------------------

    def get_with_etag(self, key: str) -> tuple[bytes, str]:
        """The object and its ETag; ArtifactNotFound when absent."""
        with self._errors(f"read {key}", key):
            answer = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            return answer["Body"].read(), answer["ETag"]

    def put_if_absent(self, key: str, data: bytes) -> str | None:
        """Create ``key`` only if it does not exist (If-None-Match: *): the new object's ETag, or None
        when it exists (412).

        A 412 can also answer botocore's retry of our own create whose first response was lost: the
        caller reads the object back to tell (the run lock compares its token). Raises
        ConditionalWritesUnsupported when the server does not implement conditional puts.
        """
        try:
            with self._errors(f"create {key}", conditional=True):
                answer = self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data,
                                                IfNoneMatch="*", ContentType="application/json")
        except PreconditionFailed:
            return None
        return str(answer.get("ETag") or "")

    def put_if_match(self, key: str, data: bytes, etag: str) -> str | None:
        """Overwrite ``key`` only if its ETag is still ``etag`` (If-Match): the new ETag, or None when
        it changed or vanished (412 / 404; as above, possibly our own retried write)."""
        try:
            with self._errors(f"replace {key}", key, conditional=True):
                answer = self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, IfMatch=etag,
                                                ContentType="application/json")
        except (PreconditionFailed, ArtifactNotFound):
            return None
        return str(answer.get("ETag") or "")

    def delete_if_match(self, key: str, etag: str) -> bool:
        """Delete ``key`` only if its ETag is still ``etag``; plain delete where unsupported."""
        try:
            with self._errors(f"delete {key}", key, conditional=True):
                self.client.delete_object(Bucket=self.bucket, Key=self._key(key), IfMatch=etag)
        except (PreconditionFailed, ArtifactNotFound):
            return False
        except ConditionalWritesUnsupported:
            with self._errors(f"delete {key}", key):
                self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        return True
