"""Rerun a training from its ``training_manifest.yaml`` and report whether it reproduced.

The rerun locks what the manifest names: the dataset by manifest digest (re-verified now; another
digest or a failed verify is refused), the feature build by sha256, the exact hyperparameters, seed,
schedule, feature ref and market snapshot. Reproduced means same dataset digest and bit-identical
metrics; identical ONNX bytes is reported separately (it also needs the same library versions).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from feature_platform.contracts.canonical import sha256_file
from feature_platform.contracts.checks import Check, jsonable
from feature_platform.contracts.model_manifest import MODEL_MANIFEST_NAME, ModelManifest, TrainingManifest
from feature_platform.training.artifacts import read_model_manifest, read_training_manifest
from feature_platform.training.data import TrainingRefused
from feature_platform.training.train import TrainingResult, train_model


@dataclass(frozen=True)
class RerunReport:
    dataset_digest_same: bool
    metrics_identical: bool
    onnx_bytes_identical: bool
    original: ModelManifest
    rerun: ModelManifest
    differences: list[str] = field(default_factory=list)
    rerun_dir: Path | None = None

    @property
    def reproduced(self) -> bool:
        return self.dataset_digest_same and self.metrics_identical

    @property
    def checks(self) -> list[Check]:
        """The comparison as check rows (original expected, rerun actual); ONNX bytes are reported, not required."""
        o, r = self.original, self.rerun
        return [Check("dataset_manifest_digest", self.dataset_digest_same, o.dataset_manifest_digest,
                      r.dataset_manifest_digest),
                Check("metrics", self.metrics_identical, jsonable(dict(o.metrics)), jsonable(dict(r.metrics))),
                Check("onnx_sha256", self.onnx_bytes_identical, o.onnx.sha256, r.onnx.sha256,
                      detail="reported only: identical bytes also need the same library versions")]

    def to_json_dict(self) -> dict[str, object]:
        return {"dataset_digest_same": self.dataset_digest_same, "metrics_identical": self.metrics_identical,
                "onnx_bytes_identical": self.onnx_bytes_identical, "reproduced": self.reproduced,
                "original_model_id": self.original.model_id, "rerun_model_id": self.rerun.model_id,
                "differences": self.differences, "rerun_dir": None if self.rerun_dir is None else str(self.rerun_dir),
                "checks": [c.to_json_dict() for c in self.checks]}


def rerun_training(training_manifest_path: Path, out_dir: Path, *, training_id: str | None = None) -> RerunReport:
    """Retrain with everything ``training_manifest_path`` locks; raises ``TrainingRefused`` when a lock breaks."""
    training_manifest_path = Path(training_manifest_path)
    tm = read_training_manifest(training_manifest_path)
    original = read_model_manifest(training_manifest_path.parent / MODEL_MANIFEST_NAME)
    feature_build_path = _locked_feature_build(tm, original)
    result = train_model(
        Path(tm.dataset_manifest_path), out_dir, model_key=tm.model_key,
        training_id=training_id or f"{tm.training_id}-rerun-{os.urandom(4).hex()}",
        hyperparameters=dict(tm.hyperparameters), profile=tm.hyperparam_profile, seed=tm.seed,
        schedule=tm.schedule, feature_build_path=feature_build_path, feature_repo_ref=tm.feature_repo_ref,
        market_snapshot=tm.market_snapshot, expected_dataset_digest=tm.dataset_manifest_digest,
        parity_tolerance=original.onnx.parity_tolerance,
    )
    return compare(tm, original, result)


def _locked_feature_build(tm: TrainingManifest, original: ModelManifest) -> Path | None:
    if tm.feature_build_sha256 is None:
        return None
    fb = original.feature_build
    if fb is None or fb.path is None:
        raise TrainingRefused(["training manifest names a feature build sha256 but no feature build path is recorded"])
    path = Path(fb.path)
    actual = sha256_file(path) if path.is_file() else "missing"
    if actual != tm.feature_build_sha256:
        raise TrainingRefused([f"feature build {path}: expected sha256 {tm.feature_build_sha256}, got {actual}"])
    return path


def compare(tm: TrainingManifest, original: ModelManifest, result: TrainingResult) -> RerunReport:
    new, new_tm = result.model_manifest, result.training_manifest
    diffs: list[str] = []
    digest_same = new.dataset_manifest_digest == tm.dataset_manifest_digest
    if not digest_same:
        diffs.append(f"dataset digest {tm.dataset_manifest_digest} -> {new.dataset_manifest_digest}")
    for key in sorted(set(original.metrics) | set(new.metrics)):
        a, b = original.metrics.get(key), new.metrics.get(key)
        if a != b:
            diffs.append(f"metric {key}: {a!r} -> {b!r}")
    metrics_same = original.metrics == new.metrics
    onnx_same = original.onnx.sha256 == new.onnx.sha256
    if not onnx_same:
        diffs.append(f"onnx sha256 {original.onnx.sha256} -> {new.onnx.sha256}")
    if new.hyperparameters_sha256 != tm.hyperparameters_sha256:
        diffs.append(f"hyperparameters sha256 {tm.hyperparameters_sha256} -> {new.hyperparameters_sha256}")
    for what, old_map, new_map in (("library", tm.library_versions, new_tm.library_versions),
                                   ("config", tm.config_sha256, new_tm.config_sha256)):
        for key in sorted(set(old_map) | set(new_map)):
            if old_map.get(key) != new_map.get(key):
                diffs.append(f"{what} {key}: {old_map.get(key)} -> {new_map.get(key)}")
    if tm.code_git_sha != new_tm.code_git_sha:
        diffs.append(f"code git sha {tm.code_git_sha} -> {new_tm.code_git_sha}")
    return RerunReport(digest_same, metrics_same, onnx_same, original, new, diffs, result.model_dir)
