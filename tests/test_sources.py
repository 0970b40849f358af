"""Live sources offline: yfinance served by `responses`, FRED by a local HTTP server, outages -> exit 4.

Nothing here reaches the internet. yfinance runs its real code path against recorded chart JSON
(tests/data/yahoo_chart_*.json); fredapi runs against a local server that serves recorded
``<observations>`` XML (tests/data/fred_*.xml).
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qs, urlparse

import duckdb
import pandas as pd
import pytest

from job import warehouse
from job.config import Settings, Universe, load_settings
from job.errors import ConfigError, UpstreamUnavailable
from job.sources import fetch, parse_sources
from job.sources.deadline import call_with_deadline
from job.sources.fred import fetch_fred
from job.sources.yahoo import fetch_yahoo, tidy_download

DATA = Path(__file__).parent / "data"
TABLES = ("assets", "prices_daily", "series_meta", "macro_observations", "risk_free", "ingests")


def table_state(path: Path) -> dict[str, list[tuple]]:
    """Every row of every raw table, sorted: equal states mean an unchanged warehouse."""
    with duckdb.connect(str(path), read_only=True) as con:
        return {t: sorted(con.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in TABLES}


@pytest.fixture
def warehouse_copy(sample_warehouse: Path, tmp_path: Path) -> Path:
    """A private copy of the sample warehouse, for checking that a failed ingest changes nothing."""
    return Path(shutil.copy(sample_warehouse, tmp_path / "warehouse.duckdb"))


def _settings(**data: object) -> Settings:
    return load_settings(environ={}).with_overrides({"data": data}) if data else load_settings(environ={})


# --- Yahoo Finance -------------------------------------------------------------------------------------


def test_yahoo_empty_result_exits_4_and_writes_nothing(rotation, monkeypatch, warehouse_copy: Path) -> None:
    """yfinance returns an EMPTY frame when the network is down: exit 4, one line, warehouse unchanged."""
    monkeypatch.setattr("job.sources.yahoo._download", lambda *a, **k: pd.DataFrame())
    before = table_state(warehouse_copy)
    result = rotation("--warehouse", str(warehouse_copy), "ingest", "--source", "yahoo")
    assert result.exit_code == 4
    assert result.error.startswith("error: Yahoo Finance returned no data")
    assert "Traceback" not in result.stderr
    assert table_state(warehouse_copy) == before


def test_yahoo_missing_ticker_is_named() -> None:
    """A ticker that came back without prices is an upstream failure naming that ticker."""
    index = pd.to_datetime(["2024-01-30", "2024-01-31"])
    raw = pd.DataFrame({("Close", "SPY"): [1.0, 2.0], ("Close", "VDE"): [float("nan")] * 2}, index=index)
    raw.columns = pd.MultiIndex.from_tuples(raw.columns, names=["Price", "Ticker"])
    with pytest.raises(UpstreamUnavailable, match=r"no prices for \['VDE'\]"):
        tidy_download(raw, ["SPY", "VDE"])


def test_yahoo_hang_hits_the_deadline(rotation, monkeypatch, tmp_path: Path) -> None:
    """A download that hangs is cut off by the job's own deadline: exit 4, nothing written."""
    monkeypatch.setattr("job.sources.yahoo._download", lambda *a, **k: time.sleep(30))
    result = rotation("--warehouse", str(tmp_path / "w.duckdb"), "ingest", "--source", "yahoo",
                      env={"ROTATION_DATA__DOWNLOAD_TIMEOUT_S": "0.2"})
    assert result.exit_code == 4
    assert "Yahoo Finance did not answer within 0.2 s" in result.stderr
    assert not (tmp_path / "w.duckdb").exists()


def test_yahoo_recorded_chart_json(monkeypatch, tmp_path: Path) -> None:
    """The real yfinance download path, served recorded chart JSON, gives tidy adjusted closes."""
    responses = pytest.importorskip("responses")
    import requests

    monkeypatch.setenv("YF_DISABLE_CURL_CFFI", "1")
    monkeypatch.setenv("ROTATION_CACHE_DIR", str(tmp_path / "cache"))
    universe = Universe(name="two", assets={"SPY": "S&P 500", "VDE": "Energy"}, benchmark="SPY")
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add(responses.GET, re.compile(r"https://fc\.yahoo\.com.*"), status=404)
        mock.add(responses.GET, re.compile(r"https://query\d\.finance\.yahoo\.com/v1/test/getcrumb.*"),
                 body="recordedcrumb")
        for ticker in universe.tickers:
            body = (DATA / f"yahoo_chart_{ticker}.json").read_text()
            mock.add(responses.GET, re.compile(rf"https://query\d\.finance\.yahoo\.com/v8/finance/chart/{ticker}\?.*"),
                     body=body, content_type="application/json")
        data = fetch_yahoo(_settings(download_timeout_s=60.0), universe, session=requests.Session())
        assert not [c.request.url for c in mock.calls if "yahoo.com" not in c.request.url]
    prices = data.prices
    assert data.source == "yahoo"
    assert list(prices.columns) == ["asset", "date", "close", "origin"]
    assert prices.groupby("asset").size().to_dict() == {"SPY": 6, "VDE": 6}
    spy = prices[prices["asset"] == "SPY"].set_index("date")["close"]
    # auto_adjust: the close is the adjusted close (a total-return index), by trading day
    assert spy[pd.Timestamp("2024-01-31")] == pytest.approx(479.1)
    assert spy[pd.Timestamp("2024-03-28")] == pytest.approx(520.5)
    assert data.details["prices"]["VDE"] == ["2024-01-30", "2024-03-28"]
    summary = warehouse.ingest(tmp_path / "w.duckdb", data, universe)
    assert summary["price_rows"] == 12
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        ret = con.execute("SELECT ret FROM monthly_returns WHERE asset = 'SPY' AND month = DATE '2024-02-01'"
                          ).fetchone()[0]
    assert ret == pytest.approx(504.1 / 479.1 - 1)


# --- FRED ----------------------------------------------------------------------------------------------


class _FredHandler(BaseHTTPRequestHandler):
    """Serves tests/data/fred_<ID>*.xml for /fred/series/observations?series_id=<ID>."""

    requests_seen: ClassVar[list[dict[str, list[str]]]] = []
    body_override: ClassVar[bytes | None] = None

    def do_GET(self) -> None:
        query = parse_qs(urlparse(self.path).query)
        type(self).requests_seen.append(query)
        series = query.get("series_id", [""])[0]
        files = sorted(DATA.glob(f"fred_{series}*.xml"))
        body = self.body_override if self.body_override is not None else (files[0].read_bytes() if files else b"")
        self.send_response(200 if body else 400)
        self.send_header("Content-Type", "text/xml")
        self.end_headers()
        self.wfile.write(body or b'<error code="400" message="Bad Request. The series does not exist."/>')

    def log_message(self, *args: object) -> None:  # keep the test output (and the api key) quiet
        pass


@pytest.fixture
def fred_server() -> Iterator[tuple[str, type[_FredHandler]]]:
    handler = type("Handler", (_FredHandler,), {"requests_seen": [], "body_override": None})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/fred", handler
    server.shutdown()
    server.server_close()


def _fred_settings() -> Settings:
    return _settings(fred_series=["INDPRO"], extra_fred_series=["VIXCLS"], download_timeout_s=10.0)


def test_fred_without_api_key_exits_2(rotation, monkeypatch, warehouse_copy: Path) -> None:
    monkeypatch.delenv("FRED_API_KEY", raising=False)
    before = table_state(warehouse_copy)
    result = rotation("--warehouse", str(warehouse_copy), "ingest", "--source", "fred")
    assert result.exit_code == 2
    assert result.error.startswith("error: FRED_API_KEY is not set")
    assert table_state(warehouse_copy) == before


def test_fred_unreachable_exits_4(rotation, monkeypatch) -> None:
    """fredapi's URLError (nothing listens on the port) becomes UpstreamUnavailable, exit code 4."""
    monkeypatch.setenv("FRED_API_KEY", "abcdefabcdefabcdefabcdefabcdef12")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(UpstreamUnavailable, match="FRED is unreachable") as info:
        fetch_fred(_fred_settings(), root_url=f"http://127.0.0.1:{port}/fred")
    assert info.value.exit_code == 4


def test_fred_garbage_response_exits_4(monkeypatch, fred_server) -> None:
    """A proxy page instead of XML is an upstream failure (4), not an unexpected crash (1)."""
    monkeypatch.setenv("FRED_API_KEY", "abcdefabcdefabcdefabcdefabcdef12")
    url, handler = fred_server
    handler.body_override = b"<html><body>Service Unavailable"
    with pytest.raises(UpstreamUnavailable, match="FRED"):
        fetch_fred(_fred_settings(), root_url=url)


def test_fred_recorded_observations(monkeypatch, fred_server, tmp_path: Path) -> None:
    """ALFRED rows keep their real publication dates; a market series is monthly means with lag 0."""
    key = "abcdefabcdefabcdefabcdefabcdef12"
    monkeypatch.setenv("FRED_API_KEY", key)
    url, handler = fred_server
    data = fetch_fred(_fred_settings(), root_url=url)
    by_series = {q["series_id"][0]: q for q in handler.requests_seen}
    assert by_series["INDPRO"]["realtime_start"] == ["1776-07-04"]     # the ALFRED call
    assert "realtime_start" not in by_series["VIXCLS"]
    assert by_series["INDPRO"]["api_key"] == [key]
    macro = data.macro
    assert sorted(macro["series"].unique()) == ["INDPRO", "VIXCLS"]
    vix = macro[macro["series"] == "VIXCLS"].set_index("period")["value"]
    assert vix[pd.Timestamp("2024-01-01")] == pytest.approx((13.31 + 14.35) / 2)
    assert vix[pd.Timestamp("2024-02-01")] == pytest.approx((13.88 + 13.67 + 12.93) / 3)
    indpro = macro[macro["series"] == "INDPRO"]
    assert len(indpro) == 6                                               # the "." row is dropped
    assert set(indpro["vintage"]) == {"alfred:2024-02-15", "alfred:2024-03-15", "alfred:2024-04-16",
                                      "alfred:2024-05-15"}

    warehouse.ingest(tmp_path / "w.duckdb", data, Universe(name="one", assets={"SPY": "S&P 500"}, benchmark="SPY"))
    with warehouse.connect(tmp_path / "w.duckdb", read_only=True) as con:
        avail = con.execute("SELECT series, period, vintage, value, available_at FROM macro_available(1, 0) "
                            "ORDER BY series, period, available_at").df()
    rows = {(r.series, str(r.period.date()), str(r.available_at.date())): r.value for r in avail.itertuples()}
    assert rows[("INDPRO", "2024-01-01", "2024-02-15")] == 102.5       # first release
    assert rows[("INDPRO", "2024-01-01", "2024-03-15")] == 102.3       # revision, from its release date
    assert rows[("INDPRO", "2024-02-01", "2024-03-15")] == 102.8
    assert ("VIXCLS", "2024-01-01", "2024-01-31") in rows              # month end, market lag 0
    assert ("VIXCLS", "2024-02-01", "2024-02-29") in rows


# --- combined sources and the deadline -------------------------------------------------------------------


def test_parse_sources_rejects_unknown_names() -> None:
    assert parse_sources("yahoo, fred-md") == ["yahoo", "fred-md"]
    with pytest.raises(ConfigError, match="unknown source"):
        parse_sources("yahoo,bloomberg")


def test_combined_sources_take_prices_and_macro_from_each(monkeypatch) -> None:
    """`--source yahoo,snapshot`-style combinations keep prices of the first source that has them."""
    settings = _settings()
    universe = settings.universe("sample")
    index = pd.to_datetime(["2024-01-30", "2024-01-31"])
    raw = pd.concat({"Close": pd.DataFrame({t: [1.0, 1.1] for t in universe.tickers}, index=index)}, axis=1)
    monkeypatch.setattr("job.sources.yahoo._download", lambda *a, **k: raw)
    data = fetch(["yahoo", "sample"], settings, universe, None)
    assert data.source == "yahoo+sample"
    assert set(data.prices["origin"]) == {"yfinance"}
    assert data.macro is not None and data.synthetic
    assert "series_meta" in data.details


def test_deadline_cuts_off_a_hanging_call() -> None:
    started = time.monotonic()
    with pytest.raises(UpstreamUnavailable, match=r"within 0\.2 s") as info:
        call_with_deadline(lambda: time.sleep(20), seconds=0.2, what="Slow API")
    assert info.value.exit_code == 4
    assert time.monotonic() - started < 10


def test_deadline_passes_results_and_errors_through() -> None:
    assert call_with_deadline(lambda: 42, seconds=5, what="x") == 42
    with pytest.raises(ZeroDivisionError):
        call_with_deadline(lambda: 1 / 0, seconds=5, what="x")


@pytest.mark.slow
def test_process_exits_at_the_deadline_not_when_the_call_returns() -> None:
    """The abandoned call does not keep the process alive: exit 4 long before the hang would end."""
    code = ("import sys, time\nfrom job.sources.deadline import call_with_deadline\n"
            "from job.errors import UpstreamUnavailable\n"
            "try:\n    call_with_deadline(lambda: time.sleep(120), seconds=0.2, what='Hung')\n"
            "except UpstreamUnavailable:\n    sys.exit(4)\n")
    done = subprocess.run([sys.executable, "-c", code], timeout=60, capture_output=True, check=False)
    assert done.returncode == 4


# --- retries (issue 16): 429 then 200 from a local server ---------------------------------------------------


class _FlakyHandler(BaseHTTPRequestHandler):
    """Answers 429 (or 503) to the first ``failures`` requests, then serves ``body``."""

    failures: ClassVar[int] = 1
    status: ClassVar[int] = 429
    body: ClassVar[bytes] = b""
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).seen.append(self.path)
        if len(self.seen) <= self.failures:
            self.send_response(self.status)
            self.send_header("Retry-After", "0")
            self.end_headers()
            self.wfile.write(b"Too Many Requests")
            return
        series = parse_qs(urlparse(self.path).query).get("series_id", [""])[0]
        files = sorted(DATA.glob(f"fred_{series}*.xml")) if series else []
        body = files[0].read_bytes() if files else self.body
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def flaky_server() -> Iterator[tuple[str, type[_FlakyHandler]]]:
    handler = type("Flaky", (_FlakyHandler,), {"seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


def test_fredmd_url_retries_429_then_reads(flaky_server) -> None:
    from job.sources.fredmd import read_vintages

    url, handler = flaky_server
    handler.body = b"sasdate,INDPRO\nTransform:,5\n8/1/2019,109.9\n9/1/2019,109.5\n"
    frame, details = read_vintages([f"{url}/current.csv"], 10, attempts=3, initial_wait_s=0.01)
    assert len(handler.seen) == 2
    assert details[0]["vintage"] == "2019-10" and len(frame) == 2


def test_fredmd_url_exhausted_retries_exit_4(rotation, flaky_server, tmp_path: Path) -> None:
    url, handler = flaky_server
    handler.failures, handler.status = 100, 503
    result = rotation("--warehouse", str(tmp_path / "w.duckdb"), "ingest", "--source", "fred-md",
                      env={"ROTATION_DATA__FRED_MD_VINTAGES": f"{url}/current.csv",
                           "ROTATION_DATA__RETRY_ATTEMPTS": "3", "ROTATION_DATA__RETRY_INITIAL_WAIT_S": "0.01"})
    assert result.exit_code == 4
    assert "failed after retries (HTTP 503)" in result.error
    assert len(handler.seen) == 3
    assert not (tmp_path / "w.duckdb").exists()


def test_fredmd_url_not_found_is_not_retried(flaky_server) -> None:
    from job.sources.fredmd import read_text

    url, handler = flaky_server
    handler.status = 404
    with pytest.raises(UpstreamUnavailable, match="cannot download FRED-MD"):
        read_text(f"{url}/current.csv", 10, attempts=5, initial_wait_s=0.01)
    assert len(handler.seen) == 1


def test_fred_retries_429_then_reads(monkeypatch, flaky_server) -> None:
    """One rate-limited ALFRED call among many no longer fails the ingest."""
    monkeypatch.setenv("FRED_API_KEY", "abcdefabcdefabcdefabcdefabcdef12")
    url, handler = flaky_server
    settings = _settings(fred_series=["INDPRO"], extra_fred_series=["VIXCLS"], download_timeout_s=10.0,
                         retry_attempts=3, retry_initial_wait_s=0.01)
    data = fetch_fred(settings, root_url=f"{url}/fred")
    assert len(handler.seen) == 3                       # 429, then INDPRO, then VIXCLS
    assert sorted(data.macro["series"].unique()) == ["INDPRO", "VIXCLS"]


def test_fred_exhausted_retries_are_upstream_unavailable(monkeypatch, flaky_server) -> None:
    monkeypatch.setenv("FRED_API_KEY", "abcdefabcdefabcdefabcdefabcdef12")
    url, handler = flaky_server
    handler.failures = 100
    settings = _settings(fred_series=["INDPRO"], extra_fred_series=[], download_timeout_s=10.0,
                         retry_attempts=2, retry_initial_wait_s=0.01)
    with pytest.raises(UpstreamUnavailable, match=r"FRED INDPRO failed after retries \(HTTP 429\)") as info:
        fetch_fred(settings, root_url=f"{url}/fred")
    assert info.value.exit_code == 4
    assert len(handler.seen) == 2


def test_yahoo_retries_a_rate_limited_download(monkeypatch, tmp_path: Path) -> None:
    """yfinance records a 429 instead of raising: the download is retried, then succeeds."""
    from yfinance import shared

    calls: list[int] = []
    index = pd.to_datetime(["2024-01-30", "2024-01-31"])
    good = pd.concat({"Close": pd.DataFrame({"SPY": [1.0, 1.1]}, index=index)}, axis=1)

    def download(*args: object, **kwargs: object) -> pd.DataFrame:
        calls.append(1)
        if len(calls) == 1:
            shared._ERRORS = {"SPY": "YFRateLimitError('Too Many Requests. Rate limited. Try after a while.')"}
            return pd.DataFrame()
        shared._ERRORS = {}
        return good

    monkeypatch.setattr("job.sources.yahoo._download", download)
    universe = Universe(name="one", assets={"SPY": "S&P 500"}, benchmark="SPY")
    data = fetch_yahoo(_settings(retry_attempts=3, retry_initial_wait_s=0.01), universe)
    assert len(calls) == 2 and len(data.prices) == 2
