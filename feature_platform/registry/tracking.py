"""Log a trained model directory to MLflow and register its ONNX model as ``<model_key>``.

The dataset's identity is the full sha256 manifest digest, set as the run tag
``dataset_manifest_digest``; MLflow's own dataset digest field holds at most 36 characters, so
the run input carries only a 32-hex prefix of it as a readable label (and the full digest as an
input tag).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from feature_platform.contracts.model_manifest import (
    MODEL_MANIFEST_NAME,
    TRAINING_MANIFEST_NAME,
    ModelManifest,
    TrainingManifest,
    load_model_manifest,
    load_training_manifest,
)
from feature_platform.contracts.safe_read import read_input_bytes
from feature_platform.datasets.verify import sha256_file
from feature_platform.storage.files import write_atomic

if TYPE_CHECKING:
    from mlflow import MlflowClient

TRACKING_ENV = "MLFLOW_TRACKING_URI"
ONNX_NAME = "model.onnx"
REFERENCE_NAME = "reference_predictions.parquet"
EVALUATION_NAME = "evaluation.json"
FEATURE_BUILD_NAME = "feature_build.json"
MODEL_ARTIFACT_DIR = "model"  # the registered version's source: ONNX + manifests, never a pickle
STAGING = "staging"
PRODUCTION = "production"
MODEL_FILES = (ONNX_NAME, MODEL_MANIFEST_NAME, TRAINING_MANIFEST_NAME, EVALUATION_NAME, REFERENCE_NAME)


class RegistryError(RuntimeError):
    """A model directory or registry entry that cannot be logged, found or trusted."""


@dataclass(frozen=True)
class LoggedModel:
    run_id: str
    experiment_id: str
    model_name: str
    version: str
    model_uri: str


def tracking_uri(data_root: Path) -> str:
    """``MLFLOW_TRACKING_URI`` when set, else a SQLite store under ``<data_root>/mlflow`` (no server)."""
    env = os.environ.get(TRACKING_ENV)
    if env:
        return env
    db = Path(data_root).resolve() / "mlflow" / "mlflow.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{db}"


def artifact_root(data_root: Path) -> str | None:
    """Where new experiments keep artifacts; ``None`` lets a tracking server decide."""
    uri = tracking_uri(data_root)
    if uri.startswith(("http://", "https://", "databricks")):
        return None
    root = Path(data_root).resolve() / "mlflow" / "artifacts"
    root.mkdir(parents=True, exist_ok=True)
    return root.as_uri()


def client(data_root: Path) -> MlflowClient:
    """A client bound to this data root's store; no process-global MLflow state is touched."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from mlflow import MlflowClient

    uri = tracking_uri(data_root)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_model_manifest(path: Path) -> ModelManifest:
    """``path`` is ``model_manifest.json`` or the directory holding it."""
    return load_model_manifest(path)


def read_training_manifest(path: Path) -> TrainingManifest:
    return load_training_manifest(path)


def set_mlflow_run_id(model_dir: Path, run_id: str) -> ModelManifest:
    """Rewrite ``model_manifest.json`` atomically with ``mlflow_run_id`` set (the only field changed)."""
    if not run_id:
        raise ValueError("run_id must be non-empty")
    path = model_dir / MODEL_MANIFEST_NAME
    current = read_model_manifest(path)
    updated = ModelManifest.model_validate({**current.model_dump(mode="json"), "mlflow_run_id": run_id})
    write_atomic(path, updated.dumps().encode("utf-8"))
    return updated


def ensure_experiment(mlflow_client: MlflowClient, name: str, data_root: Path) -> str:
    """Experiment ``name``, created with this data root's artifact location when new."""
    existing = mlflow_client.get_experiment_by_name(name)
    if existing is not None:
        return str(existing.experiment_id)
    return str(mlflow_client.create_experiment(name, artifact_location=artifact_root(data_root)))


def ensure_registered_model(mlflow_client: MlflowClient, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        mlflow_client.get_registered_model(name)
    except MlflowException:
        with contextlib.suppress(MlflowException):  # lost a race with another registrant: fine
            mlflow_client.create_registered_model(
                name, description="ONNX regime model; see model_manifest.json in each version")


def run_tags(manifest: ModelManifest, training: TrainingManifest, training_manifest_sha: str,
             schedule: str) -> dict[str, str]:
    """The reproducibility tags of the runbook; absent values are logged as empty strings."""
    feature_sha = (manifest.feature_build.feast_repo_sha if manifest.feature_build else None) \
        or training.feature_repo_ref or ""
    return {
        "model_key": manifest.model_key,
        "model_id": manifest.model_id,
        "training_id": manifest.training_id,
        "dataset_id": manifest.dataset_id,
        "dataset_version": manifest.dataset_version,
        "dataset_manifest_digest": manifest.dataset_manifest_digest,
        "feature_repo_sha": feature_sha,
        "feast_repo_sha": feature_sha,
        # the dataset_version whose Feast feature build the training set joined (the runbook's name)
        "feast_dataset_version": manifest.dataset_version if manifest.feature_build else "",
        "feature_build_sha256": (manifest.feature_build.sha256 if manifest.feature_build else None) or "",
        "training_manifest_sha": training_manifest_sha,
        "coingecko_snapshot": manifest.market_snapshot or "",
        "hyperparam_profile": manifest.hyperparam_profile or "",
        "hyperparameters_sha256": manifest.hyperparameters_sha256,
        "git_sha": manifest.code_git_sha,
        "onnx_sha256": manifest.onnx.sha256,
        "schedule": schedule,
    }


def _param(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _check_model_dir(model_dir: Path, manifest: ModelManifest, training: TrainingManifest) -> None:
    """Refuse to log a directory whose files no longer match its manifest."""
    problems = [f"{name} is missing" for name in MODEL_FILES if not (model_dir / name).is_file()]
    if not problems:
        for name, entry in ((manifest.onnx.path, manifest.onnx), (manifest.reference.path, manifest.reference)):
            actual = sha256_file(model_dir / name)
            if actual != entry.sha256:
                problems.append(f"{name}: sha256 {actual} != manifest {entry.sha256}")
    for field in ("training_id", "model_key", "dataset_manifest_digest", "hyperparameters_sha256"):
        if getattr(manifest, field) != getattr(training, field):
            problems.append(f"{field} differs between {MODEL_MANIFEST_NAME} and {TRAINING_MANIFEST_NAME}")
    if problems:
        raise RegistryError(f"{model_dir}: refusing to log: " + "; ".join(problems))


def _log_dataset_input(mlflow_client: MlflowClient, run_id: str, manifest: ModelManifest) -> None:
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, InputTag

    with warnings.catch_warnings():  # 3.17 registers the local source twice and warns about it
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
        source = resolve_dataset_source(Path(manifest.dataset_manifest_path).resolve().as_uri())
    dataset = MetaDataset(  # type: ignore[abstract]  # 3.17 stubs mark `profile` abstract
        source, name=manifest.dataset_id, digest=manifest.dataset_manifest_digest[:32])
    tags = [InputTag("mlflow.data.context", "training"),
            InputTag("dataset_manifest_digest", manifest.dataset_manifest_digest),
            InputTag("dataset_version", manifest.dataset_version)]
    mlflow_client.log_inputs(run_id, datasets=[DatasetInput(dataset._to_mlflow_entity(), tags=tags)])


def log_training(
    model_dir: Path, *, data_root: Path, feature_build_path: Path | None = None, schedule: str = "adhoc",
) -> LoggedModel:
    """Log one training (params, metrics, tags, artifacts, dataset input), register it, alias ``staging``.

    The run id is written back into ``model_manifest.json`` before the artifacts are logged, so the
    registry's copy names its run.
    """
    from mlflow.entities import Metric, Param, RunStatus

    model_dir = Path(model_dir)
    manifest = read_model_manifest(model_dir)
    training_bytes = read_input_bytes(model_dir / TRAINING_MANIFEST_NAME)
    training = read_training_manifest(model_dir / TRAINING_MANIFEST_NAME)
    _check_model_dir(model_dir, manifest, training)
    if feature_build_path is not None and not Path(feature_build_path).is_file():
        raise RegistryError(f"feature build {feature_build_path} does not exist")

    mc = client(data_root)
    experiment_id = ensure_experiment(mc, manifest.model_key, data_root)
    tags = run_tags(manifest, training, sha256_bytes(training_bytes), schedule)
    run = mc.create_run(experiment_id, run_name=manifest.training_id, tags=tags)
    run_id = run.info.run_id
    try:
        params = {**{k: _param(v) for k, v in manifest.hyperparameters.items()}, "seed": str(manifest.seed),
                  "algorithm": manifest.algorithm}
        now = int(run.info.start_time or 0)
        mc.log_batch(run_id, params=[Param(k, v) for k, v in sorted(params.items())],
                     metrics=[Metric(k, float(v), now, 0) for k, v in sorted(manifest.metrics.items())])
        _log_dataset_input(mc, run_id, manifest)
        set_mlflow_run_id(model_dir, run_id)
        for name in MODEL_FILES:
            mc.log_artifact(run_id, str(model_dir / name), artifact_path=MODEL_ARTIFACT_DIR)
        if feature_build_path is not None:
            mc.log_artifact(run_id, str(feature_build_path), artifact_path=MODEL_ARTIFACT_DIR)
        mc.set_terminated(run_id, RunStatus.to_string(RunStatus.FINISHED))
    except BaseException:
        mc.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED))
        raise

    ensure_registered_model(mc, manifest.model_key)
    source = f"{run.info.artifact_uri}/{MODEL_ARTIFACT_DIR}"
    version = mc.create_model_version(
        manifest.model_key, source=source, run_id=run_id,
        tags={"training_id": manifest.training_id, "onnx_sha256": manifest.onnx.sha256,
              "dataset_manifest_digest": manifest.dataset_manifest_digest},
        description=f"training {manifest.training_id} on {manifest.dataset_id}",
    )
    mc.set_registered_model_alias(manifest.model_key, STAGING, version.version)
    return LoggedModel(run_id=run_id, experiment_id=experiment_id, model_name=manifest.model_key,
                       version=str(version.version), model_uri=f"models:/{manifest.model_key}/{version.version}")


def describe_version(model_name: str, version: str | int, *, data_root: Path) -> dict[str, Any]:
    """The registry's view of one version (aliases, version tags, run tags), for asset metadata and the CLI."""
    mc = client(data_root)
    mv = mc.get_model_version(model_name, str(version))
    run_tags_now = mc.get_run(mv.run_id).data.tags if mv.run_id else {}
    return {"name": model_name, "version": str(mv.version), "aliases": sorted(mv.aliases), "tags": dict(mv.tags),
            "run_id": mv.run_id, "run_tags": {k: v for k, v in run_tags_now.items() if not k.startswith("mlflow.")},
            "source": mv.source}


def download_version(mlflow_client: MlflowClient, name: str, version: str, dst: Path) -> Path:
    """Fetch the registered version's files (ONNX + manifests) from its source into ``dst``."""
    from mlflow.artifacts import download_artifacts

    mv = mlflow_client.get_model_version(name, version)
    uri = mlflow_client.get_model_version_download_uri(name, version)
    local = download_artifacts(artifact_uri=uri, dst_path=str(dst), tracking_uri=mlflow_client.tracking_uri)
    if mv.run_id is None:
        raise RegistryError(f"{name} v{version} has no run")
    return Path(local)
