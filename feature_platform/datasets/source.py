"""What the builder needs from any tabular source: a schema, provenance and record batches."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

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
