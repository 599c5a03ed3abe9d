"""The sharded build as map/reduce: the source read once, the files byte for byte those of the reference batch
sequence (``shard_batches``), independent of the map count and executor; pieces verified, kept out of the
published dataset and removed afterwards, on success and on failure."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pydantic import JsonValue

from feature_platform.contracts.manifest import RngSeeds
from feature_platform.datasets.build import (
    BuildResult,
    ReduceTask,
    ShardTask,
    build_dataset,
    reduce_shard,
    require_maps,
)
from feature_platform.datasets.candidate import CandidateConfig, CandidateSource, candidate_source
from feature_platform.datasets.executors import TaskError
from feature_platform.datasets.parquet_writer import write_parquet
from feature_platform.datasets.sharding import batch_ranges, shard_batches, split_batch
from feature_platform.datasets.shuffle import PIECES, MapTask, Piece, PieceError, PieceSpace, map_pieces
from feature_platform.datasets.source import RandomAccessSource, TableSource, batch_range, known_batch_count
from feature_platform.datasets.splits import SplitSpec
from feature_platform.datasets.synthetic import SyntheticMarketSource
from feature_platform.storage.catalog import Catalog
from feature_platform.storage.local_store import LocalObjectStore
from feature_platform.storage.store_build import build_dataset_to_store

EPOCH = "1767225600"
ENTITY = "entity_id"


def _source(rows: int = 3_000, batch_rows: int = 250, entities: int = 200, seed: int = 3) -> SyntheticMarketSource:
    return SyntheticMarketSource(rows, seed, batch_rows=batch_rows, entities=entities)


class _Sequential:
    """A source without random access (a query result, a file read through): only ``batches()``."""

    def __init__(self, inner: SyntheticMarketSource) -> None:
        self.inner = inner
        self.kind = inner.kind
        self.reads = 0

    @property
    def schema(self) -> pa.Schema:
        return self.inner.schema

    @property
    def expected_rows(self) -> int | None:
        return self.inner.expected_rows

    @property
    def rng_seeds(self) -> RngSeeds | None:
        return self.inner.rng_seeds

    def parameters(self) -> dict[str, JsonValue]:
        return self.inner.parameters()

    def source_hash(self) -> str:
        return self.inner.source_hash()

    def batches(self) -> Iterator[pa.RecordBatch]:
        self.reads += 1
        yield from self.inner.batches()


class _Counting(SyntheticMarketSource):
    """Counts every batch generated (in this process), and fails at batch ``fail_at`` when set."""

    def __init__(self, *args: Any, fail_at: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.generated: list[int] = []
        self.fail_at = fail_at

    def batch(self, index: int) -> pa.RecordBatch:
        if index == self.fail_at:
            raise RuntimeError(f"source went away at batch {index}")
        self.generated.append(index)
        return super().batch(index)


def _reference_shas(source: TableSource, files: int, folder: Path) -> list[tuple[int, str]]:
    """Each file written from the reference batch sequence: the source's rows of that file, batch by batch."""
    folder.mkdir()
    out = []
    for k in range(files):
        written = write_parquet(folder / f"{k}.parquet", source.schema,
                                shard_batches(source.batches(), ENTITY, k, files))
        out.append((written.rows, written.sha256))
    return out


def _shas(result: BuildResult) -> list[tuple[int, str]]:
    return [(f.rows, f.sha256) for f in result.manifest.files]


def _build(source: TableSource, out: Path, *, files: int, **kwargs: Any) -> BuildResult:
    return build_dataset(source, out, "mr_ds", dataset_version="v1", files=files, **kwargs)


@pytest.mark.parametrize(("rows", "batch_rows", "entities", "files"), [
    (3_000, 250, 200, 3),    # 12 batches, every file in every batch
    (2_000, 97, 5, 8),       # 5 entities over 8 files: empty files, pieces missing from most maps
    (1_000, 1_000, 50, 4),   # one batch: one map whatever is asked
])
def test_files_are_the_reference_batch_sequence(rows: int, batch_rows: int, entities: int, files: int,
                                                tmp_path: Path) -> None:
    source = _source(rows, batch_rows, entities)
    expected = _reference_shas(source, files, tmp_path / "reference")
    built = _build(source, tmp_path / "out", files=files, executor="inline", maps=3)
    assert _shas(built) == expected
    assert built.manifest.row_count == rows and built.report.ok
    if entities < files:
        assert any(f.rows == 0 for f in built.manifest.files)


def test_bytes_and_digest_do_not_depend_on_maps_workers_or_executor(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    runs = [_build(_source(), tmp_path / f"{executor}-{maps}", files=3, executor=executor, workers=2, maps=maps)
            for executor, maps in [("inline", 1), ("inline", 2), ("inline", 3), ("inline", 50), ("process", 1),
                                   ("process", 2), ("process", 3), ("process", None)]]
    assert len({tuple(_shas(r)) for r in runs}) == 1
    assert len({r.digest for r in runs}) == 1
    assert len({r.manifest.config_hash for r in runs}) == 1  # the map count is no part of the config


def test_source_without_random_access_is_read_once(tmp_path: Path) -> None:
    sequential = _Sequential(_source())
    assert known_batch_count(sequential) is None and not isinstance(sequential, RandomAccessSource)
    built = _build(sequential, tmp_path / "out", files=4, executor="inline", maps=3)
    assert sequential.reads == 1  # one map over the whole source, not one read per file
    assert _shas(built) == _reference_shas(_source(), 4, tmp_path / "reference")


def test_each_batch_is_generated_once_whatever_the_file_count(tmp_path: Path) -> None:
    source = _Counting(3_000, 3, batch_rows=250, entities=200)
    _build(source, tmp_path / "out", files=8, executor="inline", maps=3)
    assert sorted(source.generated) == list(range(source.batch_count))


def test_batch_range_with_and_without_random_access() -> None:
    source = _source(1_000, 100)
    every = list(source.batches())
    for start, stop in [(0, None), (0, 10), (3, 7), (9, None), (4, 4), (8, 50), (12, None)]:
        want = [b.to_pydict() for b in every[start:stop]]
        assert [b.to_pydict() for b in batch_range(source, start, stop)] == want
        assert [b.to_pydict() for b in batch_range(_Sequential(source), start, stop)] == want
    for start, stop in [(-1, None), (5, 4)]:
        with pytest.raises(ValueError, match="not a range of batch indices"):
            list(batch_range(source, start, stop))


def test_batch_ranges_cover_every_batch_once_in_order() -> None:
    for count in [1, 2, 7, 12, 100]:
        for maps in [1, 2, 3, 8, 200]:
            ranges = batch_ranges(count, maps)
            assert len(ranges) == max(1, min(maps, count))
            assert [i for a, b in ranges for i in range(a, b)] == list(range(count))
            assert all(b > a for a, b in ranges)
    assert batch_ranges(0, 4) == [(0, 0)]


def test_split_batch_is_the_filter_of_each_file() -> None:
    batch = _source(2_000, 2_000, 30).batch(0)
    for files in [1, 2, 7, 64]:
        pieces = split_batch(batch, ENTITY, files)
        assert len(pieces) == files and sum(p.num_rows for p in pieces) == batch.num_rows
        for k, piece in enumerate(pieces):
            assert piece.equals(next(shard_batches([batch], ENTITY, k, files)))


@pytest.mark.parametrize("maps", [0, -1, True, 1.5, "2"])
def test_maps_parsed_strictly(maps: object, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="maps must be a positive integer"):
        require_maps(maps)
    with pytest.raises(ValueError, match="maps must be a positive integer"):
        _build(_source(), tmp_path, files=2, maps=maps)
    assert list(tmp_path.iterdir()) == []


# --- pieces: verified before use, never published, always removed ---

def _mapped(tmp_path: Path, files: int = 3) -> tuple[SyntheticMarketSource, PieceSpace, list[tuple[Piece, ...]]]:
    source = _source()
    space = PieceSpace(directory=str(tmp_path / PIECES))
    space.create()
    ranges = batch_ranges(source.batch_count, 2)
    mapped = [map_pieces(MapTask(source=source, entity=ENTITY, files=files, index=m, maps=2, start=a, stop=b,
                                 space=space)) for m, (a, b) in enumerate(ranges)]
    return source, space, mapped


def _reduce_task(source: SyntheticMarketSource, space: PieceSpace, mapped: list[tuple[Piece, ...]], shard: int,
                 out: Path, files: int = 3) -> ReduceTask:
    output = ShardTask(source=source, entity=ENTITY, shard=shard, files=files, path=str(out), splits=SplitSpec(),
                       splitter=None)
    return ReduceTask(output=output, space=space, pieces=tuple(p for ps in mapped for p in ps if p.shard == shard))


def test_reducer_refuses_a_damaged_piece_naming_it(tmp_path: Path) -> None:
    source, space, mapped = _mapped(tmp_path)
    task = _reduce_task(source, space, mapped, 1, tmp_path / "file1.parquet")
    victim = Path(space.where(task.pieces[1].name))
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    with pytest.raises(PieceError) as info:
        reduce_shard(task)
    message = str(info.value)
    assert str(victim) in message and "piece refused" in message and task.pieces[1].sha256 in message
    assert "\n" not in message
    gone = _reduce_task(source, space, mapped, 2, tmp_path / "file2.parquet")
    Path(space.where(gone.pieces[0].name)).unlink()
    with pytest.raises(PieceError, match=gone.pieces[0].name):
        reduce_shard(gone)


def test_reducer_refuses_a_swapped_piece_and_wrong_accounting(tmp_path: Path) -> None:
    source, space, mapped = _mapped(tmp_path)
    task = _reduce_task(source, space, mapped, 0, tmp_path / "file0.parquet")
    other = _reduce_task(source, space, mapped, 1, tmp_path / "file1.parquet")
    first, stranger = Path(space.where(task.pieces[0].name)), Path(space.where(other.pieces[0].name))
    saved = first.read_bytes()
    first.write_bytes(stranger.read_bytes())  # a valid piece, but of another file
    with pytest.raises(PieceError, match=f"{task.pieces[0].name}: piece refused"):
        reduce_shard(task)
    first.write_bytes(saved)
    miscounted = replace(task, output=replace(task.output, path=str(tmp_path / "again.parquet")),
                         pieces=(replace(task.pieces[0], rows=task.pieces[0].rows + 1), *task.pieces[1:]))
    with pytest.raises(PieceError, match="its map task recorded"):
        reduce_shard(miscounted)


def test_reducer_deletes_exactly_its_pieces(tmp_path: Path) -> None:
    source, space, mapped = _mapped(tmp_path)
    assert all(len(ps) == 3 for ps in mapped)
    result = reduce_shard(_reduce_task(source, space, mapped, 0, tmp_path / "file0.parquet"))
    assert result.rows == sum(p.rows for ps in mapped for p in ps if p.shard == 0)
    left = sorted(p.name for p in Path(space.directory or "").iterdir())
    assert left == sorted(p.name for ps in mapped for p in ps if p.shard != 0)


def test_pieces_live_beside_the_staged_dataset_and_are_gone_after(tmp_path: Path) -> None:
    out = tmp_path / "out"
    seen: list[list[str]] = []

    def progress(done: int, total: int | None) -> None:  # runs in the driver as each file lands
        seen.append(sorted(p.name for p in out.glob(f".staging-*/{PIECES}/*")))
        assert not list(out.glob("*/mr_ds/*.arrows"))  # never inside the dataset being staged

    built = _build(_source(), out, files=3, executor="inline", maps=2, progress=progress)
    assert [len(s) for s in seen] == [4, 2, 0]  # each reducer removed its file's two pieces
    assert sorted(p.name for p in built.path.iterdir()) == sorted(
        [*(f.path for f in built.manifest.files), "manifest.json"])
    assert sorted(p.name for p in out.iterdir()) == ["mr_ds"]  # no staging area, no pieces


@pytest.mark.parametrize("fail_at", [1, 10])
def test_failed_build_leaves_no_pieces_and_publishes_nothing(fail_at: int, tmp_path: Path) -> None:
    source = _Counting(3_000, 3, batch_rows=250, entities=200, fail_at=fail_at)
    with pytest.raises(TaskError, match=f"source went away at batch {fail_at}"):
        _build(source, tmp_path, files=3, executor="inline", maps=2)
    assert list(tmp_path.iterdir()) == []


# --- no shared disk: pieces in the object store ---

@dataclass(frozen=True)
class _LocalStore:
    root: str

    def __call__(self) -> LocalObjectStore:
        return LocalObjectStore(self.root)


@dataclass(frozen=True)
class _RecordingStore(_LocalStore):
    """Logs every upload's key to a file (map and reduce tasks run in other processes)."""

    log: str = ""

    def __call__(self) -> LocalObjectStore:
        store = super().__call__()
        real = store.put_file

        def put_file(local: Path, key: str) -> None:
            real(local, key)
            with open(self.log, "a", encoding="utf-8") as f:
                f.write(key + "\n")

        store.put_file = put_file  # type: ignore[method-assign]
        return store


@dataclass(frozen=True)
class _DamagingPieces(_LocalStore):
    """A store that rewrites (a bad disk, a proxy changing bytes) or loses one uploaded piece."""

    lose: bool = False

    def __call__(self) -> LocalObjectStore:
        store = super().__call__()
        real = store.put_file

        def put_file(local: Path, key: str) -> None:
            real(local, key)
            if key.endswith("piece-00001-of-00002-file-00002.arrows"):
                if self.lose:
                    store.delete(key)
                else:
                    store.put_bytes(b"not the piece the map wrote", key)

        store.put_file = put_file  # type: ignore[method-assign]
        return store


def test_store_build_keeps_pieces_in_the_store_and_sweeps_them(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    local = _build(_source(), tmp_path / "local", files=3, executor="inline")
    log = tmp_path / "uploads.log"
    factory = _RecordingStore(str(tmp_path / "store"), log=str(log))
    result = build_dataset_to_store(_source(), factory, Catalog(tmp_path / "catalog.sqlite"), "mr_ds",
                                    dataset_version="v1", files=3, executor="process", workers=2, maps=2)
    store = factory()
    prefix = result.published.prefix
    assert [(f.rows, store.sha256(f"{prefix}/{f.path}")) for f in result.manifest.files] == _shas(local)
    assert result.digest == local.digest
    uploaded = log.read_text().split()
    pieces = sorted(k for k in uploaded if k.startswith(f"{prefix}/{PIECES}/"))
    assert pieces == sorted(f"{prefix}/{PIECES}/piece-{m:05d}-of-00002-file-{k:05d}.arrows"
                            for m in range(2) for k in range(3))
    assert not [k for k in store.list() if PIECES in k]  # every piece swept before publishing


@pytest.mark.parametrize(("lose", "why"), [(False, "piece refused"), (True, "piece could not be read from the store")])
def test_store_build_refuses_a_piece_that_landed_wrong(lose: bool, why: str, tmp_path: Path) -> None:
    factory = _DamagingPieces(str(tmp_path / "store"), lose=lose)
    catalog = Catalog(tmp_path / "catalog.sqlite")
    with pytest.raises(TaskError) as info:
        build_dataset_to_store(_source(), factory, catalog, "mr_ds", dataset_version="v1", files=3,
                               executor="inline", maps=2)
    assert f"piece-00001-of-00002-file-00002.arrows: {why}" in str(info.value)
    assert factory().list() == [] and catalog.versions("mr_ds") == []


def test_one_file_reads_the_source_in_one_task_without_pieces(tmp_path: Path) -> None:
    source = _Counting(3_000, 3, batch_rows=250, entities=200)
    built = _build(source, tmp_path / "out", files=1, executor="inline")
    assert source.generated == list(range(source.batch_count))
    assert [f.path for f in built.manifest.files] == ["data.parquet"]
    assert sorted(p.name for p in built.path.iterdir()) == ["data.parquet", "manifest.json"]
    assert _shas(built) == _reference_shas(_source(), 1, tmp_path / "reference")


def test_candidate_of_a_random_access_source_splits_into_ranges(tmp_path: Path) -> None:
    config = CandidateConfig(sample_fraction=0.3, augment_noise=0.05, seed=9)
    candidate = candidate_source(_source(), config)
    assert isinstance(candidate, RandomAccessSource) and candidate.batch_count == 12
    sequential = [b.to_pydict() for b in CandidateSource(_source(), config).batches()]
    assert [candidate.batch(i).to_pydict() for i in range(12)] == sequential
    assert not isinstance(candidate_source(_Sequential(_source()), config), RandomAccessSource)
    built = _build(candidate, tmp_path / "out", files=4, executor="inline", maps=3)
    assert _shas(built) == _reference_shas(CandidateSource(_source(), config), 4, tmp_path / "reference")


def test_reducer_refuses_a_truncated_piece_by_its_size(tmp_path: Path) -> None:
    source, space, mapped = _mapped(tmp_path)
    task = _reduce_task(source, space, mapped, 0, tmp_path / "file0.parquet")
    victim = Path(space.where(task.pieces[0].name))
    victim.write_bytes(victim.read_bytes()[:-8])
    size = task.pieces[0].bytes
    with pytest.raises(PieceError, match=rf"{task.pieces[0].name}: piece refused: {size - 8} bytes, its map task "
                                         rf"wrote {size}$"):
        reduce_shard(task)


@pytest.mark.parametrize("fields", [{}, {"directory": "/x", "prefix": "p"}, {"directory": "/x", "store": object},
                                    {"store": object}, {"prefix": "p"},
                                    {"directory": "/x", "store": object, "prefix": "p"}])
def test_a_piece_space_is_a_directory_or_a_store_with_a_prefix(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="a piece space is a directory, or an object store with a key prefix"):
        PieceSpace(**fields)
    assert PieceSpace(directory="/x").where("a") == "/x/a"
    assert PieceSpace(store=object, prefix="p").where("a") == "p/a"  # type: ignore[arg-type]


def test_a_closed_piece_writer_never_closes_a_reused_descriptor(tmp_path: Path) -> None:
    from feature_platform.datasets.shuffle import _PieceWriter

    writer = _PieceWriter(tmp_path / "piece", _source().schema)
    writer.close(0, 0)
    with open(tmp_path / "other", "wb", buffering=0) as other:  # may get the writer's old descriptor number
        writer.abort()
        other.write(b"still open")
    assert (tmp_path / "other").read_bytes() == b"still open"
