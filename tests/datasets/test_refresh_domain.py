"""Domain pieces of the refresh graph: snapshots, candidates, diffs and archives (no Dagster)."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from feature_platform.contracts.manifest import DatasetManifest
from feature_platform.datasets.build import BuildResult, build_dataset
from feature_platform.datasets.candidate import CandidateConfig, CandidateSource
from feature_platform.datasets.diff import diff_manifests, diff_markdown, feature_stat_deltas
from feature_platform.datasets.snapshot import (
    SnapshotError,
    load_snapshot,
    snapshot_file,
    snapshot_source,
    snapshot_synthetic,
    validate_snapshot,
)
from feature_platform.datasets.verify import sha256_file
from feature_platform.storage.archive import archive_files, sweep_archives
from feature_platform.storage.local_store import LocalObjectStore
from tests.conftest import small_source


def test_synthetic_snapshot_records_the_generator(tmp_path: Path) -> None:
    snap = snapshot_synthetic(tmp_path, "v1", rows=1_000, seed=4, batch_rows=300, entities=20)
    assert load_snapshot(tmp_path / "v1") == snap
    assert validate_snapshot(tmp_path / "v1").ok
    source = snapshot_source(tmp_path / "v1")
    assert source.source_hash() == snap.source_hash and source.expected_rows == 1_000
    with pytest.raises(Exception, match="already exists"):
        snapshot_synthetic(tmp_path, "v1", rows=1_000, seed=5)
    assert snapshot_synthetic(tmp_path, "v1", rows=1_000, seed=5, force=True).source_hash != snap.source_hash


def test_file_snapshot_hashes_while_copying_and_checks_the_sidecar(tmp_path: Path, golden: BuildResult) -> None:
    drop = tmp_path / "inbox" / "drop.parquet"
    drop.parent.mkdir()
    shutil.copy(golden.path / "data.parquet", drop)
    sha = sha256_file(drop)
    (tmp_path / "inbox" / "drop.parquet.sha256").write_text(f"{sha}  drop.parquet\n")
    snap = snapshot_file(tmp_path / "sources", "f1", drop)
    assert snap.files[0].sha256 == sha and snap.rows == golden.manifest.row_count
    assert validate_snapshot(tmp_path / "sources" / "f1").ok
    rows = sum(b.num_rows for b in snapshot_source(tmp_path / "sources" / "f1").batches())
    assert rows == golden.manifest.row_count

    (tmp_path / "inbox" / "drop.parquet.sha256").write_text("0" * 64)
    with pytest.raises(SnapshotError, match="sha256 mismatch"):
        snapshot_file(tmp_path / "sources", "f2", drop)
    assert not (tmp_path / "sources" / "f2").exists()


def test_file_snapshot_refuses_off_contract_files(tmp_path: Path, golden: BuildResult) -> None:
    table = pq.read_table(golden.path / "data.parquet").drop_columns(["ret_1m"])
    bad = tmp_path / "bad.parquet"
    pq.write_table(table, bad)
    with pytest.raises(SnapshotError, match=r"bad\.parquet: columns"):
        snapshot_file(tmp_path / "sources", "b1", bad)
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(SnapshotError, match="not a readable parquet file"):
        snapshot_file(tmp_path / "sources", "b2", tmp_path / "junk.parquet")
    assert not (tmp_path / "sources" / "b1").exists() and not (tmp_path / "sources" / "b2").exists()


def test_tampered_snapshot_fails_validation(tmp_path: Path, golden: BuildResult) -> None:
    drop = tmp_path / "d.parquet"
    shutil.copy(golden.path / "data.parquet", drop)
    snapshot_file(tmp_path / "s", "t1", drop)
    copy = tmp_path / "s" / "t1" / "source.parquet"
    data = bytearray(copy.read_bytes())
    data[100] ^= 1
    copy.write_bytes(bytes(data))
    report = validate_snapshot(tmp_path / "s" / "t1")
    assert not report.ok and {c.name for c in report.failures} == {"source_checksum"}

    snapshot_synthetic(tmp_path / "s", "t2", rows=100, seed=1)
    path = tmp_path / "s" / "t2" / "snapshot.json"
    raw = json.loads(path.read_text())
    raw["parameters"]["rows"] = 999
    path.write_text(json.dumps(raw))
    assert {c.name for c in validate_snapshot(tmp_path / "s" / "t2").failures} == {"source_checksum"}


def test_candidate_sampling_and_augmentation_are_seeded(tmp_path: Path) -> None:
    def build(name: str, config: CandidateConfig) -> BuildResult:
        return build_dataset(CandidateSource(small_source(), config), tmp_path, name, dataset_version="v1")

    same = build("same", CandidateConfig())
    assert same.manifest.row_count == 3_000
    half_a = build("half_a", CandidateConfig(sample_fraction=0.5, seed=1))
    half_b = build("half_b", CandidateConfig(sample_fraction=0.5, seed=1))
    assert 1_300 < half_a.manifest.row_count < 1_700
    assert half_a.manifest.files[0].sha256 == half_b.manifest.files[0].sha256
    assert half_a.manifest.source.parameters["candidate"]["sample_fraction"] == 0.5  # type: ignore[index]
    noisy = build("noisy", CandidateConfig(augment_noise=0.5, seed=1))
    base = pq.read_table(same.path / "data.parquet")
    jittered = pq.read_table(noisy.path / "data.parquet")
    assert base.column("entity_id").equals(jittered.column("entity_id"))
    ratio = jittered.column("vol_1d").to_numpy() / base.column("vol_1d").to_numpy()
    assert 0.4 < np.std(ratio) < 0.6
    assert jittered.column("beta_btc_1d").null_count == base.column("beta_btc_1d").null_count


@pytest.mark.parametrize("kwargs", [{"sample_fraction": 0.0}, {"sample_fraction": 1.5}, {"augment_noise": -1.0}])
def test_candidate_config_is_validated(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        CandidateConfig(**kwargs)  # type: ignore[arg-type]


def test_diff_between_versions(golden: BuildResult) -> None:
    first = diff_manifests(None, golden.manifest)
    assert first["first_version"] and first["rows"]["delta"] == golden.manifest.row_count
    raw = golden.manifest.to_json_dict()
    raw["dataset_version"] = "v2"
    raw["row_count"] = golden.manifest.row_count - 10
    raw["schema"] = [c for c in raw["schema"] if c["name"] != "corr_btc_1d"]
    raw["feature_order"] = [f for f in raw["feature_order"] if f != "corr_btc_1d"]
    raw["splits"]["rows"]["train"] -= 10
    raw["files"][0]["rows"] -= 10
    candidate = DatasetManifest.model_validate(raw)
    diff = diff_manifests(golden.manifest, candidate)
    assert diff["rows"] == {"previous": 3_000, "candidate": 2_990, "delta": -10}
    assert diff["columns_removed"] == ["corr_btc_1d"] and diff["feature_order_changed"]
    assert not diff["source_hash_changed"]
    diff["feature_stats"] = feature_stat_deltas({"ret_1m": {"mean": 0.0, "std": 1.0}},
                                                {"ret_1m": {"mean": 0.5, "std": 1.0}, "other": {"mean": 1}})
    assert diff["feature_stats"] == {"ret_1m": {"mean": 0.5, "std": 0.0}}
    text = diff_markdown(diff)
    assert "3,000 → 2,990 (-10)" in text and "corr_btc_1d" in text and "| ret_1m | +0.5 |" in text


def test_archive_and_retention_sweep(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "store")
    now = datetime(2026, 11, 25, tzinfo=UTC)
    report = tmp_path / "quality_report.json"
    report.write_text("{}")
    old = archive_files(store, "v1", "run-old", {"log.jsonl": b"{}\n"}, now=now - timedelta(days=91))
    new = archive_files(store, "v2", "run-new", {"log.jsonl": b"{}\n", "quality_report.json": report},
                        now=now - timedelta(days=89))
    assert new.files == ["log.jsonl", "quality_report.json"]
    assert store.get_bytes("archive/v2/run-new/quality_report.json") == b"{}"
    store.put_bytes(b"garbage", "archive/v3/run-x/archive.json")  # unreadable index: never deleted
    removed = sweep_archives(store, retention_days=90, now=now)
    assert removed == ["archive/v1/run-old/"]
    assert not store.exists("archive/v1/run-old/log.jsonl") and old.location.endswith("archive/v1/run-old")
    assert store.exists("archive/v2/run-new/archive.json") and store.exists("archive/v3/run-x/archive.json")
