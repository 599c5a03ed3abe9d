"""Promotion: blocking checks evaluated at call time, then the ``production`` alias moves.

Dagster's blocking checks hold only inside one run (docs/ARCHITECTURE.md §7), so promotion re-verifies the
dataset and the registry's model bytes itself, every time; a failure leaves every alias as it was
and lists every failed reason, not just the first. Each move of ``production`` is journalled and
serialised as ``registry.history`` describes, so a kill or a concurrent promotion loses no event.

With ``FP_TRUST_POLICY`` set, the model and every dataset in its chain must also carry a signature by a key
the policy trusts, over the bytes they have now (``registry.signatures``); an unreadable policy refuses too.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from feature_platform.contracts.canonical import sha256_file
from feature_platform.contracts.checks import Check, CheckList
from feature_platform.contracts.model_manifest import MODEL_MANIFEST_NAME, ModelManifest
from feature_platform.contracts.provenance import utc_now, utc_timestamp
from feature_platform.features.training_set import verify_training_input
from feature_platform.registry.guardrails import Guardrails
from feature_platform.registry.history import ProductionEvent, ProductionJournal, journal_path
from feature_platform.registry.tracking import (
    PRODUCTION,
    RegistryError,
    VersionFiles,
    client,
    download_version,
    read_model_manifest,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient

HISTORY_TAG = "production_history"
HISTORY_KEEP = 100  # newest events kept in the registered-model tag (tag values are size-limited)
EVENT_TAGS = {"promote": "promoted_at", "rollback": "rolled_back_at"}
CHECK_KEYS = ("name", "passed", "expected", "actual")


SIGNATURE_CHECK = "signature"


@dataclass
class PromotionDecision(CheckList):
    """The checks a model version passes (or not) before it may become production; values as text."""

    model_name: str
    version: str
    checks: list[Check] = field(default_factory=list)
    manifest: ModelManifest | None = None
    signatures: dict[str, dict[str, Any]] = field(default_factory=dict)  # label → verdict, when a policy is set

    @property
    def signature_refused(self) -> bool:
        """A signature or trust-policy check failed: permanent, retrying cannot change it."""
        return any(not c.passed and c.name.startswith((SIGNATURE_CHECK, "trust_policy")) for c in self.checks)

    @property
    def reasons(self) -> list[str]:
        return [c.reason() for c in self.failures]

    def add(self, name: str, passed: bool, expected: Any, actual: Any, target: str | None = None,
            detail: str = "") -> bool:
        return super().add(name, passed, str(expected), str(actual), target, detail)

    def to_json_dict(self) -> dict[str, Any]:
        return {"model": self.model_name, "version": self.version, "ok": self.ok,
                "checks": [c.to_json_dict(CHECK_KEYS) for c in self.checks], "reasons": self.reasons,
                **({"signatures": self.signatures} if self.signatures else {})}


@dataclass(frozen=True)
class PromotionResult:
    promoted: bool
    previous_version: str | None
    decision: PromotionDecision

    def to_json_dict(self) -> dict[str, Any]:
        return {"promoted": self.promoted, "previous_version": self.previous_version,
                **self.decision.to_json_dict()}


def integrity_checks(decision: PromotionDecision, version: VersionFiles, run_id: str | None, *,
                     dataset_id: str | None = None) -> ModelManifest | None:
    """Checks on the downloaded version and its dataset, as they are now; returns the manifest if readable.

    The ONNX checked is the one inside the registered MLflow model; nothing here loads it.
    """
    try:
        manifest = read_model_manifest(version.files / MODEL_MANIFEST_NAME)
    except (OSError, ValueError) as exc:
        decision.add("model_manifest", False, "a valid model manifest in the registry", f"{type(exc).__name__}")
        return None
    decision.add("model_manifest", True, "a valid model manifest in the registry", "valid")
    decision.manifest = manifest
    decision.add("mlflow_run_id", manifest.mlflow_run_id == run_id, run_id, manifest.mlflow_run_id)
    for entry, path in ((manifest.onnx, version.onnx), (manifest.reference, version.files / manifest.reference.path)):
        actual = sha256_file(path) if path.is_file() else "missing"
        decision.add(f"artifact_sha256[{entry.path}]", actual == entry.sha256, entry.sha256, actual)

    ds_manifest = Path(manifest.dataset_manifest_path)
    ds_dir = ds_manifest.parent
    decision.add("dataset_dir_exists", ds_dir.is_dir(), str(ds_dir), "exists" if ds_dir.is_dir() else "missing")
    exists = ds_manifest.is_file()
    decision.add("dataset_manifest_exists", exists, str(ds_manifest), "exists" if exists else "missing")
    if exists:
        report = verify_training_input(ds_manifest)
        failed = "; ".join(c.line() for c in report.failures)
        decision.add("verify_dataset", report.ok, "PASS", "PASS" if report.ok else f"FAIL ({failed})")
        decision.add("dataset_manifest_digest", report.manifest_digest == manifest.dataset_manifest_digest,
                     manifest.dataset_manifest_digest, report.manifest_digest)
    else:
        decision.add("verify_dataset", False, "PASS", "not run: dataset manifest missing")
    if dataset_id is not None:
        decision.add("dataset_id", dataset_id == manifest.dataset_id, dataset_id, manifest.dataset_id)
    return manifest


def signature_checks(decision: PromotionDecision, version: VersionFiles | None,
                     manifest: ModelManifest | None) -> None:
    """Under ``FP_TRUST_POLICY``: the model and its datasets signed by a trusted key, bytes unchanged since."""
    from feature_platform.attest.attestation import AttestationError
    from feature_platform.attest.policy import TRUST_POLICY_ENV, load_policy, policy_path_from_env
    from feature_platform.registry.signatures import chain_verdicts

    policy_path = policy_path_from_env()
    if policy_path is None:
        return
    try:
        policy = load_policy(policy_path)
    except AttestationError as exc:
        decision.add("trust_policy", False, f"a usable trust policy ({TRUST_POLICY_ENV})", exc)
        return
    if manifest is None:
        decision.add(f"{SIGNATURE_CHECK}[model]", False, "signed by a trusted key", "not checked: no model manifest")
        return
    label = f"{decision.model_name} v{decision.version}"
    for name, verdict in chain_verdicts(policy, version, manifest, label):
        decision.signatures[name] = verdict.to_json_dict()
        decision.add(f"{SIGNATURE_CHECK}[{name}]", verdict.ok, "signed by a trusted key, bytes unchanged",
                     verdict.line())


def guardrail_checks(decision: PromotionDecision, manifest: ModelManifest | None, guardrails: Guardrails,
                     review_db: Path | None) -> None:
    """Metric policy and open review blocks; a missing metric fails (fail closed)."""
    decision.checks.extend(guardrails.check(manifest.metrics if manifest is not None else {}))
    review_check(decision, review_db, guardrails.require_unblocked)


def review_check(decision: PromotionDecision, review_db: Path | None, required: bool = True) -> None:
    if not required or review_db is None:
        return
    from feature_platform.market.review import ReviewQueue

    blocked, reasons = ReviewQueue(review_db).training_blocked()
    decision.add("review_queue_unblocked", not blocked, "no open data-gap or anomaly block",
                 "; ".join(reasons) if blocked else "none open")


def _evaluate(mc: MlflowClient, model_name: str, version: str, *, dataset_id: str | None,
              guardrails: Guardrails | None, review_db: Path | None) -> PromotionDecision:
    from mlflow.exceptions import MlflowException

    decision = PromotionDecision(model_name, str(version))
    try:
        mv = mc.get_model_version(model_name, str(version))
    except MlflowException as exc:
        decision.add("model_version", False, f"{model_name} v{version} registered", exc.message)
        return decision
    decision.add("model_version", True, f"{model_name} v{version} registered", mv.source)
    with tempfile.TemporaryDirectory(prefix="fp-promote-") as tmp:
        try:
            files = download_version(mc, model_name, str(version), Path(tmp))
        except (MlflowException, OSError, RegistryError) as exc:
            decision.add("registry_artifacts", False, "downloadable", f"{type(exc).__name__}: {exc}")
            manifest = None
        else:
            manifest = integrity_checks(decision, files, mv.run_id, dataset_id=dataset_id)
            signature_checks(decision, files, manifest)
    if guardrails is not None:
        guardrail_checks(decision, manifest, guardrails, review_db)
    return decision


def evaluate_promotion(
    model_name: str, version: str | int, *, data_root: Path, dataset_id: str | None = None,
    guardrails: Guardrails | None = None, review_db: Path | None = None,
) -> PromotionDecision:
    """Every blocking check for promoting ``version``, evaluated now against registry and disk."""
    return _evaluate(client(data_root), model_name, str(version), dataset_id=dataset_id,
                     guardrails=guardrails or Guardrails(), review_db=review_db)


def current_production(mc: MlflowClient, model_name: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(mc.get_model_version_by_alias(model_name, PRODUCTION).version)
    except MlflowException:
        return None


def production_history(data_root: Path, model_name: str) -> list[dict[str, Any]]:
    """Every applied move of ``production`` for ``model_name``, oldest first, from the journal."""
    return [e.record() for e in ProductionJournal(journal_path(data_root)).events(model_name)]


def _tag_version(mc: MlflowClient, event: ProductionEvent) -> None:
    mc.set_model_version_tag(event.model_name, event.version, EVENT_TAGS.get(event.action, f"{event.action}_at"),
                             event.at)
    mc.set_model_version_tag(event.model_name, event.version, "previous_production", event.previous or "")


def _mirror_history(mc: MlflowClient, journal: ProductionJournal, model_name: str) -> None:
    """Copy the newest applied events into the registered model's tag (for the MLflow UI; the journal rules)."""
    text = json.dumps([e.record() for e in journal.events(model_name)][-HISTORY_KEEP:], sort_keys=True)
    if mc.get_registered_model(model_name).tags.get(HISTORY_TAG) != text:
        mc.set_registered_model_tag(model_name, HISTORY_TAG, text)


def _settle(mc: MlflowClient, journal: ProductionJournal, model_name: str) -> list[str]:
    """Settle pending events (caller holds the journal lock): applied if the alias moved, else abandoned."""
    notes = []
    for event in journal.events(model_name, ("pending",)):
        now = current_production(mc, model_name)
        if now == event.version:
            _tag_version(mc, event)
            journal.settle(event.seq, "applied", utc_timestamp(utc_now()))
            notes.append(f"{model_name}: {event.action} to v{event.version} had moved production; recorded")
        else:
            journal.settle(event.seq, "abandoned", utc_timestamp(utc_now()))
            notes.append(f"{model_name}: {event.action} to v{event.version} never moved production "
                         f"(still {now or 'unset'}); abandoned")
    if notes:
        _mirror_history(mc, journal, model_name)
    return notes


def settle_pending(mc: MlflowClient, data_root: Path, model_name: str) -> list[str]:
    """Finish the record of a move a killed process left half-done; one line per event settled."""
    journal = ProductionJournal(journal_path(data_root))
    if not journal.events(model_name, ("pending",)):
        return []
    with journal.locked():
        return _settle(mc, journal, model_name)


def move_production(mc: MlflowClient, data_root: Path, model_name: str, version: str, action: str,
                    **extra: Any) -> str | None:
    """Point ``production`` at ``version`` and record the event (see ``registry.history``); returns the
    previous version. Serialised across processes, so concurrent moves each see the one before."""
    journal = ProductionJournal(journal_path(data_root))
    with journal.locked():
        _settle(mc, journal, model_name)
        previous = current_production(mc, model_name)
        at = utc_timestamp(utc_now())
        seq = journal.append(model_name, action, version, previous, at, extra)
        event = ProductionEvent(seq, model_name, action, version, previous, at, dict(extra), "pending")
        try:
            mc.set_registered_model_alias(model_name, PRODUCTION, version)
            _tag_version(mc, event)
        except BaseException:
            with contextlib.suppress(Exception):  # the next start settles it if this fails too
                _settle(mc, journal, model_name)
            raise
        journal.settle(seq, "applied", utc_timestamp(utc_now()))
        _mirror_history(mc, journal, model_name)
    return previous


def promote(
    model_name: str, version: str | int, *, data_root: Path, dataset_id: str | None = None,
    guardrails: Guardrails | None = None, review_db: Path | None = None,
) -> PromotionResult:
    """Move ``production`` to ``version`` only if every check passes now; otherwise change nothing."""
    mc = client(data_root)
    settle_pending(mc, data_root, model_name)
    decision = _evaluate(mc, model_name, str(version), dataset_id=dataset_id,
                         guardrails=guardrails or Guardrails(), review_db=review_db)
    if not decision.ok:
        return PromotionResult(False, current_production(mc, model_name), decision)
    previous = move_production(mc, data_root, model_name, str(version), "promote")
    return PromotionResult(True, previous, decision)
