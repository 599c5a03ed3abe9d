"""Distributed point-in-time join: label and feature rows hash-partitioned by entity into shards, each shard joined
by the one DuckDB join, one data file per shard; the rows are the single-node join's, cell for cell.

"Identical" here: stable-sorted by (timestamp, entity), the concatenation of the shards equals the unsharded
training set stable-sorted the same way, cell for cell and type for type (and since the dataset is in timestamp
order, that is the unsharded file itself); with one shard the data file's sha256 is the one the single-process
build has always written.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from feature_platform.contracts.feature_contract import load_feature_contract
from feature_platform.contracts.manifest import load_manifest
from feature_platform.datasets.build import BuildResult, build_dataset
from feature_platform.datasets.definitions.farmhash import fingerprint64
from feature_platform.datasets.splits import SplitSpec
from feature_platform.datasets.verify import sha256_file, verify_dataset
from feature_platform.features import shards as shards_module
from feature_platform.features.build import CREATED_COLUMN, FeatureBuild, OutputFile, build_features, feature_build_path
from feature_platform.features.shards import shard_ids
from feature_platform.features.training_set import (
    PROVENANCE_FIELDS,
    TrainingSetRefused,
    _JoinedSource,
    _land,
    _ShardResult,
    audit_leakage,
    build_training_set,
    current_training_set,
    join_features,
    store_prefix,
    training_set_parameters,
    verify_training_input,
)
from feature_platform.storage.local_store import LocalObjectStore
from feature_platform.storage.s3_store import S3StoreConfig
from feature_platform.training.data import load_splits
from tests.conftest import committed_feast_repo
from tests.s3_server import FAKE_CREDENTIALS, REGION, s3_bucket_fixture, s3_server_fixture  # noqa: F401

TS = pa.timestamp("us", tz="UTC")
CREATED = datetime(2025, 6, 1, tzinfo=UTC)
SORT = [("event_timestamp", "ascending"), ("entity_id", "ascending")]


@pytest.fixture(scope="module")
def built(golden: BuildResult, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("dpit")
    repo = committed_feast_repo(root / "repo")
    build_features(repo, golden.path / "data.parquet", "v1", root / "features", None, created_at=CREATED)
    return golden.manifest_path, feature_build_path(root / "features", "v1")


@pytest.fixture(scope="module")
def hostile(built: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A feature build whose rows tie on (entity, event time) with later created times, whose newer rows are
    missing for some entities (so TTL and "no match" both happen), in a feature file of several row groups."""
    root = tmp_path_factory.mktemp("hostile")
    shutil.copytree(built[1].parent.parent.parent, root / "features")
    build_json = feature_build_path(root / "features", "v1")
    record = FeatureBuild.model_validate_json(build_json.read_bytes())
    offline = build_json.parent / "dataset_features.parquet"
    table = pq.read_table(offline)
    late = table.slice(0, 400)
    late = late.set_column(late.schema.get_field_index("ret_1d"), "ret_1d",
                           pc.add(late.column("ret_1d"), pa.scalar(1.0, pa.float32())))
    late = late.set_column(late.schema.get_field_index(CREATED_COLUMN), CREATED_COLUMN,
                           pa.array([CREATED + timedelta(days=1)] * 400, TS))
    keep = pc.invert(pc.is_in(table.column("entity_id"), pa.array([3, 5, 8, 13, 21], pa.int64())))
    # entities 3, 5, 8, 13, 21 keep only their rows older than two days before the end: later labels go stale
    end = pc.max(table.column("event_timestamp")).as_py()
    old = pc.less(table.column("event_timestamp"), pa.scalar(end - timedelta(days=40), TS))
    table = table.filter(pc.or_(keep, old))
    pq.write_table(pa.concat_tables([table, late.cast(table.schema)]), offline, row_group_size=500)
    outputs = [OutputFile(path=o.path, bytes=offline.stat().st_size, sha256=sha256_file(offline))
               if o.path.endswith("dataset_features.parquet") else o for o in record.outputs]
    build_json.write_text(record.model_copy(update={"outputs": outputs}).model_dump_json(indent=2))
    return build_json


def _rows(result: BuildResult) -> pa.Table:
    return pa.concat_tables([pq.read_table(result.path / f.path) for f in result.manifest.files])


def _sorted(table: pa.Table) -> pa.Table:
    return table.take(pc.sort_indices(table, SORT))  # pyarrow's sort_indices is stable


def _assert_identical(sharded: BuildResult, single: BuildResult) -> None:
    got, want = _rows(sharded), _rows(single)
    assert got.schema.equals(want.schema)
    assert got.num_rows == want.num_rows
    assert _sorted(got).equals(_sorted(want))
    assert _sorted(got).equals(want)  # the dataset is in timestamp order, so that is the single-node file itself
    assert sharded.manifest.splits.rows == single.manifest.splits.rows
    assert sharded.manifest.row_count == single.manifest.row_count
    s, u = training_set_parameters(sharded.manifest), training_set_parameters(single.manifest)
    assert s is not None and u is not None
    assert (s.label_rows, s.unmatched_label_rows) == (u.label_rows, u.unmatched_label_rows)


def _todays_build(dataset_manifest: Path, build_json: Path, out: Path, as_of: datetime | None) -> BuildResult:
    """The single-process composition the training set has always used: whole tables in, one join, one file."""
    contract = load_feature_contract()
    dataset = load_manifest(dataset_manifest)
    record = FeatureBuild.model_validate_json(build_json.read_bytes())
    view = record.feature_views[0]
    order = list(contract.feature_order)
    labels = pq.read_table(dataset_manifest.parent / dataset.files[0].path,
                           columns=["entity_id", "event_timestamp", contract.label.name if contract.label else ""])
    features = pq.read_table(build_json.parent.parent.parent / view.path,
                             columns=["entity_id", "event_timestamp", *order, CREATED_COLUMN])
    joined = join_features(labels, features, entity="entity_id", timestamp="event_timestamp", created=CREATED_COLUMN,
                           ttl=None if view.ttl_seconds is None else timedelta(seconds=view.ttl_seconds),
                           feature_names=order, as_of=as_of)
    matched = joined.filter(pc.is_valid(joined.column("feature_event_timestamp")))
    schema = pa.schema([*contract.arrow_schema(), *PROVENANCE_FIELDS])
    return build_dataset(_JoinedSource(matched.select(schema.names).cast(schema), {}), out, "golden_ds-training",
                         dataset_version="v1", extra_fields=PROVENANCE_FIELDS)


@pytest.mark.parametrize("as_of", [None, CREATED + timedelta(hours=1)])
def test_one_shard_writes_the_bytes_the_single_process_build_always_wrote(
        built: tuple[Path, Path], hostile: Path, tmp_path: Path, as_of: datetime | None) -> None:
    for build_json in (built[1], hostile):
        result = build_training_set(built[0], build_json, tmp_path / f"ts-{build_json == hostile}", as_of=as_of)
        today = _todays_build(built[0], build_json, tmp_path / f"today-{build_json == hostile}", as_of)
        assert [f.path for f in result.manifest.files] == ["data.parquet"]
        assert result.manifest.files[0].sha256 == today.manifest.files[0].sha256
        assert "partition" not in result.manifest.source.parameters  # an unsharded record is unchanged


@pytest.mark.parametrize(("shards", "as_of"), [(2, None), (5, None), (5, CREATED + timedelta(hours=1)), (16, None)])
def test_sharded_rows_are_the_single_node_rows_cell_for_cell(built: tuple[Path, Path], hostile: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch, shards: int,
                                                             as_of: datetime | None) -> None:
    monkeypatch.setattr(shards_module, "MAP_TARGET_ROWS", 600)  # several map tasks per input file (inline)
    single = build_training_set(built[0], hostile, tmp_path / "one", as_of=as_of)
    params = training_set_parameters(single.manifest)
    assert params is not None and params.unmatched_label_rows > 0  # the hostile build leaves labels unmatched
    sharded = build_training_set(built[0], hostile, tmp_path / "many", as_of=as_of, shards=shards)
    _assert_identical(sharded, single)
    files = sharded.manifest.files
    assert [f.path for f in files] == [f"part-{s:05d}-of-{shards:05d}.parquet" for s in range(shards)]
    for s, f in enumerate(files):  # each file holds exactly its shard's entities
        entities = pq.read_table(sharded.path / f.path, columns=["entity_id"]).column("entity_id")
        assert (shard_ids(entities, shards) == s).all()
        assert pq.ParquetFile(sharded.path / f.path).metadata.num_rows == f.rows
    assert verify_dataset(sharded.manifest_path).ok and verify_training_input(sharded.manifest_path).ok
    assert audit_leakage(sharded.manifest_path).ok
    assert sharded.path != single.path  # the shard count is part of the inputs key; one shard keeps today's key
    assert current_training_set(tmp_path / "many", "golden_ds") == (sharded.manifest_path, sharded.digest)
    again = build_training_set(built[0], hostile, tmp_path / "many", as_of=as_of, shards=shards)
    assert again.digest == sharded.digest and again.seconds == 0.0  # reused, not rebuilt
    recorded = training_set_parameters(sharded.manifest)
    assert recorded is not None and recorded.partition is not None and recorded.partition.shards == shards
    assert not list((tmp_path / "many").rglob(".fp-scratch-*"))  # pieces are gone
    data = load_splits(sharded.manifest_path)  # training reads K files like one
    assert sum(s.rows for s in data.splits.values()) == sharded.manifest.row_count


def test_the_process_executor_does_not_change_the_bytes(built: tuple[Path, Path], hostile: Path,
                                                                   tmp_path: Path) -> None:
    inline = build_training_set(built[0], hostile, tmp_path / "inline", shards=3)
    process = build_training_set(built[0], hostile, tmp_path / "process", shards=3, executor="process", workers=2)
    assert [f.sha256 for f in process.manifest.files] == [f.sha256 for f in inline.manifest.files]


def test_shards_through_an_object_store_land_checked_and_leave_no_scratch(built: tuple[Path, Path], hostile: Path,
                                                                           tmp_path: Path) -> None:
    store_root = tmp_path / "store"
    local = build_training_set(built[0], hostile, tmp_path / "local", shards=4)
    stored = build_training_set(built[0], hostile, tmp_path / "via-store", shards=4, store=str(store_root))
    assert [f.sha256 for f in stored.manifest.files] == [f.sha256 for f in local.manifest.files]
    store = LocalObjectStore(store_root)
    prefix = store_prefix(stored.manifest_path)
    assert store.list() == sorted([f"{prefix}/{f.path}" for f in stored.manifest.files] + [f"{prefix}/manifest.json"])
    for f in stored.manifest.files:
        assert store.sha256(f"{prefix}/{f.path}") == f.sha256
    assert store.sha256(f"{prefix}/manifest.json") == sha256_file(stored.manifest_path)
    # one shard through the store: the same bytes as ever
    single = build_training_set(built[0], hostile, tmp_path / "one-store", store=str(store_root))
    assert single.manifest.files[0].sha256 == \
        build_training_set(built[0], hostile, tmp_path / "one").manifest.files[0].sha256


def test_a_shard_whose_stored_bytes_differ_from_the_workers_hash_is_refused(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "store")
    store.put_bytes(b"not the parquet the worker hashed", "training_sets/x/k/x-training/part-00000-of-00002.parquet")
    result = _ShardResult("part-00000-of-00002.parquet", 10, 1, "0" * 64, [1, 0, 0], 1,
                          "training_sets/x/k/x-training/part-00000-of-00002.parquet")
    staged = tmp_path / "staged"
    staged.mkdir()
    with pytest.raises(TrainingSetRefused, match="object store holds sha256"):
        _land(staged, str(tmp_path / "store"), result)


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "2", None, 4097])
def test_a_shard_count_must_be_a_real_count(built: tuple[Path, Path], tmp_path: Path, bad: Any) -> None:
    with pytest.raises(ValueError, match="shards must be an integer in"):
        build_training_set(built[0], built[1], tmp_path / "ts", shards=bad)
    assert not (tmp_path / "ts").exists()


def test_an_unknown_executor_is_refused_before_any_work(built: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="executor 'gpu'"):
        build_training_set(built[0], built[1], tmp_path / "ts", shards=2, executor="gpu")
    assert not (tmp_path / "ts").exists()


def test_shard_ids_are_farmhash_of_the_key_text_and_stable() -> None:
    keys = pa.chunked_array([pa.array([1, 2, None, 1], pa.int64()), pa.array([123456789], pa.int64())])
    got = shard_ids(keys, 7)
    want = [fingerprint64(b"1") % 7, fingerprint64(b"2") % 7, 0, fingerprint64(b"1") % 7,
            fingerprint64(b"123456789") % 7]
    assert got.tolist() == want
    assert shard_ids(pa.array(["1", "2"]), 7).tolist() == want[:2]  # the key's text: "1" is 1
    many = pa.array(np.arange(20_000, dtype=np.int64))
    counts = np.bincount(shard_ids(many, 8), minlength=8)
    assert counts.min() > 2_000  # spread, not lumped (expected 2,500 each)
    assert SplitSpec().names  # the split rule is untouched by sharding: files and splits are independent


@pytest.mark.usefixtures("s3_server")
def test_on_a_multi_node_ray_cluster_with_s3_the_bytes_are_the_inline_bytes(
        built: tuple[Path, Path], hostile: Path, tmp_path: Path, ray_cluster: str, s3_bucket: tuple[Any, str],
        s3_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    client, bucket = s3_bucket
    for name, value in {"AWS_ACCESS_KEY_ID": FAKE_CREDENTIALS["aws_access_key_id"],
                        "AWS_SECRET_ACCESS_KEY": FAKE_CREDENTIALS["aws_secret_access_key"]}.items():
        monkeypatch.setenv(name, value)
    config = S3StoreConfig(bucket=bucket, prefix="fp", endpoint_url=s3_server, region_name=REGION)
    inline = build_training_set(built[0], hostile, tmp_path / "inline", shards=3)
    # the workers get their S3 credentials the way a Ray job does: its runtime environment
    ray.init(address=ray_cluster, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}})
    try:
        on_ray = build_training_set(built[0], hostile, tmp_path / "ray", shards=3, executor="ray", store=config)
        nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    finally:
        ray.shutdown()
    assert len(nodes) == 3
    assert [f.sha256 for f in on_ray.manifest.files] == [f.sha256 for f in inline.manifest.files]
    _assert_identical(on_ray, build_training_set(built[0], hostile, tmp_path / "single"))
    prefix = f"fp/{store_prefix(on_ray.manifest_path)}"
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", []))
    assert keys == sorted([f"{prefix}/{f.path}" for f in on_ray.manifest.files] + [f"{prefix}/manifest.json"])
    assert verify_dataset(on_ray.manifest_path).ok
