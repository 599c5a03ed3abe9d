# Over 400 lines: the build, its two ways of writing K files (fan-out, map/reduce) and the seal share one task type.
"""Streaming dataset build: source batches → parquet (hashed while written) → manifest → verify
→ atomic publish. A failure at any step leaves no dataset directory behind, and an existing
dataset is replaced (``force``) only by a new one that has already verified.

With ``files`` K > 1 the rows are split over K data files by a stable hash of the entity
(``sharding.py``), in one of two ways, chosen in ``sharded_write``. On a local executor (inline,
process) the build fans out: G group tasks (one per worker, one inline; more when a task would hold over
``MAX_OPEN_WRITERS`` files) cut every batch into the rows of their own files and write those files at
once through one open parquet writer per file, hashing as they write. Tasks that all run at once on
local processes share the source (``exchange.py``: each generates every G-th batch and passes the others
their cuts); otherwise each reads the whole source. On Ray, or when ``maps`` is given, it is a
map/reduce: M map tasks each read a contiguous range of the source's batches once and cut every batch
into K pieces (``shuffle.py``); then K reduce tasks each read the pieces of one file in map order
(refusing any piece whose sha256 is not the one its map wrote), write the file and delete the pieces, so
the source is read once whatever K is (the object-store build, ``store_build.py``, always works this
way). The driver assembles the manifest from what the tasks return. A file's bytes depend only on the
source and K (file k is the batch sequence ``sharding.shard_batches`` gives), so they are the same for
either way, any M or G, executor and worker count.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import pyarrow as pa

from feature_platform.contracts.canonical import digest
from feature_platform.contracts.feature_contract import FeatureContract, load_feature_contract
from feature_platform.contracts.manifest import (
    MANIFEST_NAME,
    SPEC_VERSION,
    AnySplits,
    Column,
    DataFile,
    DatasetManifest,
    Limits,
    Source,
    Splits,
)
from feature_platform.contracts.paths import require_safe_id
from feature_platform.contracts.provenance import git_hash, utc_now, utc_timestamp
from feature_platform.datasets.checks import VerifyReport
from feature_platform.datasets.exchange import Exchange, ExchangeEndpoint, exchange_space
from feature_platform.datasets.executors import (
    Executor,
    concurrent_tasks,
    default_workers,
    run_tasks,
    task_session,
)
from feature_platform.datasets.parquet_verify import verify_parquet_dataset
from feature_platform.datasets.parquet_writer import ParquetFileWriter, WrittenFile, write_parquet, writer_options
from feature_platform.datasets.sharding import (
    DERIVATION,
    batch_ranges,
    data_file_name,
    require_files,
    shard_batches,
    split_batch,
)
from feature_platform.datasets.shuffle import (
    PIECES,
    MapTask,
    Piece,
    PieceSpace,
    StoreFactory,
    delete_pieces,
    map_pieces,
    piece_batches,
)
from feature_platform.datasets.source import RandomAccessSource, TableSource, checked_batches, known_batch_count
from feature_platform.datasets.splits import SplitSpec
from feature_platform.storage.publish import publish_dir, staging_dir

DATA_FILE = data_file_name(0, 1)
DEFAULT_MAX_BYTES = 8 * 1024**3

Progress = Callable[[int, int | None], None]


class Splitter(Protocol):
    """A split rule other than the entity hash (e.g. a definition's FARM_FINGERPRINT or time cutoff)."""

    @property
    def names(self) -> tuple[str, ...]: ...

    def count(self, batch: pa.RecordBatch) -> np.ndarray:
        """Rows of ``batch`` per split, in ``names`` order."""
        ...

    def manifest_splits(self, rows: dict[str, int]) -> AnySplits: ...


class BuildError(RuntimeError):
    """The dataset could not be built or did not verify; nothing was published."""

    def __init__(self, message: str, report: VerifyReport | None = None) -> None:
        super().__init__(message)
        self.report = report


class DatasetExistsError(BuildError):
    """The target directory exists and ``force`` was not given."""


@dataclass(frozen=True)
class BuildResult:
    path: Path
    manifest: DatasetManifest
    digest: str
    report: VerifyReport
    seconds: float

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST_NAME


@dataclass(frozen=True)
class ShardTask:
    """Everything a worker needs to write data file ``shard`` of ``files``; picklable for processes and Ray.
    Alone (one file) it reads the source; in a fan-out it is one of a ``GroupTask``'s files; in a reduce it writes
    the file from the map tasks' pieces."""

    source: TableSource
    entity: str
    shard: int
    files: int
    path: str
    splits: SplitSpec | None
    splitter: Splitter | None
    # With a store: ``path`` is only the file's name; the worker writes it to its own scratch directory and
    # uploads it to ``key`` (never touching the driver's disk).
    store: StoreFactory | None = None
    key: str | None = None


@dataclass(frozen=True)
class ShardResult:
    name: str
    bytes: int
    rows: int
    sha256: str
    split_rows: tuple[int, ...]
    key: str | None = None


def write_shard(task: ShardTask, progress: Callable[[int], None] | None = None) -> ShardResult:
    """One task: generate the source's rows of this file, write them and hash them as they are written."""
    batches = shard_batches(task.source.batches(), task.entity, task.shard, task.files)
    return _write_file(task, batches, progress)


@dataclass(frozen=True)
class ReduceTask:
    """Write data file ``output.shard`` from its pieces, in map order; picklable for processes and Ray."""

    output: ShardTask
    pieces: tuple[Piece, ...]
    space: PieceSpace


def reduce_shard(task: ReduceTask) -> ShardResult:
    """One reduce task: the file's pieces (each verified before use) streamed into the file as ``write_shard``
    would write it from the source; the pieces are deleted once the file is complete."""
    with contextlib.closing(piece_batches(task.space, task.pieces)) as batches:  # a failed write frees its piece
        result = _write_file(task.output, batches, None)
    delete_pieces(task.space, task.pieces)
    return result


def _split_counter(task: ShardTask, progress: Callable[[int], None] | None
                   ) -> tuple[np.ndarray, Callable[[pa.RecordBatch], None]]:
    """The rows per split of a file, counted by the returned callback as each of its batches is written."""
    names = task.splitter.names if task.splitter is not None else (task.splits or SplitSpec()).names
    split_rows = np.zeros(len(names), dtype=np.int64)
    done = 0

    def on_batch(batch: pa.RecordBatch) -> None:
        nonlocal done
        split_rows[:] += (task.splitter.count(batch) if task.splitter is not None
                          else (task.splits or SplitSpec()).count(batch.column(task.entity)))
        done += batch.num_rows
        if progress is not None:
            progress(done)

    return split_rows, on_batch


def _result(written: WrittenFile, split_rows: np.ndarray, key: str | None = None) -> ShardResult:
    return ShardResult(name=written.path.name, bytes=written.bytes, rows=written.rows, sha256=written.sha256,
                       split_rows=tuple(int(n) for n in split_rows), key=key)


def _write_file(task: ShardTask, batches: Iterator[pa.RecordBatch],
                progress: Callable[[int], None] | None) -> ShardResult:
    split_rows, on_batch = _split_counter(task, progress)
    if task.store is None:
        return _result(write_parquet(Path(task.path), task.source.schema, batches, on_batch), split_rows)
    if task.key is None:
        raise ValueError("a shard task with a store needs the object key to upload to")
    with tempfile.TemporaryDirectory(prefix="fp-shard-") as scratch:
        path = Path(scratch) / Path(task.path).name
        written = write_parquet(path, task.source.schema, batches, on_batch)
        task.store().put_file(path, task.key)
    return _result(written, split_rows, task.key)


MAX_OPEN_WRITERS = 16  # data files one fan-out task writes at once


@dataclass(frozen=True)
class GroupTask:
    """One fan-out task: the data files of ``outputs`` (ascending, all of one build on local disk), written in one
    read of the source, or with ``exchange`` as task ``group`` of it; picklable for processes."""

    outputs: tuple[ShardTask, ...]
    exchange: Exchange | None = None
    group: int = 0


def write_group(task: GroupTask) -> tuple[ShardResult, ...]:
    """One fan-out task: every batch of the source cut by entity hash (``split_batch``) into the rows of this
    task's files, each cut written as the next row group of its file through the file's open writer; so each file
    is the batch sequence ``write_shard`` would write for it, byte for byte. Alone the task reads every batch;
    with an exchange it generates only its share and receives the other tasks' cuts of its files."""
    first = task.outputs[0]
    source, schema, files = first.source, first.source.schema, first.files
    shards = [out.shard for out in task.outputs]
    if any(out.store is not None for out in task.outputs):
        raise ValueError("a fan-out task writes to local disk; a build into a store runs map/reduce")
    with contextlib.ExitStack() as stack:
        counted = [_split_counter(out, None) for out in task.outputs]
        writers = [stack.enter_context(ParquetFileWriter(Path(out.path), schema, on_batch))
                   for out, (_, on_batch) in zip(task.outputs, counted, strict=True)]
        cuts: Iterator[list[pa.RecordBatch]]
        if task.exchange is None:
            cuts = (split_batch(batch, first.entity, files, shards)
                    for batch in checked_batches(source.batches(), schema))
        else:
            if not isinstance(source, RandomAccessSource):
                raise ValueError("an exchange needs a source with random access")
            cuts = stack.enter_context(ExchangeEndpoint(
                task.exchange, task.group, source, schema, files,
                lambda batch: split_batch(batch, first.entity, files))).cuts()
        for batch_cuts in cuts:
            for writer, cut in zip(writers, batch_cuts, strict=True):
                writer.write(cut)
        return tuple(_result(writer.close(), split_rows)
                     for writer, (split_rows, _) in zip(writers, counted, strict=True))


def fan_out_groups(files: int, workers: int) -> int:
    """How many fan-out tasks write ``files`` files with ``workers`` workers: one per worker (at most one per
    file), and more when a task would otherwise hold more than ``MAX_OPEN_WRITERS`` open files."""
    return max(min(workers, files), -(-files // MAX_OPEN_WRITERS))


def fan_out(outputs: list[ShardTask], *, executor: Executor, workers: int | None,
            on_result: Callable[[int, ShardResult], ShardResult]) -> list[ShardResult]:
    """The data files of ``outputs`` (all of one build, in file order, on local disk) by G fan-out tasks
    (``fan_out_groups``: one per worker, one inline, at least ceil(K / ``MAX_OPEN_WRITERS``)); task g writes files
    {k : k % G == g}. When all G > 1 tasks run at once on local processes and the source has random access, they
    exchange (``exchange.py``): task g generates batches {b : b % G == g} and the tasks pass each other the cuts,
    so the source is generated once in all; otherwise each task reads the whole source. Memory per task: a few
    source batches and their cuts, and one open parquet writer per file of the task (an 8 MiB encoder buffer and a
    few queued blocks each). ``on_result`` sees a task's files when the task lands."""
    groups = fan_out_groups(len(outputs), 1 if executor == "inline" else workers or default_workers())
    together = (groups > 1 and concurrent_tasks(executor, workers, groups) == groups
                and isinstance(outputs[0].source, RandomAccessSource))

    def landed(index: int, results: tuple[ShardResult, ...]) -> tuple[ShardResult, ...]:
        return tuple(on_result(out.shard, r) for out, r in zip(outputs[index::groups], results, strict=True))

    with exchange_space(groups) if together else contextlib.nullcontext(None) as exchange:
        tasks = [GroupTask(outputs=tuple(outputs[g::groups]), exchange=exchange, group=g) for g in range(groups)]
        done = run_tasks(write_group, tasks, executor=executor, workers=workers, on_result=landed)
    by_shard = {out.shard: r for task, results in zip(tasks, done, strict=True)
                for out, r in zip(task.outputs, results, strict=True)}
    return [by_shard[out.shard] for out in outputs]


def sharded_write(executor: Executor, maps: int | None) -> Literal["fan-out", "map/reduce"]:
    """How a build on local disk writes K > 1 files. Local executors fan out, because passing rows between tasks
    through sockets (or re-reading a local source) is cheaper than writing every row twice (once as pieces); Ray,
    or an explicit ``maps``, uses map/reduce, so the source is read once however many nodes there are. Both write
    to the driver's path, which on a cluster must be a shared disk; ``storage.store_build.build_dataset_to_store``
    is the build for nodes that share none."""
    return "fan-out" if executor != "ray" and maps is None else "map/reduce"


def build_dataset(
    source: TableSource,
    out_dir: Path | str,
    dataset_id: str,
    *,
    dataset_version: str | None = None,
    splits: SplitSpec | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    force: bool = False,
    contract: FeatureContract | None = None,
    progress: Progress | None = None,
    splitter: Splitter | None = None,
    extra_fields: tuple[pa.Field, ...] = (),
    files: int = 1,
    executor: Executor = "inline",
    workers: int | None = None,
    ray_address: str | None = None,
    maps: int | None = None,
) -> BuildResult:
    """``splitter`` replaces the entity-hash ``splits`` with another rule; the manifest records that rule.

    ``extra_fields`` are columns after the contract's (a training set's join provenance): the schema,
    the manifest and verify carry them; features, roles and their order stay the contract's.

    ``files`` > 1 shards the rows by entity over that many data files on ``executor`` with ``workers``
    (``process`` and ``ray`` need a picklable source). Inline and process fan out (``fan_out``: each of
    min(workers, files) tasks, at least ceil(files / MAX_OPEN_WRITERS), reads the source and writes its
    files; inline one task up to MAX_OPEN_WRITERS files). Ray, or an explicit ``maps``, runs map/reduce:
    ``maps`` map tasks (default: one per worker, at most one per batch; one for a source without random
    access), then one reduce task per file, with the pieces beside the staged directory, never in it. One
    file is written in this process, as before. ``created_at`` is ``$SOURCE_DATE_EPOCH`` when set.
    """
    started = time.perf_counter()
    created, version, contract = begin_build(dataset_id, dataset_version, files, maps, contract)
    if splitter is not None and splits is not None:
        raise ValueError("pass either splits or splitter, not both")
    splits = splits or SplitSpec()
    target = Path(out_dir) / dataset_id
    if (target.exists() or target.is_symlink()) and not force:
        raise DatasetExistsError(f"{target} already exists; pass --force to replace it (nothing was changed)")
    require_contract_schema(source.schema, contract, extra_fields)

    entity = contract.entity.name

    with staging_dir(target) as staged:
        tasks = [ShardTask(source=source, entity=entity, shard=k, files=files,
                           path=str(staged / data_file_name(k, files)), splits=None if splitter else splits,
                           splitter=splitter)
                 for k in range(files)]
        results = _write_shards(source, tasks, PieceSpace(directory=str(staged.parent / PIECES)), executor, workers,
                                ray_address, maps, progress)
        manifest = assemble_manifest(source, contract, dataset_id, version, created, splits, splitter, results,
                                      max_bytes, files)
        report = seal(staged, target, manifest, contract, {r.name: r.sha256 for r in results})
        publish_dir(staged, target, replace=force)
    return BuildResult(path=target, manifest=manifest, digest=manifest.digest(), report=report,
                       seconds=time.perf_counter() - started)


def assemble_manifest(source: TableSource, contract: FeatureContract, dataset_id: str, version: str,
                       created: datetime, splits: SplitSpec, splitter: Splitter | None, results: list[ShardResult],
                       max_bytes: int, files: int) -> DatasetManifest:
    """The driver's part: the manifest from what the file tasks returned (files in shard order)."""
    entity = contract.entity.name
    names = splitter.names if splitter is not None else splits.names
    split_rows = np.zeros(len(names), dtype=np.int64)
    for r in results:
        split_rows += np.asarray(r.split_rows, dtype=np.int64)
    source_info = Source(kind=source.kind, parameters=source.parameters(), source_hash=source.source_hash())
    rows = dict(zip(names, (int(n) for n in split_rows), strict=True))
    split_info: AnySplits
    if splitter is not None:
        split_info = splitter.manifest_splits(rows)
        split_config = split_info.model_dump(mode="json", exclude={"rows"})
    else:
        split_info = Splits(algorithm="entity_hash", key=entity, salt=splits.salt,
                            fractions=dict(splits.fractions), rows=rows)
        split_config = {"algorithm": split_info.algorithm, "key": entity, "salt": splits.salt,
                        "fractions": split_info.fractions}
    limits = Limits(max_bytes=max_bytes)
    config = build_config(source_info, split_config, limits, source.schema, contract)
    if files > 1:  # absent for one file, so an unsharded build keeps its config_hash
        config["sharding"] = {"files": files, "key": entity, "derivation": DERIVATION}
    manifest = DatasetManifest(
        spec_version=SPEC_VERSION,
        dataset_id=dataset_id,
        dataset_version=version,
        created_at=utc_timestamp(created),
        git_hash=git_hash(),
        config_hash=digest(config),
        source=source_info,
        files=[DataFile(path=r.name, format="parquet", bytes=r.bytes, rows=r.rows, sha256=r.sha256)
               for r in results],
        columns=[Column(name=f.name, type=str(f.type), nullable=f.nullable) for f in source.schema],
        feature_order=list(contract.feature_order),
        entity_column=entity,
        timestamp_column=contract.timestamp.name,
        label_column=contract.label.name if contract.label else None,
        row_count=sum(r.rows for r in results),
        splits=split_info,
        rng_seeds=source.rng_seeds,
        limits=limits,
    )
    return manifest


def build_config(source: Source, split_config: dict[str, Any], limits: Limits, schema: pa.Schema,
                 contract: FeatureContract) -> dict[str, Any]:
    """What a build's ``config_hash`` covers: the source, the split rule, the limits, the writer settings and the
    feature contract. Every spec v1 parquet build (datasets, training sets) records it the same way."""
    return {
        "source": {"kind": source.kind, "parameters": source.parameters},
        "splits": split_config,
        "limits": limits.model_dump(),
        "writer": writer_options(schema),
        "feature_contract_sha256": contract.digest(),
    }


def seal(staged: Path, target: Path, manifest: DatasetManifest, contract: FeatureContract,
         known_sha256: dict[str, str]) -> VerifyReport:
    """Write ``manifest.json`` into the staged directory durably and verify the whole staged dataset (the data
    files' digests are the ones computed while writing); a failure raises and nothing is published."""
    _write_durably(staged / MANIFEST_NAME, manifest.dumps().encode("utf-8"))
    report = verify_parquet_dataset(staged / MANIFEST_NAME, staged.parent, contract=contract,
                                    known_sha256=known_sha256)
    if not report.ok:
        failed = "; ".join(c.line() for c in report.failures)
        raise BuildError(f"{target}: built dataset failed verification, nothing published: {failed}", report)
    return report


def _write_shards(source: TableSource, tasks: list[ShardTask], space: PieceSpace, executor: Executor,
                  workers: int | None, ray_address: str | None, maps: int | None,
                  progress: Progress | None) -> list[ShardResult]:
    """One file is written here (progress per batch); several by fan-out or map/reduce (``sharded_write``) on the
    executor (progress as each task's files land)."""
    expected = source.expected_rows
    if len(tasks) == 1:
        return [write_shard(tasks[0], None if progress is None else lambda done: progress(done, expected))]
    written = 0

    def landed(index: int, result: ShardResult) -> ShardResult:
        nonlocal written
        written += result.rows
        if progress is not None:
            progress(written, expected)
        return result

    if sharded_write(executor, maps) == "fan-out":
        return fan_out(tasks, executor=executor, workers=workers, on_result=landed)
    return map_reduce(source, tasks, space, executor=executor, workers=workers, ray_address=ray_address, maps=maps,
                      on_result=landed)


def begin_build(dataset_id: str, dataset_version: str | None, files: int, maps: int | None,
                contract: FeatureContract | None) -> tuple[datetime, str, FeatureContract]:
    """What every dataset build (local or into a store) starts from, its inputs checked: the creation time, the
    version (given, else that time as ``YYYYMMDDTHHMMSSZ``) and the feature contract (given, else the project's)."""
    require_files(files)
    require_maps(maps)
    require_safe_id(dataset_id, "dataset_id")
    created = utc_now()
    version = require_safe_id(dataset_version or created.strftime("%Y%m%dT%H%M%SZ"), "dataset_version")
    return created, version, contract or load_feature_contract()


def require_maps(maps: object) -> int | None:
    """``maps`` as a count of map tasks: None (the default) or a positive integer (not a bool, not a float)."""
    if maps is not None and (isinstance(maps, bool) or not isinstance(maps, int) or maps < 1):
        raise ValueError(f"maps must be a positive integer, got {maps!r}")
    return maps


def map_reduce(source: TableSource, outputs: list[ShardTask], space: PieceSpace, *, executor: Executor,
               workers: int | None, ray_address: str | None, maps: int | None,
               on_result: Callable[[int, ShardResult], ShardResult]) -> list[ShardResult]:
    """The data files of ``outputs`` (all of one build, in file order) by map/reduce through ``space``; the
    pieces are gone afterwards, whether the build succeeded or not. ``on_result`` sees each file as it lands."""
    files = len(outputs)
    count = known_batch_count(source)
    wanted = maps or workers or (1 if executor == "inline" else default_workers())
    ranges: list[tuple[int, int | None]] = [(0, None)] if count is None else list(batch_ranges(count, wanted))
    map_tasks = [MapTask(source=source, entity=outputs[0].entity, files=files, index=m, maps=len(ranges),
                         start=start, stop=stop, space=space) for m, (start, stop) in enumerate(ranges)]
    try:
        space.create()
        with task_session(executor, workers, ray_address):
            mapped = run_tasks(map_pieces, map_tasks, executor=executor, workers=workers, ray_address=ray_address)
            by_file: list[list[Piece]] = [[] for _ in outputs]
            for pieces in mapped:  # in map order, so each file's pieces are too
                for piece in pieces:
                    by_file[piece.shard].append(piece)
            reduces = [ReduceTask(output=out, space=space, pieces=tuple(by_file[out.shard])) for out in outputs]
            results = run_tasks(reduce_shard, reduces, executor=executor, workers=workers, ray_address=ray_address,
                                on_result=on_result)
    except BaseException:
        with contextlib.suppress(Exception):  # the build's own error is the one to report
            space.clear()
        raise
    space.clear()
    return results


def require_contract_schema(schema: pa.Schema, contract: FeatureContract,
                             extra_fields: tuple[pa.Field, ...] = ()) -> None:
    expected = pa.schema([*contract.arrow_schema(), *extra_fields])
    if not schema.equals(expected):
        want = [f"{f.name}:{f.type}" for f in expected]
        got = [f"{f.name}:{f.type}" for f in schema]
        raise BuildError(f"source schema does not follow the feature contract: expected {want}, got {got}")


def _write_durably(path: Path, data: bytes) -> None:
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
