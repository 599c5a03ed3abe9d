"""Resources declare their data root (and S3 client) as Dagster resource dependencies on the code location's
``paths``/``s3``, held configurable at launch: a ``paths`` given to ``build_defs``, or set in a run's config at
launch, reaches every resource that depends on it, in runs and in sensors."""

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster_aws.s3 import S3Resource

from feature_platform.definitions import build_defs, resources
from feature_platform.observability.notification import Notification
from feature_platform.observability.notify import NotifyConfig
from feature_platform.observability.outbox import OUTBOX_FILE
from feature_platform.orchestration.headless import RunInputError, run_refresh
from feature_platform.orchestration.market_assets import TimeSeriesResource
from feature_platform.orchestration.resources import (
    CatalogResource,
    NotifierResource,
    ObjectStoreResource,
    PlatformPaths,
    at_launch,
    run_paths,
)
from feature_platform.storage.catalog import Catalog
from tests.s3_server import FAKE_CREDENTIALS, REGION, s3_bucket_fixture, s3_server_fixture  # noqa: F401

ROOT_DEPENDENTS = ("object_store", "catalog", "notifier", "timeseries")


@pytest.fixture
def env_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The environment names another data root than the one a test passes: a dependent bound to the default
    ``paths`` would write there."""
    for name in ("FP_DEPLOYMENT", "FP_OBJECT_STORE", "FP_CATALOG_PATH", "FP_TIMESERIES_URL",
                 "FP_METRICS_TEXTFILE_DIR", "FP_PUSHGATEWAY_URL", "OPENLINEAGE_URL", *NotifyConfig.ENV.values()):
        monkeypatch.delenv(name, raising=False)
    root = tmp_path / "from_env"
    monkeypatch.setenv("FP_DATA_ROOT", str(root))
    yield root
    assert not root.exists(), sorted(p.name for p in root.rglob("*"))


@dg.asset
def probe(context: dg.AssetExecutionContext, object_store: ObjectStoreResource, catalog: CatalogResource,
          notifier: NotifierResource, timeseries: TimeSeriesResource) -> dict[str, str]:
    """Uses each dependent the way the platform's assets do; returns where each one wrote."""
    object_store.open().put_bytes(b"probe", "probe/key.txt")
    catalog_path = catalog.open().path
    notifier.open(paging=False).send(Notification(title="probe", kind="probe"))
    store = timeseries.open()
    try:
        marker = store.snapshot_marker()
    finally:
        store.close()
    context.log.info(f"snapshot marker {marker}")
    return {"catalog": str(catalog_path)}


def _only_paths_override(tmp_path: Path) -> tuple[PlatformPaths, dg.Definitions]:
    paths = PlatformPaths(data_root=str(tmp_path / "override"))
    return paths, build_defs(paths=paths)


def test_an_overridden_paths_reaches_every_dependent_in_a_run(env_root: Path, tmp_path: Path) -> None:
    paths, defs = _only_paths_override(tmp_path)
    configured: dict[str, Any] = dict(defs.resources or {})
    assert run_paths(configured["paths"], None) == paths  # held at launch, its defaults the given paths
    assert all(configured[key].paths is configured["paths"] for key in ROOT_DEPENDENTS)
    result = dg.materialize([probe], resources=configured)
    assert result.success
    layout = paths.layout
    assert result.output_for_node("probe") == {"catalog": str(layout.catalog_db)}
    assert (layout.object_store / "probe" / "key.txt").read_bytes() == b"probe"
    assert '"probe"' in (layout.outbox / OUTBOX_FILE).read_text()
    assert (layout.root / "market.duckdb").is_file()
    assert layout.catalog_db.is_file()


def test_the_code_locations_own_resources_build_under_the_overridden_root(env_root: Path, tmp_path: Path) -> None:
    """The resources as Dagster initialises them for the code location (nested dependencies resolved)."""
    paths, defs = _only_paths_override(tmp_path)
    top_level = defs.get_repository_def().get_top_level_resources()
    with dg.build_resources({k: top_level[k] for k in ("paths", "s3", *ROOT_DEPENDENTS)}) as built:
        assert built.catalog.open().path == paths.layout.catalog_db
        assert built.object_store.open().url("k").startswith(paths.layout.object_store.as_uri())
        assert built.paths.root == paths.root


def test_a_sensor_gets_the_bound_dependents(env_root: Path, tmp_path: Path) -> None:
    from feature_platform.market.review import ReviewQueue
    from feature_platform.market.validation import Gap
    from feature_platform.orchestration.market_assets import data_gap_alert

    paths, defs = _only_paths_override(tmp_path)
    start = datetime(2026, 2, 1, 12, tzinfo=UTC)
    ReviewQueue(paths.layout.review_db).record_gaps([Gap("bitcoin", start, start + timedelta(minutes=9), 9.0)],
                                                    "2026-02-01")
    configured: dict[str, Any] = dict(defs.resources or {})
    with dg.instance_for_test() as instance, dg.build_sensor_context(
            instance=instance, resources={"paths": configured["paths"], "notifier": configured["notifier"]}) as ctx:
        data_gap_alert(ctx)
    alert = json.loads((paths.layout.outbox / OUTBOX_FILE).read_text().splitlines()[-1])
    assert alert["kind"] == "data-gap"  # paged through the notifier bound to the override root's outbox


def test_without_overrides_the_environment_root_is_shared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FP_DATA_ROOT", str(tmp_path / "env"))
    monkeypatch.delenv("FP_DEPLOYMENT", raising=False)
    monkeypatch.delenv("FP_OBJECT_STORE", raising=False)
    configured: dict[str, Any] = resources()
    monkeypatch.setenv("FP_DATA_ROOT", str(tmp_path / "at_run"))  # defaults are the environment's when a run starts
    assert run_paths(configured["paths"], None).root == (tmp_path / "at_run").resolve()
    assert all(configured[key].paths is configured["paths"] for key in ROOT_DEPENDENTS)
    store = configured["object_store"]
    assert isinstance(store, ObjectStoreResource) and store.s3 is configured["s3"]


def test_an_overridden_s3_client_reaches_the_object_store(env_root: Path, tmp_path: Path) -> None:
    s3 = S3Resource(region_name="eu-west-1")
    defs = build_defs(paths=PlatformPaths(data_root=str(tmp_path / "override")), s3=s3)
    configured: dict[str, Any] = dict(defs.resources or {})
    store = configured["object_store"]
    assert isinstance(store, ObjectStoreResource) and store.s3 is configured["s3"]
    assert configured["s3"].data == {"region_name": "eu-west-1"}  # the given values, as defaults at launch
    with dg.build_resources({"s3": configured["s3"]}) as built:
        assert built.s3.meta.region_name == "eu-west-1"


@pytest.mark.parametrize(("key", "make"), [
    ("catalog", lambda other: CatalogResource()),  # type: ignore[call-arg]  # the hostile case: no paths at all
    ("catalog", lambda other: CatalogResource(paths=other)),  # another data root
    ("notifier", lambda other: NotifierResource(slack_webhook_url=None, paths=other)),
    ("timeseries", lambda other: TimeSeriesResource(url=None, paths=other)),
    ("object_store", lambda other: ObjectStoreResource(kind="local", s3=S3Resource(), paths=PlatformPaths())),
    ("catalog", lambda other: CatalogResource(paths=at_launch(PlatformPaths, other))),  # another launch object
])
def test_a_dependent_bound_to_another_paths_is_refused(env_root: Path, tmp_path: Path, key: str, make: Any) -> None:
    paths = PlatformPaths(data_root=str(tmp_path / "override"))
    other = PlatformPaths(data_root=str(tmp_path / "override"))  # equal config, another instance: still refused
    with pytest.raises(ValueError, match=rf"^resource '{key}': its '(paths|s3)' is not this code location's"):
        build_defs(paths=paths, **{key: make(other)})


@pytest.mark.parametrize(("given", "got"), [("/tmp/data", "str"), (at_launch(S3Resource), "PartialResource")])
def test_a_paths_that_is_not_a_platform_paths_is_refused(env_root: Path, given: object, got: str) -> None:
    with pytest.raises(TypeError, match=rf"^build_defs\(paths=\.\.\.\): expected a PlatformPaths; got {got}$"):
        build_defs(paths=given)
    with pytest.raises(TypeError, match=r"^at_launch: expected a PlatformPaths; got one of S3Resource$"):
        at_launch(PlatformPaths, at_launch(S3Resource))  # type: ignore[arg-type]


def _launched(root: object) -> dict[str, Any]:
    return {"resources": {"paths": {"config": {"data_root": root}}}}


@pytest.mark.parametrize("given", ["literal", "env"])
def test_paths_set_at_launch_reach_every_dependent_in_a_run(env_root: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch, given: str) -> None:
    """The code location built with the environment's root (A); one run launched with another (B) writes,
    publishes and notifies under B only (``env_root`` asserts A stays empty)."""
    configured: dict[str, Any] = dict(build_defs().resources or {})
    launched = PlatformPaths(data_root=str(tmp_path / "launched")).layout
    monkeypatch.setenv("FP_LAUNCH_ROOT", str(launched.root))
    root = str(launched.root) if given == "literal" else {"env": "FP_LAUNCH_ROOT"}
    result = dg.materialize([probe], resources=configured, run_config=_launched(root))
    assert result.success
    assert result.output_for_node("probe") == {"catalog": str(launched.catalog_db)}
    assert (launched.object_store / "probe" / "key.txt").read_bytes() == b"probe"
    assert '"probe"' in (launched.outbox / OUTBOX_FILE).read_text()
    assert (launched.root / "market.duckdb").is_file()


def test_a_refresh_launched_with_another_root_runs_archives_and_reports_there(env_root: Path,
                                                                              tmp_path: Path) -> None:
    """The code location's refresh, run headless with ``paths`` set at launch: dataset, catalog, published copy,
    notification, metrics, run log and archive all under the launched root; the success sensor reports there and
    requests the archive with the same launch config."""
    from feature_platform.orchestration.sensors import refresh_succeeded
    from feature_platform.storage.dataset_publish import current_pointer
    from feature_platform.storage.object_store import LocalObjectStore

    defs = build_defs()
    launched = PlatformPaths(data_root=str(tmp_path / "launched"))
    run_config = {**_launched(str(launched.root)),
                  "ops": {"source_snapshot": {"config": {"rows": 3_000, "batch_rows": 1_000, "seed": 3}}}}
    with dg.instance_for_test() as instance:
        outcome = run_refresh("v-launch", instance=instance, defs=defs, run_config=run_config)
        assert outcome.refresh.succeeded and outcome.archive is not None and outcome.archive.succeeded, outcome
        layout = launched.layout
        entry = Catalog(layout.catalog_db).current(launched.dataset_name)
        assert entry is not None and entry.dataset_version == "v-launch"
        pointer = current_pointer(LocalObjectStore(layout.object_store), launched.dataset_name)
        assert pointer is not None and pointer["dataset_version"] == "v-launch"
        assert (launched.dataset_dir("v-launch") / "manifest.json").is_file()
        assert any('"v-launch"' in line for line in (layout.outbox / OUTBOX_FILE).read_text().splitlines())
        assert list((layout.object_store / "archive" / "v-launch").rglob("archive.json"))
        assert (launched.logs_dir / f"{outcome.refresh.run_id}.jsonl").is_file()
        metrics = sorted(launched.metrics_dir.glob("*.prom"))
        assert metrics
        for path in metrics:
            path.unlink()

        run = instance.get_run_by_id(outcome.refresh.run_id)
        assert run is not None
        success = next(e.dagster_event for e in instance.all_logs(run.run_id)
                       if e.dagster_event and e.dagster_event.event_type_value == "PIPELINE_SUCCESS")
        configured = dict(defs.resources or {})
        with dg.build_run_status_sensor_context(
            sensor_name="refresh_succeeded", dagster_event=success, dagster_instance=instance, dagster_run=run,
            resources={k: configured[k] for k in ("paths", "metrics", "notifier")},
        ) as context:
            request = refresh_succeeded(context)
    assert isinstance(request, dg.RunRequest) and request.job_name == "archive_job"
    assert request.run_config == {"resources": _launched(str(launched.root))["resources"]}
    assert sorted(launched.metrics_dir.glob("*.prom")) == metrics  # the sensor reported under the run's root


@dg.asset
def s3_probe(object_store: ObjectStoreResource) -> None:
    object_store.open().put_bytes(b"probe", "probe/key.txt")


def test_s3_set_at_launch_reaches_the_object_store(env_root: Path, s3_bucket: tuple[Any, str],
                                                   s3_server: str) -> None:
    """Built to an endpoint nothing listens on; the run's launch config names the real one, and the object store
    writes there."""
    client, bucket = s3_bucket
    s3 = at_launch(S3Resource, S3Resource(endpoint_url="http://127.0.0.1:9", region_name=REGION))
    paths = at_launch(PlatformPaths)
    defs = build_defs(paths=paths, s3=s3,
                      object_store=ObjectStoreResource(kind="s3", bucket=bucket, prefix="launch", s3=s3, paths=paths))
    configured = {k: (defs.resources or {})[k] for k in ("paths", "s3", "object_store")}
    result = dg.materialize([s3_probe], resources=configured, run_config={
        "resources": {"s3": {"config": {"endpoint_url": s3_server, **FAKE_CREDENTIALS}}}})
    assert result.success
    assert client.get_object(Bucket=bucket, Key="launch/probe/key.txt")["Body"].read() == b"probe"


def test_a_launch_config_for_paths_that_does_not_fit_is_refused_in_one_line(env_root: Path) -> None:
    with dg.instance_for_test() as instance, pytest.raises(RunInputError) as refused:
        run_refresh("v-bad", instance=instance, defs=build_defs(),
                    run_config={"resources": {"paths": {"config": {"data_roots": "/tmp/elsewhere"}}}})
    message = str(refused.value)
    assert message.startswith("run config of refresh_job: ") and "data_roots" in message and "\n" not in message


def test_fp_refresh_run_prints_where_a_run_launched_with_another_root_wrote(
        env_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from feature_platform.cli import main

    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    launched = PlatformPaths(data_root=str(tmp_path / "launched"))
    config = tmp_path / "run.yaml"
    config.write_text(json.dumps({**_launched(str(launched.root)),
                                  "ops": {"source_snapshot": {"config": {"batch_rows": 1_000, "seed": 3}}}}))
    code = main(["refresh", "run", "--version", "v-cli", "--rows", "3000", "--config", str(config)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"catalog        {launched.layout.catalog_db}\n" in out
    assert f"dataset        {launched.dataset_dir('v-cli')}/\n" in out
    assert launched.layout.catalog_db.is_file()


@dg.asset
def failing_under_paths(paths: PlatformPaths) -> None:
    raise RuntimeError(f"failing on purpose under {paths.root}")


def test_a_failed_runs_alert_goes_to_the_root_it_was_launched_with(env_root: Path, tmp_path: Path) -> None:
    """The failure sensor's notifier is bound to the code location's root; the alert still lands in the outbox of
    the root the run was launched with, and none under the default one."""
    from feature_platform.orchestration.resources import MetricsResource, NotifierResource, at_launch
    from feature_platform.orchestration.sensors import after_refresh

    default, launched = PlatformPaths(data_root=str(tmp_path / "default")), tmp_path / "launched"
    defs = dg.Definitions(assets=[failing_under_paths], resources={"paths": at_launch(PlatformPaths, default)})
    with dg.instance_for_test() as instance:
        result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance, raise_on_error=False,
            run_config={"resources": {"paths": {"config": {"data_root": str(launched)}}}})
        assert not result.success
        run = instance.get_run_by_id(result.run_id)
        assert run is not None
        notifier = NotifierResource(paths=default, slack_webhook_url=None, smtp_host=None, pagerduty_routing_key=None)
        after_refresh(instance, run, default, MetricsResource(textfile_dir=None, pushgateway_url=None), notifier)
    outbox = PlatformPaths(data_root=str(launched)).layout.outbox / OUTBOX_FILE
    alert = json.loads(outbox.read_text().splitlines()[-1])
    assert alert["kind"] == "refresh_failure" and result.run_id in alert["text"]
    assert not (default.layout.outbox / OUTBOX_FILE).exists()
