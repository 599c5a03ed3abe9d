"""Training on the cluster: the fit runs as a Ray task requesting the ``training`` resource, on the node that
offers it, reading the training set from the object store when one is configured; the ONNX bytes are a local
fit's with the same seed."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from feature_platform.datasets.build import BuildResult
from feature_platform.datasets.verify import sha256_file
from feature_platform.features.build import build_features, feature_build_path
from feature_platform.features.training_set import build_training_set, store_prefix
from feature_platform.storage.s3_store import S3StoreConfig
from feature_platform.training.data import TrainingRefused
from feature_platform.training.remote import RemoteFit, RemoteTrainingError
from feature_platform.training.train import TrainingResult, train_model
from tests.conftest import committed_feast_repo
from tests.s3_server import FAKE_CREDENTIALS, REGION, s3_bucket_fixture, s3_server_fixture  # noqa: F401

CREATED = datetime(2025, 6, 1, tzinfo=UTC)
CREDENTIALS = {"AWS_ACCESS_KEY_ID": FAKE_CREDENTIALS["aws_access_key_id"],
               "AWS_SECRET_ACCESS_KEY": FAKE_CREDENTIALS["aws_secret_access_key"]}


@pytest.fixture(scope="module")
def training_set(golden: BuildResult, tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    """A two-shard training set of the golden dataset (the cluster's kind: several data files)."""
    root = tmp_path_factory.mktemp("ray_train")
    repo = committed_feast_repo(root / "repo")
    build_features(repo, golden.path / "data.parquet", "v1", root / "features", None, created_at=CREATED)
    return build_training_set(golden.manifest_path, feature_build_path(root / "features", "v1"),
                              root / "training_sets", shards=2)


@pytest.fixture(scope="module")
def local_fit(training_set: BuildResult, tmp_path_factory: pytest.TempPathFactory) -> TrainingResult:
    return train_model(training_set.manifest_path, tmp_path_factory.mktemp("local"), training_id="t-local",
                       profile="fast", seed=5)


def _training_node() -> str:
    import ray

    [node] = [n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("training")]
    return str(node)


def test_the_fit_runs_on_the_training_node_and_gives_the_local_onnx_bytes(
        training_set: BuildResult, local_fit: TrainingResult, ray_cluster: str, tmp_path: Path) -> None:
    import ray

    remote = train_model(training_set.manifest_path, tmp_path, training_id="t-ray", profile="fast", seed=5,
                         remote=RemoteFit(address=ray_cluster))
    assert not ray.is_initialized()  # the connection made for the fit is closed again
    ray.init(address=ray_cluster, log_to_driver=False, configure_logging=False)
    try:
        assert remote.fit_node == _training_node()
    finally:
        ray.shutdown()
    assert remote.model_manifest.onnx.sha256 == local_fit.model_manifest.onnx.sha256
    assert sha256_file(remote.onnx_path) == sha256_file(local_fit.onnx_path)
    assert remote.model_manifest.metrics == local_fit.model_manifest.metrics
    assert local_fit.fit_node == "local"


def test_with_s3_the_worker_reads_the_training_set_from_the_store(
        training_set: BuildResult, local_fit: TrainingResult, ray_cluster: str, s3_bucket: tuple[Any, str],
        s3_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    client, bucket = s3_bucket
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    config = S3StoreConfig(bucket=bucket, endpoint_url=s3_server, region_name=REGION)
    ray.init(address=ray_cluster, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": CREDENTIALS})  # how a Ray job hands its workers credentials
    try:
        remote = train_model(training_set.manifest_path, tmp_path, training_id="t-s3", profile="fast", seed=5,
                             remote=RemoteFit(address=None, store=config))
        assert remote.fit_node == _training_node()
    finally:
        ray.shutdown()
    assert remote.model_manifest.onnx.sha256 == local_fit.model_manifest.onnx.sha256
    prefix = store_prefix(training_set.manifest_path)
    stored = {o["Key"]: o["Size"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]}
    want = {f"{prefix}/{f.path}": f.bytes for f in training_set.manifest.files}
    want[f"{prefix}/manifest.json"] = training_set.manifest_path.stat().st_size
    assert stored == want


def test_a_cluster_without_the_training_queue_refuses_at_once(training_set: BuildResult, ray_cluster: str,
                                                              tmp_path: Path) -> None:
    with pytest.raises(RemoteTrainingError, match="offers no 'gpu_training' resource"):
        train_model(training_set.manifest_path, tmp_path, training_id="t-none", profile="fast", seed=5,
                    remote=RemoteFit(address=ray_cluster, resource="gpu_training"))
    assert not (tmp_path / "t-none").exists()


def test_no_address_and_no_connection_refuses(training_set: BuildResult, tmp_path: Path) -> None:
    with pytest.raises(RemoteTrainingError, match="needs a cluster address"):
        train_model(training_set.manifest_path, tmp_path, training_id="t-none", profile="fast", seed=5,
                    remote=RemoteFit(address=None))


def test_a_damaged_training_set_is_refused_before_anything_reaches_the_cluster(
        training_set: BuildResult, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "sets" / training_set.path.name
    shutil.copytree(training_set.path, copy)
    part = copy / training_set.manifest.files[1].path
    data = bytearray(part.read_bytes())
    data[64] ^= 0xFF
    part.write_bytes(bytes(data))
    with pytest.raises(TrainingRefused, match="failed verification"):
        train_model(copy / "manifest.json", tmp_path / "m", training_id="t-bad", profile="fast", seed=5,
                    remote=RemoteFit(address="127.0.0.1:1"))  # never contacted: the refusal comes first
