"""OpenLineage events of real Dagster runs, received on a loopback HTTP endpoint (as Marquez would receive them):
each event validates against the OpenLineage JSON Schema (vendored in tests/data/openlineage, no network), and
source → dataset → feature build → training set → model is reassembled from the events alone."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import jsonschema
import pytest
from referencing import Registry, Resource

from feature_platform.contracts.manifest import MANIFEST_NAME, load_manifest
from feature_platform.contracts.model_manifest import load_model_manifest
from feature_platform.datasets.build import BuildResult
from feature_platform.datasets.tensor_build import build_tensor_dataset
from feature_platform.datasets.verify import sha256_file
from feature_platform.features.build import feature_build_path
from feature_platform.orchestration.headless import run_feature_build, run_refresh, run_training
from feature_platform.orchestration.openlineage import (
    INLINE_TAG,
    Resolved,
    emit_run_lineage,
    openlineage_events,
    resolve,
)
from feature_platform.orchestration.resources import PlatformPaths
from feature_platform.orchestration.training_assets import read_record, training_run_config
from feature_platform.registry.openlineage import (
    config_file,
    lineage_client,
    lineage_configured,
    lineage_run_id,
    local_location,
    store_location,
)
from tests.conftest import offline_defs
from tests.orchestration.test_training_orchestration import PAYLOAD, QUIET, SMALL
from tests.servers import LoopbackHttp, Reply, serve

SPEC = Path(__file__).parents[1] / "data" / "openlineage"
VERSION = "ol1"
BAD_SNAPSHOT = {**QUIET, "ops": {"source_snapshot": {"config": {"kind": "file"}}}}  # kind file, no inbox_file
snapshot_only = dg.define_asset_job("snapshot_only", selection=["source_snapshot"])

Event = dict[str, Any]
Key = tuple[str, str, str]


@contextmanager
def openlineage_env(**values: str) -> Iterator[None]:
    """Exactly these OPENLINEAGE* variables while inside (the client adds OPENLINEAGE__* ones itself)."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("OPENLINEAGE")}
    for key in saved:
        del os.environ[key]
    os.environ.update(values)
    try:
        yield
    finally:
        for key in [k for k in os.environ if k.startswith("OPENLINEAGE")]:
            del os.environ[key]
        os.environ.update(saved)


@pytest.fixture(scope="session")
def marquez() -> Iterator[LoopbackHttp]:
    """A loopback endpoint standing in for Marquez: it records what POST /api/v1/lineage receives."""
    yield from serve()


def received(server: LoopbackHttp, since: int = 0) -> list[Event]:
    found = server.requests[since:]
    assert all(r.method == "POST" and r.path == "/api/v1/lineage" for r in found), [r.path for r in found]
    return [r.json() for r in found]


@pytest.fixture(scope="module")
def defs(root: Path, paths: PlatformPaths) -> dg.Definitions:
    return offline_defs(root, paths, snapshot_only)


@pytest.fixture(scope="module")
def chain(marquez: LoopbackHttp, defs: dg.Definitions, instance: dg.DagsterInstance) -> dict[str, Any]:
    """refresh → feature build → training (auto-promote) for one version, with OPENLINEAGE_URL set."""
    start = len(marquez.requests)
    with openlineage_env(OPENLINEAGE_URL=marquez.url):
        refresh = run_refresh(VERSION, instance=instance, defs=defs, run_config=SMALL)
        assert refresh.refresh.succeeded, refresh.refresh
        built = run_feature_build(VERSION, instance=instance, defs=defs, run_config={
            **QUIET, "ops": {"feature_build": {"config": {"allow_dirty": True}}}})
        assert built.succeeded, built
        version, config = training_run_config({**PAYLOAD, "dataset_version": VERSION})
        trained = run_training(version, instance=instance, defs=defs, run_config={**config, **QUIET})
        assert trained.succeeded, trained
    return {"events": received(marquez, start), "refresh": refresh.refresh.run_id, "training": trained.run_id}


@pytest.fixture(scope="module")
def failed(marquez: LoopbackHttp, defs: dg.Definitions, instance: dg.DagsterInstance) -> dict[str, Any]:
    """A refresh whose first asset fails (file snapshot without a file)."""
    start = len(marquez.requests)
    with openlineage_env(OPENLINEAGE_URL=marquez.url):
        outcome = run_refresh("ol_bad", instance=instance, defs=defs, run_config=BAD_SNAPSHOT)
    assert not outcome.refresh.succeeded
    return {"events": received(marquez, start), "run_id": outcome.refresh.run_id}


def _registry() -> Registry:
    resources = [Resource.from_contents(json.loads(p.read_text())) for p in sorted(SPEC.rglob("*.json"))]
    return Registry().with_resources((r.id(), r) for r in resources if r.id())  # type: ignore[misc]


def validate(events: list[Event]) -> int:
    """Every event against OpenLineage.json's RunEvent, every facet against the schema its _schemaURL names."""
    registry = _registry()
    spec = json.loads((SPEC / "OpenLineage.json").read_text())
    checker = jsonschema.FormatChecker()
    jsonschema.Draft202012Validator(spec, registry=registry, format_checker=checker)
    run_event = {"$ref": f"{spec['$id']}#/$defs/RunEvent"}
    facets = 0
    for event in events:
        jsonschema.Draft202012Validator(run_event, registry=registry, format_checker=checker).validate(event)
        assert event["schemaURL"] == f"{spec['$id']}#/$defs/RunEvent"
        found = [*event["run"]["facets"].values(), *event["job"]["facets"].values()]
        for ds in [*event["inputs"], *event["outputs"]]:
            found += [*ds["facets"].values(), *ds.get("inputFacets", {}).values(), *ds.get("outputFacets", {}).values()]
        for facet in found:
            url = facet["_schemaURL"]
            assert registry.contents(url.split("#")[0]), url  # a facet the vendored spec defines
            jsonschema.Draft202012Validator({"$ref": url}, registry=registry, format_checker=checker).validate(facet)
            facets += 1
    return facets


def completes(events: list[Event]) -> dict[str, Event]:
    """The COMPLETE event of each job (one run of each in the chain)."""
    found: dict[str, Event] = {}
    for event in events:
        if event["eventType"] == "COMPLETE":
            assert event["job"]["name"] not in found, f"two COMPLETE events for {event['job']['name']}"
            found[event["job"]["name"]] = event
    return found


def key(ds: Event) -> Key:
    return ds["namespace"], ds["name"], ds["facets"]["version"]["datasetVersion"]


def test_every_event_validates_against_the_openlineage_schema(chain: dict[str, Any], failed: dict[str, Any]) -> None:
    events = chain["events"] + failed["events"]
    assert validate(events) > len(events)
    assert {e["eventType"] for e in events} == {"START", "COMPLETE", "FAIL"}
    # every run: one START first, then exactly one COMPLETE or FAIL, all under one stable run id
    by_run: dict[str, list[str]] = {}
    for event in events:
        by_run.setdefault(event["run"]["runId"], []).append(f"{event['job']['name']}:{event['eventType']}")
    odd = [kinds for kinds in by_run.values() if len(kinds) != 2 or not kinds[0].endswith(":START")
           or kinds[1].split(":")[1] not in ("COMPLETE", "FAIL") or kinds[0].split(":")[0] != kinds[1].split(":")[0]]
    assert not odd


def test_a_schema_violation_is_caught() -> None:
    """The validator is not vacuous: a run id that is not a UUID, a missing eventTime, a bad facet fail."""
    event = {"eventTime": "2026-01-01T00:00:00Z", "eventType": "START", "producer": "urn:x",
             "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
             "run": {"runId": "0d4c7d9e-4b63-4d8e-9c25-7d4f5e9b1a11", "facets": {}},
             "job": {"namespace": "n", "name": "j", "facets": {}}, "inputs": [], "outputs": []}
    validate([event])
    with pytest.raises(jsonschema.ValidationError):
        validate([{**event, "run": {"runId": "not-a-uuid", "facets": {}}}])
    with pytest.raises(jsonschema.ValidationError):
        validate([{k: v for k, v in event.items() if k != "eventTime"}])
    bad_facet = {"_producer": "urn:x", "_schemaURL": "https://openlineage.io/spec/facets/1-0-1/"
                 "DatasetVersionDatasetFacet.json#/$defs/DatasetVersionDatasetFacet"}  # no datasetVersion
    with pytest.raises(jsonschema.ValidationError):
        validate([{**event, "outputs": [{"namespace": "n", "name": "d", "facets": {"version": bad_facet}}]}])


def test_chain_reassembles_from_the_events_alone(chain: dict[str, Any], root: Path, paths: PlatformPaths) -> None:
    done = completes(chain["events"])
    producers: dict[Key, str] = {}
    for job, event in done.items():
        for ds in event["outputs"]:
            assert key(ds) not in producers, f"{key(ds)} produced twice"
            producers[key(ds)] = job

    def upstream(job: str) -> dict[str, Key]:
        """The jobs that produced a job's inputs, matched by namespace, name and version only."""
        return {producers[key(ds)]: key(ds) for ds in done[job]["inputs"] if key(ds) in producers}

    # walk back from the promoted model to the source, using nothing but the events
    assert set(upstream("promotion")) == {"trained_model"}
    assert set(upstream("trained_model")) == {"training_set"}
    assert set(upstream("training_set")) == {"dataset", "feature_build"}
    assert set(upstream("feature_build")) == {"dataset"}
    assert set(upstream("dataset")) == {"source_snapshot"}
    assert upstream("training_set")["dataset"] == upstream("feature_build")["dataset"]

    # ... and each version is the digest on disk that the platform's own lineage checks
    manifest = load_manifest(paths.dataset_dir(VERSION) / MANIFEST_NAME)
    model_dir = Path(read_record(paths, VERSION).model_dir)
    model = load_model_manifest(model_dir / "model_manifest.json")
    build = feature_build_path(root / "features", VERSION)
    versions = {job: upstream_key[2] for job, upstream_key in {
        "source_snapshot": upstream("dataset")["source_snapshot"], "dataset": upstream("feature_build")["dataset"],
        "feature_build": upstream("training_set")["feature_build"],
        "training_set": upstream("trained_model")["training_set"],
        "trained_model": upstream("promotion")["trained_model"]}.items()}
    assert versions == {"source_snapshot": manifest.source.source_hash, "dataset": manifest.digest(),
                        "feature_build": sha256_file(build), "training_set": model.dataset_manifest_digest,
                        "trained_model": model.digest()}
    namespace = f"file://{root.resolve().as_posix()}"
    dataset_out = done["dataset"]["outputs"][0]
    assert (dataset_out["namespace"], dataset_out["name"]) == (namespace, f"datasets/{manifest.dataset_id}")
    assert [(f["name"], f["type"]) for f in dataset_out["facets"]["schema"]["fields"]] == \
        [(c.name, c.type) for c in manifest.columns]
    assert done["trained_model"]["outputs"][0]["name"] == local_location(model_dir, root)[1]
    assert [f["name"] for f in done["trained_model"]["outputs"][0]["facets"]["schema"]["fields"]] == \
        model.feature_order
    assert "schema" in done["feature_build"]["outputs"][0]["facets"]  # from the feature contract it was built on
    published = done["published_dataset"]["outputs"][0]
    assert key(published)[2] == manifest.digest() and published["name"].startswith("store/")

    # job identity from the asset key, run id from the Dagster run id + asset key, parent = the Dagster run
    refresh_run = chain["refresh"]
    event = done["dataset"]
    assert (event["job"]["namespace"], event["job"]["name"]) == ("feature_platform", "dataset")
    assert event["run"]["runId"] == lineage_run_id(refresh_run, "dataset")
    parent = event["run"]["facets"]["parent"]
    assert parent["run"]["runId"] == refresh_run and parent["job"]["name"] == "refresh_job"
    assert done["trained_model"]["run"]["facets"]["parent"]["run"]["runId"] == chain["training"]
    assert {"key": "partition", "value": VERSION, "source": "DAGSTER"} in event["run"]["facets"]["tags"]["tags"]


def test_asset_checks_reach_the_assertions_facet(chain: dict[str, Any]) -> None:
    """Each check step is a job of type ASSET_CHECK reading the checked dataset version; its results are the
    input's dataQualityAssertions. An asset without a dataset of its own has its checks on what it read."""
    done = completes(chain["events"])
    outputs = {job: key(e["outputs"][0]) for job, e in done.items() if e["outputs"]}
    checks: dict[Key, dict[str, bool]] = {}
    check_jobs = set()
    for job, event in done.items():
        if event["job"]["facets"]["jobType"]["jobType"] != "ASSET_CHECK":
            continue
        check_jobs.add(job)
        (ds,) = event["inputs"]
        for a in ds["inputFacets"]["dataQualityAssertions"]["assertions"]:
            checks.setdefault(key(ds), {})[a["assertion"]] = a["success"]
    assert check_jobs == {"source_snapshot_source_valid", "dataset_integrity", "quality_report_quality_thresholds",
                          "published_dataset_published_copy_verifies", "feature_build_feature_contract_drift",
                          "training_set_integrity", "training_set_no_feature_leakage",
                          "trained_model_trained_on_verified_dataset", "model_evaluation_guardrails"}
    integrity = {"sha256_matches": True, "feature_order_matches": True, "schema_valid": True,
                 "size_within_limit": True}
    assert checks == {
        outputs["source_snapshot"]: {"source_valid": True},
        outputs["dataset"]: {**integrity, "quality_thresholds": True},
        outputs["published_dataset"]: {"published_copy_verifies": True},
        outputs["feature_build"]: {"feature_contract_drift": True},
        outputs["training_set"]: {**integrity, "no_feature_leakage": True},
        outputs["trained_model"]: {"trained_on_verified_dataset": True, "guardrails": True},
    }
    guard = done["model_evaluation_guardrails"]["inputs"][0]["inputFacets"]["dataQualityAssertions"]["assertions"]
    assert guard[0]["severity"] == "error" and "sharpe" in guard[0]["expected"].lower()


def test_a_failing_asset_emits_fail_with_its_error(failed: dict[str, Any]) -> None:
    events = failed["events"]
    snapshot = [e for e in events if e["job"]["name"] == "source_snapshot"]
    assert [e["eventType"] for e in snapshot] == ["START", "FAIL"]
    error = snapshot[1]["run"]["facets"]["errorMessage"]
    assert "needs inbox_file" in error["message"] and error["programmingLanguage"] == "python"
    assert "Traceback" in error["stackTrace"] or "dagster" in error["stackTrace"]
    assert snapshot[1]["run"]["runId"] == lineage_run_id(failed["run_id"], "source_snapshot")
    # the blocked downstream assets never ran: no events claim they did
    assert not [e for e in events if e["job"]["name"] in ("dataset", "published_dataset")]


def test_nothing_is_emitted_without_configuration(marquez: LoopbackHttp, defs: dg.Definitions,
                                                  instance: dg.DagsterInstance, paths: PlatformPaths,
                                                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no openlineage.yml in the working directory
    start = len(marquez.requests)
    with openlineage_env():
        assert not lineage_configured() and lineage_client() is None
        outcome = run_refresh("ol_quiet", instance=instance, defs=defs, run_config=BAD_SNAPSHOT)
        run = instance.get_run_by_id(outcome.refresh.run_id)
        assert run is not None and INLINE_TAG not in run.tags
        assert emit_run_lineage(instance, run.run_id, paths) == 0
        result = openlineage_events(dg.build_sensor_context(instance=instance, resources={"paths": paths}))
        assert isinstance(result, dg.SkipReason) and "not configured" in str(result.skip_message)
    with openlineage_env(OPENLINEAGE_URL=marquez.url, OPENLINEAGE_DISABLED="true"):
        assert lineage_client() is None
    # the configuration file is found exactly where the client itself looks for it
    from openlineage.client import OpenLineageClient

    (tmp_path / "openlineage.yml").write_text("transport:\n  type: console\n")
    elsewhere = tmp_path / "elsewhere.yml"
    elsewhere.write_text("transport:\n  type: console\n")
    for env in ({}, {"OPENLINEAGE_CONFIG": str(elsewhere)}, {"OPENLINEAGE_CONFIG": str(tmp_path / "missing.yml")}):
        with openlineage_env(**env):
            assert config_file() == Path(OpenLineageClient._find_yaml_config_path() or "")
            assert lineage_configured()
    (tmp_path / "openlineage.yml").unlink()
    with openlineage_env(OPENLINEAGE_CONFIG=str(tmp_path / "missing.yml")):
        assert config_file() is None and OpenLineageClient._find_yaml_config_path() is None
    assert len(marquez.requests) == start


def test_openlineage_yml_file_transport(defs: dg.Definitions, instance: dg.DagsterInstance, paths: PlatformPaths,
                                        tmp_path: Path) -> None:
    """The client's own configuration file selects the transport: here the file transport, one JSON line each."""
    out = tmp_path / "events.jsonl"
    config = tmp_path / "openlineage.yml"
    config.write_text(f"transport:\n  type: file\n  log_file_path: {out}\n  append: true\n")
    with openlineage_env(OPENLINEAGE_CONFIG=str(config)):
        outcome = run_refresh("ol_file", instance=instance, defs=defs, run_config=BAD_SNAPSHOT)
    events = [json.loads(line) for line in out.read_text().splitlines()]
    validate(events)
    assert [(e["job"]["name"], e["eventType"]) for e in events
            if e["run"]["facets"]["parent"]["run"]["runId"] == outcome.refresh.run_id] == \
        [("source_snapshot", "START"), ("source_snapshot", "FAIL")]


def test_sensor_tails_runs_it_did_not_launch_once(marquez: LoopbackHttp, defs: dg.Definitions,
                                                 instance: dg.DagsterInstance, paths: PlatformPaths) -> None:
    """A run launched elsewhere (webserver, daemon) gets its events from the sensor, each exactly once; runs the
    headless runner already reported are left alone; an endpoint refusing events never fails the caller."""
    from feature_platform.orchestration.partitions import ensure_partition

    def tick(cursor: str | None) -> str:
        context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"paths": paths})
        assert isinstance(openlineage_events(context), dg.SkipReason)
        assert context.cursor is not None
        return context.cursor

    with openlineage_env(OPENLINEAGE_URL=marquez.url):
        cursor = tick(None)  # starts from now: earlier runs (the chain above) are not replayed
        start = len(marquez.requests)
        cursor = tick(cursor)
        assert len(marquez.requests) == start
        ensure_partition(instance, "ol_sensor")
        result = defs.resolve_job_def("snapshot_only").execute_in_process(
            instance=instance, partition_key="ol_sensor", raise_on_error=False,
            run_config={**QUIET, "ops": {"source_snapshot": {"config": {"rows": 500, "entities": 10,
                                                                         "batch_rows": 250, "seed": 1}}}})
        assert result.success
        headless = run_refresh("ol_bad", instance=instance, defs=defs, run_config=BAD_SNAPSHOT)
        before_tick = len(marquez.requests)
        cursor = tick(cursor)
        events = received(marquez, before_tick)
        assert {e["run"]["facets"]["parent"]["run"]["runId"] for e in events} == {result.run_id}
        assert [(e["job"]["name"], e["eventType"]) for e in events] == [
            ("source_snapshot", "START"), ("source_snapshot", "COMPLETE"),
            ("source_snapshot_source_valid", "START"), ("source_snapshot_source_valid", "COMPLETE")]
        snapshot_out = events[1]["outputs"][0]
        assert snapshot_out["name"] == "sources/ol_sensor"
        assert headless.refresh.run_id not in {e["run"]["facets"]["parent"]["run"]["runId"] for e in events}
        validate(events)
        again = len(marquez.requests)
        tick(cursor)
        assert len(marquez.requests) == again  # nothing twice
        marquez.reply(Reply(status=400, body=b"refused"), Reply(status=400, body=b"refused"))
        assert emit_run_lineage(instance, result.run_id, paths) == 2  # 2 of 4 refused, logged, no exception
    marquez.reset()


def test_other_dataset_assets_and_changed_files(golden: BuildResult, tmp_path: Path) -> None:
    """An asset outside the chain that materialized a spec v1 dataset is an output; a manifest that no longer has
    the materialized digest, or a file that is gone, leaves the datasets out instead of naming the wrong bytes."""
    paths = PlatformPaths(data_root=str(golden.path.parent.parent))
    meta = {"path": str(golden.manifest_path), "manifest_digest": golden.digest}
    (out,) = resolve("definitions/daily_users", "v1", meta, paths).outputs
    assert (out.namespace, out.name, out.version) == (
        f"file://{golden.path.parent.parent.resolve().as_posix()}", f"datasets/{golden.path.name}", golden.digest)
    assert [n for n, _ in out.fields] == [c.name for c in golden.manifest.columns]
    published = resolve("definitions/daily_users_published", None, {
        "location": "s3://bucket/datasets/x/versions/v1/", "prefix": "datasets/x/versions/v1",
        "manifest_digest": golden.digest}, paths).outputs
    assert [(d.namespace, d.name, d.version) for d in published] == [("s3://bucket", "datasets/x/versions/v1",
                                                                      golden.digest)]
    assert resolve("definitions/daily_users", "v1", {**meta, "manifest_digest": "0" * 64}, paths) == Resolved()
    assert resolve("dataset", "v1", {**meta, "path": str(tmp_path / "manifest.json")}, paths) == Resolved()
    assert resolve("dataset", None, meta, paths) == Resolved()
    assert resolve("notify_stakeholders", "v1", {"delivered": True}, paths) == Resolved()

    tensor = build_tensor_dataset(tmp_path / "tensors", "tm_ds", samples=20, seed=4, T=8, H=3, chunk_samples=10,
                                  executor="inline", dataset_version="v1", created_at="2026-01-02T03:04:05Z")
    (out,) = resolve("tensor_dataset", "v1", {"path": str(tensor.manifest_path), "manifest_digest": tensor.digest},
                     PlatformPaths(data_root=str(tmp_path))).outputs
    assert (out.name, out.version) == ("tensors/tm_ds", tensor.digest)
    assert dict(out.fields) == {n: f"{a.dtype}[{','.join(map(str, a.shape))}]"
                                for n, a in tensor.manifest.arrays.items()}


def test_store_locations() -> None:
    root = Path("/data/root")
    assert store_location("s3://bucket/datasets/fp/versions/v1", root) == ("s3://bucket", "datasets/fp/versions/v1")
    assert store_location("file:///data/root/store/datasets/x", root) == ("file:///data/root", "store/datasets/x")
    assert local_location(Path("/elsewhere/ds"), root) == ("file:///elsewhere", "ds")
    for bad in ("ftp://host/x", "s3:///no-bucket", "relative/path"):
        with pytest.raises(ValueError, match="expected a file://, s3://"):
            store_location(bad, root)
