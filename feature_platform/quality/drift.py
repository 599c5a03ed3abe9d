"""Drift of a candidate distribution against a baseline: PSI over bins and KS over binned CDFs.

Both statistics need only counts of candidate values in bins fixed by the baseline (its decile
edges for PSI, its percentile edges for KS), so the candidate is streamed once and never sorted.
Bins are right-closed: bin ``i`` holds ``edges[i-1] < x <= edges[i]``, so the running sum of bin
counts at edge ``k`` is exactly the number of values ``<= edges[k]``, an empirical CDF point.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, ConfigDict

from feature_platform.quality.distributions import bin_counts, counts_at_or_below

if TYPE_CHECKING:
    from feature_platform.quality.profile import FeatureProfile, ReferenceCounts

__all__ = ["PSI_EPS", "FeatureDrift", "bin_counts", "counts_at_or_below", "feature_drift", "ks_from_cdfs", "psi"]

PSI_EPS = 1e-6
Floats = Sequence[float] | np.ndarray


def psi(expected_shares: Floats, actual_shares: Floats, eps: float = PSI_EPS) -> float:
    """Population stability index: sum((a - e) * ln(a / e)), shares floored at ``eps``.

    The floor keeps an empty bin on either side finite: it then contributes about
    ``share * ln(share / eps)``, large but comparable between runs.
    """
    e = np.asarray(expected_shares, dtype=np.float64)
    a = np.asarray(actual_shares, dtype=np.float64)
    if e.shape != a.shape or e.ndim != 1 or e.size == 0:
        raise ValueError(f"psi needs two equally long, non-empty share vectors, got {e.shape} and {a.shape}")
    if (e < 0).any() or (a < 0).any():
        raise ValueError("shares must be non-negative")
    e = np.maximum(e, eps)
    a = np.maximum(a, eps)
    return float(np.sum((a - e) * np.log(a / e)))


def ks_from_cdfs(baseline_cdf: Floats, candidate_cdf: Floats) -> tuple[float, int]:
    """max |F_candidate(q_k) - F_baseline(q_k)| over the edges, and the edge index where it occurs."""
    b = np.asarray(baseline_cdf, dtype=np.float64)
    c = np.asarray(candidate_cdf, dtype=np.float64)
    if b.shape != c.shape or b.ndim != 1 or b.size == 0:
        raise ValueError(f"ks needs two equally long, non-empty CDF vectors, got {b.shape} and {c.shape}")
    gaps = np.abs(c - b)
    at = int(np.argmax(gaps))
    return float(gaps[at]), at


class FeatureDrift(BaseModel):
    """One feature's drift, with the binned shares the report plots."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    feature: str
    psi: float
    ks: float
    ks_at: float
    bin_edges: list[float]
    baseline_shares: list[float]
    candidate_shares: list[float]
    baseline_rows: int
    candidate_rows: int


def feature_drift(baseline: FeatureProfile, candidate: ReferenceCounts) -> FeatureDrift:
    """Compare candidate counts taken at ``baseline``'s edges with the baseline's own counts."""
    if baseline.valid == 0 or candidate.valid == 0:
        raise ValueError(f"{baseline.name}: drift needs values on both sides")
    base_shares = np.asarray(baseline.bin_counts, dtype=np.float64) / baseline.valid
    cand_shares = np.asarray(candidate.bin_counts, dtype=np.float64) / candidate.valid
    base_cdf = np.asarray(baseline.cdf_counts, dtype=np.float64) / baseline.valid
    cand_cdf = np.asarray(candidate.cdf_counts, dtype=np.float64) / candidate.valid
    ks, at = ks_from_cdfs(base_cdf, cand_cdf)
    value = psi(base_shares, cand_shares)
    if not (math.isfinite(value) and math.isfinite(ks)):
        raise ValueError(f"{baseline.name}: non-finite drift statistic")
    return FeatureDrift(
        feature=baseline.name, psi=value, ks=ks, ks_at=baseline.quantile_edges[at],
        bin_edges=list(baseline.bin_edges), baseline_shares=base_shares.tolist(),
        candidate_shares=cand_shares.tolist(), baseline_rows=baseline.valid, candidate_rows=candidate.valid,
    )
