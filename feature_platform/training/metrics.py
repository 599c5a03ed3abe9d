"""Trading metrics (pure numpy) with the definitions the guardrails and reports rely on.

Definitions, for per-period strategy returns ``r_1..r_n`` (simple returns, one per period):

* position: ``P(bull) - P(bear)`` clipped to [-1, 1] — long when the model leans bull, short when it
  leans bear, flat-ish when unsure; a continuous signal so confidence scales exposure.
* strategy return: ``r_t = position_t * forward_return_t`` (unit notional each period, no costs).
* PnL: ``sum(r_t)`` (additive, per unit notional); ``cumulative_pnl`` is its running sum.
* equity curve: ``E_0 = 1, E_t = E_{t-1} * (1 + r_t)`` (compounded), floored at 0 (ruin stays ruin).
* Sharpe: ``mean(r) / std(r, ddof=1) * sqrt(periods_per_year)`` (risk-free rate 0).
* Sortino: ``mean(r) / sqrt(mean(min(r, 0)^2)) * sqrt(periods_per_year)`` (target 0, downside
  deviation over all n periods).
* max drawdown: ``max_t (peak_t - E_t) / peak_t`` with ``peak_t = max_{s<=t} E_s``, a positive
  fraction (0.25 = a 25 % fall from the high-water mark).
* annualisation: ``PERIODS_PER_YEAR = 365``. Each position earns the next bar's ``ret_1d``, a one-day
  return, and crypto trades every calendar day, so one period is one day. (Overlapping daily
  returns on intraday bars inflate Sharpe; compare models on the same dataset, not across horizons.)

Edge cases: fewer than 2 returns, zero standard deviation or zero downside deviation give a ratio of
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
