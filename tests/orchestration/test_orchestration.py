"""The refresh graph on an ephemeral Dagster instance: assets, blocking checks, schedule, sensors."""


import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from feature_platform.datasets.verify import verify_dataset
from feature_platform.definitions import build_defs
from feature_platform.orchestration.assets import dataset, published_dataset, quality_report
from feature_platform.orchestration.headless import RefreshOutcome, run_refresh
from feature_platform.orchestration.resources import (
    MetricsResource,
    NotifierResource,
    PlatformPaths,
    RetrySettings,
    at_launch,
)
from feature_platform.orchestration.schedules import nightly_refresh
from feature_platform.orchestration.sensors import inbox_sensor, refresh_failed
from feature_platform.storage.catalog import Catalog
from feature_platform.storage.dataset_publish import current_pointer, verify_published
from feature_platform.storage.local_store import LocalObjectStore
from tests.conftest import BuildResult, offline_defs
from tests.s3_server import FAKE_CREDENTIALS, REGION, s3_bucket_fixture, s3_server_fixture  # noqa: F401
from tests.servers import LoopbackHttp, serve

SMALL = {"ops": {"source_snapshot": {"config": {"rows": 3_000, "batch_rows": 1_000, "seed": 11}}}}
DRIFTED = {"ops": {**SMALL["ops"], "dataset": {"config": {"augment_noise": 1.0}}}}

tamper_job = dg.define_asset_job(
    "tamper_job",
    selection=dg.AssetSelection.checks_for_assets(dataset) | dg.AssetSelection.assets(quality_report,
                                                                                       published_dataset),
)
build_only_job = dg.define_asset_job("build_only_job", selection=["source_snapshot", "dataset"])
gate_only_job = dg.define_asset_job("gate_only_job", selection=["source_snapshot", "dataset", "quality_report"])
publish_only_job = dg.define_asset_job("publish_only_job", selection=["published_dataset"])


@pytest.fixture(scope="module")
def hooks() -> Iterator[LoopbackHttp]:
    """Stands in for Slack, PagerDuty and the Pushgateway: a real HTTP server on loopback."""
    yield from serve()


@pytest.fixture(scope="module")
def defs(root: Path, paths: PlatformPaths, hooks: LoopbackHttp) -> dg.Definitions:
    launch = at_launch(PlatformPaths, paths)
    return offline_defs(
        root, launch, tamper_job, build_only_job, gate_only_job, publish_only_job,
        retry=RetrySettings(delays_seconds=[0.05, 0.1]),
        notifier=NotifierResource(outbox_dir=str(root / "outbox"), slack_webhook_url=f"{hooks.url}/slack",
                                  smtp_host=None, pagerduty_routing_key="routing-key-1",
                                  pagerduty_url=f"{hooks.url}/pagerduty", paths=launch),
        metrics=MetricsResource(textfile_dir=str(root / "metrics"), pushgateway_url=hooks.url),
    )


def _posted(hooks: LoopbackHttp, path: str, version: str) -> list[dict[str, Any]]:
    return [r.json() for r in hooks.requests if r.path == path and version in r.body.decode()]


@pytest.fixture(scope="module")
def good(defs: dg.Definitions, instance: dg.DagsterInstance) -> RefreshOutcome:
    return run_refresh("v-good", instance=instance, defs=defs, run_config=SMALL)


@pytest.fixture(scope="module")
def drifted(defs: dg.Definitions, instance: dg.DagsterInstance, good: RefreshOutcome) -> RefreshOutcome:
    return run_refresh("v-drift", instance=instance, defs=defs, run_config=DRIFTED)


def _outbox(root: Path) -> list[dict[str, Any]]:
    path = root / "outbox" / "notifications.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _materialized(instance: dg.DagsterInstance, asset: str, partition: str) -> bool:
    return instance.get_latest_materialization_event(dg.AssetKey(asset)) is not None and bool(
        instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition]), limit=1
        ).records
    )


def test_definitions_load_and_validate(defs: dg.Definitions) -> None:
    dg.Definitions.validate_loadable(defs)
    repo = defs.get_repository_def()
    keys = {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()}
    assert keys == {"source_snapshot", "dataset", "quality_report", "published_dataset", "notify_stakeholders",
                    "archive_artifacts", "market_data_raw", "market_data", "feature_build", "training_set",
                    "trained_model", "model_evaluation", "registered_model", "promotion", "tensor_dataset",
                    "tensor_sanity_report",
                    "definitions/purchases_90d", "definitions/recent_activity_time_split",
                    "definitions/purchases_90d_published", "definitions/recent_activity_time_split_published"}
    checks = {(c.asset_key.to_user_string(), c.name): c.blocking
              for a in defs.asset_checks or [] for c in a.check_specs}  # type: ignore[union-attr]
    assert checks == {("source_snapshot", "source_valid"): True, ("dataset", "sha256_matches"): True,
                      ("dataset", "feature_order_matches"): True, ("dataset", "schema_valid"): True,
                      ("dataset", "size_within_limit"): True, ("quality_report", "quality_thresholds"): True,
                      ("published_dataset", "published_copy_verifies"): True,
                      ("market_data_raw", "no_data_gaps"): False, ("market_data_raw", "no_unreviewed_anomalies"): False,
                      ("feature_build", "feature_contract_drift"): True,
                      **{("training_set", name): True for name in ("sha256_matches", "feature_order_matches",
                                                                   "schema_valid", "size_within_limit",
                                                                   "no_feature_leakage")},
                      ("trained_model", "trained_on_verified_dataset"): True, ("model_evaluation", "guardrails"): True,
                      **{("tensor_dataset", name): True for name in ("sha256_matches", "merkle_root_matches",
                                                                     "schema_valid", "values_finite",
                                                                     "size_within_limit")},
                      **{(f"definitions/{definition}", name): True
                         for definition in ("purchases_90d", "recent_activity_time_split")
                         for name in ("sha256_matches", "feature_order_matches", "schema_valid", "size_within_limit")},
                      **{(f"definitions/{definition}_published", "published_copy_verifies"): True
                         for definition in ("purchases_90d", "recent_activity_time_split")}}
    schedule = defs.resolve_schedule_def("nightly_refresh")
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("0 2 * * *", "UTC")


def test_refresh_materializes_checks_and_publishes(good: RefreshOutcome, root: Path, paths: PlatformPaths) -> None:
    run = good.refresh
    assert run.succeeded, run
    assert set(run.materialized) == {"source_snapshot", "dataset", "quality_report", "published_dataset",
                                     "notify_stakeholders"}
    assert run.materialized["dataset"] == 3_000
    assert len(run.checks) == 7 and all(run.checks.values())
    entry = Catalog(root / "catalog.sqlite").current(paths.dataset_name)
    assert entry is not None and entry.dataset_version == "v-good"
    store = LocalObjectStore(root / "store")
    manifest = verify_dataset(paths.dataset_dir("v-good") / "manifest.json", paths.datasets)
    assert manifest.ok
    pointer = current_pointer(store, paths.dataset_name)
    assert pointer is not None and pointer["dataset_version"] == "v-good"
    assert pointer["manifest_digest"] == manifest.manifest_digest


def test_outputs_metrics_logs_notifications_and_archive(good: RefreshOutcome, root: Path, paths: PlatformPaths,
                                                       hooks: LoopbackHttp) -> None:
    reports = paths.reports("v-good")
    rows = json.loads((reports / "quality_report.json").read_text())["metrics"]
    assert rows and all({"metric", "value", "baseline", "delta", "threshold", "pass"} <= set(r) for r in rows)
    assert (reports / "coverage_gap_report.md").read_text().strip()
    assert list(reports.glob("*.png"))
    prom = (root / "metrics" / "feature_platform_refresh.prom").read_text()
    assert 'dag_status{' in prom and 'status="success"} 1' in prom and "dag_duration_seconds{" in prom
    assert 'asset_rows{asset="dataset"' in prom
    log = [json.loads(line) for line in (root / "logs" / f"{good.refresh.run_id}.jsonl").read_text().splitlines()]
    assert {r["dag_run_id"] for r in log} == {good.refresh.run_id}
    assert {r["dataset_version"] for r in log} == {"v-good"}
    assert {"dataset", "quality_report"} <= {r["task_id"] for r in log}
    sent = [n for n in _outbox(root) if n.get("dataset_version") == "v-good"]
    assert sent and sent[0]["severity"] == "info"
    (slack,) = _posted(hooks, "/slack", "v-good")
    assert "published" in slack["text"] and slack["blocks"]
    assert not _posted(hooks, "/pagerduty", "v-good")  # summaries never page
    pushes = [r for r in hooks.requests if r.method == "PUT" and r.path == "/metrics/job/feature_platform_refresh"]
    assert pushes and b"dag_duration_seconds" in pushes[0].body
    assert good.archive is not None and good.archive.succeeded
    store = LocalObjectStore(root / "store")
    archived = [k for k in store.list("archive/v-good/") if k.endswith("archive.json")]
    assert len(archived) == 1
    index = json.loads(store.get_bytes(archived[0]))
    assert {"run_log.jsonl", "metrics.prom", "quality_report.json", "candidate_diff.json"} <= set(index["files"])


def test_failed_gate_is_not_published_archive_runs_previous_still_verifies(
        drifted: RefreshOutcome, instance: dg.DagsterInstance, root: Path, paths: PlatformPaths,
        hooks: LoopbackHttp) -> None:
    run = drifted.refresh
    assert not run.succeeded
    assert run.checks["quality_report:quality_thresholds"] is False
    assert all(ok for key, ok in run.checks.items() if key.startswith("dataset:"))
    assert "quality_report" in run.materialized
    assert not _materialized(instance, "published_dataset", "v-drift")
    assert not _materialized(instance, "notify_stakeholders", "v-drift")
    report = json.loads((paths.reports("v-drift") / "quality_report.json").read_text())
    assert any(r["metric"] in ("psi", "ks") and not r["pass"] for r in report["metrics"])

    entry = Catalog(root / "catalog.sqlite").current(paths.dataset_name)
    assert entry is not None and entry.dataset_version == "v-good"
    store = LocalObjectStore(root / "store")
    good_manifest = json.loads((paths.dataset_dir("v-good") / "manifest.json").read_text())
    from feature_platform.contracts.manifest import parse_manifest

    results = verify_published(store, entry.prefix, parse_manifest(good_manifest))
    assert results and all(r.passed for r in results)

    assert drifted.archive is not None and drifted.archive.succeeded
    assert any(k.endswith("archive.json") for k in store.list("archive/v-drift/"))
    alerts = [n for n in _outbox(root) if n.get("dataset_version") == "v-drift"]
    assert alerts and alerts[0]["severity"] == "error" and alerts[0]["kind"] == "quality_gate_failure"
    page = _posted(hooks, "/pagerduty", "v-drift")[0]
    assert page["routing_key"] == "routing-key-1" and page["event_action"] == "trigger"
    assert page["payload"]["custom_details"]["priority"] == "P2"
    assert page["payload"]["severity"] == "error" and "Quality gate failed" in page["payload"]["summary"]
    assert _posted(hooks, "/slack", "v-drift")
    prom = (root / "metrics" / "feature_platform_refresh.prom").read_text()
    assert 'status="failure"} 1' in prom


def test_publish_alone_refuses_a_failed_gate(drifted: RefreshOutcome, defs: dg.Definitions,
                                             instance: dg.DagsterInstance) -> None:
    """Blocking checks only hold inside one run; the publish step re-checks the gate itself."""
    result = defs.resolve_job_def("publish_only_job").execute_in_process(
        instance=instance, partition_key="v-drift", raise_on_error=False)
    assert not result.success
    assert not _materialized(instance, "published_dataset", "v-drift")


def test_damage_after_the_gate_fails_publish_at_once_and_uploads_nothing(
        defs: dg.Definitions, instance: dg.DagsterInstance, paths: PlatformPaths, root: Path) -> None:
    """A verification failure is permanent: no retry, the run fails on its first attempt, the store stays empty."""
    instance.add_dynamic_partitions("dataset_version", ["v-damage"])
    gated = defs.resolve_job_def("gate_only_job").execute_in_process(
        instance=instance, partition_key="v-damage", run_config=SMALL)
    assert gated.success and _materialized(instance, "quality_report", "v-damage")
    data = paths.dataset_dir("v-damage") / "data.parquet"
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 3] ^= 0xFF
    data.write_bytes(bytes(raw))
    result = defs.resolve_job_def("publish_only_job").execute_in_process(
        instance=instance, partition_key="v-damage", raise_on_error=False)
    assert not result.success
    kinds = [e.event_type_value for e in result.all_events]
    assert "STEP_UP_FOR_RETRY" not in kinds and kinds.count("STEP_START") == 1
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    reason = failure.step_failure_data.user_failure_data.description
    assert "failed verification" in reason and "file_sha256" in reason and "\n" not in reason
    assert not [p for p in (root / "store").rglob("*") if "v-damage" in p.as_posix()]
    assert not _materialized(instance, "published_dataset", "v-damage")


def test_tampered_dataset_blocks_everything_downstream(defs: dg.Definitions, instance: dg.DagsterInstance,
                                                       paths: PlatformPaths) -> None:
    instance.add_dynamic_partitions("dataset_version", ["v-tamper"])
    built = defs.resolve_job_def("build_only_job").execute_in_process(
        instance=instance, partition_key="v-tamper", run_config=SMALL)
    assert built.success
    data = paths.dataset_dir("v-tamper") / "data.parquet"
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))
    result = defs.resolve_job_def("tamper_job").execute_in_process(
        instance=instance, partition_key="v-tamper", raise_on_error=False)
    assert not result.success
    evaluations = {e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data
                   for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}
    assert evaluations["sha256_matches"].passed is False
    assert evaluations["feature_order_matches"].passed is True
    failed = evaluations["sha256_matches"].metadata["failed"].value
    assert failed[0]["name"] == "file_sha256" and failed[0]["expected"] != failed[0]["actual"]
    assert not _materialized(instance, "quality_report", "v-tamper")
    assert not _materialized(instance, "published_dataset", "v-tamper")


def test_nightly_schedule_adds_the_day_and_requests_its_run(instance: dg.DagsterInstance) -> None:
    context = dg.build_schedule_context(instance=instance,
                                        scheduled_execution_time=datetime(2026, 11, 25, 2, 0, tzinfo=UTC))
    request = nightly_refresh(context)
    assert isinstance(request, dg.RunRequest)
    assert request.partition_key == "2026-11-25" and request.run_key == "nightly-2026-11-25"
    assert instance.has_dynamic_partition("dataset_version", "2026-11-25")


def test_inbox_sensor_requests_a_run_per_new_file(instance: dg.DagsterInstance, defs: dg.Definitions,
                                                  paths: PlatformPaths, golden: BuildResult) -> None:
    paths.inbox.mkdir(parents=True, exist_ok=True)
    assert isinstance(inbox_sensor(dg.build_sensor_context(instance=instance, resources={"paths": paths})),
                      dg.SkipReason)
    shutil.copy(golden.path / "data.parquet", paths.inbox / "drop 1.parquet")
    context = dg.build_sensor_context(instance=instance, resources={"paths": paths})
    result = inbox_sensor(context)
    assert isinstance(result, dg.SensorResult)
    (request,) = result.run_requests or []
    version = request.partition_key
    assert version is not None and version.startswith("inbox-drop-1-")
    (partitions,) = result.dynamic_partitions_requests or []
    assert list(partitions.partition_keys) == [version]
    again = inbox_sensor(dg.build_sensor_context(instance=instance, cursor=result.cursor,
                                                 resources={"paths": paths}))
    assert isinstance(again, dg.SkipReason)

    instance.add_dynamic_partitions("dataset_version", [version])
    run = defs.resolve_job_def("refresh_job").execute_in_process(
        instance=instance, partition_key=version, run_config=request.run_config, raise_on_error=False)
    snapshot = json.loads((paths.sources / version / "snapshot.json").read_text())
    assert snapshot["kind"] == "file" and snapshot["files"][0]["rows"] == golden.manifest.row_count
    assert run.success


def test_failure_sensor_alerts_and_requests_the_archive(drifted: RefreshOutcome, instance: dg.DagsterInstance,
                                                        defs: dg.Definitions, root: Path) -> None:
    dagster_run = instance.get_run_by_id(drifted.refresh.run_id)
    assert dagster_run is not None
    failure = next(e.dagster_event for e in instance.all_logs(dagster_run.run_id)
                   if e.dagster_event and e.dagster_event.event_type_value == "PIPELINE_FAILURE")
    resources = dict(defs.resources or {})
    before = len(_outbox(root))
    with dg.build_run_status_sensor_context(  # entered: the notifier builds its declared paths dependency
        sensor_name="refresh_failed", dagster_event=failure, dagster_instance=instance, dagster_run=dagster_run,
        resources={k: resources[k] for k in ("paths", "metrics", "notifier")},
    ).for_run_failure() as context:
        request = refresh_failed(context)
    assert isinstance(request, dg.RunRequest)
    assert request.job_name == "archive_job" and request.partition_key == "v-drift"
    assert request.tags["fp/refresh_run_id"] == dagster_run.run_id
    assert len(_outbox(root)) == before + 1


def test_transient_errors_are_retried_with_the_configured_delays(tmp_path: Path) -> None:
    from feature_platform.orchestration.retries import transient_retries

    attempts: list[int] = []

    @dg.asset
    def flaky(context: dg.AssetExecutionContext, retry: RetrySettings) -> None:
        with transient_retries(context, retry):
            attempts.append(context.retry_number)
            if context.retry_number < 2:
                raise ConnectionError("object store went away")

    result = dg.materialize([flaky], resources={"retry": RetrySettings(delays_seconds=[0.01, 0.02])})
    assert result.success and attempts == [0, 1, 2]

    attempts.clear()
    result = dg.materialize([flaky], resources={"retry": RetrySettings(delays_seconds=[0.01])},
                            raise_on_error=False)
    assert not result.success and attempts == [0, 1]


def test_run_retention_purges_only_old_finished_runs(good: RefreshOutcome, instance: dg.DagsterInstance) -> None:
    from datetime import timedelta

    from feature_platform.orchestration.run_report import purge_old_runs

    assert purge_old_runs(instance, 90) == []
    assert instance.get_run_by_id(good.refresh.run_id) is not None
    future = datetime.now(tz=UTC) + timedelta(days=91)
    purged = purge_old_runs(instance, 90, now=future, jobs=("archive_job",))
    assert good.archive is not None and good.archive.run_id in purged
    assert instance.get_run_by_id(good.archive.run_id) is None
    assert instance.get_run_by_id(good.refresh.run_id) is not None


def test_publish_to_s3_through_dagster_aws(s3_bucket: tuple[Any, str], s3_server: str, tmp_path: Path) -> None:
    """Scale-out by configuration only: the same graph publishes to an S3-compatible server."""
    from dagster_aws.s3 import S3Resource

    from feature_platform.orchestration.resources import CatalogResource, ObjectStoreResource
    from feature_platform.storage.s3_store import S3ObjectStore

    client, bucket = s3_bucket
    s3 = at_launch(S3Resource, S3Resource(endpoint_url=s3_server, region_name=REGION, **FAKE_CREDENTIALS))
    paths = at_launch(PlatformPaths, PlatformPaths(data_root=str(tmp_path)))
    defs = build_defs(
        paths=paths,
        s3=s3,
        object_store=ObjectStoreResource(kind="s3", bucket=bucket, prefix="team-a", s3=s3, paths=paths),
        catalog=CatalogResource(path=str(tmp_path / "catalog.sqlite"), paths=paths),
        notifier=NotifierResource(outbox_dir=str(tmp_path / "outbox"), slack_webhook_url=None, smtp_host=None,
                                  pagerduty_routing_key=None, paths=paths),
        metrics=MetricsResource(textfile_dir=str(tmp_path / "metrics"), pushgateway_url=None),
    )
    with dg.instance_for_test() as instance:
        outcome = run_refresh("v-s3", instance=instance, defs=defs, run_config=SMALL)
    assert outcome.refresh.succeeded, outcome.refresh
    store = S3ObjectStore(client, bucket, "team-a")
    pointer = current_pointer(store, "market_regime")
    assert pointer is not None and pointer["dataset_version"] == "v-s3"
    entry = Catalog(tmp_path / "catalog.sqlite").current("market_regime")
    assert entry is not None and entry.location.startswith(f"s3://{bucket}/team-a/")
    from feature_platform.contracts.manifest import DatasetManifest

    manifest = DatasetManifest.model_validate_json(
        (tmp_path / "datasets" / "market_regime-v-s3" / "manifest.json").read_bytes())
    assert all(check.passed for check in verify_published(store, entry.prefix, manifest))
    keys = client.list_objects_v2(Bucket=bucket, Prefix="team-a/archive/v-s3/")["Contents"]
    assert any(k["Key"].endswith("archive.json") for k in keys)


def test_feature_build_pins_applies_and_records(good: RefreshOutcome, defs: dg.Definitions,
                                                instance: dg.DagsterInstance, paths: PlatformPaths) -> None:
    """feature_build on the published v-good: feature_build.json and the blocking drift check.

    allow_dirty: this test must not depend on the developer's working tree; pinning is tested with a
    committed temp repo in test_features.py.
    """
    from feature_platform.orchestration.headless import run_feature_build

    summary = run_feature_build("v-good", instance=instance, defs=defs, run_config={
        "ops": {"feature_build": {"config": {"allow_dirty": True}}}})
    assert summary.succeeded, summary
    assert summary.checks == {"feature_build:feature_contract_drift": True}
    record = json.loads((paths.root / "features" / "offline" / "v-good" / "feature_build.json").read_text())
    assert record["dataset_version"] == "v-good" and len(record["feast_repo_sha"]) == 40
    assert record["row_counts"]["dataset_features"] == 3_000
    assert all(len(o["sha256"]) == 64 for o in record["outputs"])
    from feature_platform.features.build import read_published

    assert read_published(paths.root / "features").dataset_version == "v-good"  # what feature_repo now serves
