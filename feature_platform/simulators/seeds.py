"""Per-sample random streams: sample ``i`` is regenerable alone from ``(global_seed, i)``."""

from __future__ import annotations

import numpy as np

SEED_DERIVATION = ("sample i uses numpy.random.Generator(PCG64(SeedSequence(global_seed, spawn_key=(i,)))) and draws, "
                   "in order: theta = lower + (upper - lower) * random(n_params), "
                   "shocks = standard_normal((T, n_shocks)), "
                   "then any simulator-specific draws (regime_switching: random(T) for the regime chain)")


def sample_rng(global_seed: int, index: int) -> np.random.Generator:
    """The generator of sample ``index``; independent of every other sample and of batch layout."""
    if isinstance(global_seed, bool) or not isinstance(global_seed, int | np.integer) or global_seed < 0:
        raise ValueError(f"global seed must be a non-negative integer, got {global_seed!r}")
    if isinstance(index, bool) or not isinstance(index, int | np.integer) or index < 0:
        raise ValueError(f"sample index must be a non-negative integer, got {index!r}")
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(int(global_seed), spawn_key=(int(index),))))
