"""``/api/models/{model_key}``: put an earlier registered version back in production (``rollback_job``, queued).

The rollback itself is ``registry.rollback.rollback`` inside the Dagster job, as for ``fp rollback``: it
re-verifies the version's dataset and bytes, replays its reference batch and only then moves
``production``. The API checks the model and version exist (404) and that no rollback of the model is
already waiting or running (409) before queueing the run.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request

from feature_platform.api.auth import Principal, require_scope
from feature_platform.api.body import json_object
from feature_platform.api.errors import conflict, error_responses, invalid, not_found
from feature_platform.api.runs import (
    API_TOKEN_TAG,
    MODEL_KEY_TAG,
    RUN_ID_PATTERN,
    api_tags,
    dagster_run_link,
    failure_lines,
    run_record,
    submit,
)
from feature_platform.api.schemas import (
    TERMINAL_STATUSES,
    Links,
    RollbackAccepted,
    RollbackRequest,
    RollbackStatus,
    inline_schema,
)
from feature_platform.api.settings import dagster_instance, settings_of
from feature_platform.contracts.paths import SAFE_ID_PATTERN

router = APIRouter(prefix="/api/models", tags=["models"])

ModelKey = Annotated[str, Path(pattern=SAFE_ID_PATTERN, description="registered model name, e.g. market_regime")]
RollbackId = Annotated[str, Path(pattern=RUN_ID_PATTERN, description="a rollback id (Dagster run id)")]
_ACTIVE = ("QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING")
_VERSION_TAG = "fp/model_version"


def _production(request: Request, model_key: str) -> str | None:
    from feature_platform.registry.promotion import current_production
    from feature_platform.registry.tracking import client

    return current_production(client(settings_of(request).data_root), model_key)


def _require_version(request: Request, model_key: str, version: int) -> None:
    from mlflow.exceptions import MlflowException

    from feature_platform.registry.tracking import client

    mc = client(settings_of(request).data_root)
    try:
        mc.get_registered_model(model_key)
    except MlflowException:
        raise not_found("model_key", "a registered model name", f"model_key {model_key}: no such registered "
                        "model") from None
    try:
        mc.get_model_version(model_key, str(version))
    except MlflowException:
        raise not_found("model_version", f"a registered version of {model_key}",
                        f"model_version {version}: {model_key} has no such version") from None


def _parse_request(body: dict[str, Any]) -> RollbackRequest:
    from pydantic import ValidationError

    from feature_platform.contracts.manifest import first_field_error

    try:
        return RollbackRequest.model_validate(body)
    except ValidationError as exc:
        error = first_field_error(exc, root="(body)")
        raise invalid(error.field, error.message, error.line) from None


def _links(request: Request, model_key: str, rollback_id: str) -> Links:
    return Links(self=f"/api/models/{model_key}/rollbacks/{rollback_id}",
                 dagster_run=dagster_run_link(request, rollback_id))


@router.post("/{model_key}/rollback", status_code=202, response_model=RollbackAccepted,
             summary="roll production back to an earlier version (rollback_job, queued)",
             responses=error_responses(401, 403, 404, 409, 413, 422, 503),
             openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                 "schema": inline_schema(RollbackRequest)}}}})
def rollback(request: Request, principal: Annotated[Principal, Depends(require_scope("ml:write"))],
             model_key: ModelKey, body: Annotated[dict[str, Any], Depends(json_object)]) -> RollbackAccepted:
    import dagster as dg

    wanted = _parse_request(body)
    _require_version(request, model_key, wanted.model_version)
    active = dagster_instance(request).get_run_ids(dg.RunsFilter(
        job_name="rollback_job", statuses=[dg.DagsterRunStatus(s) for s in _ACTIVE],
        tags={MODEL_KEY_TAG: model_key}), limit=1)
    if active:
        raise conflict("model_key", f"no rollback of {model_key} waiting or running",
                       f"rollback {active[0]} of {model_key} is still waiting or running")
    production = _production(request, model_key)
    run = submit(request, "rollback_job",
                 {"ops": {"rollback_model": {"config": {"model_key": model_key,
                                                        "to_version": str(wanted.model_version)}}}},
                 api_tags(principal, {MODEL_KEY_TAG: model_key, _VERSION_TAG: str(wanted.model_version)}))
    return RollbackAccepted(rollback_id=run.run_id, model_key=model_key, model_version=wanted.model_version,
                            status=run.status.value, production_version=production,
                            links=_links(request, model_key, run.run_id))


@router.get("/{model_key}/rollbacks/{rollback_id}", response_model=RollbackStatus,
            summary="status of a rollback, and production now", responses=error_responses(401, 403, 404, 422))
def get_rollback(request: Request, _: Annotated[Principal, Depends(require_scope("ml:write"))],
                 model_key: ModelKey, rollback_id: RollbackId) -> RollbackStatus:
    record = run_record(request, rollback_id, ("rollback_job",), "rollback_id", "rollback")
    run = record.dagster_run
    if run.tags.get(MODEL_KEY_TAG) != model_key:
        raise not_found("rollback_id", f"the id of a rollback of {model_key}",
                        f"rollback_id {rollback_id}: not a rollback of {model_key}")
    status = run.status.value
    return RollbackStatus(
        rollback_id=rollback_id, model_key=model_key, model_version=run.tags.get(_VERSION_TAG), status=status,
        terminal=status in TERMINAL_STATUSES, launched_by=run.tags.get(API_TOKEN_TAG),
        production_version=_production(request, model_key),
        failure=failure_lines(request, rollback_id) if status in ("FAILURE", "CANCELED") else [],
        links=_links(request, model_key, rollback_id))
