"""Train the market-regime model on a verified dataset and leave a self-describing model directory.

``out_dir/<training_id>/`` is built in a staging directory beside it and renamed into place only when
complete, so a reader never sees half a model: ``model.onnx``, ``reference_predictions.parquet``,
``model_manifest.json``, ``training_manifest.yaml``, ``evaluation.json`` (+ ``backtest_equity.parquet``
on backfill). Same inputs give the same metrics and the same ONNX bytes (seeded model, fixed graph
name, single-threaded ONNX inference).
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from feature_platform.contracts.canonical import sha256_file
from feature_platform.contracts.feature_contract import contract_path
from feature_platform.contracts.model_manifest import (
    MODEL_MANIFEST_NAME,
    TRAINING_MANIFEST_NAME,
    FeatureBuildRef,
    ModelManifest,
    OnnxArtifact,
    ReferenceBatch,
    TrainingManifest,
    hyperparameters_sha256,
)
from feature_platform.contracts.paths import require_safe_id
from feature_platform.contracts.provenance import git_hash, utc_now, utc_timestamp
from feature_platform.contracts.safe_read import read_json
from feature_platform.storage.publish import publish_dir, staging_dir
from feature_platform.training.artifacts import (
    EQUITY_NAME,
    EVALUATION_NAME,
    ONNX_NAME,
    REFERENCE_NAME,
    dump_training_manifest,
)
from feature_platform.training.data import TrainingData, TrainingRefused, load_splits
from feature_platform.training.evaluate import Evaluation, Schedule, evaluate_model
from feature_platform.training.onnx_export import DEFAULT_TOLERANCE, export_onnx, onnx_predict_proba, parity
from feature_platform.training.profiles import ALGORITHM, fit_estimator, profile_sha256, resolve_hyperparameters
from feature_platform.training.remote import RemoteFit, fit_on_ray

REFERENCE_ROWS = 256
LIBRARIES = ("numpy", "pyarrow", "scikit-learn", "skl2onnx", "onnx", "onnxruntime")
CONTRACT_CONFIG_KEY = "feature_repo/feature_contract.yaml"


class TrainingExistsError(FileExistsError):
    """``out_dir/<training_id>`` already exists; nothing was changed."""


@dataclass(frozen=True)
class TrainingResult:
    model_dir: Path
    model_manifest: ModelManifest
    training_manifest: TrainingManifest
    evaluation: Evaluation
    timings: dict[str, float] = field(default_factory=dict)  # seconds per phase; not part of any manifest
    fit_node: str = "local"  # the Ray node that ran the fit, or "local"

    @property
    def onnx_path(self) -> Path:
        return self.model_dir / ONNX_NAME

    @property
    def model_manifest_path(self) -> Path:
        return self.model_dir / MODEL_MANIFEST_NAME

    @property
    def training_manifest_path(self) -> Path:
        return self.model_dir / TRAINING_MANIFEST_NAME


def new_training_id() -> str:
    return f"train-{utc_now().strftime('%Y%m%dT%H%M%SZ')}-{os.urandom(4).hex()}"


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "missing"
    return out


def train_model(
    dataset_manifest_path: Path,
    out_dir: Path,
    *,
    model_key: str = "market_regime",
    training_id: str | None = None,
    hyperparameters: dict[str, Any] | None = None,
    profile: str | None = None,
    seed: int = 0,
    schedule: str = "adhoc",
    feature_build_path: Path | None = None,
    feature_repo_ref: str | None = None,
    market_snapshot: str | None = None,
    base_dir: Path | None = None,
    expected_dataset_digest: str | None = None,
    parity_tolerance: float = DEFAULT_TOLERANCE,
    remote: RemoteFit | None = None,
) -> TrainingResult:
    """Verify the dataset, train on its train split, export + check ONNX, evaluate, write the model dir.

    ``remote`` runs the fit (``fit_estimator``) as a Ray task on the cluster's training queue
    (``training.remote``); everything else, ONNX export included, stays here, so the model bytes are a
    local fit's.

    Raises ``TrainingRefused`` (dataset fails verification), ``HyperparameterError``, ``OnnxParityError``
    or ``TrainingExistsError``; in every case no model directory is left behind.
    """
    timings: dict[str, float] = {}
    started = time.perf_counter()
    if schedule not in ("adhoc", "backfill"):
        raise ValueError(f"schedule must be 'adhoc' or 'backfill', got {schedule!r}")
    sched = cast(Schedule, schedule)
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    require_safe_id(model_key, "model_key")
    training_id = require_safe_id(training_id or new_training_id(), "training_id")
    model_id = require_safe_id(f"{model_key}-{training_id}", "model_id")
    params, profile_name = resolve_hyperparameters(profile, hyperparameters)
    target = Path(out_dir) / training_id
    if target.exists() or target.is_symlink():
        raise TrainingExistsError(f"{target} already exists (nothing was changed)")
    feature_build = _feature_build_ref(feature_build_path)

    data = load_splits(Path(dataset_manifest_path), base_dir, expected_digest=expected_dataset_digest)
    timings["load"] = time.perf_counter() - started
    train = data.split("train")
    if train.rows == 0 or len(np.unique(train.y)) < 2:
        raise TrainingRefused([f"train split has {train.rows} rows and {len(np.unique(train.y))} classes; need 2+"])

    t = time.perf_counter()
    fit_node = "local"
    if remote is None:
        model = fit_estimator(train.X, train.y, params, seed)
    else:
        fitted = fit_on_ray(Path(dataset_manifest_path), data.manifest_digest, train.X, train.y, params, seed, remote)
        model, fit_node = fitted.model, fitted.node_id
    classes = [int(c) for c in model.classes_]
    timings["fit"] = time.perf_counter() - t

    created = utc_timestamp(utc_now())
    with staging_dir(target) as staged:
        t = time.perf_counter()
        onnx_path = staged / ONNX_NAME
        opset = export_onnx(model, len(data.feature_order), onnx_path)
        check_X = next((data.split(s).X for s in ("val", "test", "train") if s in data.splits
                        and data.split(s).rows), train.X)
        parity_diff = parity(model, onnx_path, check_X, parity_tolerance)
        timings["export_parity"] = time.perf_counter() - t

        t = time.perf_counter()
        evaluation = evaluate_model(onnx_path, data, schedule=sched, classes=classes)
        reference_rows = _write_reference(staged / REFERENCE_NAME, data, onnx_path, classes)
        (staged / EVALUATION_NAME).write_text(
            json.dumps(evaluation.to_json_dict(), sort_keys=True, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        if evaluation.equity_curve is not None:
            pq.write_table(pa.table({"equity": evaluation.equity_curve}), staged / EQUITY_NAME)
        timings["evaluate"] = time.perf_counter() - t

        config_sha = {CONTRACT_CONFIG_KEY: sha256_file(contract_path())}
        if profile_name is not None:
            config_sha[f"hyperparam_profile/{profile_name}"] = profile_sha256(profile_name)
        code_sha = git_hash()
        hp_sha = hyperparameters_sha256(params)
        manifest = ModelManifest(
            spec_version="1", model_id=model_id, model_key=model_key, training_id=training_id,
            created_at=created, algorithm=ALGORITHM, dataset_id=data.manifest.dataset_id,
            dataset_version=data.manifest.dataset_version, dataset_manifest_digest=data.manifest_digest,
            dataset_manifest_path=str(Path(dataset_manifest_path).resolve()),
            feature_order=list(data.feature_order), label_column=data.label_column, label_classes=classes,
            onnx=OnnxArtifact(path=ONNX_NAME, sha256=sha256_file(onnx_path), bytes=onnx_path.stat().st_size,
                              opset=opset, parity_tolerance=parity_tolerance, parity_max_abs_diff=parity_diff),
            reference=ReferenceBatch(path=REFERENCE_NAME, sha256=sha256_file(staged / REFERENCE_NAME),
                                     bytes=(staged / REFERENCE_NAME).stat().st_size, rows=reference_rows),
            hyperparameters=params, hyperparameters_sha256=hp_sha, hyperparam_profile=profile_name, seed=seed,
            code_git_sha=code_sha, feature_build=feature_build, market_snapshot=market_snapshot,
            metrics=evaluation.metrics, mlflow_run_id=None,
        )
        training = TrainingManifest(
            spec_version="1", training_id=training_id, model_key=model_key, created_at=created,
            dataset_manifest_path=manifest.dataset_manifest_path, dataset_manifest_digest=data.manifest_digest,
            dataset_version=data.manifest.dataset_version,
            feature_repo_ref=feature_repo_ref or (feature_build.feast_repo_sha if feature_build else None),
            feature_build_sha256=feature_build.sha256 if feature_build else None,
            hyperparameters=params, hyperparameters_sha256=hp_sha, hyperparam_profile=profile_name, seed=seed,
            schedule=sched,
            code_git_sha=code_sha, config_sha256=config_sha, library_versions=library_versions(),
            image_digests={"train": "local"}, market_snapshot=market_snapshot,
        )
        (staged / MODEL_MANIFEST_NAME).write_text(manifest.dumps(), encoding="utf-8")
        (staged / TRAINING_MANIFEST_NAME).write_text(dump_training_manifest(training), encoding="utf-8")
        publish_dir(staged, target, replace=False)
    timings["total"] = time.perf_counter() - started
    return TrainingResult(target, manifest, training, evaluation, timings, fit_node)


def _feature_build_ref(path: Path | None) -> FeatureBuildRef | None:
    if path is None:
        return None
    try:
        raw = read_json(path)
    except (OSError, ValueError) as exc:
        raise TrainingRefused([f"feature build {path} is unreadable: {exc}"]) from None
    sha = raw.get("feast_repo_sha") if isinstance(raw, dict) else None
    return FeatureBuildRef(path=str(Path(path).resolve()), sha256=sha256_file(Path(path)),
                           feast_repo_sha=sha if isinstance(sha, str) else None)


def _write_reference(path: Path, data: TrainingData, onnx_path: Path, classes: list[int]) -> int:
    """First ``REFERENCE_ROWS`` test rows (features in FEATURE_ORDER) and their ONNX probabilities."""
    split = data.split("test") if "test" in data.splits else data.split("val")
    X = split.X[:REFERENCE_ROWS]
    proba = onnx_predict_proba(onnx_path, X)
    cols: dict[str, pa.Array] = {name: pa.array(X[:, j], pa.float32()) for j, name in enumerate(data.feature_order)}
    for k, c in enumerate(classes):
        cols[f"proba_{c}"] = pa.array(proba[:, k] if len(proba) else np.zeros(0), pa.float64())
    pq.write_table(pa.table(cols), path)
    return int(X.shape[0])
