"""A thread-safe token bucket so every call to a market data API, from any thread or client, shares one budget."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["MarketDataLimiter"]


class MarketDataLimiter:
    """Token bucket: ``burst`` calls at once, then ``rate_per_second`` sustained.

    Tokens are reserved under the lock and the wait happens outside it, so concurrent callers queue
    fairly (each one's wait accounts for the reservations before it) instead of spinning.
    """

    def __init__(self, rate_per_second: float, burst: int = 1,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        if not rate_per_second > 0:
            raise ValueError("rate_per_second must be > 0")
        if burst < 1:
            raise ValueError("burst must be >= 1")
        self.rate = float(rate_per_second)
        self.burst = int(burst)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = float(burst)
        self._updated = clock()

    def acquire(self, tokens: int = 1) -> float:
        """Take ``tokens`` (waiting for them if needed); returns the seconds waited."""
        if tokens < 1 or tokens > self.burst:
            raise ValueError(f"tokens must be between 1 and burst ({self.burst}), got {tokens}")
        with self._lock:
            now = self._clock()
            self._tokens = min(float(self.burst), self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            self._tokens -= tokens  # may go negative: a debt later callers wait behind
            wait = 0.0 if self._tokens >= 0 else -self._tokens / self.rate
        if wait > 0:
            self._sleep(wait)
        return wait

    @property
    def available(self) -> float:
        """Tokens available now (negative while callers are queued)."""
        with self._lock:
            now = self._clock()
            return min(float(self.burst), self._tokens + (now - self._updated) * self.rate)
