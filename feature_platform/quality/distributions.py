"""Feature distributions streamed over parquet files with pyarrow and numpy.

Two passes, each holding one record batch at a time: the first accumulates count, mean, M2
(Chan's parallel update), min, max, a distinct-value sketch and a bottom-k random sample per
feature (exact quantiles whenever the data fits in the sample); the second counts every value into
right-closed bins cut at the quantiles derived from the sample, so stored counts are exact for the
stored edges. Both passes run per file and reduce exactly: moments by Chan's combination in file
order, samples by keeping the k smallest keys of the union (each file draws its keys from its own
stream), sketches by register maximum, counts by sum.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from feature_platform.quality.sketch import HyperLogLog

READ_BATCH_ROWS = 65_536
SAMPLE_SEED = 0x5EED  # fixed, so the same file always gives the same sample and profile
EDGE_DIGITS = 9  # interior edges are rounded before counting, so counts stay exact for the stored edges


def bin_counts(values: np.ndarray, edges: Sequence[float] | np.ndarray) -> np.ndarray:
    """Counts of ``values`` in the ``len(edges) + 1`` right-closed bins cut at sorted ``edges``."""
    cuts = np.asarray(edges, dtype=np.float64)
    index = np.searchsorted(cuts, values, side="left")
    return np.bincount(index, minlength=cuts.size + 1).astype(np.int64)


def counts_at_or_below(counts: Sequence[int] | np.ndarray) -> np.ndarray:
    """How many values are ``<= edges[k]`` for each edge, from right-closed bin counts."""
    return np.cumsum(np.asarray(counts, dtype=np.int64))[:-1]


@dataclass
class Moments:
    """Streaming count/mean/M2 (Chan's parallel update), min/max and a bottom-k random sample."""

    sample_size: int
    valid: int = 0
    mean: float = 0.0
    m2: float = 0.0
    lo: float = math.inf
    hi: float = -math.inf
    keys: np.ndarray = field(default_factory=lambda: np.empty(0))
    values: np.ndarray = field(default_factory=lambda: np.empty(0))

    def add(self, x: np.ndarray, keys: np.ndarray) -> None:
        ok = np.isfinite(x)
        v, k = (x, keys) if ok.all() else (x[ok], keys[ok])
        if v.size == 0:
            return
        n_b, mean_b = v.size, float(v.mean())
        m2_b = float(np.sum((v - mean_b) ** 2))
        n = self.valid + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / n
        self.m2 += m2_b + delta * delta * self.valid * n_b / n
        self.valid = n
        self.lo, self.hi = min(self.lo, float(v.min())), max(self.hi, float(v.max()))
        self._sample(v, k)

    def _sample(self, v: np.ndarray, k: np.ndarray) -> None:
        if self.keys.size >= self.sample_size:  # only rows that beat the current k-th key can enter
            beat = k < self.keys.max()
            v, k = v[beat], k[beat]
        keys_all, values_all = np.concatenate([self.keys, k]), np.concatenate([self.values, v])
        if keys_all.size > self.sample_size:
            keep = np.argpartition(keys_all, self.sample_size - 1)[: self.sample_size]
            keys_all, values_all = keys_all[keep], values_all[keep]
        self.keys, self.values = keys_all, values_all

    def merge(self, other: Moments) -> None:
        """Add another file's moments (Chan et al.'s pairwise combination) and sample (k smallest keys)."""
        if other.valid == 0:
            return
        if self.valid == 0:  # exact copy: a one-file reduce gives that file's numbers bit for bit
            self.valid, self.mean, self.m2, self.lo, self.hi = other.valid, other.mean, other.m2, other.lo, other.hi
            self.keys, self.values = other.keys.copy(), other.values.copy()
            return
        n = self.valid + other.valid
        delta = other.mean - self.mean
        self.mean += delta * other.valid / n
        self.m2 += other.m2 + delta * delta * self.valid * other.valid / n
        self.valid = n
        self.lo, self.hi = min(self.lo, other.lo), max(self.hi, other.hi)
        self._sample(other.values, other.keys)


def _as_float(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """float64 view of a numeric column, nulls as NaN."""
    return np.asarray(column.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)


def sample_keys(file_index: int) -> np.random.Generator:
    """The stream of sample keys of the dataset's ``file_index``-th file: file 0 draws from SAMPLE_SEED as a
    one-file dataset always has; file i from that stream jumped i times (independent, non-overlapping)."""
    bits = np.random.PCG64(SAMPLE_SEED)
    return np.random.Generator(bits.jumped(file_index) if file_index else bits)


@dataclass
class FileScan:
    """First pass over one file: moments and sample per numeric feature, a sketch and valid count per feature."""

    moments: dict[str, Moments]
    sketches: dict[str, HyperLogLog]
    valid: dict[str, int]


def scan_moments(pf: pq.ParquetFile, names: list[str], sample_size: int, *, file_index: int = 0,
                 other: list[str] | None = None) -> FileScan:
    """``names`` are numeric features (moments, sample, sketch of finite values); ``other`` are features that
    only get a non-null count and, for text, a sketch."""
    other = other or []
    acc = {n: Moments(sample_size) for n in names}
    sketches = {n: HyperLogLog() for n in [*names, *other]}
    nulls = dict.fromkeys(other, 0)
    rows = 0
    columns = [*names, *other]
    if not columns:
        return FileScan(acc, sketches, {})
    rng = sample_keys(file_index)
    for batch in pf.iter_batches(batch_size=READ_BATCH_ROWS, columns=columns):
        keys = rng.random(batch.num_rows) if names else np.empty(0)  # one key per row, shared by all features
        rows += batch.num_rows
        for i, name in enumerate(names):
            x = _as_float(batch.column(i))
            acc[name].add(x, keys)
            sketches[name].add_floats(_finite(x))
        for j, name in enumerate(other):
            column = batch.column(len(names) + j)
            nulls[name] += column.null_count
            sketches[name].add_texts(column)
    valid = {n: acc[n].valid for n in names} | {n: rows - nulls[n] for n in other}
    return FileScan(acc, sketches, valid)


def merge_scans(scans: list[FileScan]) -> FileScan:
    """One file's scan from scans of disjoint groups of its columns."""
    return FileScan(moments={n: m for s in scans for n, m in s.moments.items()},
                    sketches={n: h for s in scans for n, h in s.sketches.items()},
                    valid={n: v for s in scans for n, v in s.valid.items()})


def _round(values: np.ndarray) -> np.ndarray:
    return np.array([float(f"{v:.{EDGE_DIGITS}g}") for v in values], dtype=np.float64)


def edges(acc: Moments, bins: int, quantiles: int) -> tuple[list[float], list[float]]:
    """(quantile edges from min to max, unique interior PSI edges), both rounded before counting."""
    if acc.valid == 0:
        return [], []
    # Rounding is monotone, so clipping keeps the edges sorted; the ends are the exact min and max
    # (never rounded inwards), even when the sample missed them.
    q = np.clip(_round(np.quantile(acc.values, np.linspace(0.0, 1.0, quantiles + 1))), acc.lo, acc.hi)
    q[0], q[-1] = acc.lo, acc.hi
    inner = np.quantile(acc.values, np.linspace(0.0, 1.0, bins + 1)[1:-1])
    return q.tolist(), np.unique(_round(inner)).tolist()


@dataclass
class Cuts:
    """Counts of one feature in right-closed bins cut at the union of every edge set it is judged by.

    One ``searchsorted`` per value serves all edge sets: any edge set's CDF points and bin counts
    are read off the union's running counts, since each of its edges is one of the cuts.
    """

    cuts: np.ndarray
    counts: np.ndarray

    @classmethod
    def of(cls, *edge_sets: list[float]) -> Cuts:
        cuts = np.unique(np.concatenate([np.asarray(e, dtype=np.float64) for e in edge_sets]))
        return cls(cuts, np.zeros(cuts.size + 1, dtype=np.int64))

    @cached_property
    def cuts32(self) -> np.ndarray:
        """Each cut as the largest float32 at or below it: a float32 value is <= the cut exactly when it is
        <= this, so float32 columns are counted exactly without widening them."""
        with np.errstate(over="ignore"):  # a cut beyond float32's range becomes ±inf, then the largest float32
            near = self.cuts.astype(np.float32)
        return np.where(near.astype(np.float64) > self.cuts, np.nextafter(near, np.float32(-np.inf)), near)

    def add(self, values: np.ndarray) -> None:
        """Count finite ``values`` (float64, or float32 as read): sort them once and look each cut up in them
        (the same counts as ``bin_counts``, about ten times faster than a binary search per value)."""
        ordered = np.sort(values)
        cuts = self.cuts32 if ordered.dtype == np.float32 else self.cuts
        at_or_below = np.searchsorted(ordered, cuts, side="right")
        self.counts += np.diff(np.concatenate([[0], at_or_below, [ordered.size]])).astype(np.int64)

    def at_or_below(self, edges: list[float]) -> np.ndarray:
        """Values ``<= edges[k]`` for each edge (a CDF point times the count)."""
        return counts_at_or_below(self.counts)[np.searchsorted(self.cuts, np.asarray(edges, dtype=np.float64))]

    def per_bin(self, edges: list[float]) -> np.ndarray:
        """Values in each right-closed bin cut at ``edges``."""
        total = np.array([int(self.counts.sum())], dtype=np.int64)
        return np.diff(np.concatenate([np.zeros(1, np.int64), self.at_or_below(edges), total]))


def merge_cuts(parts: list[dict[str, Cuts]]) -> dict[str, Cuts]:
    """Counts of several files cut at the same edges: their sum."""
    total = {name: Cuts(c.cuts, c.counts.copy()) for name, c in parts[0].items()}
    for part in parts[1:]:
        for name, c in part.items():
            total[name].counts += c.counts
    return total


def scan_counts(pf: pq.ParquetFile, edge_sets: dict[str, list[list[float]]]) -> dict[str, Cuts]:
    """Second pass: every finite value of each feature counted once against all of its edge sets."""
    cuts = {name: Cuts.of(*sets) for name, sets in edge_sets.items() if any(sets)}
    names = sorted(cuts)
    if not names:
        return cuts
    for batch in pf.iter_batches(batch_size=READ_BATCH_ROWS, columns=names):
        for i, name in enumerate(names):
            column = batch.column(i)  # float32 stays float32: half the bytes to sort, the same counts
            x = column.to_numpy(zero_copy_only=False) if column.type == pa.float32() else _as_float(column)
            cuts[name].add(_finite(x))
    return cuts


def _finite(x: np.ndarray) -> np.ndarray:
    """The finite values of ``x`` (``x`` itself when all are: most feature batches, no copy)."""
    ok = np.isfinite(x)
    return x if ok.all() else x[ok]
