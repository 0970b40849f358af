"""pytest plugin: real S3 servers on 127.0.0.1 for the store's tests (registered in tests/conftest.py).

Fixtures
--------
``s3_server``      (session) a moto ThreadedMotoServer on 127.0.0.1, port 0; its endpoint URL.
``s3_bucket``      a fresh bucket on it, with AWS_* variables set for the test (monkeypatch): an
                   :class:`S3Target` (``uri`` = ``s3://bucket/rot``, ``endpoint``, ``bucket``, ``client``).
``swift``          (session) OpenStack Swift with s3api on loopback, started by ``scripts/swift.sh``;
                   skipped with a printed reason when Swift is not installed and ROTATION_REQUIRE_SWIFT
                   is unset (with it set, the script installs Swift and a failure fails the test).
``swift_bucket``   a fresh bucket on Swift, AWS_* set to its tempauth user (``test:tester`` / ``testing``).
``artifact_store`` an opened store, parametrized over ``local``, ``s3`` (moto) and ``swift``: the same
                   test runs against each.
``fault_proxy``    a factory for :class:`FaultProxy`: an HTTP proxy to an S3 endpoint that answers 503
                   to the first N requests, to a seeded share of them or to all of them from a moment
                   on (an outage), and can forward a request and then drop its response.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import random
import shutil
import socket
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SWIFT_SCRIPT = REPO_ROOT / "scripts" / "swift.sh"
MOTO_KEY = "testing"
SWIFT_KEY, SWIFT_SECRET = "test:tester", "testing"


@dataclass
class S3Target:
    """One test's bucket on a local S3 server."""

    endpoint: str
    bucket: str
    prefix: str
    client: Any

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


def _client(endpoint: str, key: str, secret: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key, aws_secret_access_key=secret,
                        region_name="us-east-1",
                        config=Config(s3={"addressing_style": "path"}, request_checksum_calculation="when_required"))


def _set_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, endpoint: str, key: str, secret: str) -> None:
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    # Never read the developer's ~/.aws files.
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))


def _new_bucket(client: Any) -> str:
    name = f"t-{uuid.uuid4().hex[:16]}"
    client.create_bucket(Bucket=name)
    return name


# -- moto ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 (a free port); yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> S3Target:
    """A fresh bucket on the moto server, with AWS_* pointing at it for this test."""
    _set_aws_env(monkeypatch, tmp_path, s3_server, MOTO_KEY, MOTO_KEY)
    client = _client(s3_server, MOTO_KEY, MOTO_KEY)
    return S3Target(endpoint=s3_server, bucket=_new_bucket(client), prefix="rot", client=client)


# -- Swift -----------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def swift() -> Iterator[str]:
    """OpenStack Swift (s3api + tempauth) on 127.0.0.1 via scripts/swift.sh; yields its endpoint URL."""
    required = bool(os.environ.get("ROTATION_REQUIRE_SWIFT"))
    if shutil.which("swift-proxy-server") is None and not required:
        reason = ("OpenStack Swift is not installed: run `scripts/swift.sh start` once (it installs it with "
                  "apt), or set ROTATION_REQUIRE_SWIFT=1")
        print(f"SKIP swift: {reason}")
        pytest.skip(reason)
    was_running = subprocess.run(["bash", str(SWIFT_SCRIPT), "status"], capture_output=True, text=True,
                                 check=False).returncode == 0
    started = subprocess.run(["bash", str(SWIFT_SCRIPT), "start"], capture_output=True, text=True, timeout=600,
                             check=False)
    if started.returncode != 0:
        message = f"scripts/swift.sh start failed: {started.stderr.strip().splitlines()[-1:]}"
        if required:
            pytest.fail(message)
        print(f"SKIP swift: {message}")
        pytest.skip(message)
    endpoint = started.stdout.strip().splitlines()[-1]
    try:
        yield endpoint
    finally:
        if not was_running:
            subprocess.run(["bash", str(SWIFT_SCRIPT), "stop"], capture_output=True, check=False)


@pytest.fixture
def swift_bucket(swift: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> S3Target:
    """A fresh bucket on Swift, with AWS_* set to its tempauth user for this test."""
    _set_aws_env(monkeypatch, tmp_path, swift, SWIFT_KEY, SWIFT_SECRET)
    client = _client(swift, SWIFT_KEY, SWIFT_SECRET)
    return S3Target(endpoint=swift, bucket=_new_bucket(client), prefix="rot", client=client)


# -- every store -----------------------------------------------------------------------------------------

@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3),
                        pytest.param("swift", marks=pytest.mark.swift)])
def artifact_store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """An opened artifact store: a local folder, a moto bucket, or a Swift bucket (same tests for each)."""
    from job.store import open_store

    if request.param == "local":
        return open_store(str(tmp_path / "artifacts"))
    target = request.getfixturevalue("s3_bucket" if request.param == "s3" else "swift_bucket")
    return open_store(target.uri)


# -- fault injection -------------------------------------------------------------------------------------

RequestMatch = Callable[[str, str, dict[str, str]], bool]
"""``(method, path, headers) -> bool``: which requests a fault applies to."""


def lock_writes(method: str, path: str, headers: dict[str, str]) -> bool:
    """A PUT of the run lock (``locks/run.lock``): create, takeover or renewal."""
    return method == "PUT" and path.split("?", maxsplit=1)[0].endswith("/locks/run.lock")


class FaultProxy:
    """An HTTP proxy on 127.0.0.1 in front of an S3 endpoint that injects faults.

    - ``failures``: the first N requests get ``status`` (503 by default) with an S3 XML error body.
    - ``share``: each later request fails the same way with this probability (seeded with ``seed``).
    - :meth:`outage` / :meth:`recover`: every request fails from now on / until now.
    - :meth:`drop_responses`: the next N matching requests are forwarded (so they take effect), then
      the connection is closed without an answer, so botocore retries a request that already landed.

    Other requests are forwarded unchanged (the Host header too, so SigV4 signatures stay valid).
    ``stop()`` makes the endpoint refuse connections, like a server that went down. Counters:
    ``requests``, ``failed``, ``dropped``; ``log`` lists ``(method, path, outcome)`` for every request.
    """

    def __init__(self, upstream: str, failures: int = 0, status: int = 503, *, share: float = 0.0,
                 seed: int = 0) -> None:
        self.upstream = urlparse(upstream)
        self.failures = failures
        self.status = status
        self.share = share
        self.random = random.Random(seed)
        self.down = False
        self.requests = 0
        self.failed = 0
        self.dropped = 0
        self.log: list[tuple[str, str, str]] = []
        self._drop: list[tuple[int, RequestMatch]] = []
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                with proxy._lock:
                    proxy._connections.add(self.connection)

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                outcome = proxy._decide(self.command, self.path, dict(self.headers.items()))
                if outcome == "fail":
                    payload = (b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>ServiceUnavailable</Code>"
                               b"<Message>injected fault</Message></Error>")
                    self.send_response(proxy.status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                    return
                conn = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection",)}
                conn.request(self.command, self.path, body=body, headers=headers)
                answer = conn.getresponse()
                data = answer.read()
                conn.close()
                if outcome == "drop":  # the request took effect upstream; its answer never arrives
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.send_response(answer.status, answer.reason)
                for key, value in answer.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                if self.command == "HEAD":
                    self.send_header("Content-Length", answer.getheader("Content-Length") or "0")
                else:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle  # noqa: N815 (http.server's names)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def _decide(self, method: str, path: str, headers: dict[str, str]) -> str:
        """``fail``, ``drop`` or ``forward`` for one request (and count it)."""
        with self._lock:
            self.requests += 1
            outcome = "forward"
            if self.down or self.failed < self.failures or (self.share and self.random.random() < self.share):
                outcome = "fail"
                self.failed += 1
            else:
                for i, (left, match) in enumerate(self._drop):
                    if match(method, path, headers):
                        outcome = "drop"
                        self.dropped += 1
                        self._drop[i] = (left - 1, match)
                        self._drop = [d for d in self._drop if d[0] > 0]
                        break
            self.log.append((method, path, outcome))
            return outcome

    def outage(self) -> None:
        """Answer ``status`` to every request from now on (until :meth:`recover`)."""
        with self._lock:
            self.down = True

    def recover(self) -> None:
        """End an :meth:`outage` (and any share of failures)."""
        with self._lock:
            self.down = False
            self.share = 0.0

    def drop_responses(self, count: int = 1, match: RequestMatch | None = None) -> None:
        """Forward the next ``count`` requests that ``match`` (any request when None), then close the
        connection without answering them."""
        with self._lock:
            self._drop.append((count, match or (lambda method, path, headers: True)))

    def stop(self) -> None:
        """Shut the proxy down: open keep-alive connections are cut and the port refuses new ones."""
        self.server.shutdown()
        self.server.server_close()
        with self._lock:
            for conn in self._connections:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            self._connections.clear()


@pytest.fixture
def fault_proxy() -> Iterator[Callable[..., FaultProxy]]:
    """``make(upstream, failures=N, status=503, share=0.0, seed=0) -> FaultProxy``; every proxy is
    stopped after the test."""
    made: list[FaultProxy] = []

    def make(upstream: str, failures: int = 0, status: int = 503, *, share: float = 0.0,
             seed: int = 0) -> FaultProxy:
        proxy = FaultProxy(upstream, failures, status, share=share, seed=seed)
        made.append(proxy)
        return proxy

    yield make
    for proxy in made:
        with contextlib.suppress(OSError):
            proxy.stop()
