"""What the builder needs from any tabular source: a schema, provenance and record batches.

A source may also offer random access (``RandomAccessSource``: its batch count and any batch
alone), so a sharded build can give each map task a contiguous range of batches. Any other
source is read in order; ``batch_range`` skips to a range by reading past the batches before it.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from typing import Protocol, runtime_checkable

import pyarrow as pa
from pydantic import JsonValue

from feature_platform.contracts.manifest import RngSeeds


class TableSource(Protocol):
    """A source streams record batches in the dataset's final column order."""

    kind: str

    @property
    def schema(self) -> pa.Schema: ...

    @property
    def expected_rows(self) -> int | None: ...

    @property
    def rng_seeds(self) -> RngSeeds | None: ...

    def parameters(self) -> dict[str, JsonValue]: ...

    def source_hash(self) -> str:
        """sha256 identifying the exact input: raw bytes, or generator and parameters."""
        ...

    def batches(self) -> Iterator[pa.RecordBatch]: ...


@runtime_checkable
class RandomAccessSource(Protocol):
    """The optional part of a ``TableSource``: how many batches ``batches()`` yields, and batch ``index`` of them
    produced alone (the same batch ``batches()`` yields at that position)."""

    @property
    def batch_count(self) -> int: ...

    def batch(self, index: int) -> pa.RecordBatch: ...


def known_batch_count(source: TableSource) -> int | None:
    """The number of batches of a random-access source; None when only reading it through would tell."""
    return source.batch_count if isinstance(source, RandomAccessSource) else None


def batch_range(source: TableSource, start: int = 0, stop: int | None = None) -> Iterator[pa.RecordBatch]:
    """Batches ``start`` up to ``stop`` (exclusive; None: to the end) of ``source``, in order. A random-access
    source produces only those; any other is read from its beginning and the batches before ``start`` dropped."""
    if start < 0 or (stop is not None and stop < start):
        raise ValueError(f"batch range [{start}, {stop}) is not a range of batch indices")
    if isinstance(source, RandomAccessSource):
        end = source.batch_count if stop is None else min(stop, source.batch_count)
        for index in range(start, end):
            yield source.batch(index)
        return
    yield from islice(source.batches(), start, stop)


def checked_batches(batches: Iterator[pa.RecordBatch], schema: pa.Schema, start: int = 0) -> Iterator[pa.RecordBatch]:
    """``batches`` (the first is source batch ``start``); one whose schema is not ``schema`` stops the build."""
    for index, batch in enumerate(batches, start=start):
        yield checked_batch(batch, schema, index)


def checked_batch(batch: pa.RecordBatch, schema: pa.Schema, index: int) -> pa.RecordBatch:
    """Source batch ``index``, refused in one line when its schema is not ``schema``."""
    if not batch.schema.equals(schema):
        raise ValueError(f"source batch {index}: schema differs from the dataset schema: "
                         f"expected {schema.names}, got {batch.schema.names}")
    return batch
