"""The one retry policy both HTTP clients use: Retry-After parsing, backoff, what is retried, and hostile headers."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from feature_platform.http_retry import RetryableError, RetryPolicy, is_transient_status, parse_retry_after

NOW = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(("header", "seconds"), [
    ("5", 5.0), (" 120 ", 120.0), ("0", 0.0), ("007", 7.0),
    ("Mon, 01 Jan 2024 00:00:30 GMT", 30.0),
    ("Sun, 31 Dec 2023 23:00:00 GMT", 0.0),  # in the past: go now
    ("9" * 400, float("inf")),  # absurd but digits: the policy's cap bounds it
])
def test_retry_after_forms(header: str, seconds: float) -> None:
    assert parse_retry_after(header, now=lambda: NOW) == seconds


@pytest.mark.parametrize("header", [
    None, "", "   ", "soon", "-5", "1.5", "1e3", "nan", "inf", "+5", "٣", "²", "5 seconds", "0x10",
    "Mon, 32 Jan 2024 00:00:30 GMT", "Mon, 01 Foo 2024 00:00:30 GMT", "Mon, 01 Jan 99999999999 00:00:30 GMT",
    "5\r\nX-Injected: 1",
])
def test_unreadable_retry_after_falls_back_to_backoff(header: str | None) -> None:
    """RFC 9110 delay-seconds is ASCII digits only; anything else is not the server's word."""
    assert parse_retry_after(header, now=lambda: NOW) is None


def test_transient_statuses() -> None:
    assert [s for s in range(100, 600) if is_transient_status(s)] == [429, 500, *range(502, 505), *range(506, 600)]


def test_backoff_doubles_jitters_and_is_capped() -> None:
    plain = RetryPolicy(10, 0.5, 30.0)
    assert [plain.delay(n, None) for n in range(1, 9)] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert plain.delay(10_000, None) == 30.0  # no float overflow on absurd retry counts
    assert (plain.delay(1, 86_400.0), plain.delay(1, 3.0), plain.delay(5, 0.0)) == (30.0, 3.0, 0.0)
    jittered = RetryPolicy(10, 0.5, 30.0, jitter=True, rng=random.Random(1))
    expected = random.Random(1)
    assert [jittered.delay(n, None) for n in range(1, 9)] == [expected.uniform(0, min(30.0, 0.5 * 2 ** (n - 1)))
                                                             for n in range(1, 9)]
    assert jittered.delay(3, 7.0) == 7.0  # the server's word is not jittered
    with pytest.raises(ValueError, match="negative"):
        RetryPolicy(-1, 1.0, 1.0)


def test_retrying_retries_only_retryable_errors_then_reraises_the_last() -> None:
    sleeps: list[float] = []
    policy = RetryPolicy(3, 1.0, 10.0, sleep=sleeps.append)
    calls: list[int] = []

    def attempt(errors: list[Exception]) -> str:
        for attempt in policy.retrying():
            with attempt:
                calls.append(attempt.retry_state.attempt_number)
                if errors:
                    raise errors.pop(0)
                return "ok"
        raise AssertionError("unreachable")

    assert attempt([RetryableError("503", retryable=True), RetryableError("429", retryable=True, retry_after=4)]) \
        == "ok"
    assert calls == [1, 2, 3] and sleeps == [1.0, 4.0]

    calls.clear(), sleeps.clear()
    with pytest.raises(RetryableError, match="404"):
        attempt([RetryableError("404", retryable=False)])
    with pytest.raises(KeyError):
        attempt([KeyError("bug")])
    assert calls == [1, 1] and sleeps == []

    calls.clear()
    with pytest.raises(RetryableError, match="last"):
        attempt([RetryableError(f"{'last' if i == 3 else 'busy'}", retryable=True) for i in range(10)])
    assert calls == [1, 2, 3, 4] and sleeps == [1.0, 2.0, 4.0]
