"""The training payload users send (``fp training run|submit --payload``), parsed strictly.

A string is not a boolean (``auto_promote: "false"`` is refused, never read as True), a float or a
boolean is not a seed, and unknown fields are refused: the payload becomes the ``training_job`` run
config only after this model accepts it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from feature_platform.contracts.manifest import SafeId, validation_message


class PayloadError(ValueError):
    """A training payload that does not match ``TrainingPayload``; the message is one line, ``field`` the field."""

    def __init__(self, message: str, field: str | None = None, expected: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.expected = expected


class TrainingPayload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    dataset_version: SafeId = Field(description="partition: the published dataset version to train on")
    model_key: SafeId = Field("market_regime", description="registered model name and MLflow experiment")
    feature_repo_ref: str | None = Field(None, description="git ref of feature_repo the features were built at")
    hyperparams: dict[str, JsonValue] = Field(default_factory=dict, description="overrides of the profile")
    hyperparam_profile: str | None = Field(None, description="saved tuning profile (default: 'default')")
    seed: int = Field(0, ge=0)
    schedule: Literal["adhoc", "backfill"] = "adhoc"
    run_coingecko_fetch: bool = Field(True, description="backfill the last UTC day of market data first")
    auto_promote: bool = Field(False, description="promote to production after a successful training run")


PAYLOAD_KEYS = frozenset(TrainingPayload.model_fields)


def parse_training_payload(raw: Any, source: str = "payload") -> TrainingPayload:
    """``raw`` (a decoded JSON value) as a ``TrainingPayload``, or ``PayloadError`` naming the field."""
    if not isinstance(raw, dict):
        raise PayloadError(f"{source}: expected a JSON object, got {type(raw).__name__}", "(root)",
                           "a JSON object")
    unknown = sorted(set(raw) - PAYLOAD_KEYS)
    if unknown:
        raise PayloadError(f"{source}: unknown payload field(s) {unknown}; expected some of {sorted(PAYLOAD_KEYS)}",
                           unknown[0], f"some of {sorted(PAYLOAD_KEYS)}")
    try:
        return TrainingPayload.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise PayloadError(validation_message(exc, source), ".".join(str(p) for p in first["loc"]) or "(root)",
                           str(first["msg"])) from None
