"""Sensors: new source snapshots in the inbox, and what must happen after every refresh run."""


import json
import re
from collections.abc import Mapping
from pathlib import Path

import dagster as dg

from feature_platform.orchestration.jobs import archive_job, refresh_job
from feature_platform.orchestration.partitions import DATASET_VERSION
from feature_platform.orchestration.resources import MetricsResource, NotifierResource, PlatformPaths, run_paths
from feature_platform.orchestration.story import launched_by, run_links

INBOX_SUFFIX = ".parquet"


def inbox_version(path: Path, sha256: str) -> str:
    """A safe partition key for a dropped file: its stem, cleaned, plus a content prefix."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", path.stem).strip("-._")[:60] or "snapshot"
    return f"inbox-{stem}-{sha256[:10]}"


def _sha256(path: Path) -> str:
    from feature_platform.contracts.canonical import sha256_file

    return sha256_file(path)


@dg.sensor(job=refresh_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.STOPPED)
def inbox_sensor(context: dg.SensorEvaluationContext, paths: PlatformPaths) -> dg.SensorResult | dg.SkipReason:
    """Requests a refresh run for each new parquet file dropped into ``<data_root>/inbox``.

    Writers should drop ``name.parquet.tmp`` and rename it, so only complete files match. The run key
    is the content hash: a rewritten file is a new snapshot, the same bytes again are not; the cursor
    (size, mtime) only spares re-hashing files that did not change.
    """
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    inbox = paths.inbox
    if not inbox.is_dir():
        return dg.SkipReason(f"inbox {inbox} does not exist")
    requests, versions = [], []
    for path in sorted(inbox.glob(f"*{INBOX_SUFFIX}")):
        stat = path.stat()
        fingerprint = f"{stat.st_size}:{stat.st_mtime_ns}"
        if seen.get(path.name) == fingerprint:
            continue
        sha = _sha256(path)
        version = inbox_version(path, sha)
        seen[path.name] = fingerprint
        versions.append(version)
        requests.append(dg.RunRequest(
            run_key=f"inbox-{sha}", partition_key=version,
            tags={"fp/trigger": "inbox", "fp/inbox_file": path.name, **launched_by("sensor", "inbox_sensor")},
            run_config={"ops": {"source_snapshot": {"config": {"kind": "file", "inbox_file": str(path.resolve()),
                                                               "expected_sha256": sha}}}},
        ))
    if not requests:
        return dg.SkipReason("no new files in the inbox")
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[dg.AddDynamicPartitionsRequest(DATASET_VERSION, versions)],
        cursor=json.dumps(seen, sort_keys=True),
    )


def _archive_request(run: dg.DagsterRun) -> dg.RunRequest | dg.SkipReason:
    partition = run.tags.get("dagster/partition")
    if not partition:
        return dg.SkipReason(f"run {run.run_id} has no partition")
    launched = run.run_config.get("resources")  # the archive runs where the refresh ran
    return dg.RunRequest(run_key=f"archive-{run.run_id}", partition_key=partition, job_name=archive_job.name,
                         tags={"fp/refresh_run_id": run.run_id, **launched_by("sensor", "refresh_run_status")},
                         run_config={"resources": dict(launched)} if isinstance(launched, Mapping) and launched else {})


def after_refresh(instance: dg.DagsterInstance, run: dg.DagsterRun, paths: PlatformPaths,
                  metrics: MetricsResource, notifier: NotifierResource) -> None:
    """Metrics, run log and, on failure, the alert (PagerDuty P2, Slack, email; the outbox unless one is configured)
    for every refresh run, under the data root the run used."""
    from feature_platform.observability.notify import Notification
    from feature_platform.orchestration.run_report import emit_run_metrics, summarize_run, write_run_log

    paths = run_paths(paths, run.run_config)

    summary = summarize_run(instance, run.run_id)
    emit_run_metrics(summary, metrics, paths)
    write_run_log(instance, run.run_id, paths)
    if summary.succeeded:
        return
    failed_checks = [k for k, ok in summary.checks.items() if not ok]
    failed_steps = [s.step_key for s in summary.steps if s.status == "FAILURE"]
    version = summary.partition
    gaps = paths.reports(version) / "coverage_gap_report.md" if version else None
    attachments = [("coverage_gap_report.md", gaps.read_bytes(), "text/markdown")] if gaps and gaps.exists() else []
    gate_failed = any(k.endswith(":quality_thresholds") for k in failed_checks)
    notifier.open(paging=True, outbox=paths.layout.outbox).send(Notification(
        title=f"{'Quality gate failed' if gate_failed else 'Dataset refresh failed'} for {version}",
        text=f"Run {run.run_id} failed. Failed checks: {', '.join(failed_checks) or 'none'}. "
             f"Failed steps: {', '.join(failed_steps) or 'none'}. Nothing was published.",
        severity="error", dataset_version=version,
        kind="quality_gate_failure" if gate_failed else "refresh_failure",
        details={"dag_run_id": run.run_id, "failed_checks": len(failed_checks), "priority": "P2"},
        links=run_links(notifier.dagster_url, run.run_id, asset=["quality_report"], partition=version,
                        files={"quality report": paths.layout.quality_report(version),
                               "coverage gap report": gaps} if version and gaps else None),
        attachments=attachments,
    ))


@dg.run_status_sensor(run_status=dg.DagsterRunStatus.SUCCESS, monitored_jobs=[refresh_job],
                      request_job=archive_job, default_status=dg.DefaultSensorStatus.STOPPED)
def refresh_succeeded(context: dg.RunStatusSensorContext, paths: PlatformPaths, metrics: MetricsResource,
                      notifier: NotifierResource) -> dg.RunRequest | dg.SkipReason:
    after_refresh(context.instance, context.dagster_run, paths, metrics, notifier)
    return _archive_request(context.dagster_run)


@dg.run_failure_sensor(monitored_jobs=[refresh_job], request_job=archive_job,
                       default_status=dg.DefaultSensorStatus.STOPPED)
def refresh_failed(context: dg.RunFailureSensorContext, paths: PlatformPaths, metrics: MetricsResource,
                   notifier: NotifierResource) -> dg.RunRequest | dg.SkipReason:
    after_refresh(context.instance, context.dagster_run, paths, metrics, notifier)
    return _archive_request(context.dagster_run)
