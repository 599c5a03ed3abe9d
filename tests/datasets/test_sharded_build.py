"""Sharded parquet datasets: K files by entity hash, the same bytes for any executor and worker count,
reproducible manifests under SOURCE_DATE_EPOCH, parallel verify."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from feature_platform.contracts.manifest import load_manifest
from feature_platform.contracts.provenance import SourceDateEpochError, source_date_epoch
from feature_platform.datasets.build import BuildError, BuildResult, build_dataset
from feature_platform.datasets.definitions.farmhash import fingerprint64
from feature_platform.datasets.sharding import data_file_name, require_files, shard_codes
from feature_platform.datasets.verify import verify_dataset
from feature_platform.storage.catalog import Catalog
from feature_platform.storage.dataset_publish import current_pointer, pointer_key, verify_published
from feature_platform.storage.local_store import LocalObjectStore
from feature_platform.storage.s3_store import S3ObjectStore
from feature_platform.storage.store_build import StoreBuildResult, build_dataset_to_store
from tests.conftest import CliResult, small_source
from tests.ray_cluster import RayTestCluster
from tests.s3_server import S3StoreFactory, s3_bucket_fixture, s3_server_fixture  # noqa: F401

EPOCH = "1767225600"  # 2026-01-01T00:00:00Z
K = 3


def _build(out: Path, name: str, *, files: int = K, executor: str = "inline", workers: int | None = None,
           force: bool = False) -> BuildResult:
    return build_dataset(small_source(), out, name, dataset_version="v1", files=files, executor=executor,  # type: ignore[arg-type]
                         workers=workers, force=force)


def _shas(result: BuildResult) -> list[tuple[str, int, str]]:
    return [(f.path, f.rows, f.sha256) for f in result.manifest.files]


@pytest.fixture(scope="module")
def sharded(tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SOURCE_DATE_EPOCH", EPOCH)
        return _build(tmp_path_factory.mktemp("sharded"), "sharded_ds")


def test_k_files_named_and_listed_in_order(sharded: BuildResult) -> None:
    names = [f.path for f in sharded.manifest.files]
    assert names == [f"data-0000{k}-of-00003.parquet" for k in range(K)]
    assert sorted(p.name for p in sharded.path.iterdir()) == sorted([*names, "manifest.json"])
    assert sharded.manifest.row_count == sum(f.rows for f in sharded.manifest.files) == 3_000
    assert all(f.rows > 0 for f in sharded.manifest.files)
    assert sharded.manifest.created_at == "2026-01-01T00:00:00.000000Z"
    assert verify_dataset(sharded.manifest_path).ok


def test_rows_go_to_the_file_of_their_entity_hash(sharded: BuildResult) -> None:
    entity = sharded.manifest.entity_column
    seen: dict[int, int] = {}
    for k, f in enumerate(sharded.manifest.files):
        for e in set(pq.read_table(sharded.path / f.path, columns=[entity]).column(entity).to_pylist()):
            assert fingerprint64(str(e).encode()) % K == k
            assert seen.setdefault(e, k) == k  # no entity in two files


def test_sharded_rows_are_the_unsharded_rows(sharded: BuildResult, golden: BuildResult) -> None:
    keys = [sharded.manifest.entity_column, sharded.manifest.timestamp_column]
    parts = pa.concat_tables([pq.read_table(sharded.path / f.path) for f in sharded.manifest.files])
    whole = pq.read_table(golden.path / "data.parquet")
    order = [(k, "ascending") for k in keys]
    assert parts.sort_by(order).equals(whole.sort_by(order))
    assert sharded.manifest.splits.rows == golden.manifest.splits.rows
    assert sharded.manifest.source == golden.manifest.source


def test_bytes_do_not_depend_on_executor_or_workers(sharded: BuildResult, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    one = _build(tmp_path, "sharded_ds", executor="process", workers=1)
    two = _build(tmp_path / "b", "sharded_ds", executor="process", workers=2)
    assert _shas(one) == _shas(two) == _shas(sharded)
    assert one.digest == two.digest == sharded.digest  # same id, version and created_at: same manifest
    rerun = _build(tmp_path, "sharded_ds", executor="process", workers=2, force=True)  # K-preserving rebuild
    assert _shas(rerun) == _shas(sharded) and rerun.digest == sharded.digest


def test_one_file_keeps_todays_layout_and_config(golden: BuildResult, tmp_path: Path) -> None:
    again = _build(tmp_path, "golden_ds", files=1, executor="process", workers=2)
    assert [f.path for f in again.manifest.files] == ["data.parquet"]
    assert _shas(again) == _shas(golden) and again.manifest.config_hash == golden.manifest.config_hash


def test_file_count_changes_config_hash(sharded: BuildResult, tmp_path: Path) -> None:
    four = _build(tmp_path, "sharded_ds", files=4)
    assert four.manifest.config_hash != sharded.manifest.config_hash and len(four.manifest.files) == 4


@pytest.mark.parametrize("files", [0, -1, True, 2.0, "2", 4097])
def test_files_parsed_strictly(files: object) -> None:
    with pytest.raises(ValueError, match="files must be an integer"):
        require_files(files)


def test_shard_codes_per_distinct_key_and_nulls_to_file_zero() -> None:
    keys = pa.array([5, None, 5, 17, 17, 3], pa.int64())
    codes = shard_codes(keys, 4).tolist()
    assert codes[1] == 0 and codes[0] == codes[2] and codes[3] == codes[4]
    assert codes == [0 if k is None else fingerprint64(str(k).encode()) % 4 for k in keys.to_pylist()]
    strings = pa.array(["a", "é", None], pa.string())
    assert shard_codes(strings, 7).tolist() == [fingerprint64(b"a") % 7, fingerprint64("é".encode()) % 7, 0]
    assert data_file_name(0, 1) == "data.parquet" and data_file_name(11, 12) == "data-00011-of-00012.parquet"


# --- SOURCE_DATE_EPOCH: strictly integer seconds ---

@pytest.mark.parametrize("value", ["", " ", "abc", "1.5", "-1", "+5", " 1", "1 ", "1e9", "١٢", "０", "0x10",
                                   "253402300800", "9" * 13])
def test_source_date_epoch_refuses_malformed(value: str) -> None:
    with pytest.raises(SourceDateEpochError, match="SOURCE_DATE_EPOCH"):
        source_date_epoch(value)


def test_source_date_epoch_bounds() -> None:
    assert source_date_epoch("0").isoformat() == "1970-01-01T00:00:00+00:00"
    assert source_date_epoch("253402300799").year == 9999


@pytest.mark.parametrize("value", ["soon", "1.0", "-5", ""])
def test_cli_build_with_bad_epoch_exits_2_in_one_line(value: str, cli: Callable[..., CliResult], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", value)
    code, out, err = cli("dataset", "build", "--out-dir", tmp_path, "--dataset-id", "x", "--source", "synthetic",
                         "--rows", "500", "--files", "2")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "SOURCE_DATE_EPOCH" in err and repr(value) in err
    assert not (tmp_path / "x").exists()


def test_cli_build_reproduces_manifest_digest(cli: Callable[..., CliResult], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    args = ["dataset", "build", "--out-dir", tmp_path, "--dataset-id", "cli_ds", "--source", "synthetic",
            "--rows", "2000", "--batch-rows", "300", "--files", "2", "--json"]
    code, out, _ = cli(*args, "--executor", "inline")
    assert code == 0, out
    first = json.loads(out)
    code, out, _ = cli(*args, "--executor", "process", "--workers", "2", "--force")
    assert code == 0
    second = json.loads(out)
    assert first["manifest_digest"] == second["manifest_digest"] and first["files"] == second["files"]
    assert first["dataset_version"] == "20260101T000000Z" and len(first["files"]) == 2
    assert second["executor"] == "process" and second["workers"] == 2


@pytest.mark.parametrize("extra", [["--files", "0"], ["--files", "2.5"], ["--files", "x"], ["--workers", "0"],
                                   ["--executor", "threads"]])
def test_cli_build_refuses_bad_parallel_options(extra: list[str], cli: Callable[..., CliResult],
                                                tmp_path: Path) -> None:
    code, out, err = cli("dataset", "build", "--out-dir", tmp_path, "--dataset-id", "x", "--source", "synthetic",
                         "--rows", "100", *extra)
    assert code == 2 and out == "" and err.strip() and not (tmp_path / "x").exists()


def test_cli_files_is_not_a_simulator_option(cli: Callable[..., CliResult], tmp_path: Path) -> None:
    code, _, err = cli("dataset", "build", "--out-dir", tmp_path, "--dataset-id", "x", "--source", "simulator",
                       "--format", "zarr", "--samples", "10", "--files", "2")
    assert code == 2 and "--files: not an option of --source simulator" in err


# --- parallel verify ---

def test_parallel_verify_same_report_and_catches_damage(sharded: BuildResult, tmp_path: Path,
                                                        cli: Callable[..., CliResult]) -> None:
    copy = tmp_path / "sharded_ds"
    shutil.copytree(sharded.path, copy)
    one = verify_dataset(copy / "manifest.json", workers=1)
    two = verify_dataset(copy / "manifest.json", workers=2)
    assert one.ok and two.to_json_dict() == one.to_json_dict()
    damaged = copy / sharded.manifest.files[1].path
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    bad = verify_dataset(copy / "manifest.json", workers=2)
    assert [(c.name, c.target) for c in bad.failures if c.name == "file_sha256"] == [
        ("file_sha256", sharded.manifest.files[1].path)]
    assert bad.to_json_dict() == verify_dataset(copy / "manifest.json").to_json_dict()
    code, out, _ = cli("dataset", "verify", "--path", copy / "manifest.json", "--workers", "2")
    assert code == 1 and "data-00001-of-00003.parquet" in out
    damaged.unlink()  # a missing file among several: reported, the others still hashed
    gone = verify_dataset(copy / "manifest.json", workers=2)
    assert ("file_exists", sharded.manifest.files[1].path) in [(c.name, c.target) for c in gone.failures]
    assert sum(c.name == "file_sha256" and c.passed for c in gone.checks) == K - 1


@pytest.mark.parametrize("workers", [0, -2, True, 1.5])
def test_verify_workers_parsed_strictly(workers: object, sharded: BuildResult) -> None:
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        verify_dataset(sharded.manifest_path, workers=workers)  # type: ignore[arg-type]


def test_manifest_of_sharded_build_loads(sharded: BuildResult, golden: BuildResult) -> None:
    m = load_manifest(sharded.manifest_path)
    assert m.digest() == sharded.digest
    entity = m.entity_column
    counts = [pc.count_distinct(pq.read_table(sharded.path / f.path, columns=[entity]).column(entity)).as_py()
              for f in m.files]
    whole = pc.count_distinct(pq.read_table(golden.path / "data.parquet", columns=[entity]).column(entity)).as_py()
    assert sum(counts) == whole  # entities partitioned: none repeated across files


# --- no shared disk: workers upload their file to the object store ---

@dataclass(frozen=True)
class _Corrupting(S3StoreFactory):
    """A store whose uploads of the second file land with other bytes (a bad disk, a proxy rewriting them)."""

    def __call__(self) -> S3ObjectStore:
        store = super().__call__()
        real = store.put_file

        def put_file(local: Path, key: str) -> None:
            real(local, key)
            if key.endswith("data-00001-of-00003.parquet"):
                store.put_bytes(b"not the bytes the worker wrote", key)

        store.put_file = put_file  # type: ignore[method-assign]
        return store


def _to_store(factory: S3StoreFactory, catalog: Catalog, **kwargs: Any) -> StoreBuildResult:
    return build_dataset_to_store(small_source(), factory, catalog, "sharded_ds", dataset_version="v1", files=K,
                                  **kwargs)


def _published_shas(store: S3ObjectStore, prefix: str, result: StoreBuildResult) -> list[tuple[str, int, str]]:
    return [(f.path, f.rows, store.sha256(f"{prefix}/{f.path}")) for f in result.manifest.files]


@pytest.mark.parametrize("executor", ["inline", "process"])
def test_build_into_s3_gives_the_local_bytes(executor: str, sharded: BuildResult, s3_bucket: tuple[Any, str],
                                             s3_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    factory = S3StoreFactory(s3_server, s3_bucket[1])
    catalog = Catalog(tmp_path / "catalog.sqlite")
    result = _to_store(factory, catalog, executor=executor, workers=2)
    store = factory()
    prefix = result.published.prefix
    assert _published_shas(store, prefix, result) == _shas(sharded)
    assert result.digest == sharded.digest and result.published.created
    assert all(c.passed for c in verify_published(store, prefix, result.manifest))
    assert current_pointer(store, "sharded_ds")["prefix"] == prefix  # type: ignore[index]
    assert [e.manifest_digest for e in catalog.versions("sharded_ds")] == [sharded.digest]
    assert sorted(store.list()) == sorted([pointer_key("sharded_ds"), *(f"{prefix}/{n}" for n in (
        *(f.path for f in result.manifest.files), "manifest.json", "dataset_manifest.yaml"))])
    again = _to_store(factory, catalog, executor="inline")  # same version, same digest: a no-op
    assert not again.published.created and again.published.prefix == prefix
    assert len(store.list()) == 1 + K + 2  # the second attempt's uploads were deleted


def test_object_that_lands_wrong_is_refused_and_nothing_published(s3_bucket: tuple[Any, str], s3_server: str,
                                                                  tmp_path: Path) -> None:
    factory = _Corrupting(s3_server, s3_bucket[1])
    catalog = Catalog(tmp_path / "catalog.sqlite")
    with pytest.raises(BuildError) as info:
        _to_store(factory, catalog, executor="inline")
    assert "uploaded object differs" in str(info.value) and "data-00001-of-00003.parquet" in str(info.value)
    assert S3StoreFactory(s3_server, s3_bucket[1])().list() == [] and catalog.versions("sharded_ds") == []


def test_ray_cluster_build_into_s3_matches_inline(ray_cluster: str, ray_test_cluster: RayTestCluster,
                                                  sharded: BuildResult, s3_bucket: tuple[Any, str], s3_server: str,
                                                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Head and two worker nodes, each task on a Ray worker writing to its node's own scratch directory and
    uploading to S3; the scratch is gone afterwards."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    factory = S3StoreFactory(s3_server, s3_bucket[1])
    result = _to_store(factory, Catalog(tmp_path / "catalog.sqlite"), executor="ray", workers=2,
                       ray_address=ray_cluster)
    assert _published_shas(factory(), result.published.prefix, result) == _shas(sharded)
    assert result.digest == sharded.digest
    assert [list(d.iterdir()) for d in ray_test_cluster.scratch_dirs.values()] == [[], [], []]
    local = build_dataset(small_source(), tmp_path, "sharded_ds", dataset_version="v1", files=K, executor="ray",
                          workers=2, ray_address=ray_cluster)  # and into a local directory, from the cluster
    assert _shas(local) == _shas(sharded)


# --- the refresh graph with a sharded dataset ---

def test_refresh_builds_profiles_and_publishes_a_sharded_dataset(defs: Any, instance: Any, root: Path,
                                                                 paths: Any) -> None:
    from feature_platform.orchestration.headless import run_refresh

    config = {"ops": {"source_snapshot": {"config": {"rows": 3_000, "batch_rows": 1_000, "seed": 11}},
                      "dataset": {"config": {"files": 2, "executor": "inline"}},
                      "quality_report": {"config": {"executor": "process", "workers": 2}}}}
    outcome = run_refresh("v-shard", instance=instance, defs=defs, run_config=config)
    assert outcome.refresh.succeeded, outcome.refresh
    manifest = load_manifest(paths.dataset_dir("v-shard") / "manifest.json")
    assert [f.path for f in manifest.files] == ["data-00000-of-00002.parquet", "data-00001-of-00002.parquet"]
    report = json.loads((paths.reports("v-shard") / "quality_report.json").read_text())
    assert report["profile"]["rows"] == 3_000 and report["profile"]["dataset"]["file_sha256"] == [
        f.sha256 for f in manifest.files]
    pointer = current_pointer(LocalObjectStore(root / "store"), paths.dataset_name)
    assert pointer is not None and pointer["dataset_version"] == "v-shard"


@pytest.mark.parametrize("extra", [["--files", "0"], ["--workers", "-1"], ["--executor", "dask"]])
def test_refresh_cli_refuses_bad_parallel_options(extra: list[str], cli: Callable[..., CliResult]) -> None:
    code, out, err = cli("refresh", "run", "--version", "never", *extra)
    assert code == 2 and out == "" and err.strip()
