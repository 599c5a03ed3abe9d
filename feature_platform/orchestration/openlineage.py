# Over 400 lines: the event-log reader, the per-asset dataset resolvers and the sensor share one run model.
"""OpenLineage run events for every asset run, read from Dagster's event log, so no asset is edited for it.

Each asset step gives START, then COMPLETE (inputs and outputs with schema and version facets) or FAIL
(error message) for the job named by the asset key; each asset-check step gives the same for a job named by
the step (type ``ASSET_CHECK``), whose input is the checked dataset version with every check's result in its
``dataQualityAssertions`` facet. The OpenLineage run id is derived from the Dagster run id and the job name;
the parent run facet names the Dagster run.

Two callers, like the other post-run work: ``openlineage_events`` (a sensor, for runs the daemon and the
webserver launch; it tails the event log, so START and FAIL arrive while the run is going) and the headless
runner (``emit_run_lineage`` right after an in-process run, which it tags so the sensor skips it). Nothing
is read or sent unless the OpenLineage client is configured.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
from dagster._core.events import DagsterEventType
from dagster._core.execution.plan.objects import StepFailureData

from feature_platform.orchestration.resources import PlatformPaths, run_paths
from feature_platform.registry.openlineage import (
    Assertion,
    CheckedDataset,
    EventType,
    LineageDataset,
    RunContext,
    lineage_client,
    lineage_configured,
    lineage_run_id,
    run_event,
)

if TYPE_CHECKING:
    from openlineage.client import OpenLineageClient
    from openlineage.client.event_v2 import RunEvent

log = logging.getLogger(__name__)

INLINE_TAG = "fp/openlineage"  # on runs whose events the headless runner emits itself
STEP_TYPES = {DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE}
_INDEX_TYPES = {DagsterEventType.ASSET_MATERIALIZATION_PLANNED, DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED,
                DagsterEventType.ASSET_MATERIALIZATION, DagsterEventType.ASSET_CHECK_EVALUATION}
_STATE: dict[DagsterEventType, EventType] = {DagsterEventType.STEP_START: "START",
                                             DagsterEventType.STEP_SUCCESS: "COMPLETE",
                                             DagsterEventType.STEP_FAILURE: "FAIL"}
# what a resolver may raise on a file that is missing, changed or unreadable: the event then has no datasets
_UNRESOLVABLE = (OSError, ValueError, KeyError, TypeError, RuntimeError, dg.Failure)


@dataclass
class Resolved:
    inputs: list[LineageDataset] = field(default_factory=list)
    outputs: list[LineageDataset] = field(default_factory=list)


Metadata = Mapping[str, Any]  # raw metadata values of a materialization
Resolver = Callable[[PlatformPaths, str, Metadata], Resolved]


def _raw(metadata: Mapping[str, dg.MetadataValue]) -> dict[str, Any]:
    return {k: getattr(v, "value", v) for k, v in metadata.items()}


# --- per asset: the datasets it read and wrote, from its materialization metadata and the files it names ---

def _manifest(path: Path, expected_digest: str | None) -> Any:
    """The dataset manifest at ``path``; ValueError when it no longer has the digest the asset recorded."""
    from feature_platform.contracts.manifest import load_manifest

    manifest = load_manifest(path)
    if expected_digest and manifest.digest() != expected_digest:
        raise ValueError(f"{path}: digest {manifest.digest()} is not the materialized {expected_digest}")
    return manifest


def _local_dataset(paths: PlatformPaths, partition: str) -> LineageDataset:
    from feature_platform.contracts.manifest import MANIFEST_NAME
    from feature_platform.registry.openlineage import dataset_of_manifest

    path = paths.dataset_dir(partition) / MANIFEST_NAME
    return dataset_of_manifest(path, _manifest(path, None), paths.root)


def _source_snapshot(paths: PlatformPaths, partition: str, meta: Metadata) -> Resolved:
    from feature_platform.registry.openlineage import source_dataset

    return Resolved(outputs=[source_dataset(Path(meta["path"]), str(meta["source_hash"]), paths.root)])


def _dataset(paths: PlatformPaths, partition: str, meta: Metadata) -> Resolved:
    from feature_platform.registry.openlineage import dataset_of_manifest, source_of_manifest

    path = Path(meta["path"])
    manifest = _manifest(path, meta.get("manifest_digest"))
    source = source_of_manifest(manifest, paths.root)
    return Resolved(inputs=[source] if source else [], outputs=[dataset_of_manifest(path, manifest, paths.root)])


def _reads_dataset(paths: PlatformPaths, partition: str, meta: Metadata) -> Resolved:
    return Resolved(inputs=[_local_dataset(paths, partition)])


def _where(location: str, paths: PlatformPaths) -> tuple[str, str]:
    """(namespace, name) of a ``location`` metadata value: a store URL, or a local path for ``file://``."""
    from feature_platform.registry.openlineage import local_location, store_location

    where = location.rstrip("/")
    return store_location(where, paths.root) if "://" in where else local_location(Path(where), paths.root)


def _published_dataset(paths: PlatformPaths, partition: str, meta: Metadata) -> Resolved:
    local = _local_dataset(paths, partition)
    if local.version != meta["manifest_digest"]:
        raise ValueError(f"published {meta['manifest_digest']} is not the local dataset {local.version}")
    namespace, name = _where(str(meta["location"]), paths)
    return Resolved(inputs=[local], outputs=[LineageDataset(namespace, name, local.version, local.fields)])


def _any_dataset(paths: PlatformPaths, partition: str, meta: Metadata) -> Resolved:
    """Any other asset that materialized a spec v1 dataset, tabular or tensor (``path`` to its manifest and
    ``manifest_digest``, as the definition and tensor datasets do) or published one (``location``, ``prefix``,
    ``manifest_digest``): the output only, since what it read is not recorded in a form another asset shares."""
    from feature_platform.contracts.manifest import MANIFEST_NAME
    from feature_platform.contracts.safe_read import read_json
    from feature_platform.contracts.tensor_manifest import parse_any_manifest
    from feature_platform.registry.openlineage import dataset_of_manifest

    path, digest = meta.get("path"), meta.get("manifest_digest")
    if not isinstance(digest, str) or not digest:
        return Resolved()
    if isinstance(path, str) and Path(path).name == MANIFEST_NAME:
        manifest = parse_any_manifest(read_json(Path(path)), path)
        if manifest.digest() != digest:
            raise ValueError(f"{path}: digest {manifest.digest()} is not the materialized {digest}")
        return Resolved(outputs=[dataset_of_manifest(Path(path), manifest, paths.root)])
    if isinstance(meta.get("location"), str) and meta.get("prefix"):
        return Resolved(outputs=[LineageDataset(*_where(meta["location"], paths), digest)])
    return Resolved()


def _feature_build(paths: PlatformPaths, partition: str, meta: Metadata) -> Resolved:
    from feature_platform.contracts.feature_contract import load_feature_contract
    from feature_platform.datasets.verify import sha256_file
    from feature_platform.features.build import read_feature_build
    from feature_platform.registry.openlineage import feature_build_dataset

    path = Path(meta["feature_build"])
    build = read_feature_build(path)
    output = feature_build_dataset(path, sha256_file(path), paths.root, load_feature_contract(), build)
    dataset = _local_dataset(paths, build.dataset_version)
    from feature_platform.contracts.manifest import MANIFEST_NAME

    manifest = _manifest(paths.dataset_dir(build.dataset_version) / MANIFEST_NAME, dataset.version)
    built_from_it = [f.sha256 for f in manifest.files] == build.dataset_files()
    return Resolved(inputs=[dataset] if built_from_it else [], outputs=[output])


def _training_set(paths: PlatformPaths, partition: str, meta: Metadata) -> Resolved:
    from feature_platform.registry.openlineage import dataset_of_manifest, training_set_inputs

    path = Path(meta["manifest"])
    manifest = _manifest(path, meta.get("manifest_digest"))
    return Resolved(inputs=training_set_inputs(manifest, paths.root),
                    outputs=[dataset_of_manifest(path, manifest, paths.root)])


def _model(model_dir: Path, paths: PlatformPaths) -> tuple[LineageDataset, LineageDataset]:
    """(the model, the training set it was trained on)."""
    from feature_platform.contracts.manifest import load_manifest
    from feature_platform.contracts.model_manifest import MODEL_MANIFEST_NAME, load_model_manifest
    from feature_platform.registry.openlineage import model_dataset, model_input

    manifest = load_model_manifest(model_dir / MODEL_MANIFEST_NAME)
    try:
        training_set = load_manifest(Path(manifest.dataset_manifest_path))
    except _UNRESOLVABLE:
        training_set = None
    return model_dataset(model_dir, manifest, paths.root, training_set), model_input(manifest, paths.root)


def _trained_model(paths: PlatformPaths, partition: str, meta: Metadata) -> Resolved:
    model, training_set = _model(Path(meta["model_dir"]), paths)
    return Resolved(inputs=[training_set], outputs=[model])


def _reads_model(paths: PlatformPaths, partition: str, meta: Metadata) -> Resolved:
    from feature_platform.orchestration.training_assets import read_record

    model, _ = _model(Path(read_record(paths, partition).model_dir), paths)
    return Resolved(inputs=[model])


RESOLVERS: dict[str, Resolver] = {
    "source_snapshot": _source_snapshot,
    "dataset": _dataset,
    "quality_report": _reads_dataset,
    "published_dataset": _published_dataset,
    "feature_build": _feature_build,
    "training_set": _training_set,
    "trained_model": _trained_model,
    "model_evaluation": _reads_model,
    "registered_model": _reads_model,
    "promotion": _reads_model,
}


def resolve(asset: str, partition: str | None, metadata: Metadata, paths: PlatformPaths) -> Resolved:
    """The datasets an asset run read and wrote; none when its files are missing or changed since."""
    resolver = RESOLVERS.get(asset, _any_dataset)
    if partition is None and asset in RESOLVERS:  # every asset of the chain is partitioned by dataset_version
        return Resolved()
    try:
        return resolver(paths, partition or "", metadata)
    except _UNRESOLVABLE as exc:
        log.warning("OpenLineage: datasets of %s[%s] left out: %s", asset, partition, str(exc).splitlines()[0])
        return Resolved()


# --- one Dagster run's event log → OpenLineage events ---

@dataclass
class _RunIndex:
    run: dg.DagsterRun
    assets: dict[str, list[dg.AssetKey]] = field(default_factory=lambda: defaultdict(list))
    checks: dict[str, list[dg.AssetCheckKey]] = field(default_factory=lambda: defaultdict(list))
    materialized: dict[str, dict[dg.AssetKey, Metadata]] = field(default_factory=lambda: defaultdict(dict))
    evaluations: dict[str, list[Any]] = field(default_factory=lambda: defaultdict(list))

    @property
    def partition(self) -> str | None:
        return self.run.tags.get("dagster/partition")


def _index(instance: dg.DagsterInstance, run: dg.DagsterRun) -> _RunIndex:
    index = _RunIndex(run)
    records = instance.get_records_for_run(run.run_id, of_type=_INDEX_TYPES).records
    for entry in (r.event_log_entry for r in records):
        event, step = entry.dagster_event, entry.step_key or ""
        if event is None:
            continue
        data = event.event_specific_data
        if event.event_type == DagsterEventType.ASSET_MATERIALIZATION_PLANNED:
            index.assets[step].append(event.asset_key)  # type: ignore[arg-type]
        elif event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED:
            index.checks[step].append(dg.AssetCheckKey(data.asset_key, data.check_name))  # type: ignore[union-attr]
        elif event.event_type == DagsterEventType.ASSET_MATERIALIZATION:
            mat = entry.asset_materialization
            if mat is not None:
                index.materialized[step][mat.asset_key] = _raw(mat.metadata)
        else:
            index.evaluations[step].append(data)
    return index


def _checked_metadata(instance: dg.DagsterInstance, index: _RunIndex, key: dg.AssetKey) -> Metadata | None:
    """The checked asset's materialization: from this run, else its latest for the run's partition."""
    for found in index.materialized.values():
        if key in found:
            return found[key]
    partitions = [index.partition] if index.partition else None
    latest = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key, asset_partitions=partitions),
                                             limit=1).records
    mat = latest[0].asset_materialization if latest else None
    return _raw(mat.metadata) if mat is not None else None


def _assertion(evaluation: Any) -> Assertion:
    meta = _raw(evaluation.metadata)
    return Assertion(name=evaluation.check_name, passed=bool(evaluation.passed),
                     severity=str(evaluation.severity.value).lower(), description=evaluation.description,
                     expected=str(meta["expected"]) if "expected" in meta else None,
                     actual=str(meta["actual"]) if "actual" in meta else None)


def _job_name(key: dg.AssetKey) -> str:
    return "/".join(key.path)


def step_events(instance: dg.DagsterInstance, index: _RunIndex, entry: dg.EventLogEntry,
                paths: PlatformPaths) -> list[RunEvent]:
    """The OpenLineage events of one step event: one per asset of the step, one per asset its checks check."""
    event = entry.dagster_event
    if event is None or event.event_type not in _STATE:
        return []
    state, step = _STATE[event.event_type], entry.step_key or ""
    run = index.run
    context = RunContext(parent_run_id=run.run_id, parent_job=run.job_name, engine_version=dg.__version__,
                         partition=index.partition, tags=(("dagster/step", step),))
    error = stack = None
    if isinstance(event.event_specific_data, StepFailureData) and event.event_specific_data.error is not None:
        info = event.event_specific_data.error
        error, stack = (info.message.strip().splitlines() or [info.cls_name or "error"])[0], info.to_string()
    events = []
    for key in index.assets.get(step, []):
        job = _job_name(key)
        resolved = Resolved()
        if state == "COMPLETE" and key in index.materialized.get(step, {}):
            resolved = resolve(job, index.partition, index.materialized[step][key], paths)
        events.append(run_event(state, job_name=job, run_id=lineage_run_id(run.run_id, job),
                                event_time=entry.timestamp, context=context, inputs=resolved.inputs,
                                outputs=resolved.outputs, error=error, stack_trace=stack))
    checked: dict[dg.AssetKey, list[Assertion]] = defaultdict(list)
    for check in index.checks.get(step, []):
        checked.setdefault(check.asset_key, [])
    for evaluation in index.evaluations.get(step, []) if state == "COMPLETE" else []:
        checked[evaluation.asset_key].append(_assertion(evaluation))
    for key, assertions in checked.items():
        job = step if len(checked) == 1 else f"{step}.{_job_name(key)}"
        inputs: list[LineageDataset | CheckedDataset] = []
        if state == "COMPLETE":
            meta = _checked_metadata(instance, index, key)
            resolved = resolve(_job_name(key), index.partition, meta, paths) if meta is not None else Resolved()
            inputs = [CheckedDataset(ds, tuple(assertions)) for ds in resolved.outputs or resolved.inputs]
        events.append(run_event(state, job_name=job, run_id=lineage_run_id(run.run_id, job),
                                event_time=entry.timestamp, context=context, inputs=inputs, error=error,
                                stack_trace=stack, job_type="ASSET_CHECK"))
    return events


def _emit(client: OpenLineageClient, events: Iterable[RunEvent]) -> int:
    sent = 0
    for event in events:
        try:
            client.emit(event)
            sent += 1
        except Exception as exc:  # noqa: BLE001 -- lineage delivery never fails or stops a platform run
            log.warning("OpenLineage: %s of %s not delivered: %s", event.eventType, event.job.name,
                        str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    return sent


def _run_events(instance: dg.DagsterInstance, run: dg.DagsterRun, records: Sequence[dg.EventLogRecord],
                paths: PlatformPaths) -> list[RunEvent]:
    if not records:
        return []
    index = _index(instance, run)
    paths = run_paths(paths, run.run_config)  # the data root this run wrote under
    return [e for r in records for e in step_events(instance, index, r.event_log_entry, paths)]


def emit_run_lineage(instance: dg.DagsterInstance, run_id: str, paths: PlatformPaths,
                     client: OpenLineageClient | None = None) -> int:
    """Every OpenLineage event of a finished run; the number delivered (0 when OpenLineage is off)."""
    client = client or lineage_client()
    if client is None:
        return 0
    run = instance.get_run_by_id(run_id)
    if run is None:
        client.close(timeout=10)
        return 0
    records = instance.get_records_for_run(run_id, of_type=STEP_TYPES).records
    try:
        return _emit(client, _run_events(instance, run, records, paths))
    finally:
        client.close(timeout=10)


def inline_tags() -> dict[str, str]:
    """Tags for an in-process run whose events its runner emits (the sensor then leaves it alone)."""
    return {INLINE_TAG: "inline"} if lineage_configured() else {}


def tail_lineage(instance: dg.DagsterInstance, cursor: str | None, paths: PlatformPaths,
                 client: OpenLineageClient, *, batch: int = 100) -> tuple[str, int]:
    """Emit the step events logged since ``cursor`` for every run started since then; (new cursor, sent).

    The cursor holds the last run start seen and, per run still being followed, its event log cursor. The
    first call only records where the log is now: runs from before lineage was turned on are not replayed.
    """
    from dagster._core.event_api import EventLogCursor

    if cursor is None:
        latest = instance.fetch_run_status_changes(DagsterEventType.RUN_START, limit=1).records
        after = EventLogCursor.from_storage_id(latest[0].storage_id).to_string() if latest else None
        return json.dumps({"after": after, "runs": {}}), 0
    state = json.loads(cursor)
    started = instance.fetch_run_status_changes(DagsterEventType.RUN_START, limit=batch, cursor=state["after"],
                                                ascending=True)
    for record in started.records:
        state["runs"].setdefault(record.run_id, None)
    if started.records:
        state["after"] = started.cursor
    sent = 0
    for run_id, run_cursor in list(state["runs"].items()):
        run = instance.get_run_by_id(run_id)  # read before the records: finished now means all are logged
        if run is None or run.tags.get(INLINE_TAG):
            del state["runs"][run_id]
            continue
        found = instance.get_records_for_run(run_id, cursor=run_cursor, of_type=STEP_TYPES, limit=batch)
        sent += _emit(client, _run_events(instance, run, found.records, paths))
        state["runs"][run_id] = found.cursor
        if run.is_finished and not found.has_more:
            del state["runs"][run_id]
    return json.dumps(state, sort_keys=True), sent


@dg.sensor(name="openlineage_events", minimum_interval_seconds=30,
           default_status=dg.DefaultSensorStatus.RUNNING if lineage_configured() else dg.DefaultSensorStatus.STOPPED,
           description="Sends OpenLineage START/COMPLETE/FAIL events of every asset run to the OpenLineage "
                       "client's configured transport (openlineage.yml or OPENLINEAGE_URL); idle otherwise.")
def openlineage_events(context: dg.SensorEvaluationContext, paths: PlatformPaths) -> dg.SkipReason:
    client = lineage_client()
    if client is None:
        return dg.SkipReason("OpenLineage is not configured (no OPENLINEAGE_URL or openlineage.yml)")
    try:
        cursor, sent = tail_lineage(context.instance, context.cursor, paths, client)
    finally:
        client.close(timeout=10)
    context.update_cursor(cursor)
    return dg.SkipReason(f"{sent} OpenLineage event(s) sent")
