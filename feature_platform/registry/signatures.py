"""Signature verdicts for a registered model and the datasets it came from, under a trust policy.

The chain: the model (its registry copy: the ONNX file of the MLflow model and the run's training files,
against the statement in ``training/attestation.intoto.jsonl``), the training set it was trained on, and
the dataset that training set was joined from (each against the attestation in its directory). The
feature build the training set joined is covered by the training set's signature: its sha256s are in
the signed manifest.
"""

from __future__ import annotations

from pathlib import Path

from feature_platform.attest.attestation import Artifact, Verdict, dataset_artifact, verify
from feature_platform.attest.policy import TrustPolicy
from feature_platform.contracts.manifest import ATTESTATION_NAME, ManifestError, load_manifest
from feature_platform.contracts.model_manifest import ModelManifest
from feature_platform.features.training_set import SOURCE_KIND as TRAINING_SET_KIND
from feature_platform.features.training_set import training_set_parameters
from feature_platform.registry.tracking import RUN_FILES, VersionFiles

MODEL, TRAINING_SET, DATASET = "model", "training_set", "dataset"


def registry_model_artifact(version: VersionFiles, manifest: ModelManifest, label: str) -> Artifact:
    """The files the registry holds for a version, by the names they had in the signed model directory."""
    files = {name: version.files / name for name in RUN_FILES}
    files[manifest.onnx.path] = version.onnx  # the logged MLflow model holds the ONNX bytes unchanged
    return Artifact("model", label, files, version.files / ATTESTATION_NAME, complete=False)


def dataset_chain(manifest_path: Path) -> list[tuple[str, Path]]:
    """(label, manifest path) of the dataset a model names and, for a training set, the dataset it joined."""
    try:
        manifest = load_manifest(manifest_path)
    except (ManifestError, OSError):
        return [(DATASET, manifest_path)]  # its verdict names what is wrong
    if manifest.source.kind != TRAINING_SET_KIND:
        return [(DATASET, manifest_path)]
    try:
        joined = training_set_parameters(manifest)
    except ValueError:
        joined = None
    chain = [(TRAINING_SET, manifest_path)]
    if joined is not None:
        chain.append((DATASET, Path(joined.dataset.manifest_path)))
    return chain


def chain_verdicts(policy: TrustPolicy, version: VersionFiles | None, manifest: ModelManifest,
                   model_label: str) -> list[tuple[str, Verdict]]:
    """A verdict for the model (when its registry files were fetched) and each dataset in its chain."""
    verdicts: list[tuple[str, Verdict]] = []
    if version is not None:
        verdicts.append((MODEL, verify(registry_model_artifact(version, manifest, model_label), policy.keys)))
    for label, path in dataset_chain(Path(manifest.dataset_manifest_path)):
        if not path.is_file():
            verdicts.append((label, Verdict("unsigned", str(path), str(path.parent / ATTESTATION_NAME),
                                            "the dataset manifest is missing")))
            continue
        verdicts.append((label, verify(dataset_artifact(path), policy.keys)))
    return verdicts
