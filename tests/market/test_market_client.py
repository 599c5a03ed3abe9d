"""The real CoinGecko client and limiter against a real loopback stub that rate-limits and fails intermittently."""

from __future__ import annotations

import email.utils
import json
import random
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pyarrow as pa
import pytest

from feature_platform.http_retry import parse_retry_after
from feature_platform.market.client import CoinGeckoClient
from feature_platform.market.errors import MarketDataError
from feature_platform.market.limiter import MarketDataLimiter
from feature_platform.market.source import OHLCV_ARROW_SCHEMA, CoinGeckoSource, MarketDataSource
from feature_platform.market.validation import validate_frame

T0_MS = 1_700_000_000_000  # 2023-11-14T22:13:20Z
STEP_MS = 30 * 60_000


def ohlc_payload(n: int = 4) -> list[list[float]]:
    return [[T0_MS + (i + 1) * STEP_MS, 100.0 + i, 102.0 + i, 99.0 + i, 101.0 + i] for i in range(n)]


def chart_payload(n: int = 4) -> dict[str, Any]:
    # One volume sample every 30 min, 1 min *after* each candle close except the first (so "at or before" matters).
    vols = [[T0_MS + STEP_MS - 60_000, 5.0]] + [[T0_MS + (i + 1) * STEP_MS + 60_000, 10.0 * (i + 1)] for i in range(n)]
    return {"prices": [[t, 100.0] for t, _ in vols], "market_caps": [[t, 1e9] for t, _ in vols],
            "total_volumes": vols}


@dataclass
class Planned:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None  # sent as is instead of json.dumps(body): for bodies json.dumps cannot write


@dataclass
class Seen:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    at: float


class StubCoinGecko:
    """CoinGecko-shaped answers; a queue of planned failures first; optional server-side rate limit (429)."""

    def __init__(self, min_spacing: float = 0.0) -> None:
        self.plan: deque[Planned] = deque()
        self.seen: list[Seen] = []
        self.ohlc: Any = ohlc_payload()
        self.chart: Any = chart_payload()
        self.min_spacing = min_spacing
        self.throttled = 0
        self._last = -1e9
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urllib.parse.urlsplit(self.path)
                now = time.monotonic()
                with lock:
                    outer.seen.append(Seen(parts.path, dict(urllib.parse.parse_qsl(parts.query)),
                                           {k.lower(): v for k, v in self.headers.items()}, now))
                    too_soon = now - outer._last < outer.min_spacing
                    outer._last = now
                    planned = outer.plan.popleft() if outer.plan else None
                if too_soon:
                    outer.throttled += 1
                    planned = Planned(429, {"status": {"error_code": 429}}, {"Retry-After": "1"})
                if planned is None:
                    if parts.path.endswith("/ohlc"):
                        planned = Planned(200, outer.ohlc)
                    elif parts.path.endswith("/market_chart/range"):
                        planned = Planned(200, outer.chart)
                    else:
                        planned = Planned(404, {"error": "coin not found"})
                body = planned.raw if planned.raw is not None else json.dumps(planned.body).encode()
                self.send_response(planned.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in planned.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/api/v3"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.01},
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub() -> Iterator[StubCoinGecko]:
    s = StubCoinGecko()
    yield s
    s.close()


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def make_client(stub: StubCoinGecko, sleeps: Sleeps, **kw: Any) -> CoinGeckoClient:
    kw.setdefault("limiter", MarketDataLimiter(1000.0, 100))
    return CoinGeckoClient(stub.base_url, sleep=sleeps, rng=random.Random(1), timeout=5.0, **kw)


# ------------------------------------------------------------------------------------------------ limiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_limiter_allows_burst_then_paces_at_rate() -> None:
    clock = FakeClock()
    limiter = MarketDataLimiter(10.0, 3, clock=clock, sleep=clock.sleep)
    waits = [limiter.acquire() for _ in range(8)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert waits[3:] == pytest.approx([0.1] * 5)
    assert clock.now == pytest.approx(100.5)
    clock.now += 10  # idle refills, but never past the burst
    assert [limiter.acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire() == pytest.approx(0.1)


def test_limiter_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        MarketDataLimiter(0, 1)
    with pytest.raises(ValueError):
        MarketDataLimiter(1.0, 0)
    with pytest.raises(ValueError, match="burst"):
        MarketDataLimiter(1.0, 2).acquire(3)


def test_limiter_is_shared_fairly_across_threads() -> None:
    limiter = MarketDataLimiter(200.0, 1)  # real clock and sleep: 5 ms per token
    granted: list[float] = []
    lock = threading.Lock()
    start = time.monotonic()

    def worker() -> None:
        for _ in range(5):
            limiter.acquire()
            with lock:
                granted.append(time.monotonic() - start)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    granted.sort()
    assert len(granted) == 20
    for k, at in enumerate(granted):  # the k-th grant can never come before k tokens have accrued
        assert at >= k / 200.0 - 0.002, (k, at)


# ------------------------------------------------------------------------------------------------ client


def test_ohlc_and_market_chart_success(stub: StubCoinGecko) -> None:
    sleeps = Sleeps()
    client = make_client(stub, sleeps, api_key="secret-key")
    assert client.ohlc("bitcoin", "usd", 1) == ohlc_payload()
    chart = client.market_chart_range("bitcoin", "usd", datetime(2023, 11, 14, tzinfo=UTC),
                                      datetime(2023, 11, 15, tzinfo=UTC))
    assert chart == chart_payload()
    assert [s.path for s in stub.seen] == ["/api/v3/coins/bitcoin/ohlc", "/api/v3/coins/bitcoin/market_chart/range"]
    assert stub.seen[0].query == {"vs_currency": "usd", "days": "1"}
    assert stub.seen[1].query == {"vs_currency": "usd", "from": "1699920000", "to": "1700006400"}
    assert stub.seen[0].headers["x-cg-pro-api-key"] == "secret-key"
    assert sleeps.calls == []
    assert "secret-key" not in repr(client)


def test_429_with_retry_after_seconds_then_success(stub: StubCoinGecko) -> None:
    stub.plan.extend([Planned(429, {"status": "slow down"}, {"Retry-After": "7"}),
                      Planned(429, {}, {"Retry-After": "2"})])
    sleeps = Sleeps()
    assert make_client(stub, sleeps).ohlc("bitcoin", "usd", 1) == ohlc_payload()
    assert sleeps.calls == [7.0, 2.0]  # the server's word, not our backoff
    assert len(stub.seen) == 3


def test_429_with_retry_after_http_date_and_cap(stub: StubCoinGecko) -> None:
    later = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=20), usegmt=True)
    stub.plan.extend([Planned(429, {}, {"Retry-After": later}), Planned(503, {}, {"Retry-After": "86400"})])
    sleeps = Sleeps()
    assert make_client(stub, sleeps, backoff_cap=30.0).ohlc("bitcoin", "usd", 1) == ohlc_payload()
    assert 17.0 <= sleeps.calls[0] <= 20.0
    assert sleeps.calls[1] == 30.0  # a day-long Retry-After is capped


def test_parse_retry_after_forms() -> None:
    fixed = datetime(2024, 1, 1, tzinfo=UTC)
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after("Mon, 01 Jan 2024 00:00:30 GMT", now=lambda: fixed) == 30.0
    assert parse_retry_after("Sun, 31 Dec 2023 23:00:00 GMT", now=lambda: fixed) == 0.0  # in the past
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_intermittent_5xx_backs_off_exponentially_with_full_jitter(stub: StubCoinGecko) -> None:
    stub.plan.extend([Planned(500, {}), Planned(503, {}), Planned(502, {})])
    sleeps = Sleeps()
    client = make_client(stub, sleeps, backoff_base=0.5, backoff_cap=30.0)
    assert client.market_chart_range("eth", "usd", 1_700_000_000, 1_700_086_400) == chart_payload()
    assert len(sleeps.calls) == 3
    for attempt, waited in enumerate(sleeps.calls):
        assert 0.0 <= waited <= 0.5 * 2 ** attempt
    expected = random.Random(1)
    assert sleeps.calls == [expected.uniform(0, 0.5 * 2 ** a) for a in range(3)]


def test_retry_exhaustion_raises_one_line_error(stub: StubCoinGecko) -> None:
    stub.plan.extend([Planned(503, {})] * 10)
    sleeps = Sleeps()
    with pytest.raises(MarketDataError) as err:
        make_client(stub, sleeps, max_retries=3).ohlc("bitcoin", "usd", 7)
    message = str(err.value)
    assert "\n" not in message
    assert f"{stub.base_url}/coins/bitcoin/ohlc" in message and "503" in message and "4 attempts" in message
    assert len(stub.seen) == 4 and len(sleeps.calls) == 3


def test_404_fails_at_once_without_retry(stub: StubCoinGecko) -> None:
    stub.plan.append(Planned(404, {"error": "coin not found"}))
    sleeps = Sleeps()
    with pytest.raises(MarketDataError, match=r"HTTP 404") as err:
        make_client(stub, sleeps).ohlc("no-such-coin", "usd", 1)
    assert "/coins/no-such-coin/ohlc" in str(err.value) and "\n" not in str(err.value)
    assert len(stub.seen) == 1 and sleeps.calls == []


def test_connection_errors_are_retried_then_reported() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = server.server_address[1]
    server.server_close()  # nothing listens there now
    sleeps = Sleeps()
    client = CoinGeckoClient(f"http://127.0.0.1:{port}", limiter=MarketDataLimiter(1000.0, 10), max_retries=2,
                             sleep=sleeps, rng=random.Random(0), timeout=2.0)
    with pytest.raises(MarketDataError, match="connection error"):
        client.ohlc("bitcoin", "usd", 1)
    assert len(sleeps.calls) == 2


@pytest.mark.parametrize(("kind", "bad", "where"), [
    ("ohlc", [[T0_MS, 100.0, 101.0, -1.0, 100.0]], r"\$\[0\]\[3\]"),
    ("ohlc", [[T0_MS, 100.0, 101.0, 99.0]], r"\$\[0\]"),
    ("ohlc", [["2023-11-14", 100.0, 101.0, 99.0, 100.0]], r"\$\[0\]\[0\]"),
    ("chart", {"prices": [[T0_MS, 1.0]], "market_caps": [], "total_volumes": [[T0_MS, -5.0]]},
     r"\$\.total_volumes\[0\]\[1\]"),
    ("chart", {"prices": [[T0_MS, 1.0]], "market_caps": []}, r"\$: 'total_volumes' is a required property"),
])
def test_schema_invalid_payload_is_rejected_not_retried(stub: StubCoinGecko, kind: str, bad: Any, where: str) -> None:
    stub.plan.append(Planned(200, bad))
    sleeps = Sleeps()
    client = make_client(stub, sleeps)
    with pytest.raises(MarketDataError, match=where):
        if kind == "ohlc":
            client.ohlc("bitcoin", "usd", 1)
        else:
            client.market_chart_range("bitcoin", "usd", 0, 1)
    assert len(stub.seen) == 1 and sleeps.calls == []


def test_limiter_schedules_requests_of_two_clients_one_interval_apart() -> None:
    """An injected clock (frozen) and sleep (recorded): the schedule is asserted, never wall-clock arrivals."""
    stub = StubCoinGecko(min_spacing=0.0)
    waits: list[float] = []
    lock = threading.Lock()

    def record(seconds: float) -> None:
        with lock:
            waits.append(seconds)

    try:
        limiter = MarketDataLimiter(25.0, 1, clock=lambda: 0.0, sleep=record)  # 40 ms apart, shared
        clients = [CoinGeckoClient(stub.base_url, limiter=limiter, sleep=Sleeps(), timeout=5.0) for _ in range(2)]
        threads = [threading.Thread(target=lambda c=c: [c.ohlc("bitcoin", "usd", 1) for _ in range(4)])
                   for c in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(stub.seen) == 8 and stub.throttled == 0
        # the first call is free (burst 1); each later one is released one interval after the previous one
        assert sorted(waits) == pytest.approx([i / 25.0 for i in range(1, 8)])
        assert limiter.available == pytest.approx(-7.0)
    finally:
        stub.close()


def test_unpaced_client_is_throttled_and_honours_retry_after_until_exhausted() -> None:
    stub = StubCoinGecko(min_spacing=10.0)  # after the first request, everything within 10 s gets 429 + Retry-After: 1
    try:
        sleeps = Sleeps()
        client = CoinGeckoClient(stub.base_url, limiter=MarketDataLimiter(1000.0, 10), sleep=sleeps, max_retries=2,
                                 timeout=5.0)
        assert client.ohlc("bitcoin", "usd", 1) == ohlc_payload()
        with pytest.raises(MarketDataError, match="HTTP 429"):
            client.ohlc("bitcoin", "usd", 1)
        assert stub.throttled == 3 and sleeps.calls == [1.0, 1.0]  # Retry-After honoured each time
        assert client.requests_made == 4
    finally:
        stub.close()


def test_redirects_are_not_followed(stub: StubCoinGecko) -> None:
    stub.plan.append(Planned(302, {}, {"Location": "http://example.invalid/"}))
    with pytest.raises(MarketDataError, match="HTTP 302"):
        make_client(stub, Sleeps()).ohlc("bitcoin", "usd", 1)


# ------------------------------------------------------------------------------------------------ CoinGeckoSource


def test_coingecko_source_builds_the_ohlcv_table(stub: StubCoinGecko) -> None:
    now = datetime.fromtimestamp(T0_MS / 1000, UTC) + timedelta(hours=12)
    source = CoinGeckoSource(make_client(stub, Sleeps()), now=lambda: now)
    assert isinstance(source, MarketDataSource)
    start = datetime.fromtimestamp(T0_MS / 1000, UTC)
    table = source.fetch_ohlcv("bitcoin", start, start + timedelta(hours=1, minutes=30))
    assert table.schema == OHLCV_ARROW_SCHEMA
    rows = table.to_pylist()
    # Candles close at T0+30m, +60m, +90m, +120m; ts is the open time; the last one opens at the end bound.
    assert [r["ts"] for r in rows] == [start + timedelta(minutes=30 * i) for i in range(3)]
    assert [r["open"] for r in rows] == [100.0, 101.0, 102.0]
    # Volume: last sample at or before each candle's close (the sample 1 min after a close belongs to the next bar).
    assert [r["volume"] for r in rows] == [5.0, 10.0, 20.0]
    assert validate_frame(table) == []
    assert stub.seen[0].query["days"] == "1"
    first = source.snapshot_id()
    source.fetch_ohlcv("bitcoin", start, start + timedelta(hours=1, minutes=30))
    assert source.snapshot_id() == first  # same payloads, same id
    stub.ohlc = [[*r[:4], r[4] + 0.5] for r in ohlc_payload()]
    source.fetch_ohlcv("bitcoin", start, start + timedelta(hours=1, minutes=30))
    assert source.snapshot_id() != first


def test_coingecko_source_refuses_ranges_ohlc_cannot_reach(stub: StubCoinGecko) -> None:
    source = CoinGeckoSource(make_client(stub, Sleeps()))
    with pytest.raises(MarketDataError, match="365 days"):
        source.fetch_ohlcv("bitcoin", datetime(2001, 1, 1, tzinfo=UTC), datetime(2001, 1, 2, tzinfo=UTC))
    assert stub.seen == []
    assert pa.types.is_timestamp(OHLCV_ARROW_SCHEMA.field("ts").type)
