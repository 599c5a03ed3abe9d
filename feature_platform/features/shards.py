"""Hash-partitioning parquet inputs by a join key into shards, streamed, for joins that run per shard.

A row's shard is ``fingerprint64(utf8(str(key))) mod shards`` (FarmHash Fingerprint64, the project's
stable hash), so every row of one key lands in the same shard whatever the input files, the executor
or the number of workers. Partitioning streams record batches: a map task reads one range of row
groups of one input file, and appends each batch's rows of shard ``s`` to its piece for ``s``. Memory
is the parquet reader's one row group (it decodes a row group's column chunks whole: about 0.4 KB per
row of a 32-feature row group, measured) plus one batch, never the table; a shard's join reads only
that shard's pieces, in (input file, row-group range) order, so within a shard rows keep their input
order, and its memory follows the shard's size.

Pieces live in a scratch space: a local directory (one machine, or a disk the workers share) or a
prefix of an object store (a cluster without shared disk: map tasks fetch their input from it and
put their pieces back, join tasks fetch only their own pieces).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from feature_platform.datasets.definitions.farmhash import fingerprint64
from feature_platform.datasets.executors import Executor, run_tasks
from feature_platform.datasets.parquet_writer import writer_options
from feature_platform.storage.local_store import LocalObjectStore
from feature_platform.storage.object_keys import join_key
from feature_platform.storage.s3_store import S3ObjectStore, S3StoreConfig

PARTITION_RULE = "shard = farmhash fingerprint64(utf8(str(key))) mod shards"
MAP_BATCH_ROWS = 131_072
MAP_TARGET_ROWS = 1_048_576  # rows per map task (whole row groups; at least one)
MAX_SHARDS = 4096
READ_BUFFER = 1 << 20

# A store a worker can open again on its own machine: an S3 bucket description (credentials from the
# worker's own environment) or the root directory of a local object store.
StoreSpec = S3StoreConfig | str


def open_store(spec: StoreSpec) -> LocalObjectStore | S3ObjectStore:
    """The object store ``spec`` describes (see ``StoreSpec``)."""
    if isinstance(spec, S3StoreConfig):
        return spec.store()
    return LocalObjectStore(Path(spec))


def require_shards(shards: object) -> int:
    """``shards`` as a shard count: an integer in [1, MAX_SHARDS] (a bool or a float is not a count)."""
    if isinstance(shards, bool) or not isinstance(shards, int) or not 1 <= shards <= MAX_SHARDS:
        raise ValueError(f"shards must be an integer in [1, {MAX_SHARDS}], got {shards!r}")
    return shards


def shard_ids(keys: pa.Array | pa.ChunkedArray, shards: int) -> np.ndarray:
    """The shard of each key (``PARTITION_RULE``); each distinct key is hashed once; a null key goes to 0."""
    if isinstance(keys, pa.ChunkedArray):
        keys = keys.combine_chunks()
    encoded = pc.dictionary_encode(keys)
    values = encoded.dictionary.to_pylist()
    per_value = np.fromiter((fingerprint64(str(v).encode("utf-8")) % shards for v in values), np.int64,
                            len(values))
    per_value = np.append(per_value, 0)  # the null key's slot
    indices = pc.fill_null(encoded.indices, len(values)).to_numpy(zero_copy_only=False)
    out: np.ndarray = per_value[indices]
    return out


@dataclass(frozen=True)
class Scratch:
    """Where pieces live: ``root`` is a local directory, or (with ``store``) a key prefix in that store."""

    root: str
    store: StoreSpec | None = None

    def key(self, *parts: str) -> str:
        return join_key(*parts)

    @contextlib.contextmanager
    def reading(self, key: str) -> Iterator[Path]:
        """A local path holding the object ``key`` while the block runs (a download only for a store)."""
        if self.store is None:
            yield Path(self.root) / key
            return
        with tempfile.TemporaryDirectory(prefix="fp-shard-") as tmp:
            local = Path(tmp) / Path(key).name
            open_store(self.store).download_file(join_key(self.root, key), local)
            yield local

    @contextlib.contextmanager
    def writing(self, key: str) -> Iterator[Path]:
        """A local path to write the object ``key`` to; stored when the block ends without error."""
        if self.store is None:
            path = Path(self.root) / key
            path.parent.mkdir(parents=True, exist_ok=True)
            yield path
            return
        with tempfile.TemporaryDirectory(prefix="fp-shard-") as tmp:
            local = Path(tmp) / Path(key).name
            yield local
            open_store(self.store).put_file(local, join_key(self.root, key))

    def clear(self) -> None:
        if self.store is None:
            shutil.rmtree(self.root, ignore_errors=True)
        else:
            open_store(self.store).delete_prefix(self.root + "/")


@contextlib.contextmanager
def scratch_space(local_parent: Path, store: StoreSpec | None, name: str) -> Iterator[Scratch]:
    """A fresh scratch space (a hidden directory under ``local_parent``, or ``scratch/<name>-<random>`` in the
    store), removed afterwards whatever happens."""
    tag = f"{name}-{os.getpid()}-{os.urandom(4).hex()}"
    if store is None:
        local_parent.mkdir(parents=True, exist_ok=True)
        scratch = Scratch(str(Path(local_parent) / f".fp-scratch-{tag}"))
    else:
        scratch = Scratch(join_key("scratch", tag), store)
    try:
        yield scratch
    finally:
        scratch.clear()


@dataclass(frozen=True)
class MapTask:
    """Stream row groups ``[first, stop)`` of input ``source`` and write its rows into one piece per shard."""

    scratch: Scratch
    source: str  # a local path (no store) or a scratch key (store)
    role: str
    index: int
    first: int
    stop: int
    columns: tuple[str, ...]
    key: str
    shards: int

    def piece(self, shard: int) -> str:
        return join_key("pieces", self.role, f"{self.index:05d}", f"shard-{shard:05d}.parquet")


def partition_range(task: MapTask) -> list[int]:
    """One map task (``MapTask``); returns the rows written per shard (pieces with no rows are not written)."""
    rows = [0] * task.shards
    with contextlib.ExitStack() as stack:
        source = stack.enter_context(task.scratch.reading(task.source)) if task.scratch.store is not None \
            else Path(task.source)
        # a buffered stream reads pages as the batches need them, not whole column chunks of a row group
        parquet = pq.ParquetFile(source, buffer_size=READ_BUFFER, pre_buffer=False)
        schema = parquet.schema_arrow
        schema = pa.schema([schema.field(c) for c in task.columns])
        writers: dict[int, pq.ParquetWriter] = {}
        for batch in parquet.iter_batches(batch_size=MAP_BATCH_ROWS, row_groups=range(task.first, task.stop),
                                          columns=list(task.columns), use_threads=False):
            ids = shard_ids(batch.column(task.key), task.shards)
            order = np.argsort(ids, kind="stable")  # stable: a piece keeps the input's row order
            counts = np.bincount(ids, minlength=task.shards)
            ordered = batch.take(pa.array(order))
            offset = 0
            for shard, count in enumerate(counts.tolist()):
                if count:
                    writer = writers.get(shard)
                    if writer is None:
                        path = stack.enter_context(task.scratch.writing(task.piece(shard)))
                        writer = stack.enter_context(pq.ParquetWriter(path, schema, **writer_options(schema)))
                        writers[shard] = writer
                    writer.write_batch(ordered.slice(offset, count), row_group_size=count)
                    rows[shard] += count
                offset += count
    return rows


@dataclass(frozen=True)
class PartitionInput:
    """One role's input files (labels or features) and the columns the join needs from them."""

    role: str
    files: tuple[str, ...]  # local paths (no store) or scratch keys (store)
    columns: tuple[str, ...]
    local_files: tuple[Path, ...]  # the same files on the driver, for their footers


def map_tasks(scratch: Scratch, inputs: Sequence[PartitionInput], key: str, shards: int) -> list[MapTask]:
    """Map tasks covering every row group of every input once, about ``MAP_TARGET_ROWS`` rows each."""
    tasks: list[MapTask] = []
    for item in inputs:
        index = 0
        for source, local in zip(item.files, item.local_files, strict=True):
            meta = pq.ParquetFile(local).metadata
            first = rows = 0
            for group in range(meta.num_row_groups):
                rows += meta.row_group(group).num_rows
                if rows >= MAP_TARGET_ROWS or group == meta.num_row_groups - 1:
                    tasks.append(MapTask(scratch, source, item.role, index, first, group + 1, item.columns,
                                         key, shards))
                    index += 1
                    first, rows = group + 1, 0
    return tasks


def partition(scratch: Scratch, inputs: Sequence[PartitionInput], key: str, shards: int, *,
              executor: Executor, workers: int | None, ray_address: str | None) -> dict[str, list[list[str]]]:
    """Partition every input; per role, per shard, the scratch keys of its pieces in input order."""
    tasks = map_tasks(scratch, inputs, key, shards)
    counts = run_tasks(partition_range, tasks, executor=executor, workers=workers, ray_address=ray_address)
    pieces: dict[str, list[list[str]]] = {item.role: [[] for _ in range(shards)] for item in inputs}
    for task, rows in zip(tasks, counts, strict=True):
        for shard, n in enumerate(rows):
            if n:
                pieces[task.role][shard].append(task.piece(shard))
    return pieces


def read_pieces(scratch: Scratch, keys: Sequence[str], columns: Sequence[str], schema_of: Callable[[], pa.Schema]) \
        -> pa.Table:
    """The concatenation of ``keys`` (in order); an empty table of ``schema_of()`` when there are none."""
    tables = []
    for key in keys:
        with scratch.reading(key) as path:
            tables.append(pq.read_table(path, columns=list(columns), use_threads=False))
    if not tables:
        return schema_of().empty_table()
    return pa.concat_tables(tables) if len(tables) > 1 else tables[0]


def uniform_batches(table: pa.Table, rows: int) -> Iterator[pa.RecordBatch]:
    """``table`` as record batches of exactly ``rows`` rows (the last shorter), whatever its chunking."""
    for start in range(0, table.num_rows, rows):
        part = table.slice(start, rows).combine_chunks()
        yield from part.to_batches(max_chunksize=rows)
