"""Quality gate: metric formulas by hand on tiny parquet files, and the gate on synthetic data
(passes fresh data, fails drift and injected nulls), report outputs, baselines, toxicity, config."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from feature_platform.contracts.feature_contract import ContractColumn, FeatureContract, LabelColumn
from feature_platform.contracts.manifest import (
    Column,
    DataFile,
    DatasetManifest,
    Limits,
    Source,
    Splits,
)
from feature_platform.datasets.build import BuildResult, build_dataset
from feature_platform.datasets.synthetic import SyntheticMarketSource
from feature_platform.quality.baseline import (
    Baseline,
    BaselineError,
    baseline_from_report,
    load_baseline,
    write_baseline,
)
from feature_platform.quality.drift import bin_counts, counts_at_or_below, ks_from_cdfs, psi
from feature_platform.quality.gate import MetricResult, QualityConfigError, QualityReport, evaluate_quality
from feature_platform.quality.profile import DatasetProfile, profile_dataset
from feature_platform.quality.report import ReportError, write_quality_outputs
from feature_platform.quality.thresholds import (
    DEFAULT_THRESHOLDS_PATH,
    QualityThresholds,
    ThresholdsError,
    load_thresholds,
)
from feature_platform.quality.toxicity import LexiconToxicityScorer, ToxicityError, load_scorer

DAY_US = 86_400_000_000
T0 = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp()) * 1_000_000
ROW_KEYS = {"metric", "group", "feature", "value", "baseline", "delta", "threshold", "comparison", "pass"}

# --- helpers: a tiny contract, parquet files built by hand, and a manifest that describes them ---

TINY_CONTRACT = FeatureContract(
    contract_version=1,
    entity=ContractColumn(name="entity_id", type="int64"),
    timestamp=ContractColumn(name="ts", type="timestamp[us, tz=UTC]"),
    label=LabelColumn(name="label", type="int8", classes={0: "a", 1: "b", 2: "c"}),
    features=(ContractColumn(name="x", type="float32"), ContractColumn(name="y", type="float32", nullable=True)),
)


def manifest_for(path: Path, *, features: Sequence[str], nullable: Sequence[str] = (), entity: str = "entity_id",
                 timestamp: str = "ts", label: str | None = "label") -> DatasetManifest:
    """A manifest describing the parquet file at ``path``; only ``nullable`` columns are declared nullable."""
    schema = pq.read_schema(path)
    rows = pq.read_metadata(path).num_rows
    return DatasetManifest(
        spec_version="1", dataset_id="tiny", dataset_version="v1", created_at="2024-01-01T00:00:00Z",
        git_hash="unknown", config_hash="0" * 64,
        source=Source(kind="test", parameters={}, source_hash="1" * 64),
        files=[DataFile(path=path.name, format="parquet", bytes=path.stat().st_size, rows=rows,
                        sha256=hashlib.sha256(path.read_bytes()).hexdigest())],
        columns=[Column(name=f.name, type=str(f.type), nullable=f.name in nullable) for f in schema],
        feature_order=list(features), entity_column=entity, timestamp_column=timestamp, label_column=label,
        row_count=rows,
        splits=Splits(algorithm="entity_hash", key=entity, salt="", fractions={"all": 1.0}, rows={"all": rows}),
        rng_seeds=None, limits=Limits(max_bytes=1 << 30),
    )


def tiny_table() -> pa.Table:
    """8 rows: entities 1,1,1,1,2,2,3,3; days 0,0,0,1,0,4,1,4; two repeated (entity, ts) keys."""
    ts = [T0, T0, T0, T0 + DAY_US + DAY_US // 2, T0, T0 + 5 * DAY_US - 1, T0 + DAY_US, T0 + 4 * DAY_US]
    return pa.table({
        "entity_id": pa.array([1, 1, 1, 1, 2, 2, 3, 3], pa.int64()),
        "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
        "x": pa.array([1, 2, 3, 4, 5, 6, 7, 8], pa.float32()),
        "y": pa.array([1.0, None, math.nan, 2.0, 2.0, 2.0, math.inf, 3.0], pa.float32()),
        "label": pa.array([0, 0, 0, 0, 0, 0, 1, 1], pa.int8()),
    })


def write_table(table: pa.Table, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=3)  # several row groups: the streaming passes must add up
    return path


def as_baseline(profile: DatasetProfile, name: str = "test_baseline") -> Baseline:
    return Baseline(name=name, created_from=profile.dataset, profile=profile)


def failed(report: QualityReport) -> set[tuple[str, str | None]]:
    return {(m.metric, m.feature) for m in report.failures}


def metric(report: QualityReport, name: str, feature: str | None = None) -> MetricResult:
    (found,) = [m for m in report.metrics if m.metric == name and m.feature == feature]
    return found


def rewrite(built: BuildResult, out: Path, change: dict[str, pa.Array]) -> Path:
    """A copy of the built dataset's parquet with some columns replaced (its manifest still applies)."""
    table = pq.read_table(built.path / "data.parquet")
    for name, values in change.items():
        i = table.schema.get_field_index(name)
        table = table.set_column(i, pa.field(name, values.type, nullable=True), values)
    pq.write_table(table, out)
    return out


class ShoutScorer:
    """A plugged-in scorer: a text is toxic when it is written in capitals."""

    def score(self, texts: Sequence[str]) -> list[float]:
        return [1.0 if t.isupper() else 0.0 for t in texts]


class BrokenScorer:
    def score(self, texts: Sequence[str]) -> list[float]:
        return [2.0 for _ in texts]


@pytest.fixture(scope="session")
def committed_baseline() -> Baseline:
    return load_baseline("baseline_eval_v1")


@pytest.fixture(scope="session")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    """~3,000 rows from the synthetic source with another seed than the baseline's."""
    source = SyntheticMarketSource(3_000, 7, batch_rows=700, entities=2_000)
    return build_dataset(source, tmp_path_factory.mktemp("quality") / "datasets", "fresh", dataset_version="v1")


@pytest.fixture(scope="session")
def fresh_report(fresh: BuildResult, committed_baseline: Baseline) -> QualityReport:
    return evaluate_quality(fresh.path / "data.parquet", fresh.manifest, committed_baseline, load_thresholds(None))


@pytest.fixture(scope="session")
def drifted_report(fresh: BuildResult, committed_baseline: Baseline, tmp_path_factory: pytest.TempPathFactory
                   ) -> QualityReport:
    """The fresh dataset with rsi_50 shifted by 4 baseline standard deviations."""
    rsi = pq.read_table(fresh.path / "data.parquet", columns=["rsi_50"]).column(0).to_numpy()
    base = committed_baseline.profile.features["rsi_50"]
    assert base.std is not None
    shifted = pa.array((rsi + 4 * base.std).astype(np.float32))
    path = rewrite(fresh, tmp_path_factory.mktemp("drift") / "data.parquet", {"rsi_50": shifted})
    return evaluate_quality(path, fresh.manifest, committed_baseline, QualityThresholds())


# --- drift formulas by hand ---


def test_psi_by_hand() -> None:
    assert psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(-0.25 * math.log(0.5) + 0.25 * math.log(1.5), rel=1e-12)
    assert psi([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0.0
    # an empty bin is floored at eps instead of dividing by zero
    eps = 1e-6
    expected = (0.5 - 1.0) * math.log(0.5 / 1.0) + (0.5 - eps) * math.log(0.5 / eps)
    assert psi([1.0, 0.0], [0.5, 0.5], eps=eps) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="equally long"):
        psi([0.5, 0.5], [1.0])


def test_ks_from_binned_cdfs_by_hand() -> None:
    edges = [1.0, 2.0, 3.0]  # baseline quantile edges; bins are right-closed
    baseline = bin_counts(np.array([1.0, 2.0, 3.0, 4.0]), edges)
    candidate = bin_counts(np.array([3.0, 3.0, 4.0, 5.0]), edges)
    assert baseline.tolist() == [1, 1, 1, 1] and candidate.tolist() == [0, 0, 2, 2]
    assert counts_at_or_below(baseline).tolist() == [1, 2, 3]
    f_base = counts_at_or_below(baseline) / 4  # F(1), F(2), F(3) = .25, .5, .75
    f_cand = counts_at_or_below(candidate) / 4  # 0, 0, .5
    ks, at = ks_from_cdfs(f_base, f_cand)
    assert (ks, at) == (0.5, 1)  # the exact two-sample KS of these samples is 0.5 too, at x = 2


# --- profile metrics by hand on a tiny parquet file ---


def test_profile_metrics_by_hand(tmp_path: Path) -> None:
    path = write_table(tiny_table(), tmp_path / "data.parquet")
    manifest = manifest_for(path, features=["x", "y"], nullable=["y"])
    p = profile_dataset(path, manifest, bins=2, quantiles=4, contract=TINY_CONTRACT)

    assert p.rows == 8
    # entity rows 4, 2, 2 → p = .5, .25, .25, normalised by ln(3 distinct entities)
    assert p.entity.distinct == 3 and p.entity.top_share == 0.5
    h = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))
    assert p.entity.entropy == pytest.approx(h / math.log(3), rel=1e-12)
    # label 0 ×6, 1 ×2; class 2 declared but absent; entropy normalised by ln(3 declared classes)
    assert p.label is not None
    assert p.label.counts == {"0": 6, "1": 2} and p.label.missing_classes == ["2"]
    assert p.label.class_coverage == pytest.approx(2 / 3)
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert p.label.entropy == pytest.approx(h / math.log(3), rel=1e-12)
    # keys (1,d0) ×3 and 5 other distinct keys: 2 rows beyond the first of their key
    assert (p.duplicates.distinct_keys, p.duplicates.duplicate_rows, p.duplicates.rate) == (6, 2, 0.25)
    # days 0, 1, 4 between first and last (the last row is day 4's final microsecond): 3 of 5 buckets
    assert (p.time.day_buckets, p.time.covered_days, p.time.coverage) == (5, 3, 0.6)
    assert [(g.first, g.last, g.days) for g in p.time.uncovered] == [("2024-01-03", "2024-01-04", 2)]
    assert p.time.last == "2024-01-05T23:59:59.999999Z"

    x, y = p.features["x"], p.features["y"]
    assert (x.valid, x.non_null_rate, x.mean, x.min, x.max) == (8, 1.0, 4.5, 1.0, 8.0)
    assert x.std == pytest.approx(math.sqrt(5.25), rel=1e-12)  # population std of 1..8
    assert x.quantile_edges == [1.0, 2.75, 4.5, 6.25, 8.0]  # linear quantiles of 1..8
    assert x.cdf_counts == [1, 2, 4, 6, 8] and x.bin_edges == [4.5] and x.bin_counts == [4, 4]
    # null, NaN and +inf are all missing: 5 of 8 valid, 3 distinct values among them
    assert (y.valid, y.non_null_rate, y.approx_distinct, y.distinct_ratio) == (5, 0.625, 3, 0.6)
    assert y.mean == pytest.approx(2.0) and y.min == 1.0 and y.max == 3.0
    assert p.text_columns == []


def test_drift_metrics_by_hand_on_tiny_parquet(tmp_path: Path) -> None:
    base_path = write_table(tiny_table(), tmp_path / "base" / "data.parquet")
    manifest = manifest_for(base_path, features=["x", "y"], nullable=["y"])
    base = as_baseline(profile_dataset(base_path, manifest, bins=2, quantiles=4, contract=TINY_CONTRACT))
    shifted = tiny_table().set_column(2, "x", pa.array([5, 6, 7, 8, 9, 10, 11, 12], pa.float32()))
    path = write_table(shifted, tmp_path / "cand" / "data.parquet")
    report = evaluate_quality(path, manifest, base, QualityThresholds(), contract=TINY_CONTRACT)
    # baseline x = 1..8: PSI bins (-inf, 4.5], (4.5, inf) hold .5/.5; the candidate puts all 8 rows above 4.5
    eps = 1e-6
    expected_psi = (eps - 0.5) * math.log(eps / 0.5) + (1.0 - 0.5) * math.log(1.0 / 0.5)
    assert metric(report, "psi", "x").value == pytest.approx(expected_psi, rel=1e-12)
    # at the baseline edges 1, 2.75, 4.5, 6.25, 8: F_base = 1/8, 2/8, 4/8, 6/8, 1 and F_cand = 0, 0, 0, 2/8, 4/8
    assert metric(report, "ks", "x").value == 0.5
    (drift_x,) = [d for d in report.drift if d.feature == "x"]
    assert drift_x.ks_at == 4.5 and drift_x.baseline_shares == [0.5, 0.5] and drift_x.candidate_shares == [0.0, 1.0]
    assert ("psi", "x") in failed(report) and ("ks", "x") in failed(report)
    assert metric(report, "psi", "y").value == 0.0  # y is unchanged


def test_profile_is_reproducible_and_counts_add_up(fresh: BuildResult) -> None:
    path = fresh.path / "data.parquet"
    a = profile_dataset(path, fresh.manifest, sample_size=500)  # a sample smaller than the data
    b = profile_dataset(path, fresh.manifest, sample_size=500)
    assert a.model_dump_json() == b.model_dump_json()
    for f in a.features.values():
        assert f.cdf_counts[-1] == f.valid and sum(f.bin_counts) == f.valid
        assert f.quantile_edges == sorted(f.quantile_edges) and len(f.quantile_edges) == 101
        assert f.quantile_edges[0] == f.min and f.quantile_edges[-1] == f.max
    assert a.features["beta_btc_1d"].valid < a.rows == a.features["ret_1m"].valid


# --- the gate on synthetic data ---


def test_fresh_synthetic_dataset_passes_every_default_threshold(fresh_report: QualityReport) -> None:
    assert fresh_report.passed, [m.model_dump() for m in fresh_report.failures]
    groups = {m.group for m in fresh_report.metrics}
    assert groups == {"coverage", "diversity", "drift"}  # no text columns → no toxicity metric
    assert fresh_report.toxicity.text_columns == [] and "no text columns" in fresh_report.toxicity.note
    psi_rows = [m for m in fresh_report.metrics if m.metric == "psi"]
    assert len(psi_rows) == 32 and max(m.value for m in psi_rows) < 0.1
    rows = metric(fresh_report, "row_count")
    assert (rows.value, rows.baseline, rows.delta) == (3_000, 200_000, -197_000)


def test_drifted_feature_fails_with_its_psi_and_ks(drifted_report: QualityReport) -> None:
    assert not drifted_report.passed
    assert failed(drifted_report) == {("psi", "rsi_50"), ("ks", "rsi_50")}
    assert metric(drifted_report, "ks", "rsi_50").value > 0.9
    assert metric(drifted_report, "psi", "rsi_50").value > 1.0


def test_nulls_in_a_non_nullable_feature_fail_coverage(fresh: BuildResult, committed_baseline: Baseline,
                                                       tmp_path: Path) -> None:
    ret = pq.read_table(fresh.path / "data.parquet", columns=["ret_1h"]).column(0).to_numpy()
    mask = np.zeros(ret.size, dtype=bool)
    mask[::100] = True  # 1% nulls: below the 5% a nullable feature may miss, but ret_1h is declared required
    path = rewrite(fresh, tmp_path / "data.parquet", {"ret_1h": pa.array(ret, pa.float32(), mask=mask)})
    report = evaluate_quality(path, fresh.manifest, committed_baseline, QualityThresholds())
    assert failed(report) == {("non_null_rate", "ret_1h")}
    row = metric(report, "non_null_rate", "ret_1h")
    assert row.value == pytest.approx(0.99) and row.threshold == 1.0 and row.group == "coverage"


def test_feature_override_tightens_a_nullable_feature(fresh: BuildResult, committed_baseline: Baseline) -> None:
    strict = QualityThresholds.model_validate({"feature_overrides": {"beta_btc_1d": {"min_non_null_rate": 0.999}}})
    report = evaluate_quality(fresh.path / "data.parquet", fresh.manifest, committed_baseline, strict)
    assert failed(report) == {("non_null_rate", "beta_btc_1d")}
    with pytest.raises(QualityConfigError, match="no_such_feature"):
        evaluate_quality(fresh.path / "data.parquet", fresh.manifest, committed_baseline,
                         QualityThresholds.model_validate({"feature_overrides": {"no_such_feature": {"max_ks": 0.5}}}))


def test_tiny_dataset_fails_coverage_and_diversity_thresholds(tmp_path: Path) -> None:
    path = write_table(tiny_table(), tmp_path / "data.parquet")
    manifest = manifest_for(path, features=["x", "y"], nullable=["y"])
    base = as_baseline(profile_dataset(path, manifest, contract=TINY_CONTRACT))
    report = evaluate_quality(path, manifest, base, QualityThresholds(), contract=TINY_CONTRACT)
    assert failed(report) == {
        ("row_count", None), ("distinct_entities", None), ("time_bucket_coverage", None),
        ("label_class_coverage", None), ("non_null_rate", "y"), ("duplicate_rate", None),
    }
    assert metric(report, "duplicate_rate").value == 0.25 and metric(report, "duplicate_rate").comparison == "max"
    # the same file against its own profile cannot drift
    assert metric(report, "psi", "x").value == 0.0 and metric(report, "ks", "y").value == 0.0


def test_a_feature_the_baseline_cannot_judge_fails_closed(tmp_path: Path) -> None:
    path = write_table(tiny_table(), tmp_path / "data.parquet")
    manifest = manifest_for(path, features=["x", "y"], nullable=["y"])
    only_x = manifest_for(path, features=["x"])
    base = as_baseline(profile_dataset(path, only_x, contract=TINY_CONTRACT))
    report = evaluate_quality(path, manifest, base, QualityThresholds(), contract=TINY_CONTRACT)
    row = metric(report, "baseline_distribution", "y")
    assert not row.passed and row.group == "drift"


# --- report outputs ---


def test_report_files_exist_and_parse(drifted_report: QualityReport, committed_baseline: Baseline,
                                      tmp_path: Path) -> None:
    out = write_quality_outputs(drifted_report, committed_baseline, tmp_path / "reports")
    assert set(out) == {"quality_report.json", "coverage_gap_report.md", "drift_top_features.png"}
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == sorted(out)  # no temp files left

    doc = json.loads(out["quality_report.json"].read_text())
    assert doc["passed"] is False and doc["summary"]["failed"] == 2 and doc["summary"]["failed_by_group"]["drift"] == 2
    assert all(set(row) == ROW_KEYS for row in doc["metrics"])
    bad = [row for row in doc["metrics"] if not row["pass"]]
    assert {(r["metric"], r["feature"]) for r in bad} == {("psi", "rsi_50"), ("ks", "rsi_50")}
    assert doc["profile"]["features"]["rsi_50"]["valid"] == 3_000 and doc["baseline"] == "baseline_eval_v1"
    assert QualityReport.from_json_dict(doc) == drifted_report

    md = out["coverage_gap_report.md"].read_text()
    assert md.startswith("# Quality gate FAILED: fresh v1")
    failing = md.index("## Failing metrics")
    assert failing < md.index("| drift | psi | rsi_50 |") < md.index("## Coverage gaps") < md.index("beta_btc_1d")
    assert "![candidate vs baseline distributions](drift_top_features.png)" in md
    assert md.index("## Top drifting features") < md.index("| rsi_50 |", md.index("## Top drifting features"))

    assert out["drift_top_features.png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = write_quality_outputs(drifted_report, committed_baseline, tmp_path / "reports")  # replaces in place
    assert json.loads(again["quality_report.json"].read_text()) == doc


def test_outputs_refuse_a_baseline_the_report_was_not_judged_against(fresh_report: QualityReport,
                                                                      tmp_path: Path) -> None:
    other = as_baseline(fresh_report.profile, "some_other_baseline")
    with pytest.raises(ReportError, match="some_other_baseline"):
        write_quality_outputs(fresh_report, other, tmp_path)
    assert not any(tmp_path.iterdir())


# --- baselines ---


def test_committed_baseline_records_where_it_came_from(committed_baseline: Baseline) -> None:
    b = committed_baseline
    assert b.name == "baseline_eval_v1" and b.created_from == b.profile.dataset
    assert b.profile.rows == 200_000 and b.profile.entity.distinct == 2_000
    assert b.created_from.source_kind == "synthetic" and len(b.created_from.file_sha256) == 1
    assert len(b.profile.features) == 32 and b.profile.bins == 10 and b.profile.quantiles == 100


def test_baseline_from_report_round_trip(fresh_report: QualityReport, fresh: BuildResult,
                                         committed_baseline: Baseline, tmp_path: Path) -> None:
    out = write_quality_outputs(fresh_report, committed_baseline, tmp_path)
    baseline = baseline_from_report(out["quality_report.json"])
    assert baseline.profile == fresh_report.profile and baseline.name == "fresh@v1"
    # judged against its own profile, the same data has no drift at all
    again = evaluate_quality(fresh.path / "data.parquet", fresh.manifest, baseline, QualityThresholds())
    assert again.passed and {m.value for m in again.metrics if m.group == "drift"} == {0.0}
    # and it survives write_baseline / load_baseline unchanged
    stored = write_baseline(baseline.profile, baseline.name, tmp_path / "b.json")
    assert load_baseline(tmp_path / "b.json") == stored == baseline


def test_a_failed_report_is_not_a_baseline(drifted_report: QualityReport, committed_baseline: Baseline,
                                          tmp_path: Path) -> None:
    out = write_quality_outputs(drifted_report, committed_baseline, tmp_path)
    with pytest.raises(BaselineError, match="failed its quality gate"):
        baseline_from_report(out["quality_report.json"])
    assert baseline_from_report(out["quality_report.json"], require_passed=False).profile == drifted_report.profile


def test_load_baseline_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(BaselineError, match=r"no_such_baseline\.json: cannot read"):
        load_baseline("no_such_baseline")
    with pytest.raises(BaselineError, match="baseline name"):
        load_baseline("..")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"baseline_version": 1, "name": "x"}))
    with pytest.raises(BaselineError, match=r"bad\.json: field created_from"):
        load_baseline(bad)


# --- toxicity ---


def test_default_scorer_matches_whole_words_in_any_case() -> None:
    scorer = LexiconToxicityScorer()
    texts = ["You are an IDIOT!", "a classic assessment", "a perfectly fine sentence", "well, shit.", ""]
    assert scorer.score(texts) == [1.0, 0.0, 0.0, 1.0, 0.0]
    assert LexiconToxicityScorer(["Banana"]).score(["BANANA split", "bananas"]) == [1.0, 0.0]


def test_plugged_scorer_judges_text_columns(tmp_path: Path) -> None:
    table = tiny_table().append_column(
        "comment", pa.array(["fine", "FINE", "ok", None, "ok", "ok", "ok", "ok"], pa.string()))
    path = write_table(table, tmp_path / "data.parquet")
    manifest = manifest_for(path, features=["x", "y"], nullable=["y", "comment"])
    base = as_baseline(profile_dataset(path, manifest, contract=TINY_CONTRACT))
    scorer = load_scorer("tests.quality.test_quality:ShoutScorer")
    report = evaluate_quality(path, manifest, base, QualityThresholds(), scorer, contract=TINY_CONTRACT)
    row = metric(report, "toxicity_rate", "comment")
    assert row.value == pytest.approx(1 / 7) and not row.passed and row.group == "toxicity"
    assert report.toxicity.scorer == "tests.quality.test_quality:ShoutScorer"
    assert report.toxicity.columns[0].texts == 7 and report.toxicity.columns[0].flagged == 1
    # the default lexicon scorer finds nothing toxic in the same column
    default = evaluate_quality(path, manifest, base, QualityThresholds(), contract=TINY_CONTRACT)
    assert metric(default, "toxicity_rate", "comment").value == 0.0
    with pytest.raises(ToxicityError, match="outside"):
        evaluate_quality(path, manifest, base, QualityThresholds(), BrokenScorer(), contract=TINY_CONTRACT)


def test_load_scorer_errors() -> None:
    with pytest.raises(ToxicityError, match="module:ClassName"):
        load_scorer("no_colon_here")
    with pytest.raises(ToxicityError, match="cannot import"):
        load_scorer("tests.quality.test_quality:Missing")
    with pytest.raises(ToxicityError, match="no score"):
        load_scorer("collections:OrderedDict")


# --- thresholds config ---


def test_committed_yaml_holds_the_model_defaults() -> None:
    assert load_thresholds(None) == QualityThresholds() == load_thresholds(DEFAULT_THRESHOLDS_PATH)
    assert (QualityThresholds().max_psi, QualityThresholds().max_ks) == (0.2, 0.1)


@pytest.mark.parametrize(("text", "field"), [
    ("max_psi: -1\n", "field max_psi"),
    ("max_pis: 0.1\n", "field max_pis"),
    ("min_rows: lots\n", "field min_rows"),
    ("feature_overrides:\n  x: {max_ks: 2}\n", "field feature_overrides.x.max_ks"),
    ("- 1\n- 2\n", "expected a mapping"),
    ("max_psi: [unclosed\n", "not valid YAML"),
])
def test_threshold_errors_name_the_file_and_field(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "thresholds.yaml"
    path.write_text(text)
    with pytest.raises(ThresholdsError) as exc:
        load_thresholds(path)
    message = str(exc.value)
    assert message.startswith(f"{path}: ") and field in message and "\n" not in message


def test_thresholds_file_overrides_defaults(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("max_psi: 0.5\nfeature_overrides:\n  rsi_50: {max_ks: 0.3}\n")
    t = load_thresholds(path)
    assert t.max_psi == 0.5 and t.max_ks == 0.1
    assert t.for_feature("rsi_50").max_ks == 0.3 and t.for_feature("rsi_14").max_ks == 0.1
