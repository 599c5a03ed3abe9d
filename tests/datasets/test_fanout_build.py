"""The sharded build's fan-out on local executors: group tasks each read the whole source once and write their
files through open writers; the files are byte for byte those of map/reduce and of the reference batch sequence
(the files=1 build's row groups filtered per file), for any file count, worker count and local executor."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from feature_platform.datasets.build import (
    MAX_OPEN_WRITERS,
    BuildResult,
    build_dataset,
    fan_out_groups,
    sharded_write,
)
from feature_platform.datasets.executors import TaskError
from feature_platform.datasets.parquet_writer import ParquetFileWriter, write_parquet
from feature_platform.datasets.sharding import shard_batches, split_batch
from feature_platform.datasets.shuffle import PIECES
from feature_platform.datasets.source import TableSource
from feature_platform.datasets.synthetic import SyntheticMarketSource
from tests.datasets.test_mapreduce_build import _Counting, _Sequential

EPOCH = "1767225600"
ENTITY = "entity_id"


def _source(rows: int = 1_200, batch_rows: int = 150, entities: int = 60) -> SyntheticMarketSource:
    return SyntheticMarketSource(rows, 5, batch_rows=batch_rows, entities=entities)


def _build(source: TableSource, out: Path, *, files: int, **kwargs: Any) -> BuildResult:
    return build_dataset(source, out, "fo_ds", dataset_version="v1", files=files, **kwargs)


def _shas(result: BuildResult) -> list[tuple[int, str]]:
    return [(f.rows, f.sha256) for f in result.manifest.files]


def _from_one_file(source: TableSource, files: int, folder: Path) -> list[tuple[int, str]]:
    """The reference: the files=1 build's row groups (the source's batches), filtered per file and written."""
    one = _build(source, folder / "one", files=1, executor="inline")
    data = pq.ParquetFile(one.path / "data.parquet")
    groups = [data.read_row_group(i).to_batches()[0] for i in range(data.num_row_groups)]
    assert [b.num_rows for b in groups] == [b.num_rows for b in source.batches()]
    out = []
    for k in range(files):
        written = write_parquet(folder / f"ref-{k}.parquet", source.schema, shard_batches(groups, ENTITY, k, files))
        out.append((written.rows, written.sha256))
    return out


@pytest.mark.parametrize(("files", "entities"), [(2, 60), (3, 60), (8, 5)])  # 5 entities over 8 files: empty ones
def test_fan_out_is_map_reduce_is_the_one_file_reference(files: int, entities: int, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    source = _source(entities=entities)
    expected = _from_one_file(source, files, tmp_path / "reference")
    runs = {(executor, workers, maps): _build(source, tmp_path / f"{executor}-{workers}-{maps}", files=files,
                                              executor=executor, workers=workers, maps=maps)
            for executor, workers, maps in [("inline", 1, None), ("inline", 3, None), ("process", 1, None),
                                            ("process", 2, None), ("process", 3, None), ("inline", 1, 3),
                                            ("process", 2, 2)]}
    for run in runs.values():
        assert _shas(run) == expected
        assert run.report.ok and run.manifest.row_count == source.rows
    assert len({r.digest for r in runs.values()}) == 1  # fan-out and map/reduce manifests are identical
    if entities < files:
        assert any(f.rows == 0 for f in runs["process", 2, None].manifest.files)


def test_many_files_use_more_groups_than_workers_and_keep_the_bytes(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    source = _source(600, 100, 80)
    assert fan_out_groups(40, 2) == 3  # 40 files at most 16 per task: three tasks on two workers
    fanned = _build(source, tmp_path / "fan", files=40, executor="process", workers=2)
    reduced = _build(source, tmp_path / "mr", files=40, executor="inline", maps=2)
    assert _shas(fanned) == _shas(reduced) == _from_one_file(source, 40, tmp_path / "reference")
    assert fanned.digest == reduced.digest
    assert sum(f.rows == 0 for f in fanned.manifest.files) > 0  # 80 entities over 40 files leave some empty


@pytest.mark.parametrize(("files", "reads"), [(8, 1), (16, 1), (17, 2), (40, 3)])
def test_inline_fan_out_reads_the_source_once_per_group(files: int, reads: int, tmp_path: Path) -> None:
    sequential = _Sequential(_source(600, 100, 80))
    built = _build(sequential, tmp_path / "out", files=files, executor="inline")
    assert sequential.reads == reads  # one group inline, more only past MAX_OPEN_WRITERS files
    assert _shas(built) == _from_one_file(_source(600, 100, 80), files, tmp_path / "reference")


def test_group_count_and_files_per_group() -> None:
    assert [fan_out_groups(k, w) for k, w in [(2, 1), (2, 2), (3, 2), (8, 3), (2, 8), (16, 1), (17, 1), (40, 2)]] \
        == [1, 2, 2, 3, 2, 1, 2, 3]
    for files in range(1, 200):
        for workers in range(1, 9):
            groups = fan_out_groups(files, workers)
            assert 1 <= groups <= files and -(-files // groups) <= MAX_OPEN_WRITERS


def test_strategy_is_fan_out_only_on_local_executors_without_maps() -> None:
    assert sharded_write("inline", None) == sharded_write("process", None) == "fan-out"
    assert sharded_write("ray", None) == sharded_write("process", 2) == sharded_write("inline", 1) == "map/reduce"


def test_fan_out_writes_no_pieces_and_reports_each_file(tmp_path: Path) -> None:
    out = tmp_path / "out"
    seen: list[tuple[int, int | None, bool]] = []

    def progress(done: int, total: int | None) -> None:
        seen.append((done, total, any(out.glob(f".staging-*/{PIECES}"))))

    built = _build(_source(), out, files=3, executor="process", workers=2, progress=progress)
    assert len(seen) == 3 and not any(pieces for *_, pieces in seen)
    assert [d for d, *_ in seen] == sorted(d for d, *_ in seen) and seen[-1][:2] == (1_200, 1_200)
    assert sorted(p.name for p in out.iterdir()) == ["fo_ds"]
    assert len(list(built.path.iterdir())) == 4


@pytest.mark.parametrize(("executor", "fail_at"), [("inline", 0), ("inline", 7), ("process", 4)])
def test_failed_fan_out_publishes_nothing(executor: str, fail_at: int, tmp_path: Path) -> None:
    source = _Counting(1_200, 5, batch_rows=150, entities=60, fail_at=fail_at)
    with pytest.raises(TaskError, match=f"source went away at batch {fail_at}"):
        _build(source, tmp_path, files=3, executor=executor, workers=2)
    assert list(tmp_path.iterdir()) == []


class _Renamed(SyntheticMarketSource):
    """Batch 3 arrives with a renamed column (a source that changed under the build)."""

    def batch(self, index: int) -> pa.RecordBatch:
        batch = super().batch(index)
        return batch.rename_columns([*batch.schema.names[:-1], "surprise"]) if index == 3 else batch


def test_batch_with_another_schema_fails_the_fan_out_naming_it(tmp_path: Path) -> None:
    threads = threading.active_count()
    with pytest.raises(TaskError, match="source batch 3: schema differs from the dataset schema") as info:
        _build(_Renamed(1_200, 5, batch_rows=150, entities=60), tmp_path, files=3, executor="inline")
    assert "surprise" in str(info.value)
    assert list(tmp_path.iterdir()) == []
    assert threading.active_count() == threads  # every open writer's hashing thread stopped


def test_split_batch_for_some_files_is_those_files_of_the_full_split() -> None:
    batch = _source(2_000, 2_000, 30).batch(0)
    for files, shards in [(2, [1]), (7, [0, 3, 6]), (64, [5, 17, 63]), (3, [])]:
        full = split_batch(batch, ENTITY, files)
        assert [p.to_pydict() for p in split_batch(batch, ENTITY, files, shards)] == \
            [full[k].to_pydict() for k in shards]
    for bad in [[3, 1], [1, 1], [7], [-1]]:
        with pytest.raises(ValueError, match="shards must be distinct file indices below 7 in ascending order"):
            split_batch(batch, ENTITY, 7, bad)


def test_push_writer_is_write_parquet(tmp_path: Path) -> None:
    source = _source()
    batches = list(shard_batches(source.batches(), ENTITY, 1, 3))
    pulled = write_parquet(tmp_path / "pulled.parquet", source.schema, batches)
    with ParquetFileWriter(tmp_path / "pushed.parquet", source.schema) as writer:
        for batch in batches:
            writer.write(batch)
            writer.write(batch.slice(0, 0))  # empty batches are left out
        pushed = writer.close()
    assert (pushed.rows, pushed.row_groups, pushed.bytes, pushed.sha256) == \
        (pulled.rows, pulled.row_groups, pulled.bytes, pulled.sha256)
    assert (tmp_path / "pushed.parquet").read_bytes() == (tmp_path / "pulled.parquet").read_bytes()
    with pytest.raises(FileExistsError):
        ParquetFileWriter(tmp_path / "pushed.parquet", source.schema)
    threads = threading.active_count()
    with pytest.raises(ValueError, match=r"half\.parquet: batch 1 schema differs"), \
            ParquetFileWriter(tmp_path / "half.parquet", source.schema) as writer:
        writer.write(batches[0])
        writer.write(batches[1].rename_columns([f"c{i}" for i in range(batches[1].num_columns)]))
    assert threading.active_count() == threads
