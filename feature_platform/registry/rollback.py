"""Rollback: re-verify an earlier version, replay its reference batch, then move ``production`` back.

Guardrails do not apply (the point is to return quickly to a model that was already trusted, often
while data problems are open): open review blocks are recorded with the event, not enforced. Its
dataset and bytes are re-verified, though, and its ONNX must still reproduce, within 1e-6, the
probabilities stored at its training time; otherwise nothing changes. The ONNX sha256 is checked
before the replay: bytes that fail it are never loaded into onnxruntime.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from feature_platform.registry.promotion import (
    PromotionDecision,
    current_production,
    integrity_checks,
    move_production,
    settle_pending,
    signature_checks,
)
from feature_platform.registry.tracking import RegistryError, client, download_version
from feature_platform.training.replay import ReplayReport, replay_reference

__all__ = ["ReplayReport", "RollbackResult", "replay_reference", "rollback"]

REPLAY_TOLERANCE = 1e-6


@dataclass(frozen=True)
class RollbackResult:
    ok: bool
    previous_version: str | None
    replay: ReplayReport | None
    reasons: list[str]
    decision: PromotionDecision
    open_review_blocks: list[str] = field(default_factory=list)

    def to_json_dict(self) -> dict[str, Any]:
        return {"rolled_back": self.ok, "previous_version": self.previous_version,
                "replay": None if self.replay is None else self.replay.to_json_dict(),
                "open_review_blocks": self.open_review_blocks, **self.decision.to_json_dict(),
                "reasons": self.reasons}


def rollback(
    model_name: str, to_version: str | int, *, data_root: Path, review_db: Path | None = None,
) -> RollbackResult:
    """Point ``production`` back at ``to_version`` after re-verifying it now; refuse and change nothing otherwise.

    ``review_db``: open data-gap/anomaly blocks are reported and recorded with the event, not enforced.
    """
    from mlflow.exceptions import MlflowException

    mc = client(data_root)
    settle_pending(mc, data_root, model_name)
    version = str(to_version)
    decision = PromotionDecision(model_name, version)
    replay: ReplayReport | None = None
    try:
        mv = mc.get_model_version(model_name, version)
    except MlflowException as exc:
        decision.add("model_version", False, f"{model_name} v{version} registered", exc.message)
        return RollbackResult(False, current_production(mc, model_name), None, decision.reasons, decision)
    decision.add("model_version", True, f"{model_name} v{version} registered", mv.source)
    with tempfile.TemporaryDirectory(prefix="fp-rollback-") as tmp:
        try:
            files = download_version(mc, model_name, version, Path(tmp))
        except (MlflowException, OSError, RegistryError) as exc:
            decision.add("registry_artifacts", False, "downloadable", f"{type(exc).__name__}: {exc}")
        else:
            manifest = integrity_checks(decision, files, mv.run_id)
            signature_checks(decision, files, manifest)
            onnx_checks = [c for c in decision.checks
                           if manifest is not None and c.name == f"artifact_sha256[{manifest.onnx.path}]"]
            if manifest is not None and not (onnx_checks and all(c.passed for c in onnx_checks)):
                # Never hand onnxruntime bytes that failed their sha256 check.
                decision.add("replay_reference", False, "a replay of the verified ONNX",
                             f"not run: {manifest.onnx.path} failed its sha256 check")
            elif manifest is not None:
                replay = replay_reference(files.files, REPLAY_TOLERANCE, onnx_path=files.onnx)
                detail = "; ".join(replay.problems)
                decision.add("replay_reference", replay.ok, f"max |diff| <= {REPLAY_TOLERANCE} on the stored batch",
                             f"{replay.rows} rows, max |diff| {replay.max_abs_diff:.3g} {detail}".strip())
    blocks = _open_blocks(review_db)
    if not decision.ok:
        return RollbackResult(False, current_production(mc, model_name), replay, decision.reasons, decision, blocks)
    previous = move_production(mc, data_root, model_name, version, "rollback",
                               replay_rows=replay.rows if replay else 0,
                               replay_max_abs_diff=replay.max_abs_diff if replay else None,
                               open_review_blocks=len(blocks))
    return RollbackResult(True, previous, replay, [], decision, blocks)


def _open_blocks(review_db: Path | None) -> list[str]:
    if review_db is None:
        return []
    from feature_platform.market.review import ReviewQueue

    return ReviewQueue(review_db).training_blocked()[1]
