"""The artifact store contract, publication with manifests, GC and faults.

Every contract test runs against a local folder, a moto S3 server and (when installed) OpenStack Swift
on 127.0.0.1, through the ``artifact_store`` fixture of tests/s3_server.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from job.errors import ExitCode, StoreUnavailable
from job.store import ArtifactNotFound, LocalStore, open_store
from job.store.manifest import manifest_key, verify_manifest
from job.store.publish import Publisher, new_run_id
from job.store.s3 import S3Store

RUN_A = "20260101T000000Z-aaaaaa"
RUN_B = "20260102T000000Z-bbbbbb"


# -- the byte-level contract ---------------------------------------------------------------------------

def test_put_get_exists_delete(artifact_store: Any) -> None:
    """Objects round-trip byte for byte; a missing key raises ArtifactNotFound; delete ignores absent keys."""
    store = artifact_store
    assert not store.exists("a/b.txt")
    store.put_bytes("a/b.txt", b"hello", "text/plain")
    store.put_bytes("a/c.bin", bytes(range(256)))
    assert store.exists("a/b.txt")
    assert store.get_bytes("a/b.txt") == b"hello"
    assert store.get_bytes("a/c.bin") == bytes(range(256))
    store.put_bytes("a/b.txt", b"replaced")
    assert store.get_bytes("a/b.txt") == b"replaced"
    with pytest.raises(ArtifactNotFound):
        store.get_bytes("a/missing.txt")
    store.delete(["a/b.txt", "a/never-existed.txt"])
    assert not store.exists("a/b.txt")
    assert store.list("a/") == ["a/c.bin"]


def test_list_is_recursive_sorted_and_prefix_scoped(artifact_store: Any) -> None:
    store = artifact_store
    for key in ["x/2.txt", "x/1.txt", "x/sub/3.txt", "xy/4.txt", "z.txt"]:
        store.put_bytes(key, b"1")
    assert store.list("x/") == ["x/1.txt", "x/2.txt", "x/sub/3.txt"]
    assert store.list("x") == ["x/1.txt", "x/2.txt", "x/sub/3.txt", "xy/4.txt"]
    assert store.list() == ["x/1.txt", "x/2.txt", "x/sub/3.txt", "xy/4.txt", "z.txt"]
    assert store.list("nothing/") == []


def test_pagination_lists_every_key(artifact_store: Any) -> None:
    """Listings page through the server's answers (page size 7 here) and lose no key."""
    store = artifact_store
    if isinstance(store, S3Store):
        store = S3Store(store.bucket, store.prefix, dataclasses.replace(store.options, page_size=7))
    keys = [f"many/{i:03d}.txt" for i in range(45)]
    for key in keys:
        store.put_bytes(key, b"x")
    assert store.list("many/") == keys


def test_multipart_upload_of_a_large_object(artifact_store: Any) -> None:
    """An object above the multipart threshold (5 MiB here) is uploaded in parts and reads back whole."""
    store = artifact_store
    if isinstance(store, S3Store):
        store = S3Store(store.bucket, store.prefix, dataclasses.replace(
            store.options, multipart_threshold=5 * 2**20, multipart_chunksize=5 * 2**20))
    data = os.urandom(11 * 2**20 + 123)
    store.put_bytes("big/blob.bin", data)
    assert hashlib.sha256(store.get_bytes("big/blob.bin")).digest() == hashlib.sha256(data).digest()
    if isinstance(store, S3Store):
        etag = store.client.head_object(Bucket=store.bucket, Key=store._key("big/blob.bin"))["ETag"]
        assert etag.strip('"').endswith("-3"), f"expected a 3-part multipart ETag, got {etag}"


def test_keys_cannot_escape_the_store(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="escapes"):
        LocalStore(tmp_path).put_bytes("../outside.txt", b"x")


# -- publication -----------------------------------------------------------------------------------------

def test_new_run_ids_sort_by_time_and_are_unique() -> None:
    from datetime import UTC, datetime

    early = new_run_id(datetime(2026, 1, 1, tzinfo=UTC))
    late = new_run_id(datetime(2026, 1, 2, tzinfo=UTC))
    assert early < late
    assert early.startswith("20260101T000000Z-") and len(early) == len("20260101T000000Z-3f9a2c")
    assert len({new_run_id() for _ in range(50)}) == 50


# -- S3 faults and configuration -------------------------------------------------------------------------

@pytest.mark.s3
def test_503_a_few_times_then_the_write_succeeds_through_retries(s3_bucket: Any, fault_proxy: Any) -> None:
    proxy = fault_proxy(s3_bucket.endpoint, failures=3)
    store = S3Store.from_uri(s3_bucket.uri, None, endpoint_url=proxy.endpoint)  # probe: 503 x3, then OK
    store.put_bytes("weights/x.bin", b"payload")
    assert proxy.failed == 3 and proxy.requests >= 5
    assert store.get_bytes("weights/x.bin") == b"payload"


@pytest.mark.s3
def test_503_beyond_the_retry_budget_is_store_unavailable(s3_bucket: Any, fault_proxy: Any) -> None:
    proxy = fault_proxy(s3_bucket.endpoint, failures=100)
    with pytest.raises(StoreUnavailable, match="503") as info:
        S3Store.from_uri(s3_bucket.uri, None, endpoint_url=proxy.endpoint, max_attempts=2)
    assert info.value.exit_code == ExitCode.STORE
    assert "\n" not in info.value.one_line()


@pytest.mark.s3
def test_server_down_mid_run_is_exit_5_and_the_previous_manifest_is_untouched(s3_bucket: Any,
                                                                             fault_proxy: Any) -> None:
    proxy = fault_proxy(s3_bucket.endpoint)
    store = S3Store.from_uri(s3_bucket.uri, None, endpoint_url=proxy.endpoint, max_attempts=2,
                             connect_timeout_s=1)
    pub = Publisher(store, "2025-01", RUN_A)
    pub.write_bytes("validation", b'{"passed": true}')
    pub.commit()
    before = store.get_bytes(manifest_key("2025-01"))
    pub = Publisher(store, "2025-01", RUN_B)
    pub.write_bytes("validation", b'{"passed": true}')
    proxy.stop()
    with pytest.raises(StoreUnavailable, match="cannot reach") as info:
        pub.write_bytes("reports", b"<!doctype html>")
    assert info.value.exit_code == ExitCode.STORE
    direct = open_store(s3_bucket.uri)
    assert direct.get_bytes(manifest_key("2025-01")) == before
    assert verify_manifest(direct, json.loads(before)) == []


@pytest.mark.s3
def test_unreachable_endpoint_and_missing_bucket_are_store_unavailable(s3_bucket: Any,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="cannot reach"):
        S3Store.from_uri(s3_bucket.uri, None, endpoint_url=dead, max_attempts=1, connect_timeout_s=1)
    assert time.monotonic() - started < 30
    with pytest.raises(StoreUnavailable, match="does not exist"):
        open_store("s3://no-such-bucket-here/prefix")


@pytest.mark.s3
def test_endpoint_comes_from_settings_then_environment(s3_bucket: Any) -> None:
    from job.config import load_settings

    settings = load_settings(environ={"ROTATION_S3_ENDPOINT": s3_bucket.endpoint})
    store: Any = open_store(s3_bucket.uri, settings)
    assert store.endpoint == s3_bucket.endpoint and store.retention_runs == settings.store.retention_runs
    env_only: Any = open_store(s3_bucket.uri, load_settings(environ={}))
    assert env_only.endpoint == os.environ["AWS_ENDPOINT_URL"]


# -- Swift: a server that checks signatures ------------------------------------------------------------

@pytest.mark.swift
def test_swift_wrong_secret_is_store_unavailable_about_credentials(swift_bucket: Any,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(StoreUnavailable, match="credentials") as info:
        open_store(swift_bucket.uri)
    assert info.value.exit_code == ExitCode.STORE
    assert "SignatureDoesNotMatch" in info.value.one_line()
    assert "not-the-secret" not in info.value.one_line()


@pytest.mark.swift
def test_swift_wrong_secret_through_the_cli_exits_5(swift_bucket: Any, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from job.cli import main

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(SystemExit) as info:
        main(["--store", swift_bucket.uri, "query", "SELECT 1"])
    assert info.value.code == ExitCode.STORE
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "credentials" in err and "Traceback" not in err
