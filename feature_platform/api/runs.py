"""What the run-launching endpoints share: the launcher, the run tags, reading a run back, its links."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fastapi import Request

from feature_platform.api.auth import Principal
from feature_platform.api.errors import ApiError, invalid, not_found
from feature_platform.api.launch import JobLauncher, LaunchRefused
from feature_platform.api.settings import dagster_instance, settings_of

if TYPE_CHECKING:
    import dagster as dg

RUN_ID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
API_TOKEN_TAG = "fp/api_token"  # the token's name, never the token
RERUN_OF_TAG = "fp/rerun_of"
MODEL_KEY_TAG = "fp/model_key"

_launcher_lock = threading.Lock()


def launcher(request: Request) -> JobLauncher:
    state = request.app.state
    with _launcher_lock:
        found = getattr(state, "launcher", None)
        if found is None:
            found = JobLauncher(dagster_instance(request))
            state.launcher = found
    assert isinstance(found, JobLauncher)
    return found


def api_tags(principal: Principal, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Run tags: launched by the API, by which token (its name), shown in the UI's "Launched by"."""
    from feature_platform.orchestration.story import USER_TAG, launched_by

    return {"fp/trigger": "api", **launched_by("api", "fp api"), USER_TAG: f"{principal.name} (fp api token)",
            API_TOKEN_TAG: principal.name, **(extra or {})}


def submit(request: Request, job: str, run_config: Mapping[str, Any], tags: Mapping[str, str]) -> dg.DagsterRun:
    try:
        return launcher(request).submit(job, run_config=run_config, tags=tags)
    except LaunchRefused as exc:
        if exc.field == "run_config":
            raise invalid("run_config", "a run config the job accepts", str(exc)) from None
        raise ApiError(503, str(exc), field=exc.field, expected="a Dagster instance that queues runs") from None


def run_record(request: Request, run_id: str, jobs: tuple[str, ...], field: str, what: str) -> Any:
    """The run record of ``run_id`` if it is a run of one of ``jobs``; 404 naming ``field`` otherwise."""
    record = dagster_instance(request).get_run_record_by_id(run_id)
    if record is None or record.dagster_run.job_name not in jobs:
        raise not_found(field, f"the id of a {what} (a Dagster run of {' or '.join(jobs)})",
                        f"{field} {run_id}: no such {what}")
    return record


def failure_lines(request: Request, run_id: str) -> list[str]:
    from feature_platform.orchestration.run_report import failure_lines as lines
    from feature_platform.orchestration.run_report import summarize_run

    return lines(summarize_run(dagster_instance(request), run_id))


def dagster_run_link(request: Request, run_id: str) -> str | None:
    from feature_platform.observability.links import dagster_run_url

    base = settings_of(request).dagster_url
    return dagster_run_url(base, run_id) if base else None


def materializations(request: Request, run_id: str) -> dict[str, dict[str, Any]]:
    """Asset → its materialization's metadata values (plain Python values) in this run."""
    import dagster as dg

    found: dict[str, dict[str, Any]] = {}
    records = dagster_instance(request).get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION, limit=1000).records
    for record in records:
        event = record.event_log_entry.dagster_event
        if event is None:
            continue
        mat = event.step_materialization_data.materialization
        found[mat.asset_key.to_user_string()] = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
    return found
