"""Streaming parquet writer that hashes the bytes as they leave the encoder.

One row group per record batch keeps memory bounded by the batch, not the dataset. The encoder
writes into an 8 MiB Arrow buffer, so the Python sink sees a few large writes instead of one per
page (measured: 26 calls instead of 7,494 for 2M rows); a worker thread hashes, writes and starts
the kernel's writeback of each block while the encoder goes on, so hashing costs no second read
and the closing fsync only waits for the last blocks.
"""

from __future__ import annotations

import contextlib
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

from feature_platform.storage.syscalls import start_writeback, write_all

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
    """A write-only file whose worker thread hashes, writes and starts writeback of each block.

    The encoder's thread only copies a block and queues it; sha256, the write syscall and the
    kernel writeback all run beside the encoder (hashlib and file I/O release the GIL).
    """

    def __init__(self, fd: int, depth: int = 4) -> None:
        super().__init__()
        self._fd = fd
        self._hash = hashlib.sha256()
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=depth)  # bounds memory
        self._error: BaseException | None = None
        self._worker = threading.Thread(target=self._drain, name="sha256-writer", daemon=True)
        self._worker.start()
        self.size = 0

    def _drain(self) -> None:
        offset = 0
        while (chunk := self._queue.get()) is not None:
            if self._error is not None:
                continue  # keep draining so the producer never blocks on a full queue
            try:
                self._hash.update(chunk)
                write_all(self._fd, chunk)
                start_writeback(self._fd, offset, len(chunk))
                offset += len(chunk)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the producer's thread
                self._error = exc

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self._error is not None:
            raise self._error
        chunk = bytes(data)  # the encoder reuses its buffer after we return
        self._queue.put(chunk)
        self.size += len(chunk)
        return len(chunk)

    def finish(self) -> str:
        """Wait for every queued block; the sha256 of all of them, or the worker's error."""
        self._queue.put(None)
        self._worker.join()
        if self._error is not None:
            raise self._error
        return self._hash.hexdigest()


class ParquetFileWriter:
    """One parquet file written batch by batch (``write``), hashed as it is written; ``close`` returns it.

    Each non-empty batch (which must have exactly ``schema``) is one row group; empty batches are left
    out. Used as a context manager, leaving the block without ``close`` (an error) stops the hashing
    thread and closes the file, leaving the partial file for the caller's staging area to remove. One
    open writer holds its encoder's 8 MiB buffer, up to 4 queued blocks and one thread.
    """

    def __init__(self, path: Path, schema: pa.Schema,
                 on_batch: Callable[[pa.RecordBatch], None] | None = None) -> None:
        self.path = path
        self._schema = schema
        self._on_batch = on_batch
        self._rows = self._groups = 0
        self._raw = open(path, "xb", buffering=0)  # noqa: SIM115 - closed by close() or abort()
        self._closed = False
        try:
            self._sink = _HashingSink(self._raw.fileno())
        except BaseException:
            self._raw.close()
            raise
        try:
            self._stream = pa.BufferedOutputStream(pa.PythonFile(self._sink, mode="w"), buffer_size=WRITE_BUFFER)
            self._writer = pq.ParquetWriter(self._stream, schema, **writer_options(schema))
        except BaseException:
            with contextlib.suppress(BaseException):
                self._sink.finish()
            self._raw.close()
            raise

    def write(self, batch: pa.RecordBatch) -> None:
        if not batch.schema.equals(self._schema):
            raise ValueError(
                f"{self.path.name}: batch {self._groups} schema differs from the dataset schema: "
                f"expected {self._schema.names}, got {batch.schema.names}"
            )
        if batch.num_rows == 0:
            return
        self._writer.write_batch(batch, row_group_size=batch.num_rows)
        self._rows += batch.num_rows
        self._groups += 1
        if self._on_batch is not None:
            self._on_batch(batch)

    def close(self) -> WrittenFile:
        """Write the footer, wait for the hashing thread, fsync: the file is complete and durable."""
        try:
            self._writer.close()
            self._stream.close()  # flushes the last block into the sink
            sha256 = self._sink.finish()
            os.fsync(self._raw.fileno())
        except BaseException:
            self.abort()
            raise
        self._closed = True
        self._raw.close()
        return WrittenFile(path=self.path, bytes=self._sink.size, rows=self._rows, row_groups=self._groups,
                           sha256=sha256)

    def abort(self) -> None:
        """Stop writing after a failure: release the encoder, the thread and the file (idempotent)."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(BaseException):  # the first error is the one to report
            self._writer.close()
        with contextlib.suppress(BaseException):
            self._sink.finish()  # stops the worker thread
        self._raw.close()

    def __enter__(self) -> ParquetFileWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()


def write_parquet(
    path: Path,
    schema: pa.Schema,
    batches: Iterable[pa.RecordBatch],
    on_batch: Callable[[pa.RecordBatch], None] | None = None,
) -> WrittenFile:
    """Write ``batches`` (each must have exactly ``schema``) to ``path``, hashing as it goes."""
    with ParquetFileWriter(path, schema, on_batch) as writer:
        for batch in batches:
            writer.write(batch)
        return writer.close()
