# Over 400 lines: the four training steps and rollback share one run config and one model record.
"""Training: trained_model → model_evaluation → registered_model → promotion, plus rollback and rerun jobs.

The `training_job` run config is the payload users send today (model_key, feature_repo_ref,
hyperparams, schedule, run_coingecko_fetch, auto_promote); the partition is the dataset_version.
"""

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import dagster as dg
from pydantic import Field

from feature_platform.contracts.manifest import MANIFEST_NAME
from feature_platform.contracts.model_manifest import MODEL_MANIFEST_NAME, TRAINING_MANIFEST_NAME
from feature_platform.contracts.safe_read import read_json
from feature_platform.orchestration.assets import published_dataset
from feature_platform.orchestration.checks import DATASET_CHECK_DESCRIPTIONS, integrity_checks
from feature_platform.orchestration.feature_assets import feature_build
from feature_platform.orchestration.market_assets import MarketConfig, TimeSeriesResource
from feature_platform.orchestration.metadata import checks_metadata, floats, sign_if_configured, signature_metadata
from feature_platform.orchestration.partitions import dataset_versions
from feature_platform.orchestration.resources import PlatformPaths, RayResource
from feature_platform.orchestration.story import link_metadata, platform_asset
from feature_platform.registry.guardrails import DEFAULT_MAX_DRAWDOWN, DEFAULT_MIN_SHARPE, Guardrails
from feature_platform.training.record import TrainingRecord, read_training_record, record_path, write_training_record

GROUP = "training"


class TrainingConfig(dg.Config):
    model_key: str = Field("market_regime", description="registered model name and MLflow experiment")
    feature_repo_ref: str | None = Field(None, description="git ref of feature_repo the features were built at")
    hyperparams: dict[str, Any] = Field(default_factory=dict, description="overrides of the profile")
    hyperparam_profile: str | None = Field(None, description="saved tuning profile (default: 'default')")
    seed: int = Field(0, ge=0)
    schedule: Literal["adhoc", "backfill"] = "adhoc"
    run_coingecko_fetch: bool = Field(True, description="backfill the last UTC day of market data first")
    fit_on: Literal["auto", "local", "ray"] = Field(
        "auto", description="where the fit runs; auto: on the Ray cluster's training queue when the ray resource "
                            "has an address ($RAY_ADDRESS), else here. The model bytes do not change")


class TrainingSetConfig(dg.Config):
    as_of: str | None = Field(None, description="UTC time like 2026-01-31T00:00:00Z: feature rows created later are "
                                                "invisible, so a rebuild reproduces the same bytes (default: all rows)")
    shards: int = Field(1, ge=1, le=4096, description="hash-partition label and feature rows by entity into this "
                                                      "many shards, each joined on its own task, one file each")
    executor: Literal["auto", "inline", "process", "ray"] = Field(
        "auto", description="where shards are joined; auto: ray when the ray resource has an address, else "
                            "process (inline for one shard). The rows do not change")
    workers: int | None = Field(None, gt=0, description="parallel workers (default: the usable CPUs)")


class PromotionConfig(dg.Config):
    auto_promote: bool = Field(False, description="promote to production after a successful training run")
    dataset_id: str | None = Field(None, description="refuse unless the model was trained on this dataset_id")
    min_sharpe: float = Field(DEFAULT_MIN_SHARPE, description="guardrail: test Sharpe at least this")
    max_drawdown: float = Field(DEFAULT_MAX_DRAWDOWN, description="guardrail: test max drawdown at most this")

    def guardrails(self) -> Guardrails:
        return Guardrails(min_sharpe=self.min_sharpe, max_drawdown=self.max_drawdown)


def models_dir(paths: PlatformPaths) -> Path:
    return paths.layout.models


def read_record(paths: PlatformPaths, version: str) -> TrainingRecord:
    record = read_training_record(models_dir(paths), version)
    if record is None:
        raise dg.Failure(f"no trained model recorded for dataset_version {version} "
                         f"({record_path(models_dir(paths), version)})")
    return record


def _fetch_last_day(paths: PlatformPaths, timeseries: TimeSeriesResource) -> str:
    """run_coingecko_fetch: the previous UTC day, through the same steps as the market assets."""
    from feature_platform.market.ingest import ingest_day
    from feature_platform.market.review import ReviewQueue
    from feature_platform.orchestration.market_assets import market_source

    config = MarketConfig.model_validate({})
    end = datetime.now(tz=UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = end - timedelta(days=1)
    store = timeseries.open()
    try:
        result = ingest_day(market_source(config, start), config.source, config.assets, start, end, store,
                            ReviewQueue(paths.layout.review_db))
    finally:
        store.close()
    return result.snapshot_marker


def _feature_build_json(paths: PlatformPaths, version: str) -> Path:
    return paths.layout.feature_build(version)


def _training_set_manifest(paths: PlatformPaths, version: str) -> Path:
    """The training set the training_set asset built last for this partition."""
    from feature_platform.features.training_set import current_training_set, training_sets_dir

    return current_training_set(training_sets_dir(paths.root), paths.dataset_id(version))[0]


@platform_asset(group=GROUP, stage="training_set", partitions_def=dataset_versions,
                deps=[published_dataset, feature_build], kinds={"feast", "duckdb", "parquet"},
                modules=["feature_platform.features.training_set"])
def training_set(context: dg.AssetExecutionContext, config: TrainingSetConfig,
                 paths: PlatformPaths, ray: RayResource) -> dg.MaterializeResult:
    """The dataset's label rows joined point-in-time with the feature build's offline features (as of each
    label's timestamp, within the view's TTL, optionally "as known at" ``as_of``): a spec v1 dataset of its
    own, the only data training reads. Refuses when the dataset or the feature build no longer verifies."""
    from feature_platform.datasets.executors import TaskError, choose_executor
    from feature_platform.features.training_set import (
        TrainingSetRefused,
        build_training_set,
        parse_as_of,
        training_set_parameters,
        training_sets_dir,
    )

    version = context.partition_key
    started = time.perf_counter()
    try:
        executor, address = choose_executor(None if config.executor == "auto" else config.executor, ray.address)
        if config.executor == "auto" and executor != "ray" and config.shards == 1:
            executor = "inline"  # one shard on this machine: no process to start
        result = build_training_set(paths.dataset_dir(version) / MANIFEST_NAME,
                                    _feature_build_json(paths, version), training_sets_dir(paths.root),
                                    as_of=parse_as_of(config.as_of), shards=config.shards, executor=executor,
                                    workers=config.workers, ray_address=address,
                                    store=ray.store() if executor == "ray" else None)
    except TaskError as exc:
        cause = exc.__cause__
        if isinstance(cause, (TrainingSetRefused, ValueError)):
            raise dg.Failure(f"training set for {version} refused: {cause}", allow_retries=False) from None
        raise
    except (TrainingSetRefused, ValueError) as exc:  # permanent: fail now with the one-line reason
        raise dg.Failure(f"training set for {version} refused: {exc}", allow_retries=False) from None
    signed = sign_if_configured(result.manifest_path)
    params = training_set_parameters(result.manifest)
    assert params is not None  # built just now as a training set
    return dg.MaterializeResult(metadata={
        "manifest_digest": result.digest, "dagster/row_count": result.manifest.row_count,
        "split_rows": dg.MetadataValue.json(dict(result.manifest.splits.rows)),
        "label_rows": params.label_rows, "unmatched_label_rows": params.unmatched_label_rows,
        "feature_build_sha256": params.feature_build.sha256, "as_of": params.join.as_of or "all rows",
        "ttl_seconds": dg.MetadataValue.json({v.name: v.ttl_seconds for v in params.feature_views}),
        "manifest": dg.MetadataValue.path(str(result.manifest_path)),
        **signed,
        "files": len(result.manifest.files), "executor": executor,
        "duration_s": round(time.perf_counter() - started, 3),
    }, data_version=dg.DataVersion(result.digest))


def _verify_training_set(context: dg.AssetCheckExecutionContext, paths: PlatformPaths) -> Any:
    from feature_platform.datasets.verify import verify_dataset

    return verify_dataset(_training_set_manifest(paths, context.op_execution_context.partition_key))


training_set_integrity = integrity_checks(training_set, name="training_set_integrity",
                                          descriptions=DATASET_CHECK_DESCRIPTIONS, verify=_verify_training_set)


@dg.asset_check(asset=training_set, blocking=True, name="no_feature_leakage",
                description="From the rows: no feature row used is after its label's timestamp, older than the "
                            "view's TTL, or (with as_of) created after as_of.")
def no_feature_leakage(context: dg.AssetCheckExecutionContext, paths: PlatformPaths) -> dg.AssetCheckResult:
    from feature_platform.features.training_set import audit_leakage

    report = audit_leakage(_training_set_manifest(paths, context.op_execution_context.partition_key))
    return dg.AssetCheckResult(passed=report.ok, severity=dg.AssetCheckSeverity.ERROR,
                               metadata=checks_metadata(report.checks))


@platform_asset(group=GROUP, stage="train", partitions_def=dataset_versions, deps=[training_set],
                kinds={"sklearn", "onnx", "mlflow"},
                modules=["feature_platform.training.train", "feature_platform.training.data",
                         "feature_platform.registry.tracking"])
def trained_model(context: dg.AssetExecutionContext, config: TrainingConfig, paths: PlatformPaths,
                  timeseries: TimeSeriesResource, ray: RayResource) -> dg.MaterializeResult:
    """Trains the regime classifier on the verified training set's train split (refuses otherwise), exports
    and checks ONNX, writes the model and training manifests, logs the MLflow run and registers a version."""
    from feature_platform.attest.attestation import (
        SIGNING_KEY_ENV,
        AttestationError,
        load_private_key,
        signing_key_from_env,
    )
    from feature_platform.features.training_set import TrainingSetRefused
    from feature_platform.registry.tracking import log_training
    from feature_platform.training.data import TrainingRefused
    from feature_platform.training.remote import RemoteFit, RemoteTrainingError
    from feature_platform.training.train import new_training_id, train_model

    version = context.partition_key
    if config.fit_on == "ray" and not ray.address:
        raise dg.Failure("fit_on 'ray' needs a Ray address (RAY_ADDRESS or the ray resource's address)",
                         allow_retries=False)
    remote = RemoteFit(address=ray.address, store=ray.store(), resource=ray.training_resource) \
        if ray.address and config.fit_on != "local" else None
    started = time.perf_counter()
    signing_key = signing_key_from_env()
    if signing_key is not None:
        try:
            load_private_key(signing_key)  # a key that cannot sign fails now, before training, for good
        except AttestationError as exc:
            raise dg.Failure(f"{SIGNING_KEY_ENV}: {exc}", allow_retries=False) from None
    snapshot = _fetch_last_day(paths, timeseries) if config.run_coingecko_fetch else None
    build_json = _feature_build_json(paths, version)
    try:
        training_set_manifest = _training_set_manifest(paths, version)
    except TrainingSetRefused as exc:
        raise dg.Failure(str(exc), allow_retries=False) from None
    try:
        result = train_model(
            training_set_manifest, models_dir(paths), model_key=config.model_key,
            training_id=new_training_id(), hyperparameters=config.hyperparams or None,
            profile=config.hyperparam_profile, seed=config.seed, schedule=config.schedule,
            feature_build_path=build_json if build_json.exists() else None,
            feature_repo_ref=config.feature_repo_ref, market_snapshot=snapshot, remote=remote,
        )
    except (TrainingRefused, RemoteTrainingError) as exc:  # permanent: fail now with the one-line reason
        raise dg.Failure(str(exc), allow_retries=False) from None
    logged = log_training(result.model_dir, data_root=paths.root,
                          feature_build_path=build_json if build_json.exists() else None, schedule=config.schedule,
                          signing_key=signing_key)
    m = result.model_manifest
    write_training_record(models_dir(paths), version, TrainingRecord(
        training_id=m.training_id, model_dir=str(result.model_dir), model_name=logged.model_name,
        model_version=str(logged.version), run_id=logged.run_id, model_key=m.model_key))
    return dg.MaterializeResult(metadata={
        "training_id": m.training_id, "model_version": str(logged.version), "mlflow_run_id": logged.run_id,
        "dataset_manifest_digest": m.dataset_manifest_digest, "onnx_sha256": m.onnx.sha256,
        "onnx_parity_max_abs_diff": dg.MetadataValue.float(float(m.onnx.parity_max_abs_diff)),
        "hyperparameters": dg.MetadataValue.json(m.hyperparameters),
        **floats(m.metrics),
        **_mlflow_metadata(paths, logged.run_id, logged.model_name, str(logged.version)),
        "model_dir": dg.MetadataValue.path(str(result.model_dir)), "coingecko_snapshot": snapshot or "skipped",
        "signed": signing_key is not None,
        "fit_node": result.fit_node,
        "duration_s": dg.MetadataValue.float(round(time.perf_counter() - started, 3)),
    })


@dg.asset_check(asset=trained_model, blocking=True, name="trained_on_verified_dataset",
                description="The model manifest names a training set that verifies now, with the same digest, "
                            "and so do the dataset and feature build it was joined from.")
def trained_on_verified_dataset(context: dg.AssetCheckExecutionContext, paths: PlatformPaths) -> dg.AssetCheckResult:
    from feature_platform.features.training_set import verify_training_input
    from feature_platform.training.artifacts import read_model_manifest

    record = read_record(paths, context.op_execution_context.partition_key)
    manifest = read_model_manifest(Path(record.model_dir) / MODEL_MANIFEST_NAME)
    report = verify_training_input(Path(manifest.dataset_manifest_path))
    same = report.manifest_digest == manifest.dataset_manifest_digest
    return dg.AssetCheckResult(passed=report.ok and same, severity=dg.AssetCheckSeverity.ERROR, metadata={
        "expected": manifest.dataset_manifest_digest, "actual": report.manifest_digest or "unverifiable",
        "failed_checks": dg.MetadataValue.json([c.line() for c in report.failures])})


@platform_asset(group=GROUP, stage="evaluate", partitions_def=dataset_versions, deps=[trained_model],
                kinds={"onnx"}, modules=["feature_platform.training.evaluate", "feature_platform.training.data"])
def model_evaluation(context: dg.AssetExecutionContext, config: TrainingConfig,
                     paths: PlatformPaths) -> dg.MaterializeResult:
    """Positions from the ONNX model, backtest on val and test (all splits with schedule=backfill)."""
    from feature_platform.storage.files import write_atomic
    from feature_platform.training.artifacts import read_model_manifest
    from feature_platform.training.data import load_splits
    from feature_platform.training.evaluate import evaluate_model

    record = read_record(paths, context.partition_key)
    model_dir = Path(record.model_dir)
    manifest = read_model_manifest(model_dir / MODEL_MANIFEST_NAME)
    evaluation = evaluate_model(model_dir / "model.onnx", load_splits(Path(manifest.dataset_manifest_path)),
                                schedule=config.schedule)
    out = write_atomic(paths.reports(context.partition_key) / f"model_evaluation_{config.schedule}.json",
                       json.dumps(evaluation.to_json_dict(), indent=2, sort_keys=True).encode())
    return dg.MaterializeResult(metadata={
        **floats(evaluation.metrics), "schedule": config.schedule, "report": dg.MetadataValue.path(str(out))})


@dg.asset_check(asset=model_evaluation, blocking=True, name="guardrails",
                description="Offline Sharpe at least the target, drawdown within policy (test split).")
def guardrails(context: dg.AssetCheckExecutionContext, config: PromotionConfig,
               paths: PlatformPaths) -> dg.AssetCheckResult:
    version = context.op_execution_context.partition_key
    found = sorted(paths.reports(version).glob("model_evaluation_*.json"))
    metrics = read_json(found[-1])["metrics"] if found else {}
    results = config.guardrails().check(metrics)
    return dg.AssetCheckResult(passed=all(r.passed for r in results), severity=dg.AssetCheckSeverity.ERROR,
                               metadata={"expected": "; ".join(f"{r.name} {r.expected}" for r in results),
                                         "actual": "; ".join(f"{r.name} = {r.actual}" for r in results)})


@platform_asset(group=GROUP, stage="register", partitions_def=dataset_versions, deps=[model_evaluation],
                kinds={"mlflow"}, modules=["feature_platform.registry.tracking"])
def registered_model(context: dg.AssetExecutionContext, paths: PlatformPaths) -> dg.MaterializeResult:
    """The MLflow registry version of this training run: aliases and lineage tags as the registry holds them."""
    record = read_record(paths, context.partition_key)
    return dg.MaterializeResult(metadata=registry_metadata(paths, record.model_name, record.model_version))


def registry_metadata(paths: PlatformPaths, model_name: str, version: str) -> dict[str, Any]:
    """The registry's view of a version, read back now: aliases (with who holds production), tags, links."""
    from feature_platform.registry.tracking import PRODUCTION, describe_version

    info = describe_version(model_name, version, data_root=paths.root)
    return {
        "model_name": model_name, "model_version": version,
        "aliases": dg.MetadataValue.json(info.get("aliases", [])),
        "is_production": PRODUCTION in info.get("aliases", []),
        "tags": dg.MetadataValue.json(info.get("tags", {})),
        **_mlflow_metadata(paths, str(info.get("run_id") or ""), model_name, version),
    }


def _mlflow_metadata(paths: PlatformPaths, run_id: str, model_name: str, version: str) -> dict[str, Any]:
    """Links to the MLflow run and model version: UI pages on a tracking server, local directories otherwise."""
    from feature_platform.registry.links import mlflow_links

    if not run_id:
        return {}
    return {name: link_metadata(link.kind, link.target)
            for name, link in mlflow_links(paths.root, run_id, model_name, version).items()}


@platform_asset(group=GROUP, stage="promote", partitions_def=dataset_versions, deps=[registered_model],
                kinds={"mlflow"}, modules=["feature_platform.registry.promotion"])
def promotion(context: dg.AssetExecutionContext, config: PromotionConfig,
              paths: PlatformPaths) -> dg.MaterializeResult:
    """auto_promote: move alias `production` after every promotion check passes *now*; otherwise a no-op.

    The checks run here, at promotion time, never cached: the dataset is re-verified, the registry's ONNX
    re-hashed, guardrails and open data-gap/anomaly blocks re-read.
    """
    from feature_platform.registry.promotion import promote

    record = read_record(paths, context.partition_key)
    if not config.auto_promote:
        return dg.MaterializeResult(metadata={"promoted": False, "reason": "auto_promote is off (fp promote)",
                                              **registry_metadata(paths, record.model_name,
                                                                  record.model_version)})
    result = promote(record.model_name, record.model_version, data_root=paths.root,
                     dataset_id=config.dataset_id,
                     guardrails=config.guardrails(),
                     review_db=paths.layout.review_db)
    signatures = signature_metadata(result.decision.signatures)
    if not result.promoted:
        # a signature refusal is permanent: retrying cannot re-sign or un-change the bytes
        raise dg.Failure(f"promotion of {record.model_name} v{record.model_version} refused: "
                         + "; ".join(result.decision.reasons),
                         metadata={"reasons": dg.MetadataValue.json(result.decision.reasons), **signatures},
                         allow_retries=False if result.decision.signature_refused else None)
    # read back after the move: what the registry holds now, also as an observation of registered_model so
    # its page shows the aliases after promotion, not the ones it had when it was registered
    after = registry_metadata(paths, record.model_name, record.model_version)
    context.log_event(dg.AssetObservation(asset_key=registered_model.key, partition=context.partition_key,
                                          metadata={**after, "observed_by": "promotion"}))
    return dg.MaterializeResult(metadata={"promoted": True, **after, **signatures,
                                          "previous_production": str(result.previous_version or "none")})


TRAINING_ASSETS = [training_set, trained_model, model_evaluation, registered_model, promotion]
TRAINING_CHECKS = [training_set_integrity, no_feature_leakage, trained_on_verified_dataset, guardrails]
training_job = dg.define_asset_job("training_job", selection=dg.AssetSelection.assets(*TRAINING_ASSETS),
                                   description="training set → train → evaluate → register → (auto) promote for a "
                                               "dataset_version")


class RollbackConfig(dg.Config):
    model_key: str = "market_regime"
    to_version: str = Field(description="registered model version to put back in production")


@dg.op
def rollback_model(context: dg.OpExecutionContext, config: RollbackConfig, paths: PlatformPaths) -> None:
    from feature_platform.registry.rollback import rollback

    result = rollback(config.model_key, config.to_version, data_root=paths.root,
                      review_db=paths.layout.review_db)
    if not result.ok:
        raise dg.Failure("rollback refused: " + "; ".join(result.reasons))
    context.log.info(f"production is version {config.to_version} again (was {result.previous_version})")


@dg.job(description="re-verify version V's dataset and artifacts, replay its reference batch, move production")
def rollback_job() -> None:
    rollback_model()


class RerunConfig(dg.Config):
    training_id: str


@dg.op
def rerun_model(context: dg.OpExecutionContext, config: RerunConfig, paths: PlatformPaths) -> None:
    from feature_platform.training.rerun import rerun_training

    manifest = models_dir(paths) / config.training_id / TRAINING_MANIFEST_NAME
    report = rerun_training(manifest, models_dir(paths) / "reruns")
    context.log.info(json.dumps(report.to_json_dict()))
    if not report.reproduced:
        raise dg.Failure("rerun did not reproduce: " + "; ".join(report.differences),
                         metadata=checks_metadata(report.checks))


@dg.job(description="retrain from training_manifest.yaml with every reference locked and report reproducibility")
def rerun_job() -> None:
    rerun_model()


def training_run_config(payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The training payload users send today → (dataset_version partition, training_job run config).

    Raises ``PayloadError`` (a ValueError, one line naming the field) unless the payload parses strictly.
    """
    from feature_platform.training.payload import parse_training_payload

    parsed = parse_training_payload(payload).model_dump(mode="json", exclude_unset=True)
    version = parsed.pop("dataset_version")
    promote: dict[str, Any] = {"auto_promote": parsed.pop("auto_promote", False)}
    ops: dict[str, Any] = {name: {"config": parsed} for name in ("trained_model", "model_evaluation")}
    ops["promotion"] = {"config": promote}
    ops["model_evaluation_guardrails"] = {"config": {}}
    return version, {"ops": ops}
