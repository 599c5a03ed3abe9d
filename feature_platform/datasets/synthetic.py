"""Seeded synthetic market dataset: one row per (asset, bar) with the contract's features.

Rows come in batches; batch ``i`` draws only from its own seed, derived from the global seed,
so any batch can be regenerated alone and the same seed always gives the same bytes.
The features follow a latent market regime (the label), which persists per asset for a few days:
trend, volatility and volume factors drive returns, oscillators, trend ratios and microstructure
with realistic shapes (heavy-tailed returns, log-normal volatility and volume, bounded oscillators,
a few missing cross-asset betas).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
from pydantic import JsonValue

from feature_platform.contracts.canonical import digest
from feature_platform.contracts.feature_contract import FeatureContract, load_feature_contract
from feature_platform.contracts.manifest import RngSeeds

GENERATOR = "synthetic-market/v1"
SEED_DERIVATION = (
    "batch_seed = int.from_bytes(sha256(f'{global_seed}:{batch_index}'.encode()).digest()[:8], 'big');"
    " rows of batch i are [i*batch_rows, min((i+1)*batch_rows, rows)); numpy PCG64(batch_seed)"
)
DEFAULT_BATCH_ROWS = 131_072
REGIME_PROBS = np.array([0.25, 0.45, 0.30])  # bear, sideways, bull
REGIME_DAYS = 3  # how long an asset stays in one regime
F32 = np.float32


def derive_seed(global_seed: int, label: int | str) -> int:
    return int.from_bytes(hashlib.sha256(f"{global_seed}:{label}".encode()).digest()[:8], "big")


def partition_seed(version: str, explicit: int | None = None, *, namespace: str = "") -> int:
    """``explicit``, else a reproducible seed for a partition, so re-running it rebuilds the same bytes."""
    return explicit if explicit is not None else derive_seed(0, f"{namespace}{version}") % 2**31


@dataclass(frozen=True)
class _Latent:
    """Per-row latent market state every feature recipe reads."""

    rng: np.random.Generator
    n: int
    regime: np.ndarray
    trend: np.ndarray
    log_sigma: np.ndarray
    sigma: np.ndarray
    heavy: np.ndarray
    popularity: np.ndarray

    def z(self) -> np.ndarray:
        return self.rng.standard_normal(self.n, dtype=F32)


def _horizon(minutes: int) -> float:
    return float(np.sqrt(minutes / 1440.0))


Recipe = Callable[[_Latent, dict[str, np.ndarray]], np.ndarray]


def _log_return(h: float) -> Recipe:
    return lambda s, f: s.sigma * h * (0.6 * h * s.trend + s.heavy * s.z())


def _realised_vol(h: float) -> Recipe:
    return lambda s, f: s.sigma * h * np.exp(F32(0.25) * s.z())


def _trend_ratio(trend_weight: float, noise_weight: float) -> Recipe:
    return lambda s, f: 1 + s.sigma * (trend_weight * s.trend + noise_weight * s.z())


def _recipes() -> dict[str, Recipe]:
    """Feature name → recipe; recipes may read features computed before them."""
    r: dict[str, Recipe] = {}
    for name, minutes in [("1m", 1), ("5m", 5), ("15m", 15), ("1h", 60), ("4h", 240), ("1d", 1440)]:
        r[f"ret_{name}"] = _log_return(_horizon(minutes))
    for name, minutes in [("15m", 15), ("1h", 60), ("4h", 240), ("1d", 1440)]:
        r[f"vol_{name}"] = _realised_vol(_horizon(minutes))
    r["hl_range_1h"] = lambda s, f: f["vol_1h"] * (F32(1.6) + F32(0.4) * np.abs(s.z()))
    r["hl_range_1d"] = lambda s, f: f["vol_1d"] * (F32(1.6) + F32(0.4) * np.abs(s.z()))
    r["log_volume_1h"] = lambda s, f: 8 + 1.2 * (s.log_sigma + 3.9) + s.popularity + 0.5 * s.z()
    r["log_volume_1d"] = lambda s, f: f["log_volume_1h"] + F32(np.log(24.0)) + 0.3 * s.z()
    r["volume_z_1h"] = lambda s, f: 1.5 * (s.log_sigma + 3.9) + 0.7 * s.z()
    r["volume_z_1d"] = lambda s, f: 0.8 * f["volume_z_1h"] + 0.6 * s.z()
    r["rsi_14"] = lambda s, f: np.clip(
        50 + 18 * np.tanh(0.8 * f["ret_1h"] / (s.sigma * _horizon(60)) + 0.4 * s.trend) + 4 * s.z(), 0, 100
    )
    r["rsi_50"] = lambda s, f: np.clip(50 + 14 * np.tanh(0.6 * s.trend) + 3 * s.z(), 0, 100)
    r["macd"] = lambda s, f: s.sigma * (0.5 * s.trend + 0.3 * s.z())
    r["macd_signal"] = lambda s, f: 0.8 * f["macd"] + s.sigma * 0.2 * s.z()
    r["macd_hist"] = lambda s, f: f["macd"] - f["macd_signal"]
    r["stoch_k"] = lambda s, f: np.clip(50 + 30 * np.tanh(0.7 * s.trend + 0.5 * s.z()), 0, 100)
    r["stoch_d"] = lambda s, f: np.clip(0.7 * f["stoch_k"] + 15 + 8 * s.z(), 0, 100)
    for name, trend_w, noise_w in [("sma_ratio_20", 0.4, 0.3), ("sma_ratio_50", 0.7, 0.5),
                                   ("ema_ratio_12", 0.3, 0.25), ("ema_ratio_26", 0.5, 0.35)]:
        r[name] = _trend_ratio(trend_w, noise_w)
    r["spread_bps"] = lambda s, f: np.exp(
        1.0 + 0.8 * (s.log_sigma + 3.9) - 0.3 * (f["log_volume_1h"] - 8) + 0.3 * s.z()
    )
    r["order_imbalance"] = lambda s, f: np.tanh(0.3 * s.trend + 0.5 * s.z())
    r["log_trade_count"] = lambda s, f: 0.9 * f["log_volume_1h"] - 1.5 + 0.2 * s.z()
    r["beta_btc_1d"] = lambda s, f: 1 + 0.3 * s.z()
    r["corr_btc_1d"] = lambda s, f: np.tanh(0.8 + 0.4 * s.z())
    return r


RECIPES = _recipes()


class SyntheticMarketSource:
    """``TableSource`` for the seeded synthetic market dataset."""

    kind = "synthetic"

    def __init__(
        self,
        rows: int,
        seed: int,
        *,
        contract: FeatureContract | None = None,
        batch_rows: int = DEFAULT_BATCH_ROWS,
        entities: int = 2_000,
        start: str = "2024-01-01T00:00:00Z",
        days: int = 90,
        null_rate: float = 0.01,
    ) -> None:
        if rows < 1:
            raise ValueError(f"rows must be at least 1, got {rows}")
        if seed < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        if batch_rows < 1 or entities < 1 or days < 1:
            raise ValueError("batch_rows, entities and days must be at least 1")
        if not 0.0 <= null_rate < 1.0:
            raise ValueError(f"null_rate must lie in [0, 1), got {null_rate}")
        self.contract = contract or load_feature_contract()
        if self.contract.label is None:
            raise ValueError("the synthetic source needs a label column in the feature contract")
        self.rows, self.seed, self.batch_rows = rows, seed, batch_rows
        self.entities, self.start, self.days, self.null_rate = entities, start, days, null_rate
        self._start_us = int(datetime.fromisoformat(start).astimezone(UTC).timestamp() * 1_000_000)
        self._step_us = max(1, days * 86_400_000_000 // rows)
        self._schema = self.contract.arrow_schema()
        popularity_rng = np.random.default_rng(derive_seed(seed, "entities"))
        log_pop = popularity_rng.normal(0.0, 1.0, entities)
        self._entity_probs = np.exp(log_pop) / np.exp(log_pop).sum()
        self._log_pop = log_pop.astype(F32)
        self._regime_salt = derive_seed(seed, "regimes")

    @property
    def schema(self) -> pa.Schema:
        return self._schema

    def _regimes(self, entity: np.ndarray, timestamps_us: np.ndarray) -> np.ndarray:
        """An asset's regime holds for REGIME_DAYS: a hash of (seed, entity, period), so rows of the same
        asset close in time share it (the label is predictable from recent rows) and any batch still
        regenerates alone."""
        period = (timestamps_us - self._start_us) // (REGIME_DAYS * 86_400_000_000)
        key = (np.uint64(self._regime_salt) ^ (entity.astype(np.uint64) << np.uint64(24))
               ^ period.astype(np.uint64))
        u = (_splitmix64(key) >> np.uint64(11)).astype(np.float64) / float(1 << 53)
        return np.searchsorted(np.cumsum(REGIME_PROBS), u, side="right").astype(np.int8)

    @property
    def expected_rows(self) -> int:
        return self.rows

    @property
    def batch_count(self) -> int:
        return -(-self.rows // self.batch_rows)

    @property
    def rng_seeds(self) -> RngSeeds:
        return RngSeeds(
            global_seed=self.seed, derivation=SEED_DERIVATION,
            batch_rows=self.batch_rows, batch_count=self.batch_count,
        )

    def parameters(self) -> dict[str, JsonValue]:
        return {
            "generator": GENERATOR, "rows": self.rows, "seed": self.seed, "batch_rows": self.batch_rows,
            "entities": self.entities, "start": self.start, "days": self.days, "null_rate": self.null_rate,
            "feature_contract_sha256": self.contract.digest(),
        }

    def source_hash(self) -> str:
        return digest(self.parameters())

    def batches(self) -> Iterator[pa.RecordBatch]:
        for i in range(self.batch_count):
            yield self.batch(i)

    def batch(self, index: int) -> pa.RecordBatch:
        if not 0 <= index < self.batch_count:
            raise IndexError(f"batch {index} out of range [0, {self.batch_count})")
        first = index * self.batch_rows
        n = min(self.batch_rows, self.rows - first)
        rng = np.random.Generator(np.random.PCG64(derive_seed(self.seed, index)))
        entity = rng.choice(self.entities, size=n, p=self._entity_probs)
        timestamps = self._start_us + (first + np.arange(n, dtype=np.int64)) * self._step_us
        regime = self._regimes(entity, timestamps)
        direction = (regime - 1).astype(F32)
        log_sigma = (
            F32(-3.9) + F32(0.35) * (regime == 0) - F32(0.1) * (regime == 2)
            + F32(0.35) * rng.standard_normal(n, dtype=F32)
        ).astype(F32)
        state = _Latent(
            rng=rng, n=n, regime=regime,
            trend=(F32(0.8) * direction + F32(0.6) * rng.standard_normal(n, dtype=F32)).astype(F32),
            log_sigma=log_sigma, sigma=np.exp(log_sigma),
            heavy=np.where(rng.random(n, dtype=F32) < 0.04, F32(3.0), F32(1.0)),
            popularity=self._log_pop[entity],
        )
        values: dict[str, np.ndarray] = {}
        for feature in self.contract.features:
            recipe = RECIPES.get(feature.name, _generic_recipe)
            values[feature.name] = np.asarray(recipe(state, values), dtype=feature.arrow_type.to_pandas_dtype())
        missing = rng.random(n) < self.null_rate
        arrays: list[pa.Array] = [
            pa.array(entity.astype(np.int64) + 1, self.contract.entity.arrow_type),
            pa.array(timestamps, self.contract.timestamp.arrow_type),
        ]
        for feature in self.contract.features:
            mask = missing if feature.nullable else None
            arrays.append(pa.array(values[feature.name], feature.arrow_type, mask=mask))
        arrays.append(pa.array(regime, self.contract.label.arrow_type))  # type: ignore[union-attr]
        return pa.RecordBatch.from_arrays(arrays, schema=self._schema)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """A fast, well-mixed 64-bit hash (vectorised), so regimes need no state across batches."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _generic_recipe(state: _Latent, _: dict[str, np.ndarray]) -> np.ndarray:
    """Contract features without a recipe still carry signal: a noisy view of the trend."""
    return np.asarray(F32(0.3) * state.trend + state.z())
