"""The one retry policy of the platform's HTTP clients (market data, notification channels).

``tenacity`` runs the attempts; this module says what is worth another attempt (a ``RetryableError`` marked
retryable: 429, 5xx that can pass, a dropped connection, an SMTP 4xx) and how long to wait before it: the
server's ``Retry-After`` when it gives one, else exponential backoff (with full jitter when many clients
share the server), both capped.
"""

from __future__ import annotations

import email.utils
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import tenacity

__all__ = ["RetryPolicy", "RetryableError", "is_transient_status", "parse_retry_after"]

_DELAY_SECONDS = re.compile(r"[0-9]+")
_MAX_DOUBLINGS = 60  # 2**60 × any sane base is past every cap; keeps the float from overflowing


class RetryableError(Exception):
    """A failed attempt: ``retryable`` when it may succeed later, after ``retry_after`` seconds if the server
    said so."""

    def __init__(self, message: str, *, retryable: bool = False, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


def is_transient_status(status: int) -> bool:
    """429 and 5xx, but not 501 (Not Implemented) or 505 (HTTP Version Not Supported): those never pass."""
    return status == 429 or (500 <= status <= 599 and status not in (501, 505))


def parse_retry_after(value: str | None, *, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> float | None:
    """Seconds to wait from ``Retry-After``: delay-seconds (digits only) or an HTTP-date (past dates wait 0).
    None when absent or unreadable, so the caller falls back to its own backoff."""
    # Hand-written: tenacity waits but does not read HTTP headers; email.utils parses the HTTP-date.
    if not value:
        return None
    text = value.strip()
    if _DELAY_SECONDS.fullmatch(text):
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now()).total_seconds())


@dataclass(frozen=True)
class RetryPolicy:
    """``retries`` attempts after the first. Before retry n (1-based) wait the server's Retry-After, else
    ``base_seconds · 2^(n-1)`` (with ``jitter``: uniform in [0, that]), at most ``cap_seconds``."""

    retries: int
    base_seconds: float
    cap_seconds: float
    jitter: bool = False
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        if self.retries < 0 or self.base_seconds < 0 or self.cap_seconds < 0:
            raise ValueError("retries and delays must not be negative")

    def delay(self, retry: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(self.cap_seconds, retry_after)
        backoff = min(self.cap_seconds, self.base_seconds * 2.0 ** min(retry - 1, _MAX_DOUBLINGS))
        return self.rng.uniform(0.0, backoff) if self.jitter else backoff

    def retrying(self) -> tenacity.Retrying:
        """``for attempt in policy.retrying(): with attempt: ...``: a non-retryable error, or the last one
        once the retries are spent, propagates as raised."""
        return tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.retries + 1),
            wait=self._wait,
            retry=tenacity.retry_if_exception(lambda exc: isinstance(exc, RetryableError) and exc.retryable),
            sleep=self.sleep,
            reraise=True,
        )

    def _wait(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        return self.delay(state.attempt_number, exc.retry_after if isinstance(exc, RetryableError) else None)
