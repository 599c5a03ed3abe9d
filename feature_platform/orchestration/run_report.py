"""What happened in a refresh run, read back from the Dagster event log: the demo summary, the
Prometheus metrics, the structured run log and the archive are all built from this one place."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg

from feature_platform.orchestration.resources import MetricsResource, PlatformPaths

if TYPE_CHECKING:
    from feature_platform.observability.metrics import RunMetrics


@dataclass
class StepSummary:
    step_key: str
    status: str
    seconds: float
    attempts: int


@dataclass
class RunSummary:
    run_id: str
    job_name: str
    status: str
    partition: str | None
    seconds: float
    steps: list[StepSummary] = field(default_factory=list)
    materialized: dict[str, int | None] = field(default_factory=dict)  # asset → row count
    checks: dict[str, bool] = field(default_factory=dict)  # "asset:check" → passed
    step_errors: dict[str, str] = field(default_factory=dict)  # failed step → one-line reason
    check_failures: dict[str, str] = field(default_factory=dict)  # failed "asset:check" → expected/actual

    @property
    def succeeded(self) -> bool:
        return self.status == "SUCCESS"

    def to_json_dict(self) -> dict[str, Any]:
        return {**asdict(self), "succeeded": self.succeeded}


def summarize_run(instance: dg.DagsterInstance, run_id: str) -> RunSummary:
    record = instance.get_run_record_by_id(run_id)
    if record is None:
        raise ValueError(f"run {run_id} not found in the Dagster instance")
    run = record.dagster_run
    seconds = (record.end_time or record.start_time or 0.0) - (record.start_time or 0.0)
    summary = RunSummary(run_id=run_id, job_name=run.job_name, status=run.status.value,
                         partition=run.tags.get("dagster/partition"), seconds=max(seconds, 0.0))
    for stat in instance.get_run_step_stats(run_id):
        summary.steps.append(StepSummary(
            step_key=stat.step_key, status=stat.status.value if stat.status else "UNKNOWN",
            seconds=(stat.end_time or 0.0) - (stat.start_time or 0.0) if stat.start_time else 0.0,
            attempts=stat.attempts or 1,
        ))
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None:
            continue
        if event.is_step_materialization:
            mat = event.step_materialization_data.materialization
            rows = mat.metadata.get("dagster/row_count")
            value = rows.value if rows is not None else None
            summary.materialized[mat.asset_key.to_user_string()] = value if isinstance(value, int) else None
        elif event.event_type_value == "ASSET_CHECK_EVALUATION":
            evaluation = event.asset_check_evaluation_data
            key = f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"
            summary.checks[key] = bool(evaluation.passed)
            if not evaluation.passed:
                summary.check_failures[key] = _check_reason(evaluation)
        elif event.is_step_failure and entry.step_key:
            summary.step_errors[entry.step_key] = _error_reason(event.step_failure_data.error)
        elif event.event_type_value == "RUN_FAILURE" and not summary.step_errors:
            error = getattr(event.event_specific_data, "error", None)
            summary.step_errors["run"] = _error_reason(error) if error is not None else (event.message or "failed")
    return summary


def failure_lines(summary: RunSummary) -> list[str]:
    """Why a run failed, one line per failed check and per failed step (a blocking check's own step failure is
    said by its check line); the run's status when the event log names nothing."""
    lines = [f"check {key} failed: {reason}" for key, reason in summary.check_failures.items()]
    for step, reason in summary.step_errors.items():
        if not (summary.check_failures and reason.startswith("DagsterAssetCheckFailedError")):
            lines.append(f"{'run' if step == 'run' else f'step {step}'} failed: {reason}")
    return lines or [f"run {summary.run_id} ended {summary.status}"]


def _error_reason(error: Any) -> str:
    """The innermost cause of a Dagster error chain as `Class: first line of its message`."""
    if error is None:
        return "no error recorded"
    while getattr(error, "cause", None) is not None:
        error = error.cause
    name = str(getattr(error, "cls_name", None) or "Error")
    text = str(getattr(error, "message", "") or "").strip()
    head, sep, rest = text.partition(": ")
    if sep and head.rsplit(".", 1)[-1] == name:
        text = rest
    first = text.splitlines()[0].strip() if text else ""
    return f"{name}: {first}" if first else name


def _check_reason(evaluation: Any) -> str:
    """A failed check's expected/actual (as its metadata states them), else its description."""
    values = {k: getattr(v, "value", v) for k, v in (evaluation.metadata or {}).items()}
    expected, actual = values.get("expected"), values.get("actual")
    if isinstance(expected, str) and isinstance(actual, str):
        reason = f"expected {expected}; actual {actual}"
    else:
        reason = str(evaluation.description or "failed")
    reason = " ".join(reason.split())
    return reason if len(reason) <= 300 else reason[:299] + "…"


def run_metrics(summary: RunSummary, job: str) -> RunMetrics:
    from feature_platform.observability.metrics import RunMetrics

    metrics = RunMetrics(job=job, dataset_version=summary.partition or "")
    metrics.set_run(duration_seconds=summary.seconds, status="success" if summary.succeeded else "failure")
    for step in summary.steps:
        metrics.set_asset(step.step_key, duration_seconds=step.seconds,
                          rows=summary.materialized.get(step.step_key))
    return metrics


def render_metrics(summary: RunSummary, job: str) -> str:
    return run_metrics(summary, job).render()


def emit_run_metrics(summary: RunSummary, metrics: MetricsResource, paths: PlatformPaths) -> Path:
    """Textfile-collector file always; Pushgateway too when configured."""
    gauges = run_metrics(summary, metrics.job)
    directory = Path(metrics.textfile_dir) if metrics.textfile_dir else paths.metrics_dir
    path = gauges.write_textfile(directory / f"{metrics.job}.prom")
    if metrics.pushgateway_url:
        gauges.push(metrics.pushgateway_url, metrics.job)  # one group per job: versions are labels
    return path


def run_log_lines(instance: dg.DagsterInstance, run_id: str) -> list[dict[str, Any]]:
    """The run's event log as structured records carrying dag_run_id, task_id and dataset_version."""
    run = instance.get_run_by_id(run_id)
    version = run.tags.get("dagster/partition") if run else None
    lines = []
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        level = entry.level if isinstance(entry.level, int) else logging.getLevelName(entry.level)
        lines.append({
            "ts": datetime.fromtimestamp(entry.timestamp, tz=UTC).isoformat(),
            "level": logging.getLevelName(level) if isinstance(level, int) else str(entry.level),
            "message": entry.user_message or (event.message if event else "") or "",
            "event": event.event_type_value if event else "LOG",
            "dag_run_id": run_id,
            "task_id": entry.step_key,
            "dataset_version": version,
        })
    return lines


def write_run_log(instance: dg.DagsterInstance, run_id: str, paths: PlatformPaths) -> Path:
    from feature_platform.storage.files import write_atomic

    text = "".join(json.dumps(line, sort_keys=True) + "\n" for line in run_log_lines(instance, run_id))
    return write_atomic(paths.logs_dir / f"{run_id}.jsonl", text.encode("utf-8"))


def archive_refresh_run(instance: dg.DagsterInstance, refresh_run_id: str | None, version: str,
                        paths: PlatformPaths, store: Any) -> Any:
    """Archive logs, metrics, quality outputs and the candidate-vs-previous diff; sweep old archives."""
    from feature_platform.datasets.diff import version_archive_files
    from feature_platform.storage.archive import archive_files, sweep_archives
    from feature_platform.storage.dataset_publish import current_pointer

    files: dict[str, Path | bytes] = {}
    run_id = refresh_run_id or "no-run"
    if refresh_run_id:
        summary = summarize_run(instance, refresh_run_id)
        files["run_log.jsonl"] = write_run_log(instance, refresh_run_id, paths)
        files["metrics.prom"] = render_metrics(summary, "feature_platform_refresh").encode()
        files["run_summary.json"] = json.dumps(summary.__dict__, default=lambda o: o.__dict__, indent=2).encode()
    files.update(version_archive_files(paths.layout, version, current_pointer(store, paths.dataset_name)))
    archived = archive_files(store, version, run_id, files)
    swept = sweep_archives(store, paths.retention_days)
    return type(archived)(location=archived.location, files=archived.files, swept=swept)


def purge_old_runs(instance: dg.DagsterInstance, retention_days: int, now: datetime | None = None,
                   jobs: tuple[str, ...] = ("refresh_job", "archive_job")) -> list[str]:
    """Run retention: delete runs of ``jobs`` created before the cutoff (their logs are archived)."""
    cutoff = (now or datetime.now(tz=UTC)) - timedelta(days=retention_days)
    purged = []
    for job in jobs:
        for record in instance.get_run_records(filters=dg.RunsFilter(job_name=job, created_before=cutoff), limit=500):
            if record.dagster_run.is_finished:
                instance.delete_run(record.dagster_run.run_id)
                purged.append(record.dagster_run.run_id)
    return purged
