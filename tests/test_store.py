"""The artifact store contract, publication with manifests, GC and faults.

Every contract test runs against a local folder, a moto S3 server and (when installed) OpenStack Swift
on 127.0.0.1, through the ``artifact_store`` fixture of tests/s3_server.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from job.errors import ExitCode, StoreUnavailable
from job.store import ArtifactNotFound, LocalStore, open_store
from job.store.publish import (
    Publisher,
    garbage_collect,
    list_manifests,
    manifest_key,
    new_run_id,
    parquet_bytes,
    read_manifest,
    run_ids_of_month,
    verify_manifest,
    write_failed_validation,
)
from job.store.s3 import S3Store

RUN_A = "20260101T000000Z-aaaaaa"
RUN_B = "20260102T000000Z-bbbbbb"
RUN_C = "20260103T000000Z-cccccc"
RUN_D = "20260104T000000Z-dddddd"


def weights_frame(tag: float) -> pd.DataFrame:
    """Two models x three assets; ``tag`` marks which run wrote it."""
    return pd.DataFrame({
        "model": ["ridge"] * 3 + ["tree"] * 3,
        "decision_month": ["2025-01"] * 6,
        "asset": ["SPY", "VDE", "VGT"] * 2,
        "weight": [0.2, 0.3, 0.5, 0.1, 0.1, 0.8],
        "flag": [False, False, True, False, False, True],
        "tag": [tag] * 6,
    })


def publish(store: Any, as_of: str, run_id: str, tag: float, *, commit: bool = True) -> Publisher:
    pub = Publisher(store, as_of, run_id)
    pub.write_table("weights", weights_frame(tag))
    pub.write_table("forecasts", weights_frame(tag).rename(columns={"weight": "predicted"}))
    pub.write_json("metrics", "metrics.json", {"models": {"ridge": {"full": {"sharpe": tag}}}})
    pub.write_bytes(pub.key("reports", "report.html"), b"<html>report</html>", "text/html")
    if commit:
        pub.commit(timings={"publish": 0.1})
    return pub


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


def test_parquet_bytes_are_deterministic() -> None:
    """The same frame gives the same bytes, so a repeated run writes identical content."""
    frame = weights_frame(1.0)
    assert parquet_bytes(frame) == parquet_bytes(frame.copy())
    assert parquet_bytes(frame) != parquet_bytes(weights_frame(2.0))


def test_publication_writes_the_manifest_last_with_sizes_and_hashes(artifact_store: Any) -> None:
    store = artifact_store
    pub = publish(store, "2025-01", RUN_A, 1.0, commit=False)
    assert read_manifest(store, "2025-01") is None, "nothing is published before commit"
    manifest = pub.commit(timings={"train": 1.25}, extra={"code_version": "test"})
    assert read_manifest(store, "2025-01") == manifest
    assert manifest["as_of"] == "2025-01" and manifest["run_id"] == RUN_A
    assert manifest["timings"] == {"train": 1.25} and manifest["code_version"] == "test"
    paths = [a["path"] for a in manifest["artifacts"]]
    assert paths == sorted([
        f"weights/as_of=2025-01/run_id={RUN_A}/part-0.parquet",
        f"forecasts/as_of=2025-01/run_id={RUN_A}/part-0.parquet",
        f"metrics/as_of=2025-01/run_id={RUN_A}/metrics.json",
        f"reports/as_of=2025-01/run_id={RUN_A}/report.html",
    ])
    for art in manifest["artifacts"]:
        data = store.get_bytes(art["path"])
        assert art["bytes"] == len(data) and art["sha256"] == hashlib.sha256(data).hexdigest()
    assert verify_manifest(store, manifest) == []
    assert [m["as_of"] for m in list_manifests(store)] == ["2025-01"]


def test_verify_manifest_reports_missing_and_tampered_files(artifact_store: Any) -> None:
    store = artifact_store
    manifest = publish(store, "2025-01", RUN_A, 1.0).committed
    assert manifest is not None
    weights, metrics = (next(a["path"] for a in manifest["artifacts"] if a["path"].startswith(k))
                        for k in ("weights/", "metrics/"))
    store.put_bytes(metrics, b"{}")
    store.delete([weights])
    problems = verify_manifest(store, manifest)
    assert any(p.startswith(weights) and "missing" in p for p in problems)
    assert any(p.startswith(metrics) and "sha256" in p for p in problems)


def test_a_repeated_month_replaces_results_only_when_its_manifest_lands(artifact_store: Any) -> None:
    from job.query import query

    store = artifact_store
    publish(store, "2025-01", RUN_A, 1.0)
    second = publish(store, "2025-01", RUN_B, 2.0, commit=False)
    seen = query(store, "SELECT DISTINCT run_id, tag FROM weights")
    assert seen.to_dict("records") == [{"run_id": RUN_A, "tag": 1.0}]
    second.commit()
    seen = query(store, "SELECT run_id, tag, count(*) AS n FROM weights GROUP BY ALL")
    assert seen.to_dict("records") == [{"run_id": RUN_B, "tag": 2.0, "n": 6}]


def test_a_crash_before_the_manifest_leaves_the_previous_run_visible(artifact_store: Any) -> None:
    """In-process crash between artifacts and manifest: queries show the previous run, no duplicates."""
    from job.query import query

    store = artifact_store
    publish(store, "2025-01", RUN_A, 1.0)
    with pytest.raises(RuntimeError, match="boom"):
        pub = Publisher(store, "2025-01", RUN_B)
        pub.write_table("weights", weights_frame(2.0))
        pub.write_table("forecasts", weights_frame(2.0))
        raise RuntimeError("boom")
    assert read_manifest(store, "2025-01")["run_id"] == RUN_A  # type: ignore[index]
    rows = query(store, "SELECT run_id, tag, count(*) AS n FROM weights GROUP BY ALL")
    assert rows.to_dict("records") == [{"run_id": RUN_A, "tag": 1.0, "n": 6}]
    assert int(query(store, "SELECT count(*) AS n FROM forecasts")["n"][0]) == 6
    assert verify_manifest(store, read_manifest(store, "2025-01") or {}) == []


CRASH_SCRIPT = """
import sys, time
import pandas as pd
from job.store import open_store
from job.store.publish import Publisher
store = open_store(sys.argv[1])
pub = Publisher(store, "2025-01", sys.argv[2])
frame = pd.DataFrame({"model": ["ridge"] * 3, "asset": ["SPY", "VDE", "VGT"], "weight": [0.1, 0.2, 0.7],
                      "tag": [9.0] * 3})
pub.write_table("weights", frame)
pub.write_table("forecasts", frame)
print("ARTIFACTS-WRITTEN", flush=True)
time.sleep(120)
pub.commit()
"""


@pytest.mark.slow
def test_a_run_killed_by_sigkill_before_the_manifest_leaves_the_previous_run(artifact_store: Any) -> None:
    from job.query import query

    store = artifact_store
    publish(store, "2025-01", RUN_A, 1.0)
    proc = subprocess.Popen([sys.executable, "-c", CRASH_SCRIPT, store.uri, RUN_B], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1])
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.strip() == "ARTIFACTS-WRITTEN", proc.stderr.read() if proc.stderr else ""
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert RUN_B in run_ids_of_month(store, "2025-01"), "the killed run did write its artifacts"
    rows = query(store, "SELECT run_id, tag, count(*) AS n FROM weights GROUP BY ALL")
    assert rows.to_dict("records") == [{"run_id": RUN_A, "tag": 1.0, "n": 6}]


def test_garbage_collection_keeps_the_retention(artifact_store: Any) -> None:
    """After a commit, the newest ``retention_runs`` run ids of the month remain, plus the committed and
    the previously committed one; older and crashed runs are deleted."""
    store = artifact_store
    store.retention_runs = 1
    publish(store, "2025-01", RUN_A, 1.0)
    publish(store, "2025-02", RUN_A, 1.0)  # another month is never touched
    publish(store, "2025-01", RUN_B, 2.0, commit=False)  # crashed run
    publish(store, "2025-01", RUN_C, 3.0)
    assert sorted(run_ids_of_month(store, "2025-01")) == [RUN_A, RUN_C], "crashed B collected, A kept as previous"
    publish(store, "2025-01", RUN_D, 4.0)
    assert sorted(run_ids_of_month(store, "2025-01")) == [RUN_C, RUN_D]
    store.retention_runs = 3
    publish(store, "2025-01", "20260105T000000Z-eeeeee", 5.0, commit=False)
    publish(store, "2025-01", "20260106T000000Z-ffffff", 6.0)
    assert sorted(run_ids_of_month(store, "2025-01")) == [RUN_D, "20260105T000000Z-eeeeee",
                                                          "20260106T000000Z-ffffff"], "the 3 newest"
    assert sorted(run_ids_of_month(store, "2025-02")) == [RUN_A]
    assert verify_manifest(store, read_manifest(store, "2025-01") or {}) == []
    assert not store.list(f"reports/as_of=2025-01/run_id={RUN_A}/")


def test_garbage_collection_never_deletes_the_committed_or_previous_run(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    for run in (RUN_A, RUN_B, RUN_C):
        publish(store, "2025-01", run, 1.0, commit=False)
    deleted = garbage_collect(store, "2025-01", keep={RUN_B, RUN_C}, retention_runs=0, newest=RUN_C)
    assert deleted == [RUN_A]
    assert sorted(run_ids_of_month(store, "2025-01")) == [RUN_B, RUN_C]


def test_a_failed_validation_publishes_only_its_report(artifact_store: Any) -> None:
    store = artifact_store
    publish(store, "2025-01", RUN_A, 1.0)
    key = write_failed_validation(store, "2025-01", RUN_B, {"success": False, "failed": ["gaps"]})
    assert key == f"validation/as_of=2025-01/run_id={RUN_B}/validation.json"
    assert json.loads(store.get_bytes(key))["success"] is False
    assert read_manifest(store, "2025-01")["run_id"] == RUN_A  # type: ignore[index]


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
    publish(store, "2025-01", RUN_A, 1.0)
    before = store.get_bytes(manifest_key("2025-01"))
    pub = Publisher(store, "2025-01", RUN_B)
    pub.write_table("weights", weights_frame(2.0))
    proxy.stop()
    with pytest.raises(StoreUnavailable, match="cannot reach") as info:
        pub.write_table("forecasts", weights_frame(2.0))
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
