"""Trading metrics (pure numpy) with the definitions the guardrails and reports rely on.

The gated numbers describe one book, the portfolio, over calendar periods (one UTC day per period,
because every label is a one-day forward return). Definitions, in the order they are computed:

* position: ``w_i = clip(P(bull) - P(bear), -1, 1)`` per (entity, timestamp) row — long when the model
  leans bull, short when it leans bear, near flat when unsure; confidence scales exposure.
* row return: ``w_i * f_i`` with ``f_i`` the row's forward simple return (no costs). Rows without a
  forward return (the last row of each entity) are not traded.
* portfolio (book) return of day ``d``: ``R_d = sum_{i in d} w_i f_i / sum_{i in d} |w_i|``, the
  gross-normalised return of the day's book (every position taken on day ``d`` sized so that gross
  exposure is 1); a day with zero gross exposure returns 0. So ``R_d`` is a weighted mean of
  returns, never a sum over the cross-section: duplicating every entity or scaling every position by
  a constant leaves it unchanged, and an always-flat strategy scores 0 everywhere.
* ``n_periods``: the number of distinct UTC days of the split's rows, each one period.
* PnL: ``sum(R_d)`` (additive, per unit of gross exposure); ``cumulative_pnl`` is its running sum.
* equity curve: ``E_0 = 1, E_d = E_{d-1} * (1 + R_d)`` (compounded daily), floored at 0 (ruin stays
  ruin); total return ``E_n - 1``.
* Sharpe: ``mean(R) / std(R, ddof=1) * sqrt(periods_per_year)`` (risk-free rate 0).
* Sortino: ``mean(R) / sqrt(mean(min(R, 0)^2)) * sqrt(periods_per_year)`` (target 0, downside
  deviation over all n periods).
* max drawdown: ``max_d (peak_d - E_d) / peak_d`` with ``peak_d = max_{s<=d} E_s``, a positive
  fraction (0.25 = a 25 % fall from the high-water mark).
* annualisation: ``PERIODS_PER_YEAR = 365``: crypto trades every calendar day and a period is a day.

Per-entity breakdowns (``entity_breakdown``) are a report for people, never a gated number.

Edge cases: fewer than 2 periods, zero standard deviation or zero downside deviation give a ratio of
0.0 — never inf/NaN, because manifests are strict JSON; ``n_periods`` and ``n_downside`` in the report
say when a 0.0 means "undefined". Empty input gives PnL 0 and drawdown 0.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

PERIODS_PER_YEAR = 365


def positions_from_proba(proba: np.ndarray, bear_index: int, bull_index: int) -> np.ndarray:
    """``clip(P(bull) - P(bear), -1, 1)`` per row."""
    p = np.asarray(proba, dtype=np.float64)
    return np.clip(p[:, bull_index] - p[:, bear_index], -1.0, 1.0)


def strategy_returns(positions: np.ndarray, forward_returns: np.ndarray) -> np.ndarray:
    return np.asarray(positions, dtype=np.float64) * np.asarray(forward_returns, dtype=np.float64)


DAY_US = 86_400_000_000


def utc_days(timestamps_us: np.ndarray) -> np.ndarray:
    """UTC calendar day (days since the epoch) of microsecond timestamps."""
    return np.floor_divide(np.asarray(timestamps_us, dtype=np.int64), DAY_US)


def portfolio_returns(periods: np.ndarray, positions: np.ndarray,
                      forward_returns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(period ids ascending, R_d)``: the gross-normalised book return of every distinct period.

    Every period in ``periods`` is present, also those whose rows are all untraded (NaN forward
    return) or flat: their return is 0.
    """
    periods = np.asarray(periods, dtype=np.int64)
    w = np.asarray(positions, dtype=np.float64)
    f = np.asarray(forward_returns, dtype=np.float64)
    if not (periods.shape == w.shape == f.shape):
        raise ValueError(f"periods, positions and forward returns differ in shape: {periods.shape}, {w.shape}, "
                         f"{f.shape}")
    ids, index = np.unique(periods, return_inverse=True)
    traded = ~np.isnan(f)
    gross = np.bincount(index[traded], weights=np.abs(w[traded]), minlength=ids.size)
    net = np.bincount(index[traded], weights=w[traded] * f[traded], minlength=ids.size)
    out = np.zeros(ids.size, dtype=np.float64)
    np.divide(net, gross, out=out, where=gross > 0)
    return ids, out


def pnl(returns: np.ndarray) -> float:
    return float(np.sum(returns, dtype=np.float64))


def cumulative_pnl(returns: np.ndarray) -> np.ndarray:
    return np.cumsum(np.asarray(returns, dtype=np.float64))


def equity_curve(returns: np.ndarray) -> np.ndarray:
    """``[1, E_1, ..., E_n]``: compounded, floored at 0."""
    growth = np.maximum(1.0 + np.asarray(returns, dtype=np.float64), 0.0)
    return np.concatenate([[1.0], np.cumprod(growth)])


def sharpe(returns: np.ndarray, periods_per_year: int = PERIODS_PER_YEAR) -> float:
    r = np.asarray(returns, dtype=np.float64)
    if r.size < 2:
        return 0.0
    sd = float(np.std(r, ddof=1))
    if sd == 0.0 or not math.isfinite(sd):
        return 0.0
    return float(np.mean(r) / sd * math.sqrt(periods_per_year))


def sortino(returns: np.ndarray, periods_per_year: int = PERIODS_PER_YEAR) -> float:
    r = np.asarray(returns, dtype=np.float64)
    if r.size < 2:
        return 0.0
    dd = math.sqrt(float(np.mean(np.minimum(r, 0.0) ** 2)))
    if dd == 0.0:
        return 0.0
    return float(np.mean(r) / dd * math.sqrt(periods_per_year))


def max_drawdown(returns: np.ndarray) -> float:
    equity = equity_curve(returns)
    peak = np.maximum.accumulate(equity)
    return float(np.max((peak - equity) / peak))  # peak >= E_0 = 1 > 0


@dataclass(frozen=True)
class TradingMetrics:
    n_periods: int
    n_downside: int
    pnl: float
    total_return: float  # E_n - 1, compounded
    sharpe: float
    sortino: float
    max_drawdown: float
    periods_per_year: int

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


def trading_metrics(returns: np.ndarray, periods_per_year: int = PERIODS_PER_YEAR) -> TradingMetrics:
    r = np.asarray(returns, dtype=np.float64)
    return TradingMetrics(
        n_periods=int(r.size), n_downside=int(np.count_nonzero(r < 0)), pnl=pnl(r),
        total_return=float(equity_curve(r)[-1] - 1.0), sharpe=sharpe(r, periods_per_year),
        sortino=sortino(r, periods_per_year), max_drawdown=max_drawdown(r), periods_per_year=periods_per_year,
    )
