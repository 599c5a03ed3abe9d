from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from feature_platform.contracts.feature_contract import FEATURE_ORDER
from feature_platform.datasets.build import BuildError, BuildResult, DatasetExistsError, build_dataset
from feature_platform.datasets.splits import SplitSpec
from feature_platform.datasets.synthetic import SyntheticMarketSource
from feature_platform.datasets.verify import sha256_file, verify_dataset
from feature_platform.storage.publish import PublishError, publish_dir, staging_dir
from tests.conftest import BATCH_ROWS, ROWS, small_source


def _leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name.startswith(".staging-")) if out.exists() else []


def test_manifest_records_every_contract_field(golden: BuildResult) -> None:
    m = golden.manifest
    raw = json.loads(golden.manifest_path.read_text())
    assert raw["spec_version"] == "1" and raw["dataset_id"] == "golden_ds" and raw["dataset_version"] == "v1"
    assert raw["created_at"].endswith("Z")
    assert len(raw["git_hash"]) == 40 or raw["git_hash"] == "unknown"
    assert len(raw["config_hash"]) == 64
    assert raw["source"]["kind"] == "synthetic" and raw["source"]["parameters"]["seed"] == 7
    assert len(raw["source"]["source_hash"]) == 64
    (entry,) = raw["files"]
    data = golden.path / "data.parquet"
    assert entry == {"path": "data.parquet", "format": "parquet", "bytes": data.stat().st_size, "rows": ROWS,
                     "sha256": sha256_file(data)}
    assert [c["name"] for c in raw["schema"]] == ["entity_id", "event_timestamp", *FEATURE_ORDER, "label"]
    assert raw["feature_order"] == list(FEATURE_ORDER)
    assert (raw["entity_column"], raw["timestamp_column"], raw["label_column"]) == (
        "entity_id", "event_timestamp", "label")
    assert raw["row_count"] == ROWS == sum(raw["splits"]["rows"].values())
    assert raw["splits"]["algorithm"] == "entity_hash" and raw["splits"]["key"] == "entity_id"
    assert raw["rng_seeds"]["global_seed"] == 7 and raw["rng_seeds"]["batch_rows"] == BATCH_ROWS
    assert raw["rng_seeds"]["batch_count"] == 5
    assert raw["limits"]["max_bytes"] > 0
    assert golden.digest == m.digest()


def test_split_rows_match_a_recount(golden: BuildResult) -> None:
    table = pq.read_table(golden.path / "data.parquet", columns=["entity_id"])
    spec = SplitSpec(golden.manifest.splits.fractions, golden.manifest.splits.salt)
    codes = spec.assign(table.column("entity_id").to_numpy())
    recount = {name: int((codes == i).sum()) for i, name in enumerate(spec.names)}
    assert recount == golden.manifest.splits.rows
    assert all(v > 0 for v in recount.values())


def test_row_groups_are_bounded_by_the_batch(golden: BuildResult) -> None:
    meta = pq.read_metadata(golden.path / "data.parquet")
    sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    assert sizes == [BATCH_ROWS] * 4 + [ROWS - 4 * BATCH_ROWS]


def test_writer_settings_are_applied(golden: BuildResult) -> None:
    column = pq.read_metadata(golden.path / "data.parquet").row_group(0).column(2)
    assert column.path_in_schema == "ret_1m"
    assert "BYTE_STREAM_SPLIT" in column.encodings and column.compression == "ZSTD"
    assert column.statistics is not None


def test_config_hash_tracks_the_configuration(tmp_path: Path) -> None:
    a = build_dataset(small_source(1), tmp_path, "a", dataset_version="v1")
    b = build_dataset(small_source(1), tmp_path, "b", dataset_version="v2")
    c = build_dataset(small_source(2), tmp_path, "c", dataset_version="v1")
    assert a.manifest.config_hash == b.manifest.config_hash != c.manifest.config_hash


def test_source_date_epoch_makes_the_manifest_digest_reproducible(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")
    one = build_dataset(small_source(), tmp_path / "one", "ds")
    two = build_dataset(small_source(), tmp_path / "two", "ds")
    assert one.manifest.created_at == "2026-01-01T00:00:00.000000Z"
    assert one.manifest.dataset_version == "20260101T000000Z"
    assert one.digest == two.digest


def test_existing_dataset_without_force_is_untouched(dataset: Path) -> None:
    before = {p.name: (p.stat().st_mtime_ns, sha256_file(p)) for p in dataset.iterdir()}
    with pytest.raises(DatasetExistsError, match="already exists"):
        build_dataset(small_source(99), dataset.parent, dataset.name)
    assert {p.name: (p.stat().st_mtime_ns, sha256_file(p)) for p in dataset.iterdir()} == before
    assert _leftovers(dataset.parent) == []


def test_force_replaces_only_with_a_verified_dataset(dataset: Path) -> None:
    old = verify_dataset(dataset / "manifest.json", dataset.parent)
    assert old.ok
    with pytest.raises(BuildError, match="size_limit"):
        build_dataset(small_source(99), dataset.parent, dataset.name, force=True, max_bytes=1_000)
    again = verify_dataset(dataset / "manifest.json", dataset.parent)
    assert again.ok and again.manifest_digest == old.manifest_digest
    assert _leftovers(dataset.parent) == []

    new = build_dataset(small_source(99), dataset.parent, dataset.name, force=True)
    assert new.digest != old.manifest_digest
    assert verify_dataset(dataset / "manifest.json", dataset.parent).manifest_digest == new.digest
    assert _leftovers(dataset.parent) == []


class _FailingSource:
    """A source that dies after two batches, like a lost connection mid-stream."""

    def __init__(self) -> None:
        self.inner = small_source()
        self.kind = "synthetic"

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def batches(self) -> Iterator[pa.RecordBatch]:
        yield self.inner.batch(0)
        yield self.inner.batch(1)
        raise ConnectionError("source went away")


def test_error_mid_stream_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(ConnectionError):
        build_dataset(_FailingSource(), tmp_path, "broken")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_source_off_contract_is_refused_before_writing(tmp_path: Path) -> None:
    source = small_source()
    bad_schema = source.schema.remove(source.schema.get_field_index("ret_1m"))
    source._schema = bad_schema  # type: ignore[attr-defined]
    with pytest.raises(BuildError, match="does not follow the feature contract"):
        build_dataset(source, tmp_path, "off_contract")
    assert list(tmp_path.iterdir()) == []


def test_progress_is_reported(tmp_path: Path) -> None:
    seen: list[tuple[int, int | None]] = []
    build_dataset(small_source(), tmp_path, "p", progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (ROWS, ROWS) and len(seen) == 5
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_publish_refuses_a_target_that_appeared_meanwhile(tmp_path: Path) -> None:
    target = tmp_path / "ds"
    with staging_dir(target) as staged:
        (staged / "f").write_text("new")
        target.mkdir()
        (target / "f").write_text("winner")
        with pytest.raises(PublishError, match="already exists"):
            publish_dir(staged, target, replace=False)
    assert (target / "f").read_text() == "winner"
    assert _leftovers(tmp_path) == []


def _cli(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "feature_platform.cli", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_killed_build_leaves_no_dataset_and_is_reclaimed(tmp_path: Path) -> None:
    proc = _cli("dataset", "build", "--out-dir", str(tmp_path), "--dataset-id", "big", "--source", "synthetic",
                "--rows", "20000000", "--batch-rows", "50000", "--seed", "1")
    deadline = time.monotonic() + 60
    while not (_leftovers(tmp_path) and any((tmp_path / s / "big").glob("*")
                                              for s in _leftovers(tmp_path))):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "big").exists()
    stale = _leftovers(tmp_path)
    assert stale  # the crashed build's staging area, not a dataset
    result = build_dataset(small_source(), tmp_path, "big")
    assert verify_dataset(result.manifest_path, tmp_path).ok
    assert _leftovers(tmp_path) == []


def test_concurrent_builds_publish_exactly_one(tmp_path: Path) -> None:
    args = ["dataset", "build", "--out-dir", str(tmp_path), "--dataset-id", "race", "--source", "synthetic",
            "--rows", "20000"]
    procs = [_cli(*args, "--seed", str(seed)) for seed in (1, 2)]
    codes = sorted(p.wait() for p in procs)
    assert codes == [0, 1]
    assert verify_dataset(tmp_path / "race" / "manifest.json", tmp_path).ok
    assert _leftovers(tmp_path) == []


def test_bounded_memory_source_is_consumed_lazily(tmp_path: Path) -> None:
    """The builder pulls batches one at a time: it never holds the whole stream."""
    source = SyntheticMarketSource(4_000, 5, batch_rows=1_000, entities=50)
    live: list[int] = []
    produced = 0

    def batches() -> Iterator[pa.RecordBatch]:
        nonlocal produced
        for i in range(source.batch_count):
            produced += 1
            live.append(produced)
            yield source.batch(i)

    source.batches = batches  # type: ignore[method-assign]
    seen: list[int] = []
    build_dataset(source, tmp_path, "lazy", progress=lambda done, total: seen.append(produced))
    assert seen == [1, 2, 3, 4]  # batch i is written before batch i+1 is generated


@pytest.mark.parametrize("bad_id", ["../x", "/abs", "a/b", "..", "", "x\x00y"])
def test_unsafe_dataset_id_is_refused_before_touching_disk(tmp_path: Path, bad_id: str) -> None:
    with pytest.raises(ValueError, match="dataset_id"):
        build_dataset(small_source(), tmp_path / "out", bad_id)
    assert not (tmp_path / "out").exists()
    assert os.listdir(tmp_path) == []


def test_write_errors_surface_in_the_writer(tmp_path: Path) -> None:
    """A failing disk write on the worker thread is raised to the caller, never swallowed."""
    from feature_platform.datasets.parquet_writer import _HashingSink

    fd = os.open("/dev/full", os.O_WRONLY)
    try:
        sink = _HashingSink(fd)
        sink.write(b"x" * 1024)
        with pytest.raises(OSError) as info:
            for _ in range(100):  # the worker fails on the first block; a later write or finish raises
                sink.write(b"y" * 1024)
            sink.finish()
        assert info.value.errno == 28  # ENOSPC
    finally:
        os.close(fd)
