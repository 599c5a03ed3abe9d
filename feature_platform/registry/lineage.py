"""Lineage: model version → training run → model manifest → training set (digest, file sha256s) →
feature build (``feature_build.json`` and its offline files, sha256) → dataset manifest digest → data file
sha256s → source hash, every link re-verified now (nothing is taken from a cache or a tag alone).

With ``FP_TRUST_POLICY`` set, each link also names the signed artifact that vouches for the value it checks
(the model, the training set, the dataset: the check's ``target``) and that artifact's signature verdict; a
signature that does not verify breaks the lineage like any other link.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from feature_platform.contracts.canonical import digest, sha256_file
from feature_platform.contracts.checks import Check, CheckList
from feature_platform.contracts.data_root import DataRoot
from feature_platform.contracts.manifest import DatasetManifest, ManifestError, load_manifest
from feature_platform.contracts.model_manifest import MODEL_MANIFEST_NAME, TRAINING_MANIFEST_NAME, ModelManifest
from feature_platform.contracts.paths import UnsafePathError, resolve_inside
from feature_platform.contracts.safe_read import read_json
from feature_platform.features.training_set import SOURCE_KIND as TRAINING_SET_KIND
from feature_platform.features.training_set import TrainingSetParameters, training_set_parameters
from feature_platform.registry.signatures import DATASET, MODEL, TRAINING_SET, chain_verdicts
from feature_platform.registry.tracking import RegistryError, client, download_version, read_model_manifest

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from feature_platform.attest.attestation import Verdict

SNAPSHOT_NAME = "snapshot.json"


@dataclass
class LineageReport(CheckList):
    """Each link from the registered model back to its source data, as a check; values as text."""

    model_name: str
    version: str | None
    checks: list[Check] = field(default_factory=list)
    section: str = MODEL  # the signed artifact that covers the links being added now
    policy: bool = False
    signatures: dict[str, str] = field(default_factory=dict)  # artifact → "verified" or why not

    @property
    def links(self) -> list[Check]:
        return self.checks

    @property
    def broken(self) -> list[Check]:
        return self.failures

    def link(self, name: str, expected: object, actual: object, ok: bool) -> bool:
        """One link: what the record says, what is there now, and whether they agree."""
        return self.add(name, ok, str(expected), str(actual), self.section)

    def sign(self, verdicts: dict[str, Verdict]) -> None:
        """Mark each link with its artifact's verdict; a signature that fails (or is absent) breaks the chain."""
        self.policy = True
        for label, verdict in verdicts.items():
            self.add(f"signature[{label}]", verdict.ok, "signed by a trusted key, bytes unchanged",
                     verdict.detail if verdict.ok else verdict.line(), label)
        self.signatures = {label: _signature(verdict) for label, verdict in verdicts.items()}

    def signature(self, check: Check) -> str | None:
        """The verdict of the artifact covering ``check`` (None without a policy)."""
        return self.signatures.get(check.target or "", "not checked") if self.policy else None

    def to_json_dict(self) -> dict[str, Any]:
        return {"model": self.model_name, "version": self.version, "ok": self.ok, "signed": self.policy,
                "links": [{**c.to_json_dict(("name", "expected", "actual")), "ok": c.passed,
                           "artifact": c.target or "", "signature": self.signature(c)} for c in self.checks]}

    def render(self) -> str:
        head = f"lineage {self.model_name} v{self.version or '?'}: {'OK' if self.ok else 'BROKEN'}"
        if self.policy:
            signed = all(self.signature(link) == "verified" for link in self.links)
            head += f"; signatures {'verified on every link' if signed else 'NOT verified on every link'}"
        lines = [head]
        for link in self.links:
            verdict = self.signature(link)
            sig = "" if verdict is None else f"  [{link.target} signature: {verdict}]"
            if link.passed:
                lines.append(f"  ok    {link.name}: {link.actual}{sig}")
            else:
                lines.append(f"  FAIL  {link.name}: expected {link.expected}, actual {link.actual}{sig}")
        return "\n".join(lines)


def _signature(verdict: Verdict | None) -> str:
    if verdict is None:
        return "not checked"
    return "verified" if verdict.ok else f"{verdict.outcome.replace('_', ' ')}"


def _resolve_version(mc: MlflowClient, report: LineageReport, version: str | None, alias: str | None) -> str | None:
    from mlflow.exceptions import MlflowException

    if (version is None) == (alias is None):
        raise ValueError("give exactly one of version or alias")
    try:
        if alias is not None:
            mv = mc.get_model_version_by_alias(report.model_name, alias)
        else:
            mv = mc.get_model_version(report.model_name, str(version))
    except MlflowException as exc:
        report.link("model_version", f"{report.model_name} {alias or 'v' + str(version)}", exc.message, False)
        return None
    report.version = str(mv.version)
    report.link("model_version", f"{report.model_name} {alias or 'v' + str(version)}", f"v{mv.version} ← {mv.source}",
               True)
    return str(mv.version)


def _run_links(mc: MlflowClient, report: LineageReport, run_id: str | None, manifest: ModelManifest,
               model_dir: Path) -> None:
    from mlflow.exceptions import MlflowException

    if run_id is None:
        report.link("training_run", "a run id on the model version", "none", False)
        return
    try:
        run = mc.get_run(run_id)
    except MlflowException as exc:
        report.link("training_run", run_id, exc.message, False)
        return
    report.link("training_run", f"{run_id} FINISHED", f"{run_id} {run.info.status}", run.info.status == "FINISHED")
    report.link("model_manifest.mlflow_run_id", run_id, manifest.mlflow_run_id, manifest.mlflow_run_id == run_id)
    tags = run.data.tags
    for tag, value in (("training_id", manifest.training_id),
                       ("dataset_manifest_digest", manifest.dataset_manifest_digest),
                       ("onnx_sha256", manifest.onnx.sha256)):
        report.link(f"run_tag[{tag}]", value, tags.get(tag, "missing"), tags.get(tag) == value)
    training = model_dir / TRAINING_MANIFEST_NAME
    actual = sha256_file(training) if training.is_file() else "missing"
    report.link("run_tag[training_manifest_sha]", tags.get("training_manifest_sha", "missing"), actual,
               tags.get("training_manifest_sha") == actual)


def _dataset_links(report: LineageReport, path: Path, expected_digest: str, data_root: Path) -> None:
    """The dataset at ``path`` has ``expected_digest`` and its files their sha256s; then what it came from
    (a training set: its feature build and its dataset, recursively)."""
    try:
        dataset = load_manifest(path)
    except (OSError, ValueError, ManifestError) as exc:
        report.link("dataset_manifest_digest", expected_digest, f"unreadable {path}: {type(exc).__name__}", False)
        return
    label = TRAINING_SET if dataset.source.kind == TRAINING_SET_KIND else DATASET
    report.section = label
    actual = dataset.digest()
    report.link(f"{label}_manifest_digest", expected_digest, f"{actual} ({path})", actual == expected_digest)
    for entry in dataset.files:
        try:
            file_path = resolve_inside(path.parent, entry.path)
            sha = sha256_file(file_path) if file_path.is_file() else "missing"
        except UnsafePathError as exc:
            sha = f"unsafe path: {exc}"
        prefix = "" if label == "dataset" else f"{label}."
        report.link(f"{prefix}data_file_sha256[{entry.path}]", entry.sha256, sha, sha == entry.sha256)
    try:
        joined = training_set_parameters(dataset)
    except ValueError as exc:
        report.link("training_set.join", "recorded join parameters", str(exc), False)
        return
    if joined is None:
        _source_links(report, dataset, data_root)
        return
    _feature_build_links(report, joined)
    _dataset_links(report, Path(joined.dataset.manifest_path), joined.dataset.manifest_digest, data_root)


def _feature_build_links(report: LineageReport, joined: TrainingSetParameters) -> None:
    """training set → feature_build.json (sha256) → the offline feature files it joined (sha256)."""
    build_path = Path(joined.feature_build.path)
    sha = sha256_file(build_path) if build_path.is_file() else "missing"
    report.link("feature_build_sha256", joined.feature_build.sha256, f"{sha} ({build_path})",
               sha == joined.feature_build.sha256)
    out_dir = build_path.parent.parent.parent  # <out_dir>/offline/<version>/feature_build.json
    for view in joined.feature_views:
        try:
            file_path = resolve_inside(out_dir, view.path)
            actual = sha256_file(file_path) if file_path.is_file() else "missing"
        except UnsafePathError as exc:
            actual = f"unsafe path: {exc}"
        report.link(f"feature_view_sha256[{view.name}]", view.sha256, actual, actual == view.sha256)


def _source_links(report: LineageReport, dataset: DatasetManifest, data_root: Path) -> None:
    """Recompute the source hash where the source is reproducible (synthetic parameters, snapshot files)."""
    recorded = dataset.source.source_hash
    if dataset.source.kind == "synthetic":
        # a candidate (sampled/augmented) keeps its input's hash: the generator parameters without it
        generator = {k: v for k, v in dataset.source.parameters.items() if k != "candidate"}
        actual = digest(generator)
        report.link("source_hash", recorded, f"{actual} (from generator parameters)", actual == recorded)
    else:
        report.link("source_hash", recorded, f"{recorded} (recorded; {dataset.source.kind} source)", True)
    snap_path = DataRoot(Path(data_root)).source_dir(dataset.dataset_version) / SNAPSHOT_NAME
    if not snap_path.is_file():
        return
    try:
        snap = read_json(snap_path)
        snap_hash = snap["source_hash"]
        files = snap.get("files", [])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        report.link("snapshot", str(snap_path), f"unreadable: {type(exc).__name__}", False)
        return
    report.link("snapshot.source_hash", recorded, snap_hash, snap_hash == recorded)
    for entry in files:
        try:
            file_path = resolve_inside(snap_path.parent, entry["path"])
            sha = sha256_file(file_path) if file_path.is_file() else "missing"
        except (UnsafePathError, KeyError, TypeError) as exc:
            sha = f"unusable entry: {exc}"
        report.link(f"snapshot_file_sha256[{entry.get('path')}]", entry.get("sha256"), sha, sha == entry.get("sha256"))


def lineage(model_name: str, *, version: str | int | None = None, alias: str | None = None,
            data_root: Path) -> LineageReport:
    """Walk and re-verify the chain for one version (by number or alias); ``ok`` only if every link holds."""
    from mlflow.exceptions import MlflowException

    from feature_platform.attest.policy import load_policy, policy_path_from_env

    policy_path = policy_path_from_env()
    policy = load_policy(policy_path) if policy_path is not None else None  # unusable policy: an input error
    mc = client(data_root)
    report = LineageReport(model_name, None if version is None else str(version))
    resolved = _resolve_version(mc, report, None if version is None else str(version), alias)
    if resolved is None:
        return report
    mv = mc.get_model_version(model_name, resolved)
    with tempfile.TemporaryDirectory(prefix="fp-lineage-") as tmp:
        try:
            files = download_version(mc, model_name, resolved, Path(tmp))
            manifest = read_model_manifest(files.files / MODEL_MANIFEST_NAME)
        except (MlflowException, OSError, ValueError, RegistryError) as exc:
            report.link("model_manifest", "a valid model manifest in the registry", f"{type(exc).__name__}", False)
            return report
        report.link("model_manifest", "valid", f"{manifest.model_id} (training {manifest.training_id})", True)
        sha = sha256_file(files.onnx) if files.onnx.is_file() else "missing"
        report.link("onnx_sha256", manifest.onnx.sha256, f"{sha} ({files.onnx.relative_to(Path(tmp))})",
                   sha == manifest.onnx.sha256)
        _run_links(mc, report, mv.run_id, manifest, files.files)
        verdicts = dict(chain_verdicts(policy, files, manifest, f"{model_name} v{resolved}")) if policy else {}
    _dataset_links(report, Path(manifest.dataset_manifest_path), manifest.dataset_manifest_digest, data_root)
    if policy is not None:
        report.sign(verdicts)
    return report
