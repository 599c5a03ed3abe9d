"""CoinGecko-compatible HTTP client: one shared rate budget, retries only for what can succeed later.

429 and 5xx (and connection failures) are retried with exponential backoff and full jitter, or after the
server's ``Retry-After`` when it says so (capped; the platform's one ``RetryPolicy``); any other 4xx is the
caller's mistake and fails at once.
Every payload is checked against ``contracts/schemas/market_data.json`` before it is returned.
"""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from feature_platform.http_retry import RetryableError, RetryPolicy, is_transient_status, parse_retry_after
from feature_platform.market.errors import MarketDataError
from feature_platform.market.limiter import MarketDataLimiter
from feature_platform.market.payload import PayloadKind, validate_payload

__all__ = ["DEFAULT_BASE_URL", "CoinGeckoClient"]

DEFAULT_BASE_URL = "https://api.coingecko.com/api/v3"
USER_AGENT = "feature-platform/0.1 (market)"
_MAX_BODY = 64 * 1024 * 1024


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect would silently change which data source the snapshot records."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def _epoch_seconds(value: datetime | int | float) -> int:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime: market data times must be timezone-aware (UTC)")
        return int(value.timestamp())
    return int(value)


class CoinGeckoClient:
    """Client for ``/coins/{id}/ohlc`` and ``/coins/{id}/market_chart/range`` (CoinGecko response shapes)."""

    def __init__(self, base_url: str = DEFAULT_BASE_URL, limiter: MarketDataLimiter | None = None,
                 api_key: str | None = None, max_retries: int = 5, backoff_base: float = 0.5,
                 backoff_cap: float = 30.0, timeout: float = 10.0, sleep: Callable[[float], None] = time.sleep,
                 rng: random.Random | None = None) -> None:
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("base_url must be an http(s) URL with a host")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.base_url = base_url.rstrip("/")
        # CoinGecko's public tier allows ~30 calls/minute; a private limiter is still shared by all calls here.
        self.limiter = limiter if limiter is not None else MarketDataLimiter(0.5, 5)
        self._api_key = api_key
        self.max_retries = max_retries
        # Full jitter: every client of the shared API backs off at a different moment.
        self.retry = RetryPolicy(max_retries, backoff_base, backoff_cap, jitter=True, sleep=sleep,
                                 rng=rng if rng is not None else random.Random())
        self.timeout = timeout
        self._opener = urllib.request.build_opener(_NoRedirect())
        self.requests_made = 0

    def __repr__(self) -> str:  # never the API key
        return f"CoinGeckoClient(base_url={self.base_url!r})"

    # --- endpoints -----------------------------------------------------------------------------------------

    def ohlc(self, coin_id: str, vs_currency: str, days: int | str) -> list[list[float]]:
        """``[[ts_ms, open, high, low, close], ...]`` for the last ``days`` days."""
        payload = self._get_json("ohlc", f"/coins/{_segment(coin_id)}/ohlc",
                                 {"vs_currency": vs_currency, "days": str(days)})
        rows: list[list[float]] = payload
        return rows

    def market_chart_range(self, coin_id: str, vs_currency: str, start: datetime | int | float,
                           end: datetime | int | float) -> dict[str, Any]:
        """``{"prices": [[ts_ms, p]], "market_caps": [...], "total_volumes": [[ts_ms, v]]}`` between two times."""
        payload = self._get_json("market_chart", f"/coins/{_segment(coin_id)}/market_chart/range",
                                 {"vs_currency": vs_currency, "from": str(_epoch_seconds(start)),
                                  "to": str(_epoch_seconds(end))})
        chart: dict[str, Any] = payload
        return chart

    # --- transport -----------------------------------------------------------------------------------------

    def _get_json(self, kind: PayloadKind, path: str, query: Mapping[str, str]) -> Any:
        url = f"{self.base_url}{path}?{urllib.parse.urlencode(query)}"
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if self._api_key:
            headers["x-cg-pro-api-key"] = self._api_key
        try:
            for attempt in self.retry.retrying():
                with attempt:
                    return self._get_once(kind, url, headers)
        except RetryableError as exc:
            raise MarketDataError(f"GET {url} failed after {self.max_retries + 1} attempts: last {exc}") from None
        raise AssertionError("unreachable: the retry loop returns or raises")

    def _get_once(self, kind: PayloadKind, url: str, headers: Mapping[str, str]) -> Any:
        """One request: the validated payload, MarketDataError (final) or a retryable error (try again)."""
        self.limiter.acquire()
        self.requests_made += 1
        try:
            with self._opener.open(urllib.request.Request(url, headers=dict(headers)), timeout=self.timeout) as resp:
                body = resp.read(_MAX_BODY + 1)
        except urllib.error.HTTPError as exc:
            status = exc.code
            retry_after = parse_retry_after(exc.headers.get("Retry-After") if exc.headers else None)
            exc.close()
            if not is_transient_status(status):
                raise MarketDataError(f"GET {url} failed: HTTP {status} (not retried)") from None
            raise RetryableError(f"HTTP {status}", retryable=True, retry_after=retry_after) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            detail = f"connection error: {type(reason).__name__}: {reason}".replace("\n", " ")
            raise RetryableError(detail, retryable=True) from None
        if len(body) > _MAX_BODY:
            raise MarketDataError(f"GET {url} failed: body larger than {_MAX_BODY} bytes")
        try:
            payload = json.loads(body, parse_constant=_no_constants)
        except ValueError as exc:
            raise MarketDataError(f"GET {url} returned invalid JSON: {exc}") from None
        try:
            validate_payload(kind, payload)
        except MarketDataError as exc:
            raise MarketDataError(f"GET {url}: {exc}") from None
        return payload


def _segment(value: str) -> str:
    if not value or value in (".", ".."):
        raise ValueError(f"invalid path segment {value!r}")
    return urllib.parse.quote(value, safe="")


def _no_constants(name: str) -> Any:
    raise ValueError(f"non-JSON constant {name}")
