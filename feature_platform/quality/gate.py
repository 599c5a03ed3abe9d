"""The quality gate: judge one dataset version against thresholds and a baseline.

Every rule becomes one ``MetricResult`` row (value, baseline value, delta, threshold, pass), so the
report, the Markdown summary and the blocking Dagster check all read the same verdict. The gate is
fail-closed: a numeric feature the baseline cannot judge for drift is a failed metric, not a skip.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from feature_platform.contracts.checks import Check
from feature_platform.contracts.feature_contract import FeatureContract
from feature_platform.contracts.manifest import DatasetManifest
from feature_platform.datasets.executors import Executor
from feature_platform.quality.baseline import Baseline
from feature_platform.quality.drift import FeatureDrift, feature_drift
from feature_platform.quality.profile import (
    FLOAT_TYPES,
    DatasetIdentity,
    DatasetProfile,
    ReferenceCounts,
    profile_against,
)
from feature_platform.quality.thresholds import QualityThresholds
from feature_platform.quality.toxicity import (
    ColumnToxicity,
    LexiconToxicityScorer,
    TextScorer,
    score_text_columns,
    scorer_name,
)

MetricGroup = Literal["coverage", "diversity", "toxicity", "drift"]
GROUPS: tuple[MetricGroup, ...] = ("coverage", "diversity", "toxicity", "drift")


class QualityConfigError(ValueError):
    """Thresholds that cannot apply to this dataset (e.g. an override naming no feature)."""


class MetricResult(BaseModel):
    """One judged metric; serialised with ``pass`` (a Python keyword, hence ``passed`` here)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: str
    group: MetricGroup
    feature: str | None = None
    value: float
    baseline: float | None = None
    delta: float | None = None
    threshold: float
    comparison: Literal["min", "max"]
    passed: bool = Field(serialization_alias="pass", validation_alias=AliasChoices("pass", "passed"))

    def as_check(self) -> Check:
        """The metric as a named check: the threshold is what was expected, the value what was measured."""
        return Check(self.metric, self.passed, self.threshold, self.value, self.feature)


class ToxicitySummary(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    scorer: str | None
    text_columns: list[str]
    columns: list[ColumnToxicity]
    note: str = ""


class QualityReport(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    report_version: Literal[1] = 1
    dataset_id: str
    dataset_version: str
    manifest_digest: str
    baseline: str
    baseline_created_from: DatasetIdentity
    thresholds: QualityThresholds
    toxicity: ToxicitySummary
    metrics: list[MetricResult]
    drift: list[FeatureDrift]
    profile: DatasetProfile

    @property
    def passed(self) -> bool:
        return bool(self.metrics) and all(m.passed for m in self.metrics)

    @property
    def failures(self) -> list[MetricResult]:
        return [m for m in self.metrics if not m.passed]

    def to_json_dict(self) -> dict[str, Any]:
        """The ``quality_report.json`` document: verdict and summary first, the profile last."""
        body = self.model_dump(mode="json", by_alias=True)
        failed = self.failures
        head = {k: body.pop(k) for k in ("report_version", "dataset_id", "dataset_version", "manifest_digest")}
        summary = {
            "metrics": len(self.metrics),
            "failed": len(failed),
            "failed_by_group": {g: sum(m.group == g for m in failed) for g in GROUPS},
        }
        return {**head, "passed": self.passed, "summary": summary, **body}

    @classmethod
    def from_json_dict(cls, raw: dict[str, Any]) -> QualityReport:
        """Parse ``to_json_dict`` output back (the verdict and summary are recomputed, not trusted)."""
        return cls.model_validate({k: v for k, v in raw.items() if k not in ("passed", "summary")})


def evaluate_quality(
    parquet_path: Path | Sequence[Path],
    manifest: DatasetManifest,
    baseline: Baseline,
    thresholds: QualityThresholds | None = None,
    scorer: TextScorer | None = None,
    *,
    contract: FeatureContract | None = None,
    executor: Executor = "inline",
    workers: int | None = None,
) -> QualityReport:
    """Profile the data file(s) ``parquet_path`` (counted at the baseline's edges too) and judge every metric;
    ``executor``/``workers`` run the profile's per-file passes and do not change the report."""
    thresholds = thresholds or QualityThresholds()
    unknown = sorted(set(thresholds.feature_overrides) - set(manifest.feature_order))
    if unknown:
        raise QualityConfigError(f"feature_overrides name features not in this dataset: {unknown}")
    base = baseline.profile
    profile, counts = profile_against(parquet_path, manifest, base, bins=base.bins, quantiles=base.quantiles,
                                      sample_size=base.sample_size, contract=contract, executor=executor,
                                      workers=workers)
    toxicity = _toxicity(parquet_path, profile, thresholds, scorer)
    drift, drift_metrics = _drift(profile, base, counts, thresholds)
    metrics = [
        *_coverage(profile, base, thresholds),
        *_diversity(profile, base, thresholds),
        *(_metric("toxicity_rate", "toxicity", c.rate, thresholds.max_toxicity_rate, "max", feature=c.column)
          for c in toxicity.columns),
        *drift_metrics,
    ]
    return QualityReport(
        dataset_id=manifest.dataset_id, dataset_version=manifest.dataset_version,
        manifest_digest=profile.dataset.manifest_digest, baseline=baseline.name,
        baseline_created_from=baseline.created_from, thresholds=thresholds, toxicity=toxicity,
        metrics=metrics, drift=drift, profile=profile,
    )


def _metric(
    metric: str, group: MetricGroup, value: float, threshold: float, comparison: Literal["min", "max"],
    *, feature: str | None = None, baseline: float | None = None,
) -> MetricResult:
    passed = value >= threshold if comparison == "min" else value <= threshold
    return MetricResult(
        metric=metric, group=group, feature=feature, value=float(value),
        baseline=None if baseline is None else float(baseline),
        delta=None if baseline is None else float(value) - float(baseline),
        threshold=float(threshold), comparison=comparison, passed=passed,
    )


def _coverage(p: DatasetProfile, b: DatasetProfile, t: QualityThresholds) -> list[MetricResult]:
    out = [
        _metric("row_count", "coverage", p.rows, t.min_rows, "min", baseline=b.rows),
        _metric("distinct_entities", "coverage", p.entity.distinct, t.min_distinct_entities, "min",
                baseline=b.entity.distinct),
        _metric("time_bucket_coverage", "coverage", p.time.coverage, t.min_time_bucket_coverage, "min",
                baseline=b.time.coverage),
    ]
    if p.label is not None and p.label.class_coverage is not None:
        base_cov = b.label.class_coverage if b.label is not None else None
        out.append(_metric("label_class_coverage", "coverage", p.label.class_coverage, t.min_label_class_coverage,
                           "min", baseline=base_cov))
    for name, f in p.features.items():
        # A feature the manifest declares non-nullable must be complete whatever the config says.
        need = t.for_feature(name).min_non_null_rate if f.declared_nullable else 1.0
        bf = b.feature(name)
        out.append(_metric("non_null_rate", "coverage", f.non_null_rate, need, "min", feature=name,
                           baseline=bf.non_null_rate if bf else None))
    return out


def _diversity(p: DatasetProfile, b: DatasetProfile, t: QualityThresholds) -> list[MetricResult]:
    out = []
    if p.label is not None:
        out.append(_metric("label_entropy", "diversity", p.label.entropy, t.min_label_entropy, "min",
                           baseline=b.label.entropy if b.label is not None else None))
    out.append(_metric("entity_entropy", "diversity", p.entity.entropy, t.min_entity_entropy, "min",
                       baseline=b.entity.entropy))
    for name, f in p.features.items():
        if f.type in FLOAT_TYPES and f.distinct_ratio is not None:
            bf = b.feature(name)
            out.append(_metric("distinct_ratio", "diversity", f.distinct_ratio,
                               t.for_feature(name).min_distinct_ratio, "min", feature=name,
                               baseline=bf.distinct_ratio if bf else None))
    out.append(_metric("duplicate_rate", "diversity", p.duplicates.rate, t.max_duplicate_rate, "max",
                       baseline=b.duplicates.rate))
    return out


def _toxicity(path: Path | Sequence[Path], p: DatasetProfile, t: QualityThresholds,
              scorer: TextScorer | None) -> ToxicitySummary:
    if not p.text_columns:
        return ToxicitySummary(scorer=None, text_columns=[], columns=[],
                               note="no text columns: toxicity does not apply to this dataset")
    scorer = scorer or LexiconToxicityScorer()
    scored = score_text_columns(path, p.text_columns, scorer, t.toxicity_score_cutoff)
    return ToxicitySummary(scorer=scorer_name(scorer), text_columns=list(p.text_columns),
                           columns=[scored[c] for c in p.text_columns])


def _drift(
    p: DatasetProfile, b: DatasetProfile, counts: dict[str, ReferenceCounts], t: QualityThresholds
) -> tuple[list[FeatureDrift], list[MetricResult]]:
    drifts: list[FeatureDrift] = []
    metrics: list[MetricResult] = []
    for name, f in p.features.items():
        if f.kind != "numeric" or f.valid == 0:
            continue  # text drift is not measured; an empty feature already fails non_null_rate
        if name not in counts:
            metrics.append(_metric("baseline_distribution", "drift", 0.0, 1.0, "min", feature=name))
            continue
        bf = b.features[name]
        d = feature_drift(bf, counts[name])
        drifts.append(d)
        limits = t.for_feature(name)
        metrics.append(_metric("psi", "drift", d.psi, limits.max_psi, "max", feature=name))
        metrics.append(_metric("ks", "drift", d.ks, limits.max_ks, "max", feature=name))
    return drifts, metrics
