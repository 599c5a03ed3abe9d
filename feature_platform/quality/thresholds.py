"""Quality thresholds: what the gate demands of a dataset version, read from YAML config.

Defaults live in the model and in the committed ``thresholds.yaml`` (a test keeps the two equal).
Per-feature overrides exist because a few features legitimately differ (a sparse feature may be
allowed more nulls, a discrete one fewer distinct values).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from feature_platform.contracts.manifest import first_field_error
from feature_platform.contracts.safe_read import InputError, read_yaml

DEFAULT_THRESHOLDS_PATH = Path(__file__).with_name("thresholds.yaml")

Rate = Annotated[float, Field(ge=0.0, le=1.0)]


class ThresholdsError(ValueError):
    """The thresholds file is missing or invalid; the message names the file and the field."""


class _Config(BaseModel):
    """Strict: a threshold of ``"0.5"`` or ``true`` is an error, not a number; ``.inf`` would disable a gate."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class FeatureThresholds(_Config):
    """Per-feature override; an unset field falls back to the global threshold."""

    min_non_null_rate: Rate | None = None
    min_distinct_ratio: Rate | None = None
    max_psi: Annotated[float, Field(ge=0.0)] | None = None
    max_ks: Rate | None = None


class QualityThresholds(_Config):
    """Global thresholds. ``min_*`` pass when value >= threshold, ``max_*`` when value <= threshold."""

    # coverage
    min_rows: int = Field(default=1_000, ge=0)
    min_distinct_entities: int = Field(default=50, ge=0)
    min_time_bucket_coverage: Rate = 0.95
    min_label_class_coverage: Rate = 1.0
    min_non_null_rate: Rate = 0.95
    # diversity
    min_label_entropy: Rate = 0.5
    min_entity_entropy: Rate = 0.5
    min_distinct_ratio: Rate = 0.1
    max_duplicate_rate: Rate = 0.001
    # toxicity
    max_toxicity_rate: Rate = 0.01
    toxicity_score_cutoff: Annotated[float, Field(gt=0.0, le=1.0)] = 0.5
    # drift vs baseline
    max_psi: Annotated[float, Field(ge=0.0)] = 0.2
    max_ks: Rate = 0.1
    feature_overrides: dict[str, FeatureThresholds] = Field(default_factory=dict)

    def for_feature(self, name: str) -> FeatureLimits:
        """The thresholds that apply to ``name``: its overrides merged over the globals."""
        o = self.feature_overrides.get(name, FeatureThresholds())
        return FeatureLimits(
            min_non_null_rate=self.min_non_null_rate if o.min_non_null_rate is None else o.min_non_null_rate,
            min_distinct_ratio=self.min_distinct_ratio if o.min_distinct_ratio is None else o.min_distinct_ratio,
            max_psi=self.max_psi if o.max_psi is None else o.max_psi,
            max_ks=self.max_ks if o.max_ks is None else o.max_ks,
        )


@dataclass(frozen=True)
class FeatureLimits:
    min_non_null_rate: float
    min_distinct_ratio: float
    max_psi: float
    max_ks: float


def parse_thresholds(raw: Any, source: str) -> QualityThresholds:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ThresholdsError(f"{source}: expected a mapping of threshold names to values, got {type(raw).__name__}")
    try:
        return QualityThresholds.model_validate(raw)
    except ValidationError as exc:
        raise ThresholdsError(f"{source}: {first_field_error(exc).line}") from None


def load_thresholds(path: Path | None = None) -> QualityThresholds:
    """Thresholds from the YAML file at ``path``, or the committed defaults when ``path`` is None."""
    path = path or DEFAULT_THRESHOLDS_PATH
    try:
        raw = read_yaml(path)
    except InputError as exc:
        raise ThresholdsError(str(exc)) from None
    return parse_thresholds(raw, str(path))
