"""Run the refresh graph without the UI or daemon: `make demo`, `fp refresh run`, tests.

The daemon's sensors do the post-run work (metrics, alert, archive, OpenLineage events) in production; here
the same functions run right after the in-process run, so a headless run ends in the same state.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import dagster as dg

from feature_platform.observability.outbox import OUTBOX_FILE
from feature_platform.orchestration.openlineage import emit_run_lineage, inline_tags
from feature_platform.orchestration.partitions import ensure_partition
from feature_platform.orchestration.resources import PlatformPaths, run_paths, run_resources
from feature_platform.orchestration.run_report import RunSummary, summarize_run
from feature_platform.orchestration.story import launched_by

# In-process runs are started by `fp` (or by code calling it, like `make demo`): say so in the run's tags.
CLI_TAGS = launched_by("cli", "fp")


class RunInputError(ValueError):
    """A partition key or run config a job does not accept; the message names which and what was expected."""


@contextmanager
def _run_input(job: dg.JobDefinition, partition: str, instance: dg.DagsterInstance) -> Iterator[None]:
    """Refuse an unknown partition before the run starts, and say a rejected run config on one line."""
    pdef = job.partitions_def
    with dg.partition_loading_context(dynamic_partitions_store=instance):
        unknown = pdef is not None and not pdef.has_partition_key(partition)
        known = list(pdef.get_partition_keys()) if pdef is not None and unknown else []
    if pdef is not None and unknown:
        what = pdef.name if isinstance(pdef, dg.DynamicPartitionsDefinition) and pdef.name else "partition"
        some = f"one of {', '.join(known[-5:])}" + (f" ({len(known) - 5} older)" if len(known) > 5 else "") \
            if known else f"an existing {what} (none exist yet)"
        raise RunInputError(f"{what} {partition!r}: not a partition of {job.name}; expected {some}")
    try:
        yield
    except dg.DagsterInvalidConfigError as exc:
        messages = [" ".join(m.split()) for m in exc.error_messages] or [" ".join(str(exc).split())]
        more = f" (+{len(messages) - 1} more error(s))" if len(messages) > 1 else ""
        raise RunInputError(f"run config of {job.name}: {messages[0]}{more}") from exc


@dataclass
class RefreshOutcome:
    refresh: RunSummary
    archive: RunSummary | None
    partition_added: bool


def run_refresh(
    version: str,
    *,
    instance: dg.DagsterInstance,
    defs: dg.Definitions | None = None,
    run_config: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
) -> RefreshOutcome:
    """Materialize the refresh graph for ``version`` in process, then metrics, alert and archive."""
    from feature_platform.orchestration.sensors import after_refresh

    if defs is None:  # built now, not the module-level ``defs``: resources follow today's environment (FP_DATA_ROOT)
        from feature_platform.definitions import build_defs

        defs = build_defs()
    added = ensure_partition(instance, version)
    job = defs.resolve_job_def("refresh_job")
    with _run_input(job, version, instance):
        result = job.execute_in_process(
            instance=instance, partition_key=version, run_config=dict(run_config or {}), raise_on_error=False,
            tags={"fp/trigger": "headless", **CLI_TAGS, **inline_tags(), **(tags or {})},
        )
    run = instance.get_run_by_id(result.run_id)
    assert run is not None
    with run_resources(dict(defs.resources or {}), ("paths", "metrics", "notifier"), run_config) as built:
        paths: PlatformPaths = built.paths
        emit_run_lineage(instance, result.run_id, paths)
        after_refresh(instance, run, paths, built.metrics, built.notifier)
    # the archive runs where the refresh ran: its loggers and its launch-time resources config
    carried = {key: dict(run_config[key]) for key in ("loggers", "resources") if run_config and key in run_config}
    archive = defs.resolve_job_def("archive_job").execute_in_process(
        instance=instance, partition_key=version, raise_on_error=False,
        tags={"fp/refresh_run_id": result.run_id, **CLI_TAGS, **inline_tags()},
        run_config=carried,
    )
    emit_run_lineage(instance, archive.run_id, paths)
    return RefreshOutcome(refresh=summarize_run(instance, result.run_id),
                          archive=summarize_run(instance, archive.run_id), partition_added=added)


def format_summary(outcome: RefreshOutcome, paths: PlatformPaths) -> str:
    run = outcome.refresh
    lines = [f"refresh of dataset_version {run.partition}: {run.status} in {run.seconds:.1f}s (run {run.run_id})", "",
             "assets:"]
    steps = {s.step_key: s for s in run.steps}
    for asset, rows in run.materialized.items():
        step = steps.get(asset)
        took = f"{step.seconds:6.2f}s" if step else "      "
        lines.append(f"  materialized  {asset:<22} {took}  {'' if rows is None else f'{rows:,} rows'}")
    for step in run.steps:
        if step.step_key not in run.materialized and step.status != "SUCCESS":
            lines.append(f"  {step.status.lower():<12}  {step.step_key}")
    passed = sum(run.checks.values())
    lines += ["", f"checks: {passed} passed, {len(run.checks) - passed} failed"]
    lines += [f"  {'PASS' if ok else 'FAIL'}  {name}" for name, ok in run.checks.items()]
    if outcome.archive is not None:
        lines += ["", f"archive: {outcome.archive.status} (store/archive/{run.partition}/{run.run_id}/)"]
    version = run.partition or ""
    published = "published_dataset" in run.materialized
    lines += ["", "where the results are:",
              f"  dataset        {paths.dataset_dir(version)}/",
              f"  quality report {paths.reports(version)}/",
              f"  published copy {paths.layout.object_store / 'datasets' / paths.dataset_name}/"
              + ("" if published else "  (this version was NOT published)"),
              f"  catalog        {paths.layout.catalog_db}",
              f"  metrics, logs  {paths.metrics_dir}/  {paths.logs_dir}/{run.run_id}.jsonl",
              f"  notifications  {paths.layout.outbox / OUTBOX_FILE}"]
    return "\n".join(lines)


def _execute(job_name: str, partition: str, *, instance: dg.DagsterInstance, defs: dg.Definitions | None,
             run_config: Mapping[str, Any] | None, tags: Mapping[str, str] | None = None) -> RunSummary:
    """One partition of a job, in process, never raising on failure: the summary says what happened."""
    if defs is None:  # built now, not the module-level ``defs``: resources follow today's environment (FP_DATA_ROOT)
        from feature_platform.definitions import build_defs

        defs = build_defs()
    job = defs.resolve_job_def(job_name)
    with _run_input(job, partition, instance):
        result = job.execute_in_process(
            instance=instance, partition_key=partition, run_config=dict(run_config or {}), raise_on_error=False,
            tags={"fp/trigger": "headless", **CLI_TAGS, **inline_tags(), **(tags or {})})
    emit_run_lineage(instance, result.run_id, run_paths(dict(defs.resources or {})["paths"], run_config))
    return summarize_run(instance, result.run_id)


def run_market_backfill(days: list[str], *, instance: dg.DagsterInstance, defs: dg.Definitions | None = None,
                        run_config: Mapping[str, Any] | None = None,
                        tags: Mapping[str, str] | None = None) -> list[RunSummary]:
    """One market_backfill_job run per UTC day, in process; a failed day does not stop the next."""
    return [_execute("market_backfill_job", day, instance=instance, defs=defs, run_config=run_config, tags=tags)
            for day in days]


def run_feature_build(version: str, *, instance: dg.DagsterInstance, defs: dg.Definitions | None = None,
                      run_config: Mapping[str, Any] | None = None) -> RunSummary:
    """feature_build for one published dataset_version, in process."""
    return _execute("feature_build_job", version, instance=instance, defs=defs, run_config=run_config)


def run_training(version: str, *, instance: dg.DagsterInstance, defs: dg.Definitions | None = None,
                 run_config: Mapping[str, Any] | None = None) -> RunSummary:
    """training_job (train → evaluate → register → promote) for one dataset_version, in process."""
    return _execute("training_job", version, instance=instance, defs=defs, run_config=run_config)


def run_definition_datasets(version: str, *, instance: dg.DagsterInstance, defs: dg.Definitions | None = None,
                            run_config: Mapping[str, Any] | None = None) -> RunSummary:
    """definition_datasets_job (build → blocking checks → publish, every active definition) for one version."""
    from feature_platform.orchestration.definition_assets import DEFINITION_VERSION

    ensure_partition(instance, version, DEFINITION_VERSION)
    return _execute("definition_datasets_job", version, instance=instance, defs=defs, run_config=run_config)
