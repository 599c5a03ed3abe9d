"""OHLCV sources behind one interface: the CoinGecko-compatible API, and a seeded simulator for a closed network.

Every source returns the same Arrow table (``OHLCV_ARROW_SCHEMA``) and names the data it produced with
``snapshot_id()`` so lineage can record it (the ``coingecko_snapshot`` tag).
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pyarrow as pa

from feature_platform.contracts.canonical import canonical_json, digest
from feature_platform.market.client import CoinGeckoClient
from feature_platform.market.errors import MarketDataError

__all__ = [
    "OHLCV_ARROW_SCHEMA",
    "CoinGeckoSource",
    "MarketDataSource",
    "Regime",
    "SimulatedMarketSource",
    "empty_ohlcv",
    "ohlcv_table",
]

OHLCV_ARROW_SCHEMA = pa.schema([
    pa.field("asset", pa.string(), nullable=False),
    pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),  # bar open time
    pa.field("open", pa.float64(), nullable=False),
    pa.field("high", pa.float64(), nullable=False),
    pa.field("low", pa.float64(), nullable=False),
    pa.field("close", pa.float64(), nullable=False),
    pa.field("volume", pa.float64(), nullable=True),  # null where the API had no sample; validation rejects it
])
_DAY = timedelta(days=1)


@runtime_checkable
class MarketDataSource(Protocol):
    """Anything that yields OHLCV bars for one asset over ``[start, end)`` (UTC, bar open times)."""

    def fetch_ohlcv(self, asset: str, start: datetime, end: datetime) -> pa.Table: ...

    def snapshot_id(self) -> str: ...


def _utc(value: datetime, what: str) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"{what} must be timezone-aware (UTC)")
    return value.astimezone(UTC)


def _check_range(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    start, end = _utc(start, "start"), _utc(end, "end")
    if end <= start:
        raise ValueError(f"empty range: end {end.isoformat()} is not after start {start.isoformat()}")
    return start, end


def ohlcv_table(asset: str, ts_us: Any, open_: Any, high: Any, low: Any, close: Any, volume: Any) -> pa.Table:
    """Assemble the canonical OHLCV table from column arrays (``ts_us``: epoch microseconds)."""
    n = len(ts_us)
    return pa.table({
        "asset": pa.array([asset] * n, pa.string()),
        "ts": pa.array(np.asarray(ts_us, dtype=np.int64), pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        "open": pa.array(np.asarray(open_, dtype=np.float64)),
        "high": pa.array(np.asarray(high, dtype=np.float64)),
        "low": pa.array(np.asarray(low, dtype=np.float64)),
        "close": pa.array(np.asarray(close, dtype=np.float64)),
        "volume": pa.array(volume, pa.float64()),
    }, schema=OHLCV_ARROW_SCHEMA)


def empty_ohlcv() -> pa.Table:
    return OHLCV_ARROW_SCHEMA.empty_table()


# --------------------------------------------------------------------------------------------------- CoinGecko

# CoinGecko picks the candle size from ``days``: 1–2 days → 30 min, 3–30 days → 4 h, longer → 4 days.
_OHLC_DAYS = (1, 7, 14, 30, 90, 180, 365)


def _candle_ms(days: int) -> int:
    if days <= 2:
        return 30 * 60_000
    if days <= 30:
        return 4 * 3_600_000
    return 4 * 86_400_000


class CoinGeckoSource:
    """OHLCV from ``/ohlc`` (prices) and ``/market_chart/range`` (volumes).

    CoinGecko stamps a candle with its *close* time; the table's ``ts`` is the bar *open* time (close minus the
    candle size). Each bar's volume is the last ``total_volumes`` sample at or before the candle's close, so no
    bar sees a later sample. ``ohlc`` only accepts a look-back in days from now, so the request covers ``start``
    and the rows are then cut to ``[start, end)``.
    """

    def __init__(self, client: CoinGeckoClient, vs_currency: str = "usd", *,
                 now: Any = None) -> None:
        self.client = client
        self.vs_currency = vs_currency
        self._now = now if now is not None else (lambda: datetime.now(UTC))
        self._lock = threading.Lock()
        self._fetched: dict[str, str] = {}  # request key -> sha256 of canonical payloads

    def fetch_ohlcv(self, asset: str, start: datetime, end: datetime) -> pa.Table:
        start, end = _check_range(start, end)
        look_back = (self._now() - start).total_seconds() / 86_400
        days = next((d for d in _OHLC_DAYS if d >= look_back), None)
        if days is None:
            raise MarketDataError(f"{asset}: start {start.isoformat()} is more than 365 days ago; ohlc cannot reach it")
        rows = self.client.ohlc(asset, self.vs_currency, days)
        chart = self.client.market_chart_range(asset, self.vs_currency, start - timedelta(days=1), end)
        key = f"{asset}|{self.vs_currency}|{start.isoformat()}|{end.isoformat()}"
        with self._lock:
            self._fetched[key] = digest({"ohlc": rows, "market_chart": chart})
        return self._to_table(asset, rows, chart, days, start, end)

    @staticmethod
    def _to_table(asset: str, rows: list[list[float]], chart: Mapping[str, Any], days: int,
                  start: datetime, end: datetime) -> pa.Table:
        if not rows:
            return empty_ohlcv()
        # Every row is kept, a repeated candle too, in payload order: which version counts is not the source's
        # call (``validation.split_duplicates`` keeps the first and sends a differing repeat to review).
        order = sorted(range(len(rows)), key=lambda i: int(rows[i][0]))
        close_ms = np.array([int(rows[i][0]) for i in order], dtype=np.int64)
        distinct = np.unique(close_ms)
        step = int(np.median(np.diff(distinct))) if len(distinct) > 1 else _candle_ms(days)
        open_ms = close_ms - step
        keep = (open_ms >= int(start.timestamp() * 1000)) & (open_ms < int(end.timestamp() * 1000))
        ordered = [rows[i] for i, k in zip(order, keep, strict=True) if k]
        vol_pts = sorted((int(t), float(v)) for t, v in chart.get("total_volumes", []))
        vol_ts = np.array([t for t, _ in vol_pts], dtype=np.int64)
        idx = np.searchsorted(vol_ts, close_ms[keep], side="right") - 1
        volume = [vol_pts[i][1] if i >= 0 else None for i in idx]
        return ohlcv_table(asset, open_ms[keep] * 1000, [r[1] for r in ordered], [r[2] for r in ordered],
                           [r[3] for r in ordered], [r[4] for r in ordered], volume)

    def snapshot_id(self) -> str:
        """sha256 over every payload this source has fetched (keyed by request), so equal data gives equal ids."""
        with self._lock:
            return digest({"kind": "coingecko", "base_url": self.client.base_url, "fetched": dict(self._fetched)})

    source_hash = snapshot_id


# --------------------------------------------------------------------------------------------------- simulator


@dataclass(frozen=True)
class Regime:
    name: str
    drift_per_day: float  # mean log return per day
    vol_per_day: float  # std of log returns per day


DEFAULT_REGIMES: tuple[Regime, ...] = (
    Regime("bull", 0.004, 0.025),
    Regime("bear", -0.005, 0.045),
    Regime("sideways", 0.0, 0.012),
)
# Daily Markov transition matrix (rows: from; columns: to), same order as DEFAULT_REGIMES.
DEFAULT_TRANSITIONS: tuple[tuple[float, ...], ...] = (
    (0.94, 0.02, 0.04),
    (0.03, 0.92, 0.05),
    (0.05, 0.05, 0.90),
)
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_BLOCK_DAYS = 512
# Slow pull of the daily log level towards the asset's base price (half-life ~1 year), so a path started in
# 2000 still has plausible prices decades later instead of drifting to 1e-10 or 1e+10.
_REVERSION_PER_DAY = 0.002


def _seed_of(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256(canonical_json([str(p) for p in parts])).digest()[:8], "big")


class SimulatedMarketSource:
    """Seeded geometric Brownian motion with Markov regimes (bull/bear/sideways) and Poisson jumps.

    Deterministic per (seed, asset, start, end), and any single day can be regenerated alone: a daily
    path of regimes and day-open prices (seeded from sha256(seed, asset)) is computed in fixed blocks from
    2000-01-01, and each day's intraday bars are a regime-switching GBM with jumps, seeded from
    (seed, asset, day), bridged to end exactly at the next day's open so days join without a seam.
    Regimes switch at midnight by default (``intraday_switch_prob`` adds intraday switches) and volatility
    glides between regime levels; natural jumps are a few bar-σ, so clean data rarely trips the 8σ detector.

    Fault injection for tests and demos: ``gap_at`` drops ``gap`` of bars from that time (a data gap);
    ``jump_at`` multiplies every price from that bar on by ``exp(jump_log_return)`` (a level jump).
    ``fault_assets`` limits faults to some assets (default: all).
    """

    def __init__(self, seed: int, interval: timedelta = timedelta(minutes=1), *,
                 regimes: tuple[Regime, ...] = DEFAULT_REGIMES,
                 transitions: tuple[tuple[float, ...], ...] = DEFAULT_TRANSITIONS,
                 intraday_switch_prob: float = 0.0, jumps_per_day: float = 2.0, jump_vol_mult: float = 2.0,
                 gap_at: datetime | None = None, gap: timedelta = timedelta(minutes=10),
                 jump_at: datetime | None = None, jump_log_return: float = 0.25,
                 fault_assets: Collection[str] | None = None) -> None:
        if interval <= timedelta(0) or _DAY % interval != timedelta(0):
            raise ValueError("interval must be positive and divide one day")
        if len(transitions) != len(regimes) or any(len(r) != len(regimes) for r in transitions):
            raise ValueError("transitions must be a square matrix matching regimes")
        if any(abs(sum(r) - 1.0) > 1e-9 or min(r) < 0 for r in transitions):
            raise ValueError("each transition row must be probabilities summing to 1")
        self.seed = int(seed)
        self.interval = interval
        self.regimes = regimes
        self.transitions = np.array(transitions, dtype=np.float64)
        self.intraday_switch_prob = intraday_switch_prob
        self.jumps_per_day = jumps_per_day
        self.jump_vol_mult = jump_vol_mult
        self.gap_at = _utc(gap_at, "gap_at") if gap_at is not None else None
        self.gap = gap
        self.jump_at = _utc(jump_at, "jump_at") if jump_at is not None else None
        self.jump_log_return = jump_log_return
        self.fault_assets = frozenset(fault_assets) if fault_assets is not None else None
        self._bars_per_day = _DAY // interval
        self._daily: dict[str, tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]] = {}
        self._lock = threading.Lock()

    # -- identity ----------------------------------------------------------------------------------------------

    def parameters(self) -> dict[str, Any]:
        """Everything that determines the output, as plain JSON (the basis of ``snapshot_id``)."""
        return {
            "kind": "simulated", "generator": "gbm-regime-jump/v1", "seed": self.seed,
            "interval_s": self.interval.total_seconds(),
            "regimes": [[r.name, r.drift_per_day, r.vol_per_day] for r in self.regimes],
            "transitions": self.transitions.tolist(), "intraday_switch_prob": self.intraday_switch_prob,
            "jumps_per_day": self.jumps_per_day, "jump_vol_mult": self.jump_vol_mult,
            "gap_at": self.gap_at.isoformat() if self.gap_at else None, "gap_s": self.gap.total_seconds(),
            "jump_at": self.jump_at.isoformat() if self.jump_at else None, "jump_log_return": self.jump_log_return,
            "fault_assets": sorted(self.fault_assets) if self.fault_assets is not None else None,
        }

    def snapshot_id(self) -> str:
        return digest(self.parameters())

    source_hash = snapshot_id

    # -- daily path --------------------------------------------------------------------------------------------

    def _base_log_price(self, asset: str) -> float:
        u = (_seed_of(self.seed, asset, "base") % 1_000_000) / 1_000_000
        return math.log(5.0) + u * math.log(10_000.0)  # log-uniform in [5, 50 000)

    def _daily_path(self, asset: str, days_needed: int) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        """(regime index per day, log open price per day) for days 0..n from 2000-01-01, extended block by block."""
        with self._lock:
            regimes, opens = self._daily.get(asset, (np.empty(0, np.int64), np.empty(0, np.float64)))
            if len(opens) > days_needed:
                return regimes, opens
            reg_list, open_list = list(regimes), list(opens)
            drift = np.array([r.drift_per_day for r in self.regimes])
            vol = np.array([r.vol_per_day for r in self.regimes])
            while len(open_list) <= days_needed:
                block = len(open_list) // _BLOCK_DAYS
                rng = np.random.default_rng(_seed_of(self.seed, asset, "daily", block))
                u = rng.random(_BLOCK_DAYS)
                z = rng.standard_normal(_BLOCK_DAYS)
                base = self._base_log_price(asset)
                state = reg_list[-1] if reg_list else int(_seed_of(self.seed, asset, "r0") % len(self.regimes))
                level = open_list[-1] if open_list else self._base_log_price(asset)
                prev_state = state
                for i in range(_BLOCK_DAYS):
                    if reg_list:  # day 0 keeps the initial state; later days transition
                        state = int(np.searchsorted(np.cumsum(self.transitions[prev_state]), u[i], side="right"))
                        state = min(state, len(self.regimes) - 1)
                        level = (level + drift[prev_state] - 0.5 * vol[prev_state] ** 2 + vol[prev_state] * z[i]
                                 + _REVERSION_PER_DAY * (base - level))
                    reg_list.append(state)
                    open_list.append(level)
                    prev_state = state
            out = (np.array(reg_list, np.int64), np.array(open_list, np.float64))
            self._daily[asset] = out
            return out

    # -- one day -----------------------------------------------------------------------------------------------

    def _day(self, asset: str, day: datetime) -> dict[str, np.ndarray[Any, Any]]:
        d = (day - _EPOCH).days
        if d < 0:
            raise ValueError("the simulator starts on 2000-01-01")
        regimes, opens = self._daily_path(asset, d + 1)
        n = self._bars_per_day
        rng = np.random.default_rng(_seed_of(self.seed, asset, "intraday", day.date().isoformat()))
        frac = 1.0 / n
        drift = np.array([r.drift_per_day for r in self.regimes]) * frac
        vol = np.array([r.vol_per_day for r in self.regimes]) * math.sqrt(frac)
        switch = rng.random(n) < self.intraday_switch_prob
        choice = rng.integers(0, len(self.regimes), n)
        state = np.empty(n, np.int64)
        s = int(regimes[d])
        for i in range(n):
            if switch[i]:
                s = int(choice[i])
            state[i] = s
        # Volatility glides to the new regime's level (half-life ~1 h of bars) instead of stepping: a step from a
        # calm to a stormy regime would itself look like an 8σ jump to any rolling-window detector.
        bar_vol = np.empty(n, np.float64)
        v = float(vol[int(regimes[d - 1]) if d > 0 else int(regimes[d])])
        k = 1.0 - 0.5 ** (1.0 / max(1.0, n / 24))
        for i in range(n):
            v += k * (float(vol[state[i]]) - v)
            bar_vol[i] = v
        z = rng.standard_normal(n)
        jumps = rng.random(n) < self.jumps_per_day * frac
        jump_size = rng.standard_normal(n) * bar_vol * self.jump_vol_mult
        inc = drift[state] - 0.5 * bar_vol ** 2 + bar_vol * z + np.where(jumps, jump_size, 0.0)
        path = np.cumsum(inc)
        # Brownian bridge: pin the last close to the next day's open, spreading the correction linearly.
        target = opens[d + 1] - opens[d]
        log_close = opens[d] + path - np.arange(1, n + 1) / n * (path[-1] - target)
        log_open = np.concatenate(([opens[d]], log_close[:-1]))
        wick = np.abs(rng.standard_normal((2, n))) * bar_vol * 0.5
        volume = np.exp(rng.normal(math.log(1_000.0), 0.5, n)) * (1.0 + np.abs(z))
        step_us = int(self.interval / timedelta(microseconds=1))
        ts_us = int((day - _EPOCH) / timedelta(microseconds=1)) + int(_EPOCH.timestamp() * 1_000_000)
        ts = ts_us + np.arange(n, dtype=np.int64) * step_us
        return {"ts": ts, "log_open": log_open, "log_close": log_close, "wick_up": wick[0], "wick_down": wick[1],
                "volume": volume}

    def _faults_apply(self, asset: str) -> bool:
        return self.fault_assets is None or asset in self.fault_assets

    def fetch_ohlcv(self, asset: str, start: datetime, end: datetime) -> pa.Table:
        start, end = _check_range(start, end)
        first = datetime(start.year, start.month, start.day, tzinfo=UTC)
        parts = []
        day = first
        while day < end:
            parts.append(self._day(asset, day))
            day += _DAY
        cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        ts = cols["ts"]
        log_open, log_close = cols["log_open"], cols["log_close"]
        step_us = int(self.interval / timedelta(microseconds=1))
        if self.jump_at is not None and self._faults_apply(asset):
            jump_us = int(self.jump_at.timestamp() * 1_000_000)
            log_close = log_close + np.where(ts >= jump_us, self.jump_log_return, 0.0)
            log_open = log_open + np.where(ts - step_us >= jump_us, self.jump_log_return, 0.0)
        keep = (ts >= int(start.timestamp() * 1_000_000)) & (ts < int(end.timestamp() * 1_000_000))
        if self.gap_at is not None and self._faults_apply(asset):
            g0 = int(self.gap_at.timestamp() * 1_000_000)
            keep &= ~((ts >= g0) & (ts < g0 + int(self.gap / timedelta(microseconds=1))))
        o, c = np.exp(log_open), np.exp(log_close)
        high = np.maximum(o, c) * np.exp(cols["wick_up"])
        low = np.minimum(o, c) * np.exp(-cols["wick_down"])
        return ohlcv_table(asset, ts[keep], o[keep], high[keep], low[keep], c[keep], cols["volume"][keep])
