"""Reading and amending the files a training run leaves in its model directory."""

from __future__ import annotations

from pathlib import Path

import yaml

from feature_platform.contracts.model_manifest import (
    ModelManifest,
    TrainingManifest,
    load_model_manifest,
    load_training_manifest,
)
from feature_platform.storage.files import write_atomic

ONNX_NAME = "model.onnx"
REFERENCE_NAME = "reference_predictions.parquet"
EVALUATION_NAME = "evaluation.json"
EQUITY_NAME = "backtest_equity.parquet"


def read_model_manifest(path: Path) -> ModelManifest:
    """``path`` is ``model_manifest.json`` or the model directory holding it."""
    return load_model_manifest(path)


def read_training_manifest(path: Path) -> TrainingManifest:
    return load_training_manifest(path)


def dump_training_manifest(manifest: TrainingManifest) -> str:
    return yaml.safe_dump(manifest.model_dump(mode="json"), sort_keys=True, allow_unicode=True)


def with_mlflow_run_id(manifest_path: Path, run_id: str) -> ModelManifest:
    """Set ``mlflow_run_id`` (the only field changed) and rewrite the manifest atomically.

    The MLflow run exists only after training has written its files, so the id is filled in later.
    """
    if not run_id:
        raise ValueError("run_id must be non-empty")
    current = read_model_manifest(manifest_path)
    updated = ModelManifest.model_validate({**current.model_dump(mode="json"), "mlflow_run_id": run_id})
    write_atomic(manifest_path, updated.dumps().encode("utf-8"))
    return updated
