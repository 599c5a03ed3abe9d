"""The registered model as a plain MLflow user sees it: ``MLFLOW_TRACKING_URI`` set to the URI the
README names, then only ``mlflow`` (no project helper) to load ``models:/<key>@production``.

Also: the registry's ONNX is checked against the model manifest before anything loads it, and a
model whose graph disagrees with the feature contract is never logged.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from feature_platform.contracts.feature_contract import FEATURE_ORDER
from feature_platform.contracts.model_manifest import MODEL_MANIFEST_NAME
from feature_platform.registry.promotion import promote
from feature_platform.registry.rollback import rollback
from feature_platform.registry.tracking import PRODUCTION, RegistryError, client, log_training
from tests.registry import test_registry as registry_fixtures
from tests.registry.test_registry import aliases, artifact_path, flip_byte, production_version
from tests.test_hostile_crash_windows import SessionSpy

README = Path(__file__).resolve().parents[2] / "README.md"
TOLERANCE = 1e-5

data_root = registry_fixtures.data_root
golden_dataset = registry_fixtures.golden_dataset
trained = registry_fixtures.trained
new_case = registry_fixtures.new_case
monkeypatch_module = registry_fixtures.monkeypatch_module
_default_tracking = registry_fixtures._default_tracking


def readme_uri(root: Path) -> str:
    """The tracking URI exactly as the README writes it for the default data root, for ``root``."""
    match = re.search(r"^\s*MLFLOW_TRACKING_URI=(\S+) python -c \"(.+)\"$", README.read_text(), re.MULTILINE)
    assert match, "README shows no `MLFLOW_TRACKING_URI=... python -c \"...\"` command"
    return match.group(1).replace("$PWD/data", str(root.resolve()))


@pytest.fixture
def as_mlflow_user(data_root: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    uri = readme_uri(data_root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def reference(model_dir: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """The stored reference rows (features as a DataFrame) and their probabilities at training time."""
    manifest = json.loads((model_dir / MODEL_MANIFEST_NAME).read_text())
    frame = pq.read_table(model_dir / "reference_predictions.parquet").to_pandas()
    stored = frame[[f"proba_{c}" for c in manifest["label_classes"]]].to_numpy()
    return frame[list(FEATURE_ORDER)], stored


def spy_onnxruntime(monkeypatch: pytest.MonkeyPatch) -> SessionSpy:
    """From here on, record every path onnxruntime is asked to load (setup above may load verified bytes)."""
    import onnxruntime

    spy = SessionSpy(onnxruntime.InferenceSession)
    monkeypatch.setattr(onnxruntime, "InferenceSession", spy)
    return spy


def test_plain_mlflow_user_scores_the_production_model(new_case: Any, data_root: Path, as_mlflow_user: str) -> None:
    case = new_case("regime_native")
    assert promote("regime_native", case.logged.version, data_root=data_root).promoted
    assert os.environ["MLFLOW_TRACKING_URI"] == as_mlflow_user  # logging left the user's setting alone

    import mlflow
    import mlflow.onnx
    from mlflow import MlflowClient

    manifest = json.loads((case.model_dir / MODEL_MANIFEST_NAME).read_text())
    features, stored = reference(case.model_dir)
    model = mlflow.pyfunc.load_model("models:/regime_native@production")
    out = model.predict(features)
    assert out["probabilities"].shape == stored.shape == (64, len(manifest["label_classes"]))
    assert float(np.max(np.abs(out["probabilities"] - stored))) <= TOLERANCE
    classes = np.asarray(manifest["label_classes"])
    assert np.array_equal(out["label"], classes[np.argmax(stored, axis=1)])
    assert model.metadata.metadata["feature_order"] == list(FEATURE_ORDER)

    onnx_model = mlflow.onnx.load_model("models:/regime_native@production")
    assert [i.name for i in onnx_model.graph.input] == ["input"]
    assert hashlib.sha256(onnx_model.SerializeToString()).hexdigest() == manifest["onnx"]["sha256"]

    signature = mlflow.models.get_model_info("models:/regime_native@production").signature
    assert signature is not None
    (tensor,) = signature.inputs.inputs
    assert tensor.type == np.dtype(np.float32) and tensor.shape == (-1, len(FEATURE_ORDER))
    assert {o.name for o in signature.outputs.inputs} == {"label", "probabilities"}

    user = MlflowClient()  # URI from the environment only
    mv = user.get_model_version_by_alias("regime_native", PRODUCTION)
    assert str(mv.version) == case.logged.version and mv.source.startswith("models:/m-")
    run = user.get_run(mv.run_id)
    (ds_input,) = run.inputs.dataset_inputs
    full = manifest["dataset_manifest_digest"]
    assert len(full) == 64 and json.loads(ds_input.dataset.profile)["sha256"] == full
    assert {t.key: t.value for t in ds_input.tags}["dataset_manifest_digest"] == full
    assert run.data.tags["dataset_manifest_digest"] == full

    # MLflow's own schema enforcement stands between a wrong frame and the graph
    with pytest.raises(mlflow.exceptions.MlflowException):
        model.predict(features.astype(np.float64))
    with pytest.raises(mlflow.exceptions.MlflowException):
        model.predict(features.iloc[:, :-1])


def test_the_readme_command_loads_the_model(new_case: Any, data_root: Path) -> None:
    case = new_case("market_regime")
    assert promote("market_regime", case.logged.version, data_root=data_root).promoted
    text = README.read_text()
    (code,) = re.findall(r"^\s*MLFLOW_TRACKING_URI=\S+ python -c \"(.+)\"$", text, re.MULTILINE)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(data_root), "MLFLOW_TRACKING_URI": readme_uri(data_root),
           "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    done = subprocess.run([sys.executable, "-c", code + "; print('loaded')"], env=env, cwd=data_root,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0 and done.stdout.strip().endswith("loaded"), done.stderr[-2000:]
    assert not (data_root / "mlflow.db").exists()


# --- the ONNX inside the registered MLflow model is checked before anything loads it --------------


@pytest.mark.parametrize("tamper", ["garbage", "other_valid_model", "flipped_byte"])
def test_tampered_registry_onnx_is_refused_before_loading(tamper: str, new_case: Any, data_root: Path,
                                                          monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    key = f"native_tamper_{tamper}"
    new_case(key)
    new_case(key)
    assert promote(key, 1, data_root=data_root).promoted
    assert promote(key, 2, data_root=data_root).promoted
    target = artifact_path(data_root, key, "1", "model.onnx")
    assert (target.parent / "MLmodel").is_file()
    if tamper == "garbage":
        target.write_bytes(b"\x08\x07definitely not the model")
    elif tamper == "flipped_byte":
        flip_byte(target, 40)
    else:
        from skl2onnx import convert_sklearn
        from skl2onnx.common.data_types import FloatTensorType
        from sklearn.linear_model import LogisticRegression

        X = np.random.default_rng(0).normal(size=(60, len(FEATURE_ORDER))).astype(np.float32)
        other = LogisticRegression().fit(X, np.arange(60) % 3)
        onx = convert_sklearn(other, initial_types=[("input", FloatTensorType([None, len(FEATURE_ORDER)]))],
                              options={id(other): {"zipmap": False}}, target_opset={"": 17, "ai.onnx.ml": 3})
        target.write_bytes(onx.SerializeToString())
    sessions = spy_onnxruntime(monkeypatch)

    refused = rollback(key, 1, data_root=data_root)
    assert not refused.ok
    assert {r.split(":")[0] for r in refused.reasons} == {"artifact_sha256[model.onnx]", "replay_reference"}
    assert any("not run: model.onnx failed its sha256 check" in r for r in refused.reasons)
    demoted = promote(key, 1, data_root=data_root)
    assert not demoted.promoted
    assert [c.name for c in demoted.decision.checks if not c.passed] == ["artifact_sha256[model.onnx]"]
    assert sessions.paths == []  # neither loaded the tampered bytes
    assert production_version(data_root, key) == "2"


@pytest.mark.parametrize("damage", ["mlmodel_missing", "data_escapes", "data_names_missing_file", "not_yaml"])
def test_a_broken_mlmodel_is_refused_with_one_line(damage: str, new_case: Any, data_root: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    key = f"native_mlmodel_{damage}"
    new_case(key)
    mlmodel = artifact_path(data_root, key, "1", "model.onnx").parent / "MLmodel"
    text = mlmodel.read_text()
    if damage == "mlmodel_missing":
        mlmodel.unlink()
    elif damage == "data_escapes":
        mlmodel.write_text(text.replace("data: model.onnx", "data: ../../../../../../etc/hostname"))
    elif damage == "data_names_missing_file":
        mlmodel.write_text(text.replace("data: model.onnx", "data: nowhere.onnx"))
    else:
        mlmodel.write_text("flavors: [unclosed\n")
    sessions = spy_onnxruntime(monkeypatch)
    result = promote(key, 1, data_root=data_root)
    assert not result.promoted
    failed = {c.name: c for c in result.decision.checks if not c.passed}
    # no manifest could be read, so the metric guardrails fail closed beside it
    assert set(failed) == {"registry_artifacts", "guardrail[test_sharpe]", "guardrail[test_max_drawdown]"}
    reason = failed["registry_artifacts"].reason()
    assert "\n" not in reason and "MLmodel" in reason
    assert rollback(key, 1, data_root=data_root).reasons[0].startswith("registry_artifacts")
    assert sessions.paths == [] and PRODUCTION not in aliases(data_root, key)


# --- what is never logged ----------------------------------------------------------------------


def _versions(data_root: Path, key: str) -> int:
    from mlflow.exceptions import MlflowException

    try:
        return len(client(data_root).search_model_versions(f"name='{key}'"))
    except MlflowException:
        return 0


def test_a_model_off_the_feature_contract_is_not_logged(new_case: Any, data_root: Path, trained: Any,
                                                         golden_dataset: Path, tmp_path: Path) -> None:
    from feature_platform.contracts.model_manifest import ModelManifest

    dataset = tmp_path / "ds"
    shutil.copytree(golden_dataset, dataset)
    model_dir = registry_fixtures.make_model_dir(tmp_path / "models", trained, dataset, "off_contract",
                                                 "native_off_contract")
    path = model_dir / MODEL_MANIFEST_NAME
    manifest = ModelManifest.model_validate_json(path.read_bytes())
    swapped = [manifest.feature_order[1], manifest.feature_order[0], *manifest.feature_order[2:]]
    path.write_text(ModelManifest.model_validate({**manifest.model_dump(mode="json"),
                                                  "feature_order": swapped}).dumps())
    with pytest.raises(RegistryError, match="field feature_order: expected the contract's"):
        log_training(model_dir, data_root=data_root)
    assert _versions(data_root, "native_off_contract") == 0


def test_an_onnx_of_the_wrong_width_is_not_logged(data_root: Path, trained: Any, golden_dataset: Path,
                                                   tmp_path: Path) -> None:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LogisticRegression

    X = np.random.default_rng(1).normal(size=(60, 3)).astype(np.float32)
    narrow = LogisticRegression().fit(X, np.arange(60) % 3)
    onx = convert_sklearn(narrow, initial_types=[("input", FloatTensorType([None, 3]))],
                          options={id(narrow): {"zipmap": False}}, target_opset={"": 17, "ai.onnx.ml": 3})
    bad = registry_fixtures.Trained(onx.SerializeToString(), trained.reference, trained.reference_rows,
                                    trained.feature_order, trained.classes)
    dataset = tmp_path / "ds"
    shutil.copytree(golden_dataset, dataset)
    model_dir = registry_fixtures.make_model_dir(tmp_path / "models", bad, dataset, "narrow", "native_narrow")
    with pytest.raises(RegistryError, match=r"field graph.input: expected one float tensor 'input' of shape"):
        log_training(model_dir, data_root=data_root)
    assert _versions(data_root, "native_narrow") == 0
