# Over 400 lines: logging a model and checking the registered copy read the same MLflow layout.
"""Log a trained model directory to MLflow and register its ONNX model as ``<model_key>``.

The ONNX file is logged with ``mlflow.onnx.log_model`` (an MLflow model: ``MLmodel``, signature,
input example), byte-for-byte, and that logged model is the registered version, so
``mlflow.pyfunc.load_model("models:/<key>@production")`` works for any MLflow user. The model and
training manifests, the evaluation and the reference batch are artifacts of the same run under
``training/``; promotion, rollback and lineage read them from there and check the ONNX inside
the MLflow model directory against the manifest's sha256 before anything loads it.

The dataset's identity is the full sha256 manifest digest. MLflow's dataset digest field holds
at most 36 characters, so the run input's digest is a 32-hex prefix; the full digest is the run
tag and input tag ``dataset_manifest_digest`` and the ``sha256`` in the input's profile.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from feature_platform.contracts.canonical import sha256_file
from feature_platform.contracts.model_manifest import (
    MODEL_MANIFEST_NAME,
    TRAINING_MANIFEST_NAME,
    ModelManifest,
    TrainingManifest,
    load_model_manifest,
    load_training_manifest,
)
from feature_platform.contracts.safe_read import read_input_bytes
from feature_platform.storage.files import write_atomic

if TYPE_CHECKING:
    from mlflow import MlflowClient

TRACKING_ENV = "MLFLOW_TRACKING_URI"
ONNX_NAME = "model.onnx"
REFERENCE_NAME = "reference_predictions.parquet"
EVALUATION_NAME = "evaluation.json"
TRAINING_ARTIFACT_DIR = "training"  # run artifacts: manifests, evaluation, reference batch, feature build
MLFLOW_MODEL_NAME = "model"  # the logged MLflow model (ONNX flavor, never a pickle): the registered source
STAGING = "staging"
PRODUCTION = "production"
MODEL_FILES = (ONNX_NAME, MODEL_MANIFEST_NAME, TRAINING_MANIFEST_NAME, EVALUATION_NAME, REFERENCE_NAME)
RUN_FILES = (MODEL_MANIFEST_NAME, TRAINING_MANIFEST_NAME, EVALUATION_NAME, REFERENCE_NAME)
INPUT_EXAMPLE_ROWS = 2
DATASET_DIGEST_CHARS = 32  # MLflow stores at most 36 characters of a dataset digest
# Same settings as training's parity and replay sessions: CPU, one thread, sequential.
ONNX_PROVIDERS = ["CPUExecutionProvider"]
ONNX_SESSION_OPTIONS = {"intra_op_num_threads": 1, "inter_op_num_threads": 1, "execution_mode": "sequential"}


class RegistryError(RuntimeError):
    """A model directory or registry entry that cannot be logged, found or trusted."""


@dataclass(frozen=True)
class VersionFiles:
    """A registered version fetched from the registry: its run's training files and its MLflow model."""

    files: Path  # model_manifest.json, training_manifest.yaml, evaluation.json, reference batch
    mlflow_model: Path  # the MLflow model directory (MLmodel, the ONNX file, signature, input example)
    onnx: Path  # the ONNX file the MLmodel's onnx flavor names, inside ``mlflow_model``


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
    # with a tracking server, MLflow prints "View run ... at: <url>" on stdout, which belongs to the CLI's result
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
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
    """The training dataset as the run's input; the full digest is in the tags and the profile (see module doc)."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import Dataset, DatasetInput, InputTag

    with warnings.catch_warnings():  # 3.17 registers the local source twice and warns about it
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
        source = resolve_dataset_source(Path(manifest.dataset_manifest_path).resolve().as_uri())
    full = manifest.dataset_manifest_digest
    profile = json.dumps({"sha256": full, "dataset_version": manifest.dataset_version,
                          "digest_note": "the digest field is MLflow's 36-character maximum cut of sha256"},
                         sort_keys=True)
    meta = MetaDataset(  # type: ignore[abstract]  # 3.17 stubs mark `profile` abstract
        source, name=manifest.dataset_id, digest=full[:DATASET_DIGEST_CHARS])._to_mlflow_entity()
    dataset = Dataset(name=meta.name, digest=meta.digest, source_type=meta.source_type, source=meta.source,
                      schema=meta.schema, profile=profile)
    tags = [InputTag("mlflow.data.context", "training"),
            InputTag("dataset_manifest_digest", full),
            InputTag("dataset_version", manifest.dataset_version)]
    mlflow_client.log_inputs(run_id, datasets=[DatasetInput(dataset, tags=tags)])


def feature_signature(onnx_model: Any, manifest: ModelManifest) -> Any:
    """The MLflow signature: a float32 matrix in the contract's ``FEATURE_ORDER`` in, the graph's outputs out.

    The input is an unnamed tensor so that a DataFrame of the feature columns (in that order) scores;
    the graph must agree with the contract and the manifest, or the model is not logged.
    """
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec
    from onnx import TensorProto
    from onnx.helper import tensor_dtype_to_np_dtype

    from feature_platform.contracts.feature_contract import contract_path, load_feature_contract
    from feature_platform.training.onnx_export import INPUT_NAME

    contract = load_feature_contract()
    order = list(contract.feature_order)
    problems = []
    if manifest.feature_order != order:
        problems.append(f"{MODEL_MANIFEST_NAME}: field feature_order: expected the contract's {order}")
    bad_types = [f"{c.name}={c.type}" for c in contract.features if c.type not in ("float32", "float64")]
    if bad_types:
        problems.append(f"{contract_path()}: field features.type: expected float32 or float64 "
                        f"(the ONNX input is float32), got {bad_types}")
    inputs = list(onnx_model.graph.input)
    dims = [d.dim_value or None for d in inputs[0].type.tensor_type.shape.dim] if len(inputs) == 1 else []
    if len(inputs) != 1 or inputs[0].name != INPUT_NAME or \
            inputs[0].type.tensor_type.elem_type != TensorProto.FLOAT or dims != [None, len(order)]:
        problems.append(f"{manifest.onnx.path}: field graph.input: expected one float tensor {INPUT_NAME!r} "
                        f"of shape [N, {len(order)}]")
    if problems:
        raise RegistryError("refusing to log: " + "; ".join(problems))
    outputs: list[ColSpec | TensorSpec] = []
    for out in onnx_model.graph.output:
        tensor = out.type.tensor_type
        shape = tuple(d.dim_value or -1 for d in tensor.shape.dim)
        outputs.append(TensorSpec(tensor_dtype_to_np_dtype(tensor.elem_type), shape, out.name))
    return ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, len(order)))]),
                          outputs=Schema(outputs))


def _input_example(model_dir: Path, manifest: ModelManifest) -> Any:
    """The first reference rows as a float32 DataFrame with the feature names as columns."""
    import pyarrow.parquet as pq

    table = pq.read_table(model_dir / manifest.reference.path, columns=manifest.feature_order)
    frame = table.slice(0, INPUT_EXAMPLE_ROWS).to_pandas()
    return frame.astype(np.float32)[manifest.feature_order]


@contextlib.contextmanager
def _process_tracking_uri(mc: MlflowClient) -> Iterator[None]:
    """``mlflow.onnx.log_model`` and the registry's resolution of ``models:/<model id>`` use the
    process-wide tracking URI, not a client's: point it at ``mc``'s store for the call, then restore it
    (and ``MLFLOW_TRACKING_URI``, which MLflow's own restore deletes when no URI had been set)."""
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    saved = os.environ.get(TRACKING_ENV)
    try:
        with _use_tracking_uri(mc.tracking_uri):
            yield
    finally:
        if saved is None:
            os.environ.pop(TRACKING_ENV, None)
        else:
            os.environ[TRACKING_ENV] = saved


def _log_onnx_model(mc: MlflowClient, run_id: str, model_dir: Path, manifest: ModelManifest) -> tuple[str, str]:
    """Log the ONNX bytes as an MLflow model of run ``run_id``; returns (``models:/<model id>``, model id).

    The bytes are re-hashed in memory and must serialise back unchanged; the logged copy is then
    fetched and hashed again, so the registry never holds bytes the manifest does not name.
    """
    import mlflow
    import mlflow.onnx
    import onnx
    import onnxruntime
    from mlflow.artifacts import download_artifacts

    onnx_bytes = read_input_bytes(model_dir / manifest.onnx.path, max_bytes=max(manifest.onnx.bytes, 1))
    if sha256_bytes(onnx_bytes) != manifest.onnx.sha256:
        raise RegistryError(f"{model_dir / manifest.onnx.path}: sha256 changed since it was checked; not logged")
    proto = onnx.load_model_from_string(onnx_bytes)
    if proto.SerializeToString() != onnx_bytes:
        raise RegistryError(f"{model_dir / manifest.onnx.path}: does not re-serialise byte-for-byte; not logged")
    signature = feature_signature(proto, manifest)
    metadata = {"feature_order": manifest.feature_order, "label_classes": manifest.label_classes,
                "onnx_sha256": manifest.onnx.sha256, "model_id": manifest.model_id,
                "training_id": manifest.training_id, "dataset_manifest_digest": manifest.dataset_manifest_digest}
    with _process_tracking_uri(mc), mlflow.start_run(run_id=run_id):  # log_model needs an active run
        info = mlflow.onnx.log_model(
            proto, name=MLFLOW_MODEL_NAME, signature=signature, input_example=_input_example(model_dir, manifest),
            save_as_external_data=False, onnx_execution_providers=ONNX_PROVIDERS,
            onnx_session_options=ONNX_SESSION_OPTIONS, metadata=metadata,
            pip_requirements=[f"onnx=={onnx.__version__}", f"onnxruntime=={onnxruntime.__version__}"])
    with tempfile.TemporaryDirectory(prefix="fp-logged-") as tmp:
        location = str(mc.get_logged_model(info.model_id).artifact_location)
        local = Path(download_artifacts(artifact_uri=location, dst_path=tmp, tracking_uri=mc.tracking_uri))
        logged = sha256_file(mlflow_model_onnx(local))
    if logged != manifest.onnx.sha256:
        raise RegistryError(f"{location}: logged ONNX sha256 {logged} != manifest {manifest.onnx.sha256}")
    return str(info.model_uri), str(info.model_id)


def mlflow_model_onnx(mlflow_model_dir: Path) -> Path:
    """The ONNX file named by the ``MLmodel`` of ``mlflow_model_dir`` (its onnx flavor's ``data``).

    ``MLmodel`` is read as bounded YAML and the path must stay inside the directory; nothing is loaded.
    """
    from feature_platform.contracts.paths import UnsafePathError, resolve_inside
    from feature_platform.contracts.safe_read import InputError, read_yaml

    mlmodel = Path(mlflow_model_dir) / "MLmodel"
    try:
        raw = read_yaml(mlmodel)
    except InputError as exc:
        raise RegistryError(f"{mlmodel}: not an MLflow model: {exc}") from None
    flavors = raw.get("flavors") if isinstance(raw, dict) else None
    onnx_flavor = flavors.get("onnx") if isinstance(flavors, dict) else None
    data = onnx_flavor.get("data") if isinstance(onnx_flavor, dict) else None
    if not isinstance(data, str):
        raise RegistryError(f"{mlmodel}: field flavors.onnx.data: expected the ONNX file's relative path")
    try:
        path = resolve_inside(Path(mlflow_model_dir), data)
    except UnsafePathError as exc:
        raise RegistryError(f"{mlmodel}: field flavors.onnx.data: {exc}") from None
    if not path.is_file():
        raise RegistryError(f"{mlmodel}: field flavors.onnx.data: {data} is missing")
    return path


def log_training(
    model_dir: Path, *, data_root: Path, feature_build_path: Path | None = None, schedule: str = "adhoc",
    signing_key: Path | None = None,
) -> LoggedModel:
    """Log one training (params, metrics, tags, artifacts, dataset input), register it, alias ``staging``.

    The run id is written back into ``model_manifest.json`` before the artifacts are logged, so the
    registry's copy names its run. With ``signing_key``, the model directory is signed after that (its
    attestation, ``attestation.intoto.jsonl``, is logged with the training files).
    """
    from mlflow.entities import Metric, Param, RunStatus

    from feature_platform.attest.attestation import load_private_key, model_artifact, sign

    key = load_private_key(signing_key) if signing_key is not None else None  # a bad key fails before any run
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
        signed = [sign(model_artifact(model_dir), key)] if key is not None else []
        for path in [*(model_dir / name for name in RUN_FILES), *signed]:
            mc.log_artifact(run_id, str(path), artifact_path=TRAINING_ARTIFACT_DIR)
        if feature_build_path is not None:
            mc.log_artifact(run_id, str(feature_build_path), artifact_path=TRAINING_ARTIFACT_DIR)
        source, model_id = _log_onnx_model(mc, run_id, model_dir, manifest)
        mc.set_terminated(run_id, RunStatus.to_string(RunStatus.FINISHED))
    except BaseException:
        mc.set_terminated(run_id, RunStatus.to_string(RunStatus.FAILED))
        raise

    ensure_registered_model(mc, manifest.model_key)
    with _process_tracking_uri(mc):
        version = mc.create_model_version(
            manifest.model_key, source=source, run_id=run_id, model_id=model_id,
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


def download_version(mlflow_client: MlflowClient, name: str, version: str, dst: Path) -> VersionFiles:
    """Fetch a registered version into ``dst``: its MLflow model (source) and its run's training files.

    Nothing is loaded: the caller checks ``onnx`` against the manifest's sha256 first.
    """
    from mlflow.artifacts import download_artifacts

    mv = mlflow_client.get_model_version(name, version)
    if mv.run_id is None:
        raise RegistryError(f"{name} v{version} has no run")
    uri = mlflow_client.get_model_version_download_uri(name, version)
    model_dir = Path(download_artifacts(artifact_uri=uri, dst_path=str(Path(dst) / "mlflow_model"),
                                        tracking_uri=mlflow_client.tracking_uri))
    files = Path(download_artifacts(run_id=mv.run_id, artifact_path=TRAINING_ARTIFACT_DIR,
                                    dst_path=str(Path(dst) / "run"), tracking_uri=mlflow_client.tracking_uri))
    return VersionFiles(files=files, mlflow_model=model_dir, onnx=mlflow_model_onnx(model_dir))
