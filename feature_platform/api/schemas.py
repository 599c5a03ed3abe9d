"""Request and response models of the training and model endpoints (what /openapi.json documents)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from feature_platform.contracts.manifest import SafeId

RunStatus = Literal["QUEUED", "NOT_STARTED", "STARTING", "STARTED", "SUCCESS", "FAILURE", "CANCELING", "CANCELED",
                    "MANAGED"]
TERMINAL_STATUSES = frozenset({"SUCCESS", "FAILURE", "CANCELED"})


class Links(BaseModel):
    self: str = Field(description="this resource in the API")
    events: str | None = Field(None, description="the training.status event stream (Server-Sent Events)")
    dagster_run: str | None = Field(None, description="the run's page in the Dagster UI (when FP_DAGSTER_URL is set)")
    mlflow_experiment: str | None = Field(None, description="the model key's MLflow experiment: a UI page on a "
                                                            "tracking server, else its artifact directory")
    mlflow_run: str | None = Field(None, description="the training's MLflow run (once trained)")


class TrainingAccepted(BaseModel):
    training_id: str = Field(description="the Dagster run id; GET /api/trainings/{training_id}")
    job: str
    status: RunStatus
    dataset_version: str | None
    model_key: str
    rerun_of: str | None = None
    links: Links


class TrainingOutcome(BaseModel):
    model_training_id: str | None = Field(None, description="the model directory's id under <data_root>/models")
    model_name: str | None = None
    model_version: str | None = Field(None, description="the registered MLflow model version")
    mlflow_run_id: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict, description="offline metrics logged to MLflow")
    promoted: bool | None = Field(None, description="whether this run moved alias production (auto_promote)")
    rerun_report: dict[str, Any] | None = Field(None, description="rerun_job: the reproducibility report")


class TrainingStatus(BaseModel):
    training_id: str
    job: str
    status: RunStatus
    terminal: bool
    dataset_version: str | None
    model_key: str | None
    launched_by: str | None = Field(None, description="the name of the API token that launched it (or null)")
    rerun_of: str | None = None
    created_at: float | None = Field(None, description="Unix time")
    started_at: float | None = None
    ended_at: float | None = None
    failure: list[str] = Field(default_factory=list, description="why it failed: one line per failed check or step")
    outcome: TrainingOutcome | None = None
    links: Links


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    model_version: int = Field(ge=1, description="the registered version to put back in production")


class RollbackAccepted(BaseModel):
    rollback_id: str = Field(description="the Dagster run id of rollback_job")
    model_key: SafeId
    model_version: int
    status: RunStatus
    production_version: str | None = Field(description="production before the rollback")
    links: Links


class RollbackStatus(BaseModel):
    rollback_id: str
    model_key: str
    model_version: str | None
    status: RunStatus
    terminal: bool
    launched_by: str | None = None
    production_version: str | None = Field(description="the registry's production version now")
    failure: list[str] = Field(default_factory=list)
    links: Links


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON Schema with its local ``$defs`` inlined, for a request body documented by hand (a body
    parsed by a domain parser rather than by FastAPI). Recursive models are not supported."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    resolved = resolve(schema)
    assert isinstance(resolved, dict)
    return resolved
