"""Streaming parquet writer that hashes the bytes as they leave the encoder.

One row group per record batch keeps memory bounded by the batch, not the dataset. The encoder
writes into an 8 MiB Arrow buffer, so the Python sink sees a few large writes instead of one per
page (measured: 26 calls instead of 7,494 for 2M rows); the sink hands each block to a sha256 on a
worker thread (hashlib releases the GIL), so hashing overlaps encoding instead of costing a second
read of the file.
"""

from __future__ import annotations

import hashlib
import io
import os
import queue
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

# Measured on 32 float32 features: dictionary encoding off and BYTE_STREAM_SPLIT for floats wrote
# about 3x faster than pyarrow's defaults and smaller; zstd beats snappy on the split streams.
COMPRESSION = "zstd"
COMPRESSION_LEVEL = -1  # zstd fast mode: ~15% faster than level 1 here, ~4% larger
WRITE_BUFFER = 8 * 1024 * 1024


def writer_options(schema: pa.Schema) -> dict[str, Any]:
    """The project's ParquetWriter settings for ``schema`` (also used by the benchmark)."""
    encodings: dict[str, str] = {}
    for f in schema:
        if pa.types.is_floating(f.type):
            encodings[f.name] = "BYTE_STREAM_SPLIT"
        elif pa.types.is_timestamp(f.type):
            encodings[f.name] = "DELTA_BINARY_PACKED"
    return {
        "compression": COMPRESSION,
        "compression_level": COMPRESSION_LEVEL,
        "use_dictionary": False,
        "column_encoding": encodings,
        "write_statistics": True,
        "version": "2.6",
    }


@dataclass(frozen=True)
class WrittenFile:
    path: Path
    bytes: int
    rows: int
    row_groups: int
    sha256: str


class _HashingSink(io.RawIOBase):
    """A write-only file that forwards bytes to ``raw`` and to a sha256 on a worker thread."""

    def __init__(self, raw: io.BufferedWriter, depth: int = 4) -> None:
        super().__init__()
        self._raw = raw
        self._hash = hashlib.sha256()
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=depth)  # bounds memory
        self._worker = threading.Thread(target=self._drain, name="sha256", daemon=True)
        self._worker.start()
        self.size = 0

    def _drain(self) -> None:
        while (chunk := self._queue.get()) is not None:
            self._hash.update(chunk)

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)  # the encoder may reuse its buffer after we return
        self._queue.put(chunk)
        self._raw.write(chunk)
        self.size += len(chunk)
        return len(chunk)

    def hexdigest(self) -> str:
        self._queue.put(None)
        self._worker.join()
        return self._hash.hexdigest()


def write_parquet(
    path: Path,
    schema: pa.Schema,
    batches: Iterable[pa.RecordBatch],
    on_batch: Callable[[pa.RecordBatch], None] | None = None,
) -> WrittenFile:
    """Write ``batches`` (each must have exactly ``schema``) to ``path``, hashing as it goes."""
    rows = groups = 0
    with open(path, "xb", buffering=0) as raw:
        sink = _HashingSink(raw)  # type: ignore[arg-type]
        stream = pa.BufferedOutputStream(pa.PythonFile(sink, mode="w"), buffer_size=WRITE_BUFFER)
        try:
            with pq.ParquetWriter(stream, schema, **writer_options(schema)) as writer:
                for batch in batches:
                    if not batch.schema.equals(schema):
                        raise ValueError(
                            f"{path.name}: batch {groups} schema differs from the dataset schema: "
                            f"expected {schema.names}, got {batch.schema.names}"
                        )
                    if batch.num_rows == 0:
                        continue
                    writer.write_batch(batch, row_group_size=batch.num_rows)
                    rows += batch.num_rows
                    groups += 1
                    if on_batch is not None:
                        on_batch(batch)
            stream.close()  # flushes the last block into the sink
        finally:
            sha256 = sink.hexdigest()
        os.fsync(raw.fileno())
    return WrittenFile(path=path, bytes=sink.size, rows=rows, row_groups=groups, sha256=sha256)

