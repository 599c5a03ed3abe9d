"""Registry: MLflow logging, promotion, rollback and lineage against a real SQLite tracking store.

The model directory is built here (a seeded LogisticRegression exported with skl2onnx), not by
``feature_platform.training``, so these tests depend only on the registry and the contracts.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from feature_platform.contracts.model_manifest import (
    MODEL_MANIFEST_NAME,
    TRAINING_MANIFEST_NAME,
    ModelManifest,
    OnnxArtifact,
    ReferenceBatch,
    TrainingManifest,
    hyperparameters_sha256,
)
from feature_platform.datasets.build import build_dataset
from feature_platform.datasets.snapshot import snapshot_synthetic
from feature_platform.datasets.synthetic import SyntheticMarketSource
from feature_platform.datasets.verify import sha256_file
from feature_platform.market.review import ReviewQueue
from feature_platform.market.validation import Gap
from feature_platform.registry.lineage import lineage
from feature_platform.registry.promotion import Guardrails, evaluate_promotion, production_history, promote
from feature_platform.registry.rollback import replay_reference, rollback
from feature_platform.registry.tracking import (
    PRODUCTION,
    STAGING,
    TRAINING_ARTIFACT_DIR,
    LoggedModel,
    client,
    describe_version,
    download_version,
    log_training,
    tracking_uri,
)

ROWS, SEED, BATCH_ROWS, ENTITIES = 1_200, 11, 400, 40
DATASET_ID, DATASET_VERSION = "reg_ds", "v1"
HYPER: dict[str, Any] = {"C": 0.1, "max_iter": 2000}
GOOD_METRICS = {"test_sharpe": 1.2, "test_max_drawdown": 0.1, "test_accuracy": 0.5}


@dataclass(frozen=True)
class Trained:
    """One trained model's bytes, reused for every model directory the tests log."""

    onnx: bytes
    reference: bytes
    reference_rows: int
    feature_order: list[str]
    classes: list[int]


@dataclass(frozen=True)
class Case:
    logged: LoggedModel
    model_dir: Path
    dataset_dir: Path


@pytest.fixture(scope="module", autouse=True)
def _default_tracking(monkeypatch_module: pytest.MonkeyPatch) -> None:
    monkeypatch_module.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as mp:
        yield mp


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tracking store + artifact root for the module (creating the SQLite schema takes ~1 s)."""
    return tmp_path_factory.mktemp("fp_data")


@pytest.fixture(scope="module")
def golden_dataset(data_root: Path) -> Path:
    source = SyntheticMarketSource(ROWS, SEED, batch_rows=BATCH_ROWS, entities=ENTITIES)
    snapshot_synthetic(data_root / "sources", DATASET_VERSION, rows=ROWS, seed=SEED, batch_rows=BATCH_ROWS,
                       entities=ENTITIES)
    return build_dataset(source, data_root / "golden", DATASET_ID, dataset_version=DATASET_VERSION).path


@pytest.fixture(scope="module")
def trained(golden_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LogisticRegression

    from feature_platform.training.onnx_export import onnx_predict_proba

    manifest = json.loads((golden_dataset / "manifest.json").read_text())
    order: list[str] = manifest["feature_order"]
    table = pq.read_table(golden_dataset / "data.parquet")
    X = np.nan_to_num(np.column_stack([table.column(n).to_numpy(zero_copy_only=False) for n in order])
                      .astype(np.float32))
    y = table.column("label").to_numpy()
    model = LogisticRegression(C=HYPER["C"], max_iter=HYPER["max_iter"], random_state=SEED).fit(X, y)
    onx = convert_sklearn(model, initial_types=[("input", FloatTensorType([None, len(order)]))],
                          options={id(model): {"zipmap": False}}, target_opset={"": 17, "ai.onnx.ml": 3})
    tmp = tmp_path_factory.mktemp("trained")
    (tmp / "model.onnx").write_bytes(onx.SerializeToString())
    ref_X = X[:64]
    proba = onnx_predict_proba(tmp / "model.onnx", ref_X)
    classes = [int(c) for c in model.classes_]
    cols = {n: pa.array(ref_X[:, j], pa.float32()) for j, n in enumerate(order)}
    cols.update({f"proba_{c}": pa.array(proba[:, k], pa.float64()) for k, c in enumerate(classes)})
    pq.write_table(pa.table(cols), tmp / "ref.parquet")
    return Trained((tmp / "model.onnx").read_bytes(), (tmp / "ref.parquet").read_bytes(), 64, order, classes)


def make_model_dir(root: Path, trained: Trained, dataset_dir: Path, training_id: str, model_key: str,
                   metrics: dict[str, float] | None = None) -> Path:
    """A model directory in the layout training writes, with valid manifests."""
    out = root / training_id
    out.mkdir(parents=True)
    (out / "model.onnx").write_bytes(trained.onnx)
    (out / "reference_predictions.parquet").write_bytes(trained.reference)
    (out / "evaluation.json").write_text(json.dumps({"metrics": metrics or GOOD_METRICS}))
    ds_manifest = dataset_dir / "manifest.json"
    ds_digest = build_digest(ds_manifest)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    hp_sha = hyperparameters_sha256(HYPER)
    mm = ModelManifest(
        spec_version="1", model_id=f"{model_key}-{training_id}", model_key=model_key, training_id=training_id,
        created_at=now, algorithm="sklearn.LogisticRegression", dataset_id=DATASET_ID,
        dataset_version=DATASET_VERSION, dataset_manifest_digest=ds_digest,
        dataset_manifest_path=str(ds_manifest.resolve()), feature_order=trained.feature_order, label_column="label",
        label_classes=trained.classes,
        onnx=OnnxArtifact(path="model.onnx", sha256=sha256_file(out / "model.onnx"), bytes=len(trained.onnx),
                          opset=17, parity_tolerance=1e-5, parity_max_abs_diff=0.0),
        reference=ReferenceBatch(path="reference_predictions.parquet",
                                 sha256=sha256_file(out / "reference_predictions.parquet"),
                                 bytes=len(trained.reference), rows=trained.reference_rows),
        hyperparameters=HYPER, hyperparameters_sha256=hp_sha, hyperparam_profile="small", seed=SEED,
        code_git_sha="unknown", feature_build=None, market_snapshot="2026-11-25T00:00:00Z",
        metrics=metrics or GOOD_METRICS, mlflow_run_id=None,
    )
    (out / MODEL_MANIFEST_NAME).write_text(mm.dumps())
    tm = TrainingManifest(
        spec_version="1", training_id=training_id, model_key=model_key, created_at=now,
        dataset_manifest_path=mm.dataset_manifest_path, dataset_manifest_digest=ds_digest,
        dataset_version=DATASET_VERSION, feature_repo_ref="abc123", feature_build_sha256=None, hyperparameters=HYPER,
        hyperparameters_sha256=hp_sha, hyperparam_profile="small", seed=SEED, schedule="adhoc",
        code_git_sha="unknown", config_sha256={}, library_versions={"sklearn": "x"}, image_digests={"train": "local"},
        market_snapshot=mm.market_snapshot,
    )
    (out / TRAINING_MANIFEST_NAME).write_text(yaml.safe_dump(tm.model_dump(mode="json"), sort_keys=True))
    return out


def build_digest(manifest_path: Path) -> str:
    from feature_platform.contracts.manifest import parse_manifest

    return parse_manifest(json.loads(manifest_path.read_bytes())).digest()


@pytest.fixture
def new_case(data_root: Path, golden_dataset: Path, trained: Trained, tmp_path: Path) -> Any:
    """Log a new model version on a private copy of the dataset; returns a factory."""
    counter = iter(range(1, 1000))

    def make(model_key: str, metrics: dict[str, float] | None = None, dataset_dir: Path | None = None,
             feature_build: Path | None = None) -> Case:
        n = next(counter)
        if dataset_dir is None:
            dataset_dir = tmp_path / f"ds{n}" / DATASET_ID
            shutil.copytree(golden_dataset, dataset_dir)
        model_dir = make_model_dir(tmp_path / "models", trained, dataset_dir, f"train_{model_key}_{n}", model_key,
                                   metrics)
        logged = log_training(model_dir, data_root=data_root, feature_build_path=feature_build)
        return Case(logged, model_dir, dataset_dir)

    return make


def flip_byte(path: Path, offset: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0x01
    path.write_bytes(bytes(data))


def artifact_path(data_root: Path, model_name: str, version: str, name: str) -> Path:
    """The registry's stored copy of ``name`` for a version (tests tamper with it directly): the ONNX
    inside the registered MLflow model, every other file among its run's ``training/`` artifacts."""
    mc = client(data_root)
    if name == "model.onnx":
        source = str(mc.get_model_version_download_uri(model_name, version))
    else:
        run = mc.get_run(str(mc.get_model_version(model_name, version).run_id))
        source = f"{run.info.artifact_uri}/{TRAINING_ARTIFACT_DIR}"
    assert source.startswith("file://"), source
    return Path(urlparse(source).path) / name


def aliases(data_root: Path, name: str) -> dict[str, str]:
    """Alias → version as strings (the SQLite store returns ints)."""
    return {k: str(v) for k, v in client(data_root).get_registered_model(name).aliases.items()}


def production_version(data_root: Path, name: str) -> str | None:
    return aliases(data_root, name).get(PRODUCTION)


# --- tracking ---------------------------------------------------------------------------------


def test_tracking_uri_default_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert tracking_uri(tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////elsewhere/db")
    assert tracking_uri(tmp_path) == "sqlite:////elsewhere/db"


def test_log_training_registers_staging_with_tags_artifacts_and_input(new_case: Any, data_root: Path,
                                                                      tmp_path: Path) -> None:
    fb = tmp_path / "feature_build.json"
    fb.write_text(json.dumps({"feast_repo_sha": "abc123", "dataset_version": DATASET_VERSION}))
    case = new_case("m_log", feature_build=fb)
    mc = client(data_root)
    assert case.logged.version == "1"
    assert str(mc.get_model_version_by_alias("m_log", STAGING).version) == "1"
    assert not mc.get_model_version("m_log", "1").current_stage or \
        mc.get_model_version("m_log", "1").current_stage == "None"

    manifest = ModelManifest.model_validate_json((case.model_dir / MODEL_MANIFEST_NAME).read_bytes())
    assert manifest.mlflow_run_id == case.logged.run_id
    run = mc.get_run(case.logged.run_id)
    tags = run.data.tags
    training_sha = sha256_file(case.model_dir / TRAINING_MANIFEST_NAME)
    assert {k: tags[k] for k in ("training_id", "dataset_version", "dataset_manifest_digest", "feature_repo_sha",
                                 "feast_repo_sha", "training_manifest_sha", "coingecko_snapshot",
                                 "hyperparam_profile")} == {
        "training_id": manifest.training_id, "dataset_version": DATASET_VERSION,
        "dataset_manifest_digest": manifest.dataset_manifest_digest, "feature_repo_sha": "abc123",
        "feast_repo_sha": "abc123", "training_manifest_sha": training_sha,
        "coingecko_snapshot": "2026-11-25T00:00:00Z", "hyperparam_profile": "small"}
    assert run.data.params["C"] == "0.1" and run.data.params["max_iter"] == "2000"
    assert run.data.metrics["test_sharpe"] == pytest.approx(1.2)
    assert mc.get_experiment(case.logged.experiment_id).name == "m_log"
    assert mc.get_experiment(case.logged.experiment_id).artifact_location.startswith(
        (data_root.resolve() / "mlflow" / "artifacts").as_uri())

    listed = {Path(a.path).name for a in mc.list_artifacts(case.logged.run_id, TRAINING_ARTIFACT_DIR)}
    assert listed == {"model_manifest.json", "training_manifest.yaml", "evaluation.json",
                      "reference_predictions.parquet", "feature_build.json"}
    dl = Path(mc.download_artifacts(case.logged.run_id, TRAINING_ARTIFACT_DIR, str(tmp_path / "dl")))
    registry_manifest = json.loads((dl / MODEL_MANIFEST_NAME).read_text())
    assert registry_manifest["mlflow_run_id"] == case.logged.run_id
    version_files = download_version(mc, "m_log", "1", tmp_path / "version")
    assert version_files.onnx == version_files.mlflow_model / "model.onnx"
    assert (version_files.mlflow_model / "MLmodel").is_file()
    assert sha256_file(version_files.onnx) == manifest.onnx.sha256
    assert not list(version_files.mlflow_model.rglob("*.pkl")) and not list(dl.glob("*.pkl"))
    mv = mc.get_model_version("m_log", "1")
    (model_output,) = run.outputs.model_outputs
    assert mv.source == f"models:/{model_output.model_id}" and mv.run_id == case.logged.run_id

    assert run.inputs is not None
    (ds_input,) = run.inputs.dataset_inputs
    input_tags = {t.key: t.value for t in ds_input.tags}
    assert ds_input.dataset.name == DATASET_ID
    assert input_tags["dataset_manifest_digest"] == manifest.dataset_manifest_digest
    assert manifest.dataset_manifest_digest.startswith(ds_input.dataset.digest)
    assert json.loads(ds_input.dataset.profile)["sha256"] == manifest.dataset_manifest_digest
    assert len(manifest.dataset_manifest_digest) == 64

    second = new_case("m_log")
    assert second.logged.version == "2"
    assert aliases(data_root, "m_log") == {STAGING: "2"}


# --- promotion --------------------------------------------------------------------------------


def test_promote_passes_and_records_history(new_case: Any, data_root: Path) -> None:
    v1 = new_case("m_promote")
    first = promote("m_promote", v1.logged.version, data_root=data_root, dataset_id=DATASET_ID)
    assert first.promoted, first.decision.reasons
    assert first.previous_version is None
    v2 = new_case("m_promote")
    second = promote("m_promote", v2.logged.version, data_root=data_root)
    assert second.promoted and second.previous_version == "1"
    assert production_version(data_root, "m_promote") == "2"
    history = production_history(data_root, "m_promote")
    assert [(e["action"], e["version"], e["previous"]) for e in history] == [("promote", "1", None),
                                                                             ("promote", "2", "1")]
    tags = client(data_root).get_model_version("m_promote", "2").tags
    assert tags["previous_production"] == "1" and tags["promoted_at"].endswith("Z")
    names = {c.name for c in second.decision.checks}
    assert {"verify_dataset", "dataset_manifest_digest", "artifact_sha256[model.onnx]", "dataset_dir_exists",
            "dataset_manifest_exists", "guardrail[test_sharpe]", "guardrail[test_max_drawdown]"} <= names


def _break(kind: str, case: Case, data_root: Path, tmp_path: Path) -> dict[str, Any]:
    """Apply one fault; returns extra promote kwargs."""
    if kind == "flipped_byte":
        flip_byte(case.dataset_dir / "data.parquet")
    elif kind == "dataset_deleted":
        shutil.rmtree(case.dataset_dir)
    elif kind == "dataset_id":
        return {"dataset_id": "some_other_ds"}
    elif kind == "onnx_sha":
        flip_byte(artifact_path(data_root, case.logged.model_name, case.logged.version, "model.onnx"), 40)
    elif kind == "review_block":
        db = tmp_path / "review.db"
        ReviewQueue(db).record_gaps([Gap("btc", datetime(2026, 1, 1, tzinfo=UTC),
                                         datetime(2026, 1, 1, 0, 30, tzinfo=UTC), 30.0)], "p1")
        return {"review_db": db}
    return {}


@pytest.mark.parametrize(("kind", "failed"), [
    ("flipped_byte", {"verify_dataset"}),
    ("dataset_deleted", {"dataset_dir_exists", "dataset_manifest_exists", "verify_dataset"}),
    ("dataset_id", {"dataset_id"}),
    ("onnx_sha", {"artifact_sha256[model.onnx]"}),
    ("guardrail", {"guardrail[test_sharpe]", "guardrail[test_max_drawdown]"}),
    ("review_block", {"review_queue_unblocked"}),
])
def test_promotion_refuses_and_leaves_production(kind: str, failed: set[str], new_case: Any, data_root: Path,
                                                 tmp_path: Path) -> None:
    key = f"m_refuse_{kind}"
    good = new_case(key)
    assert promote(key, good.logged.version, data_root=data_root).promoted
    metrics = {"test_sharpe": -0.3, "test_max_drawdown": 0.9} if kind == "guardrail" else None
    bad = new_case(key, metrics=metrics)
    extra = _break(kind, bad, data_root, tmp_path)
    result = promote(key, bad.logged.version, data_root=data_root, guardrails=Guardrails(min_sharpe=0.5), **extra)
    assert not result.promoted and not result.decision.ok
    assert {c.name for c in result.decision.checks if not c.passed} == failed
    assert len(result.decision.reasons) == len(failed)
    assert production_version(data_root, key) == "1"
    assert aliases(data_root, key) == {STAGING: "2", PRODUCTION: "1"}
    assert len(production_history(data_root, key)) == 1


def test_promotion_lists_every_failed_reason_and_is_never_cached(new_case: Any, data_root: Path,
                                                                 tmp_path: Path) -> None:
    case = new_case("m_all", metrics={"test_sharpe": -1.0, "test_max_drawdown": 0.2})
    clean = evaluate_promotion("m_all", 1, data_root=data_root, guardrails=Guardrails(min_sharpe=-2.0))
    assert clean.ok, clean.reasons
    flip_byte(case.dataset_dir / "data.parquet")
    flip_byte(artifact_path(data_root, "m_all", "1", "model.onnx"), 40)
    db = tmp_path / "review.db"
    ReviewQueue(db).record_gaps([Gap("eth", datetime(2026, 1, 2, tzinfo=UTC),
                                     datetime(2026, 1, 2, 1, tzinfo=UTC), 60.0)], "p")
    result = promote("m_all", 1, data_root=data_root, dataset_id="nope", review_db=db,
                     guardrails=Guardrails(min_sharpe=0.0))
    failed = [c.name for c in result.decision.checks if not c.passed]
    assert set(failed) == {"verify_dataset", "artifact_sha256[model.onnx]", "dataset_id", "guardrail[test_sharpe]",
                           "review_queue_unblocked"}
    assert any("file_sha256" in r for r in result.decision.reasons)
    assert PRODUCTION not in aliases(data_root, "m_all")


# --- rollback ---------------------------------------------------------------------------------


def test_rollback_restores_and_replays(new_case: Any, data_root: Path, tmp_path: Path) -> None:
    new_case("m_rb")
    new_case("m_rb")
    assert promote("m_rb", 1, data_root=data_root).promoted
    assert promote("m_rb", 2, data_root=data_root).promoted
    db = tmp_path / "review.db"
    ReviewQueue(db).record_gaps([Gap("sol", datetime(2026, 1, 3, tzinfo=UTC),
                                     datetime(2026, 1, 3, 0, 20, tzinfo=UTC), 20.0)], "p")
    result = rollback("m_rb", 1, data_root=data_root, review_db=db)
    assert result.ok, result.reasons
    assert len(result.open_review_blocks) == 1  # reported, not enforced: rollback is the way out of trouble
    assert result.previous_version == "2"
    assert result.replay is not None and result.replay.ok and result.replay.rows == 64
    assert result.replay.max_abs_diff <= 1e-6
    assert production_version(data_root, "m_rb") == "1"
    last = production_history(data_root, "m_rb")[-1]
    assert (last["action"], last["version"], last["previous"], last["replay_rows"], last["open_review_blocks"]) == (
        "rollback", "1", "2", 64, 1)
    info = describe_version("m_rb", 1, data_root=data_root)
    assert info["aliases"] == [PRODUCTION] and info["run_tags"]["training_id"] == "train_m_rb_1"
    assert client(data_root).get_model_version("m_rb", "1").tags["rolled_back_at"].endswith("Z")


def test_rollback_refuses_when_dataset_broken(new_case: Any, data_root: Path) -> None:
    v1 = new_case("m_rb_bad")
    new_case("m_rb_bad")
    assert promote("m_rb_bad", 1, data_root=data_root).promoted
    assert promote("m_rb_bad", 2, data_root=data_root).promoted
    flip_byte(v1.dataset_dir / "data.parquet")
    result = rollback("m_rb_bad", 1, data_root=data_root)
    assert not result.ok and any(r.startswith("verify_dataset") for r in result.reasons)
    assert production_version(data_root, "m_rb_bad") == "2"
    assert len(production_history(data_root, "m_rb_bad")) == 2


def test_replay_detects_tampered_reference(new_case: Any, data_root: Path, tmp_path: Path) -> None:
    case = new_case("m_replay")
    assert replay_reference(case.model_dir).ok
    copy = tmp_path / "copy"
    shutil.copytree(case.model_dir, copy)
    table = pq.read_table(copy / "reference_predictions.parquet")
    col = table.column_names.index("proba_0")
    tampered = table.set_column(col, "proba_0", pa.array(table.column("proba_0").to_numpy() + 1e-4))
    pq.write_table(tampered, copy / "reference_predictions.parquet")
    report = replay_reference(copy)
    assert not report.ok and report.max_abs_diff == pytest.approx(1e-4, rel=1e-3)

    pq.write_table(tampered, artifact_path(data_root, "m_replay", "1", "reference_predictions.parquet"))
    refused = rollback("m_replay", 1, data_root=data_root)
    assert not refused.ok
    assert {r.split(":")[0] for r in refused.reasons} == {"artifact_sha256[reference_predictions.parquet]",
                                                          "replay_reference"}
    assert PRODUCTION not in aliases(data_root, "m_replay")


# --- lineage ----------------------------------------------------------------------------------


def test_lineage_intact_then_pinpoints_broken_link(new_case: Any, data_root: Path) -> None:
    case = new_case("m_lineage")
    assert promote("m_lineage", 1, data_root=data_root).promoted
    report = lineage("m_lineage", alias=PRODUCTION, data_root=data_root)
    assert report.ok, report.render()
    names = [link.name for link in report.links]
    assert names[:4] == ["model_version", "model_manifest", "onnx_sha256", "training_run"]
    assert {"dataset_manifest_digest", "data_file_sha256[data.parquet]", "source_hash",
            "snapshot.source_hash", "run_tag[training_manifest_sha]"} <= set(names)
    assert "BROKEN" not in report.render()

    flip_byte(case.dataset_dir / "data.parquet")
    broken = lineage("m_lineage", version=1, data_root=data_root)
    assert [link.name for link in broken.broken] == ["data_file_sha256[data.parquet]"]
    assert "FAIL  data_file_sha256[data.parquet]" in broken.render()

    manifest = json.loads((case.dataset_dir / "manifest.json").read_text())
    manifest["dataset_version"] = "v2"
    (case.dataset_dir / "manifest.json").write_text(json.dumps(manifest))
    assert "dataset_manifest_digest" in [link.name for link in lineage("m_lineage", version=1,
                                                                         data_root=data_root).broken]


def test_lineage_unknown_version(data_root: Path, new_case: Any) -> None:
    new_case("m_lineage_missing")
    report = lineage("m_lineage_missing", version=7, data_root=data_root)
    assert not report.ok and report.broken[0].name == "model_version"
