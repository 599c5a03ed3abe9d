"""ONNX export and parity: what serves is the ONNX file, so it must agree with the native model.

The graph name is fixed (skl2onnx otherwise writes a random uuid), which makes the ONNX bytes a
pure function of the fitted model. Inference runs on the CPU provider with one thread so that
probabilities do not depend on the machine's core count.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from feature_platform.storage.files import write_atomic

DEFAULT_TOLERANCE = 1e-4
TARGET_OPSET = 17
ML_OPSET = 3
INPUT_NAME = "input"
GRAPH_NAME = "feature_platform_model"


class OnnxParityError(RuntimeError):
    """ONNX and native probabilities differ by more than the stated tolerance."""

    def __init__(self, max_abs_diff: float, tolerance: float) -> None:
        self.max_abs_diff, self.tolerance = max_abs_diff, tolerance
        super().__init__(f"ONNX parity failed: max |onnx - native| probability {max_abs_diff:.3g} > {tolerance:.3g}")


def export_onnx(model: Any, n_features: int, path: Path) -> int:
    """Write ``model`` as ONNX (float32 input ``[N, n_features]``, probabilities without ZipMap); returns the opset."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    onx = convert_sklearn(
        model,
        initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
        target_opset={"": TARGET_OPSET, "ai.onnx.ml": ML_OPSET},
        options={id(model): {"zipmap": False}},
        name=GRAPH_NAME,
    )
    write_atomic(path, onx.SerializeToString())
    return TARGET_OPSET


def onnx_session(path: Path) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def onnx_predict_proba(path: Path, X: np.ndarray) -> np.ndarray:
    """Class probabilities (float64, rows x classes) from the ONNX model at ``path``."""
    session = onnx_session(path)
    names = [o.name for o in session.get_outputs()]
    if len(X) == 0:
        return np.zeros((0, _n_classes(session)), dtype=np.float64)
    (proba,) = session.run([names[-1] if "probabilities" not in names else "probabilities"],
                           {INPUT_NAME: np.ascontiguousarray(X, dtype=np.float32)})
    return np.asarray(proba, dtype=np.float64)


def _n_classes(session: Any) -> int:
    shape = session.get_outputs()[-1].shape
    return int(shape[-1]) if isinstance(shape[-1], int) else 0


def parity(model: Any, path: Path, X: np.ndarray, tolerance: float = DEFAULT_TOLERANCE) -> float:
    """Max |ONNX - native| class probability on ``X``; raises ``OnnxParityError`` above ``tolerance``."""
    if len(X) == 0:
        return 0.0
    native = np.asarray(model.predict_proba(X), dtype=np.float64)
    diff = float(np.max(np.abs(onnx_predict_proba(path, X) - native)))
    if not diff <= tolerance:  # NaN fails too
        raise OnnxParityError(diff, tolerance)
    return diff
