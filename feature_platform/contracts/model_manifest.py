"""Model manifest spec v1 and the training manifest: what a model was trained on, and how.

The model manifest links a model to the exact dataset (by manifest digest) and feature build it
was trained on and to its ONNX bytes (by sha256); promotion, rollback, rerun and lineage re-verify
every one of those links. The committed JSON Schema is generated from these models
(`fp contracts schema --write`); a test fails when they drift.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from feature_platform.contracts.canonical import digest
from feature_platform.contracts.manifest import (
    GitHash,
    ManifestError,
    SafeId,
    Sha256Hex,
    UtcTimestamp,
    schema_config,
    schema_text,
    validation_message,
)
from feature_platform.contracts.safe_read import InputError, read_json, read_yaml

MODEL_MANIFEST_NAME = "model_manifest.json"
TRAINING_MANIFEST_NAME = "training_manifest.yaml"
MODEL_SCHEMA_PATH = Path(__file__).parent / "schemas" / "model_manifest.v1.schema.json"
MODEL_SCHEMA_ID = "https://feature-platform.dev/schemas/model_manifest.v1.schema.json"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


_Model = TypeVar("_Model", bound=_Strict)


class ArtifactFile(_Strict):
    path: str = Field(min_length=1, description="relative POSIX path inside the model directory")
    sha256: Sha256Hex
    bytes: int = Field(ge=0)


class OnnxArtifact(ArtifactFile):
    opset: int = Field(gt=0)
    parity_tolerance: float = Field(gt=0, description="max |onnx - native| probability allowed at export")
    parity_max_abs_diff: float = Field(ge=0, description="measured at export on the validation split")


class ReferenceBatch(ArtifactFile):
    """Rows and the probabilities the model gave them at training time, replayed on rollback."""

    rows: int = Field(ge=0)


class FeatureBuildRef(_Strict):
    path: str | None = None
    sha256: Sha256Hex | None = None
    feast_repo_sha: str | None = None


class ModelManifest(_Strict):
    model_config = schema_config("feature_platform model manifest, spec v1", MODEL_SCHEMA_ID)

    spec_version: Literal["1"]
    model_id: SafeId
    model_key: SafeId
    training_id: SafeId
    created_at: UtcTimestamp
    algorithm: str = Field(min_length=1, description="e.g. sklearn.HistGradientBoostingClassifier")
    dataset_id: SafeId
    dataset_version: SafeId
    dataset_manifest_digest: Sha256Hex = Field(description="sha256 of the dataset manifest's canonical JSON")
    dataset_manifest_path: str = Field(min_length=1, description="where the dataset manifest was at training")
    feature_order: list[str] = Field(min_length=1)
    label_column: str
    label_classes: list[int] = Field(min_length=2)
    onnx: OnnxArtifact
    reference: ReferenceBatch
    hyperparameters: dict[str, JsonValue]
    hyperparameters_sha256: Sha256Hex
    hyperparam_profile: str | None
    seed: int = Field(ge=0)
    code_git_sha: GitHash
    feature_build: FeatureBuildRef | None
    market_snapshot: str | None = Field(description="coingecko_snapshot: the market data the run saw")
    metrics: dict[str, float]
    mlflow_run_id: str | None

    def digest(self) -> str:
        return digest(self.model_dump(mode="json"))

    def dumps(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, indent=2, allow_nan=False) + "\n"


class TrainingManifest(_Strict):
    """``training_manifest.yaml``: everything a rerun locks to reproduce the training."""

    spec_version: Literal["1"]
    training_id: SafeId
    model_key: SafeId
    created_at: UtcTimestamp
    dataset_manifest_path: str
    dataset_manifest_digest: Sha256Hex
    dataset_version: SafeId
    feature_repo_ref: str | None
    feature_build_sha256: Sha256Hex | None
    hyperparameters: dict[str, JsonValue]
    hyperparameters_sha256: Sha256Hex
    hyperparam_profile: str | None
    seed: int = Field(ge=0)
    schedule: Literal["adhoc", "backfill"]
    code_git_sha: str
    config_sha256: dict[str, Sha256Hex] = Field(description="sha256 of each config file that shaped the run")
    library_versions: dict[str, str]
    image_digests: dict[str, str] = Field(description="container image per step; 'local' outside containers")
    market_snapshot: str | None


def load_model_manifest(path: Path) -> ModelManifest:
    """``model_manifest.json`` (or the model directory holding it), read bounded and parsed strictly."""
    path = path / MODEL_MANIFEST_NAME if path.is_dir() else path
    return _load(ModelManifest, read_json, path)


def load_training_manifest(path: Path) -> TrainingManifest:
    """``training_manifest.yaml``, read bounded (no aliases, no duplicate keys) and parsed strictly."""
    return _load(TrainingManifest, read_yaml, path)


def _load(model: type[_Model], read: Callable[[Path], Any], path: Path) -> _Model:
    """``model`` from the file at ``path``: an unreadable file or a failed validation is a ManifestError."""
    try:
        return model.model_validate(read(path))
    except InputError as exc:
        raise ManifestError(str(exc)) from None
    except ValidationError as exc:
        raise ManifestError(validation_message(exc, str(path))) from None


def hyperparameters_sha256(hyperparameters: dict[str, Any]) -> str:
    return digest(hyperparameters)


def model_json_schema() -> dict[str, Any]:
    return ModelManifest.model_json_schema(mode="validation")


def model_json_schema_text() -> str:
    return schema_text(model_json_schema())
