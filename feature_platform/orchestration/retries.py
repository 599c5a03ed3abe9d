"""Transient failures retry after fixed delays (2 then 10 minutes in production); others fail now."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import dagster as dg

from feature_platform.orchestration.resources import RetrySettings

TRANSIENT: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError)


@contextlib.contextmanager
def transient_retries(context: dg.AssetExecutionContext, settings: RetrySettings,
                      extra: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    try:
        yield
    except (*TRANSIENT, *extra) as exc:
        attempt = context.retry_number
        delays = settings.delays_seconds
        if attempt < len(delays):
            context.log.warning(f"transient failure ({exc}); retry {attempt + 1}/{len(delays)} in {delays[attempt]}s")
            raise dg.RetryRequested(max_retries=len(delays), seconds_to_wait=delays[attempt]) from exc
        raise
