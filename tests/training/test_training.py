"""Training domain: refuse unverified data, train + export + evaluate, determinism, rerun, replay."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml

from feature_platform.contracts.canonical import digest
from feature_platform.contracts.feature_contract import FEATURE_ORDER
from feature_platform.contracts.model_manifest import MODEL_MANIFEST_NAME, TRAINING_MANIFEST_NAME
from feature_platform.datasets.build import BuildResult, build_dataset
from feature_platform.datasets.synthetic import SyntheticMarketSource
from feature_platform.training.artifacts import read_model_manifest, read_training_manifest, with_mlflow_run_id
from feature_platform.training.data import TrainingRefused, load_splits
from feature_platform.training.evaluate import evaluate_model
from feature_platform.training.onnx_export import OnnxParityError, parity
from feature_platform.training.profiles import (
    PROFILES,
    HyperparameterError,
    build_estimator,
    resolve_hyperparameters,
)
from feature_platform.training.replay import replay_reference
from feature_platform.training.rerun import rerun_training
from feature_platform.training.train import TrainingExistsError, TrainingResult, train_model
from tests.tamper import flip_byte

PACKAGE = Path(__file__).resolve().parents[2] / "feature_platform" / "training"


@pytest.fixture(scope="module")
def ds(tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    out = tmp_path_factory.mktemp("train_ds") / "datasets"
    return build_dataset(SyntheticMarketSource(4_000, 11, batch_rows=1_000, entities=200), out, "train_ds",
                         dataset_version="v1")


@pytest.fixture(scope="module")
def trained(ds: BuildResult, tmp_path_factory: pytest.TempPathFactory) -> TrainingResult:
    out = tmp_path_factory.mktemp("models")
    return train_model(ds.manifest_path, out, training_id="t1", profile="fast", seed=3,
                       market_snapshot="2024-03-31T00:00:00Z")


def _copy_dataset(ds: BuildResult, tmp_path: Path) -> Path:
    target = tmp_path / "datasets" / ds.path.name
    shutil.copytree(ds.path, target)
    return target


# ---------------------------------------------------------------- refusal


def test_refuses_when_a_byte_flips_and_leaves_nothing(ds: BuildResult, tmp_path: Path) -> None:
    copy = _copy_dataset(ds, tmp_path)
    flip_byte(copy)
    with pytest.raises(TrainingRefused, match="file_sha256") as exc:
        train_model(copy / "manifest.json", tmp_path / "models", training_id="bad", profile="fast")
    assert any("failed verification" in r for r in exc.value.reasons)
    assert "\n" not in str(exc.value)
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


def test_refuses_when_the_dataset_directory_is_gone(ds: BuildResult, tmp_path: Path) -> None:
    copy = _copy_dataset(ds, tmp_path)
    shutil.rmtree(copy)
    with pytest.raises(TrainingRefused, match="manifest_exists"):
        load_splits(copy / "manifest.json")


def test_load_splits_reads_contract_order_fills_nulls_and_matches_manifest_splits(ds: BuildResult) -> None:
    data = load_splits(ds.manifest_path)
    assert data.feature_order == FEATURE_ORDER
    assert data.manifest_digest == ds.manifest.digest()
    assert {k: v.rows for k, v in data.splits.items()} == dict(ds.manifest.splits.rows)
    table = pq.read_table(ds.path / "data.parquet")
    nulls = table.column("beta_btc_1d").null_count
    assert nulls > 0  # the synthetic source drops ~1 % of cross-asset betas
    j = FEATURE_ORDER.index("beta_btc_1d")
    all_x = np.concatenate([s.X for s in data.splits.values()])
    assert not np.isnan(all_x).any()
    assert int(np.sum(all_x[:, j] == 0.0)) == nulls  # filled with 0.0, nothing else imputed
    # columns really are in FEATURE_ORDER: each split's rows equal the parquet rows (timestamps are unique
    # in the synthetic source, so they key rows) read column by column in that order
    ts = table.column("event_timestamp").cast(pa.int64()).to_numpy()
    assert len(np.unique(ts)) == len(ts)
    matrix = np.column_stack([pc.fill_null(table.column(n), 0.0).to_numpy() for n in FEATURE_ORDER])
    row_of = {int(t): i for i, t in enumerate(ts)}
    for split in data.splits.values():
        idx = np.array([row_of[int(t)] for t in split.timestamp], dtype=np.int64)
        np.testing.assert_array_equal(split.X, matrix[idx])
        np.testing.assert_array_equal(split.y, table.column("label").to_numpy()[idx])
    entity_sets = [set(s.entity.tolist()) for s in data.splits.values()]
    assert sum(len(e) for e in entity_sets) == len(set().union(*entity_sets))  # no entity in two splits
    # each entity's last row has no forward return
    assert int(np.isnan(np.concatenate([s.forward_return for s in data.splits.values()])).sum()) == len(
        pc.unique(table.column("entity_id")))


# ---------------------------------------------------------------- hyperparameters


def test_resolve_hyperparameters() -> None:
    assert resolve_hyperparameters(None, None) == (PROFILES["default"], "default")
    params, name = resolve_hyperparameters("fast", {"max_iter": 7})
    assert name == "fast" and params["max_iter"] == 7 and params["learning_rate"] == PROFILES["fast"]["learning_rate"]
    assert resolve_hyperparameters(None, {"max_iter": 9})[1] is None
    with pytest.raises(HyperparameterError, match=r"unknown hyperparameter\(s\) \['n_estimators'\]"):
        resolve_hyperparameters("fast", {"n_estimators": 3})
    with pytest.raises(HyperparameterError, match="unknown hyperparameter profile 'huge'"):
        resolve_hyperparameters("huge", None)
    with pytest.raises(HyperparameterError, match="learning_rate must be"):
        resolve_hyperparameters(None, {"learning_rate": 0})
    with pytest.raises(HyperparameterError, match="max_iter must be"):
        resolve_hyperparameters(None, {"max_iter": True})


# ---------------------------------------------------------------- training


def test_model_manifest_fields(trained: TrainingResult, ds: BuildResult) -> None:
    m = read_model_manifest(trained.model_manifest_path)
    assert m == trained.model_manifest
    assert m.model_id == "market_regime-t1" and m.training_id == "t1"
    assert m.dataset_manifest_digest == ds.manifest.digest() == trained.training_manifest.dataset_manifest_digest
    assert m.dataset_id == "train_ds" and m.dataset_version == "v1"
    assert m.feature_order == list(FEATURE_ORDER)
    assert m.label_classes == [0, 1, 2]
    onnx_bytes = trained.onnx_path.read_bytes()
    assert m.onnx.sha256 == hashlib.sha256(onnx_bytes).hexdigest() and m.onnx.bytes == len(onnx_bytes)
    assert m.hyperparameters == PROFILES["fast"] and m.hyperparam_profile == "fast" and m.seed == 3
    assert m.hyperparameters_sha256 == digest(PROFILES["fast"])
    assert m.mlflow_run_id is None and m.market_snapshot == "2024-03-31T00:00:00Z"
    assert m.reference.rows == 256
    assert {"val_accuracy", "test_sharpe", "test_sortino", "test_max_drawdown", "test_pnl"} <= set(m.metrics)
    tm = read_training_manifest(trained.training_manifest_path)
    assert tm == trained.training_manifest
    assert set(tm.library_versions) == {"numpy", "pyarrow", "scikit-learn", "skl2onnx", "onnx", "onnxruntime",
                                        "python"}
    assert set(tm.config_sha256) == {"feature_repo/feature_contract.yaml", "hyperparam_profile/fast"}
    assert tm.image_digests == {"train": "local"} and tm.schedule == "adhoc"
    evaluation = json.loads((trained.model_dir / "evaluation.json").read_text())
    assert evaluation["metrics"] == m.metrics
    assert not list(trained.model_dir.parent.glob(".staging-*"))
    assert not [p for p in trained.model_dir.iterdir() if p.suffix in {".pkl", ".joblib", ".pickle"}]


def test_onnx_parity_within_tolerance_and_mismatch_detected(trained: TrainingResult, ds: BuildResult) -> None:
    m = trained.model_manifest
    assert m.onnx.parity_tolerance == 1e-4 and m.onnx.parity_max_abs_diff <= 1e-4
    data = load_splits(ds.manifest_path)
    native = build_estimator(m.hyperparameters, m.seed).fit(data.split("train").X, data.split("train").y)
    assert parity(native, trained.onnx_path, data.split("test").X) <= 1e-4  # refit reproduces the ONNX model
    other = build_estimator({**m.hyperparameters, "max_iter": 3}, m.seed).fit(data.split("train").X,
                                                                               data.split("train").y)
    with pytest.raises(OnnxParityError, match="ONNX parity failed"):
        parity(other, trained.onnx_path, data.split("test").X)


def test_accuracy_clearly_above_chance(trained: TrainingResult, ds: BuildResult) -> None:
    data = load_splits(ds.manifest_path)
    for split in ("val", "test"):
        y = data.split(split).y
        majority = float(np.max(np.bincount(y)) / len(y))
        assert trained.model_manifest.metrics[f"{split}_accuracy"] > majority + 0.1


def test_backfill_adds_full_backtest_with_equity_curve(trained: TrainingResult, ds: BuildResult) -> None:
    data = load_splits(ds.manifest_path)
    adhoc = evaluate_model(trained.onnx_path, data, schedule="adhoc")
    full = evaluate_model(trained.onnx_path, data, schedule="backfill")
    assert adhoc.backtest is None and adhoc.equity_curve is None
    assert full.backtest is not None and full.equity_curve is not None
    days = len(np.unique(np.concatenate([s.timestamp for s in data.splits.values()]) // 86_400_000_000))
    assert full.backtest.n_periods == days and full.equity_curve.size == days + 1
    test_days = len(np.unique(data.split("test").timestamp // 86_400_000_000))
    assert adhoc.metrics["test_n_periods"] == test_days
    assert abs(adhoc.metrics["test_total_return"]) < 10  # one book a day: believable, not 6e20
    assert {k: v for k, v in full.metrics.items() if not k.startswith("backtest_")} == adhoc.metrics
    assert adhoc.metrics == trained.model_manifest.metrics


def test_same_inputs_give_identical_metrics_and_onnx_bytes(trained: TrainingResult, ds: BuildResult,
                                                            tmp_path: Path) -> None:
    again = train_model(ds.manifest_path, tmp_path, training_id="t2", profile="fast", seed=3)
    assert again.model_manifest.metrics == trained.model_manifest.metrics
    assert again.onnx_path.read_bytes() == trained.onnx_path.read_bytes()
    assert (again.model_dir / "reference_predictions.parquet").read_bytes() == (
        trained.model_dir / "reference_predictions.parquet").read_bytes()
    with pytest.raises(TrainingExistsError):
        train_model(ds.manifest_path, tmp_path, training_id="t2", profile="fast", seed=3)


def test_with_mlflow_run_id_changes_only_that_field(trained: TrainingResult, tmp_path: Path) -> None:
    model_dir = tmp_path / "m"
    shutil.copytree(trained.model_dir, model_dir)
    path = model_dir / MODEL_MANIFEST_NAME
    before = json.loads(path.read_text())
    updated = with_mlflow_run_id(path, "abc123")
    after = json.loads(path.read_text())
    assert updated.mlflow_run_id == "abc123" and after["mlflow_run_id"] == "abc123"
    assert {k: v for k, v in after.items() if k != "mlflow_run_id"} == {
        k: v for k, v in before.items() if k != "mlflow_run_id"}


# ---------------------------------------------------------------- rerun and replay


def test_rerun_reproduces(trained: TrainingResult, tmp_path: Path) -> None:
    report = rerun_training(trained.training_manifest_path, tmp_path)
    assert report.dataset_digest_same and report.metrics_identical and report.onnx_bytes_identical
    assert report.reproduced and report.differences == []
    assert report.rerun.training_id.startswith("t1-rerun-") and report.rerun_dir is not None
    assert report.rerun.hyperparameters == report.original.hyperparameters
    assert report.rerun.market_snapshot == report.original.market_snapshot
    # the same comparison as the shared check rows: expected is the original, actual the rerun
    assert [(c.name, c.passed) for c in report.checks] == [("dataset_manifest_digest", True), ("metrics", True),
                                                            ("onnx_sha256", True)]
    assert report.checks[2].expected == report.checks[2].actual == report.original.onnx.sha256
    assert report.to_json_dict()["checks"][0]["expected"] == report.original.dataset_manifest_digest


def test_rerun_refuses_another_dataset_digest(trained: TrainingResult, tmp_path: Path) -> None:
    model_dir = tmp_path / "m"
    shutil.copytree(trained.model_dir, model_dir)
    tm_path = model_dir / TRAINING_MANIFEST_NAME
    raw = yaml.safe_load(tm_path.read_text())
    raw["dataset_manifest_digest"] = "0" * 64
    tm_path.write_text(yaml.safe_dump(raw))
    with pytest.raises(TrainingRefused, match="manifest_digest"):
        rerun_training(tm_path, tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_replay_ok_and_detects_tampered_reference(trained: TrainingResult, tmp_path: Path) -> None:
    report = replay_reference(trained.model_dir)
    assert report.ok and report.rows == 256 and report.max_abs_diff <= 1e-6 and report.problems == []
    model_dir = tmp_path / "m"
    shutil.copytree(trained.model_dir, model_dir)
    ref = model_dir / "reference_predictions.parquet"
    table = pq.read_table(ref)
    shifted = pc.add(table.column("proba_2"), pa.scalar(0.01))
    pq.write_table(table.set_column(table.schema.get_field_index("proba_2"), "proba_2", shifted), ref)
    bad = replay_reference(model_dir)
    assert not bad.ok and bad.max_abs_diff == pytest.approx(0.01, abs=1e-9)
    assert any("sha256" in p for p in bad.problems) and any("> 1e-06" in p for p in bad.problems)


# ---------------------------------------------------------------- hygiene


def test_package_never_uses_pickle_or_joblib() -> None:
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        for word in ("pickle", "joblib", "dill"):
            assert word not in text, f"{path.name} mentions {word}"


def test_importing_the_package_is_cheap() -> None:
    code = ("import sys, feature_platform.training.train, feature_platform.training.rerun, "
            "feature_platform.training.replay; "
            "print(sorted(m for m in ('sklearn', 'skl2onnx', 'onnxruntime', 'onnx', 'dagster', 'mlflow') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
