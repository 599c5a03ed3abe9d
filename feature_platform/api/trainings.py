"""``/api/trainings``: submit ``training_job`` to the Dagster run queue, read its status and outcome, stream it.

A training is a Dagster run; its ``training_id`` is the run id. The payload is the one ``fp training run``
takes, parsed by the same strict model (``TrainingPayload``) into the same run config
(``training_run_config``). Status comes from the Dagster instance; the outcome (metrics, model version,
promotion) from the run's materializations and MLflow. ``/events`` streams ``training.status`` as
Server-Sent Events until the run ends.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import StreamingResponse

from feature_platform.api.auth import Principal, require_scope
from feature_platform.api.body import json_object
from feature_platform.api.errors import conflict, error_responses, invalid
from feature_platform.api.runs import (
    API_TOKEN_TAG,
    MODEL_KEY_TAG,
    RERUN_OF_TAG,
    RUN_ID_PATTERN,
    api_tags,
    dagster_run_link,
    failure_lines,
    materializations,
    run_record,
    submit,
)
from feature_platform.api.schemas import (
    TERMINAL_STATUSES,
    Links,
    TrainingAccepted,
    TrainingOutcome,
    TrainingStatus,
    inline_schema,
)
from feature_platform.api.settings import dagster_instance, settings_of
from feature_platform.training.payload import TrainingPayload

router = APIRouter(prefix="/api/trainings", tags=["trainings"])

TRAINING_JOBS = ("training_job", "rerun_job")
TrainingId = Annotated[str, Path(pattern=RUN_ID_PATTERN, description="a training id (Dagster run id)")]
_OUTCOME_CACHE_SIZE = 4096

_PAYLOAD_SCHEMA = inline_schema(TrainingPayload)


def _links(request: Request, training_id: str, model_key: str | None, mlflow_run: str | None = None) -> Links:
    from feature_platform.registry.links import experiment_link

    experiment = experiment_link(settings_of(request).data_root, model_key) if model_key else None
    return Links(self=f"/api/trainings/{training_id}", events=f"/api/trainings/{training_id}/events",
                 dagster_run=dagster_run_link(request, training_id),
                 mlflow_experiment=experiment.target if experiment else None, mlflow_run=mlflow_run)


@router.post("", status_code=202, response_model=TrainingAccepted, summary="submit training_job (queued)",
             responses=error_responses(401, 403, 413, 422, 503),
             openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                 "schema": _PAYLOAD_SCHEMA}}}})
def create_training(request: Request, principal: Annotated[Principal, Depends(require_scope("ml:train"))],
                    body: Annotated[dict[str, Any], Depends(json_object)]) -> TrainingAccepted:
    """The payload of `fp training run` (strict: unknown fields, strings for booleans, floats for seeds are
    refused) becomes a queued `training_job` run for its `dataset_version` partition."""
    from feature_platform.orchestration.partitions import DATASET_VERSION
    from feature_platform.orchestration.training_assets import training_run_config
    from feature_platform.training.payload import PayloadError, parse_training_payload

    try:
        payload = parse_training_payload(body, "payload")
        version, run_config = training_run_config(body)
    except PayloadError as exc:
        raise invalid(exc.field or "(body)", exc.expected or "a training payload", str(exc)) from None
    if not dagster_instance(request).has_dynamic_partition(DATASET_VERSION, version):
        raise invalid("dataset_version", "a dataset_version the platform has refreshed (fp refresh run)",
                      f"payload: field dataset_version: {version!r} is not a partition of training_job")
    run = submit(request, "training_job", run_config, api_tags(principal, {
        "dagster/partition": version, MODEL_KEY_TAG: payload.model_key}))
    return TrainingAccepted(training_id=run.run_id, job=run.job_name, status=run.status.value,
                            dataset_version=version, model_key=payload.model_key,
                            links=_links(request, run.run_id, payload.model_key))


def _outcome(request: Request, run_id: str, job: str, model_key: str | None) -> tuple[TrainingOutcome | None,
                                                                                     str | None]:
    """(outcome, MLflow run link) from the run's materializations and MLflow."""
    from feature_platform.registry.links import mlflow_links
    from feature_platform.registry.tracking import client

    root = settings_of(request).data_root
    if job == "rerun_job":
        report = _rerun_report(request, run_id)
        return (TrainingOutcome(rerun_report=report) if report is not None else None), None
    found = materializations(request, run_id)
    trained = found.get("trained_model")
    if trained is None:
        return None, None
    mlflow_run_id = str(trained.get("mlflow_run_id") or "") or None
    model_name = str(found.get("registered_model", {}).get("model_name") or model_key or "") or None
    version = str(trained.get("model_version") or "") or None
    metrics: dict[str, float] = {}
    link = None
    if mlflow_run_id:
        metrics = {k: float(v) for k, v in client(root).get_run(mlflow_run_id).data.metrics.items()}
        run_link = mlflow_links(root, mlflow_run_id).get("mlflow_run")
        link = run_link.target if run_link else None
    promotion = found.get("promotion")
    promoted = bool(promotion.get("promoted")) if promotion is not None else None
    return TrainingOutcome(model_training_id=str(trained.get("training_id") or "") or None, model_name=model_name,
                           model_version=version, mlflow_run_id=mlflow_run_id, metrics=metrics,
                           promoted=promoted), link


def _rerun_report(request: Request, run_id: str) -> dict[str, Any] | None:
    """rerun_job's reproducibility report, as its op logged it."""
    for entry in dagster_instance(request).all_logs(run_id):
        message = entry.user_message or ""
        if entry.step_key == "rerun_model" and message.startswith("{") and '"reproduced"' in message:
            try:
                report = json.loads(message)
            except ValueError:
                continue
            if isinstance(report, dict):
                return report
    return None


_Cached = tuple[TrainingOutcome | None, Links, list[str]]


def _outcome_cache(request: Request) -> dict[str, _Cached]:
    """Outcome, links and failure of ended runs (they no longer change), per app."""
    cache = getattr(request.app.state, "training_outcomes", None)
    if cache is None:
        cache = {}
        request.app.state.training_outcomes = cache
    return cache


def training_status(request: Request, training_id: str) -> TrainingStatus:
    """The status of a training_job or rerun_job run: from Dagster, with its outcome once there is one."""
    record = run_record(request, training_id, TRAINING_JOBS, "training_id", "training")
    run = record.dagster_run
    status = run.status.value
    terminal = status in TERMINAL_STATUSES
    model_key = run.tags.get(MODEL_KEY_TAG)
    cache = _outcome_cache(request)
    cached = cache.get(training_id) if terminal else None
    if cached is None:
        outcome, mlflow_run = _outcome(request, training_id, run.job_name, model_key)
        failure = failure_lines(request, training_id) if status in ("FAILURE", "CANCELED") else []
        cached = (outcome, _links(request, training_id, model_key, mlflow_run), failure)
        if terminal:
            if len(cache) >= _OUTCOME_CACHE_SIZE:
                cache.pop(next(iter(cache)))
            cache[training_id] = cached
    outcome, links, failure = cached
    return TrainingStatus(
        training_id=training_id, job=run.job_name, status=status, terminal=terminal,
        dataset_version=run.tags.get("dagster/partition"), model_key=model_key,
        launched_by=run.tags.get(API_TOKEN_TAG), rerun_of=run.tags.get(RERUN_OF_TAG),
        created_at=record.create_timestamp.timestamp() if record.create_timestamp else None,
        started_at=record.start_time, ended_at=record.end_time, failure=failure, outcome=outcome, links=links)


@router.get("/{training_id}", response_model=TrainingStatus, summary="status and outcome of a training",
            responses=error_responses(401, 403, 404, 422))
def get_training(request: Request, _: Annotated[Principal, Depends(require_scope("ml:train"))],
                 training_id: TrainingId) -> TrainingStatus:
    return training_status(request, training_id)


def _sse(event: str, event_id: int, data: str) -> bytes:
    return f"event: {event}\nid: {event_id}\ndata: {data}\n\n".encode()


@router.get("/{training_id}/events", summary="training.status events (Server-Sent Events) until the run ends",
            response_class=StreamingResponse, responses={
                **error_responses(401, 403, 404, 422),
                200: {"description": "`event: training.status` with a TrainingStatus JSON as `data`, once now and "
                                     "on every status change; the stream ends after a terminal status",
                      "content": {"text/event-stream": {"schema": {"type": "string"}}}}})
def training_events(request: Request, _: Annotated[Principal, Depends(require_scope("ml:train"))],
                    training_id: TrainingId) -> StreamingResponse:
    first = training_status(request, training_id)  # 404 before the stream starts
    interval = settings_of(request).poll_interval_s
    keepalive = settings_of(request).keepalive_s
    sleep = getattr(request.app.state, "sleep", anyio.sleep)

    async def stream() -> AsyncIterator[bytes]:
        current = first
        sent = 0
        quiet = 0.0
        yield _sse("training.status", sent, current.model_dump_json())
        while not current.terminal:
            await sleep(interval)
            if await request.is_disconnected():
                return
            status = await anyio.to_thread.run_sync(_light_status, request, training_id)
            if status == current.status:
                quiet += interval
                if quiet >= keepalive:  # a comment line: proxies keep the connection, a gone client is noticed
                    quiet = 0.0
                    yield b": keepalive\n\n"
                continue
            quiet = 0.0
            current = await anyio.to_thread.run_sync(training_status, request, training_id)
            sent += 1
            yield _sse("training.status", sent, current.model_dump_json())

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def _light_status(request: Request, training_id: str) -> str | None:
    run = dagster_instance(request).get_run_by_id(training_id)
    return None if run is None else run.status.value


@router.post("/{training_id}/rerun", status_code=202, response_model=TrainingAccepted,
             summary="rerun a finished training with every reference locked (rerun_job, queued)",
             responses=error_responses(401, 403, 404, 409, 422, 503))
def rerun(request: Request, principal: Annotated[Principal, Depends(require_scope("ml:write"))],
          training_id: TrainingId) -> TrainingAccepted:
    """Queues `rerun_job` for the model the training produced: the same run as `fp rerun --training-id`
    (in Dagster), which retrains from its training_manifest.yaml and reports whether it reproduced."""
    record = run_record(request, training_id, TRAINING_JOBS, "training_id", "training")
    run = record.dagster_run
    if run.job_name != "training_job":
        raise conflict("training_id", "the id of a training_job run (a rerun is rerun from its original)",
                       f"training {training_id} is a {run.job_name} run")
    model_training_id = materializations(request, training_id).get("trained_model", {}).get("training_id")
    if run.status.value != "SUCCESS" or not model_training_id:
        raise conflict("training_id", "a training that ended SUCCESS with a model",
                       f"training {training_id} is {run.status.value}; there is no finished model to rerun")
    model_key = run.tags.get(MODEL_KEY_TAG)
    extra = {RERUN_OF_TAG: training_id, **({MODEL_KEY_TAG: model_key} if model_key else {})}
    accepted = submit(request, "rerun_job", {"ops": {"rerun_model": {"config": {"training_id": model_training_id}}}},
                      api_tags(principal, extra))
    return TrainingAccepted(training_id=accepted.run_id, job=accepted.job_name, status=accepted.status.value,
                            dataset_version=run.tags.get("dagster/partition"), model_key=model_key or "",
                            rerun_of=training_id, links=_links(request, accepted.run_id, model_key))
