"""generate_candidate: sampling and augmentation applied to a snapshot's rows, per config.

Both are seeded per batch (like the synthetic source), so a candidate is reproducible from the
snapshot, the configuration and the seed, and its manifest records all three.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import JsonValue

from feature_platform.contracts.manifest import RngSeeds
from feature_platform.datasets.source import RandomAccessSource, TableSource
from feature_platform.datasets.synthetic import derive_seed


@dataclass(frozen=True)
class CandidateConfig:
    sample_fraction: float = 1.0
    augment_noise: float = 0.0  # std of multiplicative gaussian jitter on float features
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.sample_fraction <= 1.0:
            raise ValueError(f"sample_fraction must lie in (0, 1], got {self.sample_fraction}")
        if not 0.0 <= self.augment_noise <= 10.0:
            raise ValueError(f"augment_noise must lie in [0, 10], got {self.augment_noise}")


class CandidateSource:
    """A ``TableSource`` that samples and augments another one batch by batch."""

    def __init__(self, inner: TableSource, config: CandidateConfig) -> None:
        self.inner, self.config = inner, config
        self.kind = inner.kind

    @property
    def schema(self) -> pa.Schema:
        return self.inner.schema

    @property
    def expected_rows(self) -> int | None:
        rows = self.inner.expected_rows
        return None if rows is None else round(rows * self.config.sample_fraction)

    @property
    def rng_seeds(self) -> RngSeeds | None:
        return self.inner.rng_seeds

    def parameters(self) -> dict[str, JsonValue]:
        return {**self.inner.parameters(), "candidate": {
            "sample_fraction": self.config.sample_fraction, "augment_noise": self.config.augment_noise,
            "seed": self.config.seed,
            "derivation": "per batch i: PCG64(derive_seed(seed, f'candidate:{i}')); keep rows with u < "
                          "sample_fraction, then x *= 1 + augment_noise * z for float features",
        }}

    def source_hash(self) -> str:
        return self.inner.source_hash()

    def batches(self) -> Iterator[pa.RecordBatch]:
        for i, batch in enumerate(self.inner.batches()):
            yield self._derive(i, batch)

    def _derive(self, index: int, batch: pa.RecordBatch) -> pa.RecordBatch:
        """Candidate batch ``index`` from the inner source's batch ``index``."""
        c = self.config
        if c.sample_fraction == 1.0 and c.augment_noise == 0.0:
            return batch
        rng = np.random.Generator(np.random.PCG64(derive_seed(c.seed, f"candidate:{index}")))
        if c.sample_fraction < 1.0:
            batch = batch.filter(pa.array(rng.random(batch.num_rows) < c.sample_fraction))
        if c.augment_noise > 0.0 and batch.num_rows:
            batch = self._augment(batch, rng)
        return batch

    def _augment(self, batch: pa.RecordBatch, rng: np.random.Generator) -> pa.RecordBatch:
        columns = []
        for field, column in zip(batch.schema, batch.columns, strict=True):
            if pa.types.is_floating(field.type):
                jitter = pa.array(1.0 + self.config.augment_noise * rng.standard_normal(batch.num_rows),
                                  field.type)
                column = pc.multiply(column, jitter)
            columns.append(column)
        return pa.RecordBatch.from_arrays(columns, schema=batch.schema)


class RandomAccessCandidateSource(CandidateSource):
    """A candidate of a random-access source is random access too: batch i derives from inner batch i alone."""

    def __init__(self, inner: RandomAccessSource, config: CandidateConfig) -> None:
        super().__init__(cast(TableSource, inner), config)
        self._random_access = inner

    @property
    def batch_count(self) -> int:
        return self._random_access.batch_count

    def batch(self, index: int) -> pa.RecordBatch:
        return self._derive(index, self._random_access.batch(index))


def candidate_source(inner: TableSource, config: CandidateConfig) -> CandidateSource:
    """The candidate of ``inner``, random access when ``inner`` is (so a sharded build can split its batches)."""
    if isinstance(inner, RandomAccessSource):
        return RandomAccessCandidateSource(inner, config)
    return CandidateSource(inner, config)
