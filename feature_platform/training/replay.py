"""Replay the stored reference batch through a model directory's ONNX file (rollback's last check).

The reference batch holds test rows and the probabilities the ONNX model gave them at training time.
Replaying it proves the ONNX bytes on disk still behave as the model that was evaluated; both files
are also checked against the sha256 the model manifest recorded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from feature_platform.contracts.canonical import sha256_file
from feature_platform.contracts.paths import resolve_inside
from feature_platform.training.artifacts import read_model_manifest
from feature_platform.training.onnx_export import onnx_predict_proba

# Same ONNX bytes on the same runtime give the same floats; the slack only covers another CPU/runtime.
DEFAULT_REPLAY_TOLERANCE = 1e-6


@dataclass(frozen=True)
class ReplayReport:
    rows: int
    max_abs_diff: float
    ok: bool
    tolerance: float = DEFAULT_REPLAY_TOLERANCE
    problems: list[str] = field(default_factory=list)

    def to_json_dict(self) -> dict[str, Any]:
        """JSON-safe: a non-finite difference (nothing could be compared) is null."""
        diff = self.max_abs_diff if math.isfinite(self.max_abs_diff) else None
        return {"rows": self.rows, "max_abs_diff": diff, "ok": self.ok, "tolerance": self.tolerance,
                "problems": self.problems}


def replay_reference(model_dir: Path, tolerance: float = DEFAULT_REPLAY_TOLERANCE, *,
                     onnx_path: Path | None = None) -> ReplayReport:
    """Re-run ONNX on the reference rows; ``ok`` only if hashes match and max |Δprob| <= tolerance.

    ``onnx_path``: the ONNX file when it is not beside the manifest (a registered MLflow model's copy).
    """
    manifest = read_model_manifest(Path(model_dir))
    problems: list[str] = []
    if onnx_path is None:
        onnx_path = resolve_inside(Path(model_dir), manifest.onnx.path)
    ref_path = resolve_inside(Path(model_dir), manifest.reference.path)
    for label, path, expected in (("onnx", onnx_path, manifest.onnx.sha256),
                                  ("reference", ref_path, manifest.reference.sha256)):
        actual = sha256_file(path) if path.is_file() else "missing"
        if actual != expected:
            problems.append(f"{label} {path.name}: sha256 {actual} != manifest {expected}")
    if not onnx_path.is_file() or not ref_path.is_file() or any(p.startswith("onnx ") for p in problems):
        # An ONNX file that failed its sha256 is never loaded: onnxruntime would parse untrusted bytes.
        return ReplayReport(0, float("inf"), False, tolerance, problems)
    try:
        table = pq.read_table(ref_path)
        X = np.column_stack([table.column(n).to_numpy() for n in manifest.feature_order]).astype(np.float32)
        stored = np.column_stack([table.column(f"proba_{c}").to_numpy() for c in manifest.label_classes])
    except (KeyError, OSError, pa.ArrowException) as exc:
        problems.append(f"reference batch unreadable: {exc}")
        return ReplayReport(0, float("inf"), False, tolerance, problems)
    if table.num_rows != manifest.reference.rows:
        problems.append(f"reference rows {table.num_rows} != manifest {manifest.reference.rows}")
    diff = float(np.max(np.abs(onnx_predict_proba(onnx_path, X) - stored))) if table.num_rows else 0.0
    if not diff <= tolerance:
        problems.append(f"max |replayed - stored| probability {diff:.3g} > {tolerance:.3g}")
    return ReplayReport(table.num_rows, diff, not problems, tolerance, problems)
