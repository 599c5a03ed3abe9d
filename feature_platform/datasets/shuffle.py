"""The map half of a sharded build and the pieces it hands to the reduce half.

A map task reads a contiguous range of the source's batches once and cuts each batch by entity
hash into one piece per data file (``sharding.split_batch``); the rows of file k that the range
holds go, batch by batch, into one Arrow IPC stream, the piece (map m, file k), hashed as it is
written. Empty cuts are left out, as the parquet writer leaves out empty batches, so reading the
pieces of file k in map order gives exactly the batch sequence ``sharding.shard_batches`` gives
for file k. A piece with no rows is not written at all.

Pieces live in a ``PieceSpace``: a directory every worker shares (a local build's staging area,
never the published directory), or a key prefix of an object store when workers share no disk
(each map writes in its own scratch and uploads). A reader hashes each piece in place (memory
mapped; from a store, after downloading it to its own scratch) and refuses one whose sha256 is not
the one its map task recorded, before using any of its rows. A map task holds one open file per
data file that has rows in its range, and memory for one source batch and its pieces.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from feature_platform.datasets.sharding import split_batch
from feature_platform.datasets.source import TableSource, batch_range, checked_batches
from feature_platform.storage.syscalls import write_all

if TYPE_CHECKING:
    from feature_platform.storage.object_store import ObjectStore

StoreFactory = Callable[[], "ObjectStore"]  # picklable (e.g. S3StoreConfig.store): each worker opens its own
PIECES = ".pieces"


class PieceError(RuntimeError):
    """A piece is missing, damaged or not what its map task wrote; the build stops and publishes nothing."""


@dataclass(frozen=True)
class PieceSpace:
    """Where one build's pieces live: ``directory`` (shared by driver and workers), or ``prefix`` in ``store``."""

    directory: str | None = None
    store: StoreFactory | None = None
    prefix: str | None = None

    def __post_init__(self) -> None:
        in_store = self.store is not None or self.prefix is not None
        if (self.directory is None) != in_store or (self.store is None) != (self.prefix is None):
            raise ValueError("a piece space is a directory, or an object store with a key prefix, not both")

    def where(self, name: str) -> str:
        """The piece ``name`` as a path or key, for messages."""
        return str(Path(self.directory) / name) if self.directory is not None else f"{self.prefix}/{name}"

    def create(self) -> None:
        """Make the piece directory (the driver, before the maps; an object store needs nothing)."""
        if self.directory is not None:
            Path(self.directory).mkdir(parents=True, exist_ok=True)

    def clear(self) -> None:
        """Remove every piece of the build (the reducers remove theirs; this sweeps whatever a failure left)."""
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
        else:
            assert self.store is not None
            self.store().delete_prefix(f"{self.prefix}/")


@dataclass(frozen=True)
class MapTask:
    """Map task ``index`` of ``maps``: batches ``[start, stop)`` of ``source`` cut into ``files`` pieces."""

    source: TableSource
    entity: str
    files: int
    index: int
    maps: int
    start: int
    stop: int | None
    space: PieceSpace


@dataclass(frozen=True)
class Piece:
    """What a map task wrote for one data file: ``name`` in the piece space, its rows, batches, bytes and sha256."""

    map_index: int
    shard: int
    name: str
    rows: int
    batches: int
    bytes: int
    sha256: str


def piece_name(map_index: int, maps: int, shard: int) -> str:
    return f"piece-{map_index:05d}-of-{maps:05d}-file-{shard:05d}.arrows"


_END_OF_STREAM = b"\xff\xff\xff\xff\x00\x00\x00\x00"  # the IPC stream's end marker: continuation, length 0


class _PieceWriter:
    """One piece as an Arrow IPC stream: the schema message, one encapsulated message per batch, the end marker
    (the bytes ``pyarrow.ipc.new_stream`` writes), each message hashed and written in one piece."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        self._hash = hashlib.sha256()
        self.rows = self.batches = self.size = 0
        try:
            self._put(schema.serialize())
        except BaseException:
            self.abort()
            raise

    def _put(self, data: Any) -> None:
        view = memoryview(data).cast("B")
        self._hash.update(view)
        write_all(self._fd, view)
        self.size += len(view)

    def write(self, batch: pa.RecordBatch) -> None:
        self._put(batch.serialize())
        self.rows += batch.num_rows
        self.batches += 1

    def close(self, map_index: int, shard: int) -> Piece:
        try:
            self._put(_END_OF_STREAM)
        finally:
            self.abort()
        return Piece(map_index=map_index, shard=shard, name=self.path.name, rows=self.rows, batches=self.batches,
                     bytes=self.size, sha256=self._hash.hexdigest())

    def abort(self) -> None:
        """Close the descriptor once (a closed writer's number may already belong to another file)."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)


def map_pieces(task: MapTask) -> tuple[Piece, ...]:
    """One map task: each batch of the range read once, cut by entity hash, appended to its files' pieces.
    Returns the pieces written (files with rows in the range), in file order."""
    schema = task.source.schema
    with contextlib.ExitStack() as stack:
        if task.space.directory is not None:
            folder = Path(task.space.directory)
        else:  # no shared disk: write in this worker's scratch, then upload
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fp-pieces-")))
        writers: dict[int, _PieceWriter] = {}
        try:
            for batch in checked_batches(batch_range(task.source, task.start, task.stop), schema, task.start):
                for shard, cut in enumerate(split_batch(batch, task.entity, task.files)):
                    if cut.num_rows == 0:
                        continue
                    writer = writers.get(shard)
                    if writer is None:
                        writer = writers[shard] = _PieceWriter(
                            folder / piece_name(task.index, task.maps, shard), schema)
                    writer.write(cut)
            pieces = tuple(writers[shard].close(task.index, shard) for shard in sorted(writers))
        except BaseException:
            for writer in writers.values():
                writer.abort()
            raise
        if task.space.store is not None:
            store = task.space.store()
            for piece in pieces:
                local = folder / piece.name
                store.put_file(local, task.space.where(piece.name))
                local.unlink()
    return pieces


def piece_batches(space: PieceSpace, pieces: tuple[Piece, ...]) -> Generator[pa.RecordBatch, None, None]:
    """The batches of ``pieces``, piece after piece; each piece's sha256 is checked against what its map task
    recorded before any of its batches is used (from the store, it is first downloaded to local scratch)."""
    with contextlib.ExitStack() as stack:
        scratch: Path | None = None
        store = None
        if space.store is not None:
            scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fp-pieces-")))
            store = space.store()
        for piece in pieces:
            where = space.where(piece.name)
            if store is not None and scratch is not None:
                path = scratch / piece.name
                try:
                    store.download_file(where, path)
                except Exception as exc:
                    raise PieceError(f"{where}: piece could not be read from the store: {exc}") from exc
            else:
                path = Path(where)
            try:
                mapped = pa.memory_map(str(path))  # hashed and read in place: no copy of the piece's bytes
            except OSError as exc:
                raise PieceError(f"{where}: piece could not be read: {exc.strerror or exc}") from exc
            rows = batches = 0
            with mapped:
                if mapped.size() != piece.bytes:  # a truncated or grown piece, refused before hashing it
                    raise PieceError(f"{where}: piece refused: {mapped.size()} bytes, its map task wrote "
                                     f"{piece.bytes}")
                actual = hashlib.sha256(mapped.read_buffer()).hexdigest()
                if actual != piece.sha256:
                    raise PieceError(f"{where}: piece refused: sha256 {actual} differs from {piece.sha256}, "
                                     "the sha256 its map task wrote")
                mapped.seek(0)
                for batch in pa.ipc.open_stream(mapped):
                    rows += batch.num_rows
                    batches += 1
                    yield batch
            if (rows, batches) != (piece.rows, piece.batches):  # verified bytes: the map's accounting is wrong
                raise PieceError(f"{where}: piece holds {rows} rows in {batches} batches, its map task recorded "
                                 f"{piece.rows} rows in {piece.batches}")
            if scratch is not None:
                path.unlink()


def delete_pieces(space: PieceSpace, pieces: tuple[Piece, ...]) -> None:
    """Remove pieces a reducer has used up."""
    if space.directory is not None:
        for piece in pieces:
            (Path(space.directory) / piece.name).unlink(missing_ok=True)
        return
    assert space.store is not None
    store = space.store()
    for piece in pieces:
        store.delete(space.where(piece.name))
