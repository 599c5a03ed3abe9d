"""One exception type for the market package, so callers catch market data failures without catching bugs."""

from __future__ import annotations

__all__ = ["MarketDataError"]


class MarketDataError(RuntimeError):
    """A market data request or payload that cannot be used; the message is one line naming the cause."""
