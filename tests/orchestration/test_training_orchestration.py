"""The training chain through Dagster and the CLI: train → evaluate → register → promote, refusals,
rollback, rerun and lineage, on an ephemeral instance and a real MLflow SQLite store."""

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pytest

from feature_platform.orchestration.headless import RefreshOutcome, run_feature_build, run_refresh, run_training
from feature_platform.orchestration.resources import PlatformPaths
from feature_platform.orchestration.run_report import RunSummary
from feature_platform.orchestration.training_assets import training_run_config
from tests.conftest import CliResult, offline_defs

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
SMALL = {**QUIET, "ops": {"source_snapshot": {"config": {"rows": 6_000, "entities": 50, "batch_rows": 2_000,
                                                          "seed": 3}}}}
PAYLOAD = {"model_key": "market_regime", "dataset_version": "m1", "hyperparam_profile": "fast",
           "schedule": "adhoc", "run_coingecko_fetch": False, "auto_promote": True}


training_set_only = dg.define_asset_job("training_set_only", selection=["training_set"])
trained_model_only = dg.define_asset_job("trained_model_only", selection=["trained_model"])


@pytest.fixture(scope="module")
def defs(root: Path, paths: PlatformPaths) -> dg.Definitions:
    return offline_defs(root, paths, training_set_only, trained_model_only)


@pytest.fixture(scope="module")
def published(defs: dg.Definitions, instance: dg.DagsterInstance) -> RefreshOutcome:
    outcome = run_refresh("m1", instance=instance, defs=defs, run_config=SMALL)
    assert outcome.refresh.succeeded, outcome.refresh
    built = run_feature_build("m1", instance=instance, defs=defs, run_config={
        **QUIET, "ops": {"feature_build": {"config": {"allow_dirty": True}}}})
    assert built.succeeded, built
    return outcome


@pytest.fixture(scope="module")
def trained(published: RefreshOutcome, defs: dg.Definitions, instance: dg.DagsterInstance) -> RunSummary:
    version, config = training_run_config(PAYLOAD)
    return run_training(version, instance=instance, defs=defs, run_config={**config, **QUIET})


def _production(root: Path) -> str | None:
    from feature_platform.registry.tracking import client

    aliases = client(root).get_registered_model("market_regime").aliases
    return str(aliases["production"]) if "production" in aliases else None


def test_payload_is_validated() -> None:
    with pytest.raises(ValueError, match="unknown payload field"):
        training_run_config({"dataset_version": "m1", "epochs": 3})
    with pytest.raises(ValueError, match="dataset_version"):
        training_run_config({"dataset_version": "../m1"})


def test_training_job_trains_registers_and_auto_promotes(trained: RunSummary, root: Path) -> None:
    assert trained.succeeded, trained
    assert set(trained.materialized) == {"training_set", "trained_model", "model_evaluation", "registered_model",
                                         "promotion"}
    assert trained.checks == {"training_set:no_feature_leakage": True, "training_set:sha256_matches": True,
                              "training_set:feature_order_matches": True, "training_set:schema_valid": True,
                              "training_set:size_within_limit": True,
                              "trained_model:trained_on_verified_dataset": True, "model_evaluation:guardrails": True}
    assert _production(root) == "1"
    models = root / "models"
    assert list(models.rglob("model.onnx"))
    assert not [p for p in models.rglob("*") if p.suffix in (".pkl", ".pickle", ".joblib")]


def test_promotion_refusals_rollback_rerun_and_lineage(trained: RunSummary, defs: dg.Definitions,
                                                       instance: dg.DagsterInstance, root: Path,
                                                       paths: PlatformPaths, cli: Callable[..., CliResult],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    version, config = training_run_config({**PAYLOAD, "auto_promote": False})
    second = run_training(version, instance=instance, defs=defs, run_config={**config, **QUIET})
    assert second.succeeded and _production(root) == "1"
    monkeypatch.setenv("FP_DATA_ROOT", str(root))
    promote = ("promote", "--model-key", "market_regime", "--version", "2")

    code, out, _ = cli(*promote, "--dataset-id", "some_other_dataset")
    assert code == 1 and "FAIL dataset_id" in out and _production(root) == "1"

    data = paths.dataset_dir("m1") / "data.parquet"
    original = data.read_bytes()
    flipped = bytearray(original)
    flipped[len(flipped) // 2] ^= 0xFF
    data.write_bytes(bytes(flipped))
    code, out, _ = cli(*promote)
    data.write_bytes(original)
    assert code == 1 and "file_sha256" in out and _production(root) == "1"

    moved = root / "moved-away"
    shutil.move(paths.dataset_dir("m1"), moved)
    code, out, _ = cli(*promote)
    shutil.move(moved, paths.dataset_dir("m1"))
    assert code == 1 and "REFUSED" in out and _production(root) == "1"

    code, out, _ = cli(*promote)
    assert code == 0 and "PROMOTED" in out and _production(root) == "2"
    code, out, _ = cli("rollback", "--model-key", "market_regime", "--to-version", "1")
    assert code == 0 and "ROLLED BACK" in out and "replay: 256 rows" in out and _production(root) == "1"

    code, out, _ = cli("lineage", "--model-key", "market_regime")
    assert code == 0 and out.startswith("lineage market_regime v1: OK"), out
    # model → training set → feature build (+ its offline file) → dataset → source, each link re-verified
    for link in ("training_set_manifest_digest", "training_set.data_file_sha256[data.parquet]",
                 "feature_build_sha256", "feature_view_sha256[dataset_features]", "dataset_manifest_digest",
                 "data_file_sha256[data.parquet]", "source_hash"):
        assert f"ok    {link}:" in out, link
    training_id = json.loads((root / "models" / "by_dataset_version" / "m1.json").read_text())["training_id"]
    code, out, _ = cli("rerun", "--training-id", training_id, "--json")
    report = json.loads(out)
    assert code == 0 and report["dataset_digest_same"] and report["metrics_identical"]

    os.truncate(data, 100)  # a broken link: lineage names it and exits 1
    code, out, _ = cli("lineage", "--model-key", "market_regime", "--alias", "production")
    data.write_bytes(original)
    assert code == 1 and "FAIL  data_file_sha256[data.parquet]" in out


def test_rollback_and_rerun_jobs_run_through_dagster(trained: RunSummary, defs: dg.Definitions,
                                                     instance: dg.DagsterInstance, root: Path) -> None:
    from feature_platform.registry.promotion import promote

    assert promote("market_regime", "1", data_root=root, review_db=root / "review.sqlite").promoted
    version, config = training_run_config({**PAYLOAD, "auto_promote": True})
    run_training(version, instance=instance, defs=defs, run_config={**config, **QUIET})
    newest = _production(root)
    assert newest is not None and newest != "1"
    rollback = defs.resolve_job_def("rollback_job").execute_in_process(
        instance=instance, raise_on_error=False,
        run_config={**QUIET, "ops": {"rollback_model": {"config": {"model_key": "market_regime", "to_version": "1"}}}})
    assert rollback.success and _production(root) == "1"
    missing = defs.resolve_job_def("rollback_job").execute_in_process(
        instance=instance, raise_on_error=False,
        run_config={**QUIET, "ops": {"rollback_model": {"config": {"to_version": "999"}}}})
    assert not missing.success and _production(root) == "1"
    training_id = json.loads((root / "models" / "by_dataset_version" / "m1.json").read_text())["training_id"]
    rerun = defs.resolve_job_def("rerun_job").execute_in_process(
        instance=instance, raise_on_error=False,
        run_config={**QUIET, "ops": {"rerun_model": {"config": {"training_id": training_id}}}})
    assert rerun.success


def _damaged(path: Path) -> bytes:
    original = path.read_bytes()
    flipped = bytearray(original)
    flipped[len(flipped) // 2] ^= 0xFF
    path.write_bytes(bytes(flipped))
    return original


def test_training_set_and_trained_model_refuse_alone_when_inputs_no_longer_verify(
        trained: RunSummary, defs: dg.Definitions, instance: dg.DagsterInstance, paths: PlatformPaths,
        root: Path) -> None:
    """Blocking checks hold inside one run; a later run selecting only one asset re-verifies its inputs."""
    def alone(job: str) -> dg.ExecuteInProcessResult:
        return defs.resolve_job_def(job).execute_in_process(
            instance=instance, partition_key="m1", raise_on_error=False,
            run_config={**QUIET, "ops": {"trained_model": {"config": {"run_coingecko_fetch": False,
                                                                        "hyperparam_profile": "fast"}}}}
            if job == "trained_model_only" else QUIET)

    def reason(result: dg.ExecuteInProcessResult) -> str:
        failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
        return str(failure.step_failure_data.user_failure_data.description)

    models_before = sorted((root / "models").glob("train-*"))
    features = root / "features" / "offline" / "m1" / "dataset_features.parquet"
    original = _damaged(features)
    try:
        result = alone("training_set_only")
    finally:
        features.write_bytes(original)
    assert not result.success and "dataset_features.parquet: sha256" in reason(result)

    dataset = paths.dataset_dir("m1") / "data.parquet"
    original = _damaged(dataset)
    try:
        refused_set, refused_model = alone("training_set_only"), alone("trained_model_only")
    finally:
        dataset.write_bytes(original)
    assert not refused_set.success and "failed verification" in reason(refused_set)
    # the training set itself still verifies; what it was joined from does not, so training refuses
    assert not refused_model.success and "upstream_dataset" in reason(refused_model)
    assert sorted((root / "models").glob("train-*")) == models_before

    assert alone("training_set_only").success  # inputs restored: the gate opens again


def test_on_a_ray_address_the_training_set_shards_and_the_fit_run_on_the_cluster(
        trained: RunSummary, root: Path, paths: PlatformPaths, instance: dg.DagsterInstance, ray_cluster: str) -> None:
    """With the ray resource pointing at a cluster: training_set joins its shards there and trained_model fits on
    the training queue; the model is the one a local fit of that training set gives."""
    from feature_platform.features.training_set import current_training_set, training_sets_dir
    from feature_platform.orchestration.resources import RayResource
    from feature_platform.training.train import train_model

    on_ray = offline_defs(root, paths, training_set_only, trained_model_only, ray=RayResource(address=ray_cluster))
    built = on_ray.resolve_job_def("training_set_only").execute_in_process(
        instance=instance, partition_key="m1",
        run_config={**QUIET, "ops": {"training_set": {"config": {"shards": 2}}}})
    assert built.success
    set_meta = built.asset_materializations_for_node("training_set")[0].metadata
    assert set_meta["files"].value == 2 and set_meta["executor"].value == "ray"
    fit = on_ray.resolve_job_def("trained_model_only").execute_in_process(
        instance=instance, partition_key="m1",
        run_config={**QUIET, "ops": {"trained_model": {"config": {"run_coingecko_fetch": False, "seed": 4,
                                                                    "hyperparam_profile": "fast"}}}})
    assert fit.success
    meta = fit.asset_materializations_for_node("trained_model")[0].metadata
    assert meta["fit_node"].value != "local"
    manifest, _ = current_training_set(training_sets_dir(paths.root), paths.dataset_id("m1"))
    local = train_model(manifest, root / "local-fit", training_id="t-local", profile="fast", seed=4)
    assert meta["onnx_sha256"].value == local.model_manifest.onnx.sha256
