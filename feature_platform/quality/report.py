"""Quality outputs: ``quality_report.json`` for machines, ``coverage_gap_report.md`` for people and
``drift_top_features.png`` (candidate vs baseline distributions of the most drifted features).

Every file is written atomically, so a reader (the blocking check, the publish step, an alert)
never sees a half-written report. Matplotlib is imported only when a plot is drawn.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from feature_platform.contracts.checks import Check, CheckList
from feature_platform.contracts.data_root import QUALITY_REPORT_NAME
from feature_platform.contracts.safe_read import read_json
from feature_platform.quality.baseline import Baseline
from feature_platform.quality.drift import FeatureDrift
from feature_platform.quality.files import json_text, write_atomic
from feature_platform.quality.gate import GROUPS, MetricResult, QualityReport

REPORT_JSON = QUALITY_REPORT_NAME
GAP_REPORT_MD = "coverage_gap_report.md"
DRIFT_PLOT_PNG = "drift_top_features.png"
PLOTTED_FEATURES = 4
LISTED_DRIFT = 10
COUNT_METRICS = frozenset({"row_count", "distinct_entities"})


class ReportError(ValueError):
    """The report and the baseline given to write it do not belong together."""


@dataclass
class QualityVerdict(CheckList):
    """The judged metrics of a written ``quality_report.json``, as checks (one per metric)."""

    checks: list[Check] = field(default_factory=list)
    metrics: list[MetricResult] = field(default_factory=list)

    def failed_rows(self) -> list[dict[str, Any]]:
        """The failed metrics as the report writes them (``pass``, not ``passed``)."""
        return [m.model_dump(mode="json", by_alias=True) for m in self.metrics if not m.passed]


def read_verdict(path: Path) -> QualityVerdict:
    """The verdict part of a written quality report; a file that is not one raises ``InputError`` or
    ``ValidationError`` naming it."""
    rows = read_json(path)["metrics"]
    metrics = [MetricResult.model_validate(row) for row in rows]
    return QualityVerdict(checks=[m.as_check() for m in metrics], metrics=metrics)


def write_quality_outputs(report: QualityReport, baseline: Baseline, out_dir: Path) -> dict[str, Path]:
    """Write the three outputs into ``out_dir``; returns file name → path."""
    if report.baseline != baseline.name:
        raise ReportError(f"report was judged against baseline {report.baseline!r}, not {baseline.name!r}")
    out_dir.mkdir(parents=True, exist_ok=True)
    return {
        REPORT_JSON: write_atomic(out_dir / REPORT_JSON, json_text(report.to_json_dict()).encode("utf-8")),
        GAP_REPORT_MD: write_atomic(out_dir / GAP_REPORT_MD, coverage_gap_markdown(report, baseline).encode("utf-8")),
        DRIFT_PLOT_PNG: write_atomic(out_dir / DRIFT_PLOT_PNG, drift_plot_png(report.drift, baseline.name)),
    }


def top_drift(drift: list[FeatureDrift], n: int) -> list[FeatureDrift]:
    """The ``n`` most drifted features, by PSI then KS."""
    return sorted(drift, key=lambda d: (-d.psi, -d.ks, d.feature))[:n]


def _fmt(value: float | None, metric: str = "") -> str:
    if value is None:
        return "—"
    if metric in COUNT_METRICS and float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:.4g}"


def _metric_row(m: MetricResult) -> str:
    op = "≥" if m.comparison == "min" else "≤"
    return (f"| {m.group} | {m.metric} | {m.feature or ''} | {_fmt(m.value, m.metric)} | {_fmt(m.baseline, m.metric)}"
            f" | {_fmt(m.delta, m.metric)} | {op} {_fmt(m.threshold, m.metric)} |")


def coverage_gap_markdown(report: QualityReport, baseline: Baseline) -> str:
    """Verdict, failing metrics first, then the coverage gaps and the most drifted features."""
    p, failures = report.profile, report.failures
    origin = baseline.created_from
    by_group = ", ".join(f"{g} {sum(m.group == g for m in failures)}" for g in GROUPS)
    lines = [
        f"# Quality gate {'PASSED' if report.passed else 'FAILED'}: {report.dataset_id} {report.dataset_version}",
        "",
        f"- dataset manifest digest: `{report.manifest_digest}`",
        f"- baseline: `{baseline.name}` (from {origin.dataset_id} {origin.dataset_version}, "
        f"data sha256 `{(origin.file_sha256 or ['?'])[0][:16]}…`)",
        f"- metrics: {len(report.metrics)}, failed: {len(failures)} ({by_group})",
        f"- rows: {p.rows:,}; entities: {p.entity.distinct:,}; time: {p.time.first or '—'} → {p.time.last or '—'}",
        "",
        "## Failing metrics",
        "",
    ]
    if failures:
        lines += ["| group | metric | feature | value | baseline | delta | threshold |", "|---" * 7 + "|"]
        lines += [_metric_row(m) for m in failures]
    else:
        lines.append("None: every metric meets its threshold.")
    lines += ["", "## Coverage gaps", "", *_gaps(report), "", "## Toxicity", ""]
    if report.toxicity.columns:
        lines.append(f"Scorer `{report.toxicity.scorer}`, cutoff {report.thresholds.toxicity_score_cutoff}.")
        lines += ["", "| column | texts | flagged | rate |", "|---|---|---|---|"]
        lines += [f"| {c.column} | {c.texts:,} | {c.flagged:,} | {c.rate:.4g} |" for c in report.toxicity.columns]
    else:
        lines.append(report.toxicity.note or "No text columns.")
    lines += ["", "## Top drifting features", ""]
    if report.drift:
        limits = {d.feature: report.thresholds.for_feature(d.feature) for d in report.drift}
        lines += ["| feature | PSI | KS | KS at | pass |", "|---|---|---|---|---|"]
        for d in top_drift(report.drift, LISTED_DRIFT):
            ok = d.psi <= limits[d.feature].max_psi and d.ks <= limits[d.feature].max_ks
            lines.append(f"| {d.feature} | {d.psi:.4g} | {d.ks:.4g} | {d.ks_at:.4g} | {'yes' if ok else 'NO'} |")
        lines += ["", f"![candidate vs baseline distributions]({DRIFT_PLOT_PNG})"]
    else:
        lines.append("No numeric feature could be compared with the baseline.")
    return "\n".join(lines) + "\n"


def _gaps(report: QualityReport) -> list[str]:
    p = report.profile
    lines = ["### Features with missing values", ""]
    incomplete = [f for f in p.features.values() if f.valid < f.rows]
    if incomplete:
        lines += ["| feature | non-null rate | missing rows | declared nullable |", "|---|---|---|---|"]
        for f in sorted(incomplete, key=lambda f: f.non_null_rate):
            nullable = "yes" if f.declared_nullable else "NO"
            lines.append(f"| {f.name} | {f.non_null_rate:.4%} | {f.rows - f.valid:,} | {nullable} |")
    else:
        lines.append("None: every feature is complete.")
    lines += ["", "### Label classes", ""]
    if p.label is None:
        lines.append("The dataset has no label column.")
    else:
        lab = p.label
        total = sum(lab.counts.values())
        missing = ", ".join(f"{k} ({lab.declared_classes[k]})" for k in lab.missing_classes) or "none"
        undeclared = ", ".join(lab.undeclared_classes) or "none"
        lines.append(f"Missing declared classes: {missing}. Undeclared values: {undeclared}. "
                     f"Null labels: {lab.null_count:,}.")
        lines += ["", "| class | name | rows | share |", "|---|---|---|---|"]
        for k in dict.fromkeys([*lab.declared_classes, *lab.counts]):
            n = lab.counts.get(k, 0)
            lines.append(f"| {k} | {lab.declared_classes.get(k, '(undeclared)')} | {n:,} | "
                         f"{(n / total if total else 0.0):.2%} |")
    t = p.time
    lines += ["", "### Day buckets (UTC)", "",
              f"{t.covered_days:,} of {t.day_buckets:,} days between the first and last timestamp hold rows "
              f"({t.coverage:.2%}); null timestamps: {t.null_count:,}."]
    if t.uncovered:
        lines += ["", "| first day | last day | days without rows |", "|---|---|---|"]
        lines += [f"| {g.first} | {g.last} | {g.days:,} |" for g in t.uncovered]
        if t.uncovered_ranges > len(t.uncovered):
            lines.append(f"\n… and {t.uncovered_ranges - len(t.uncovered):,} more gaps.")
    e, dup = p.entity, p.duplicates
    lines += ["", "### Entities and keys", "",
              f"- distinct entities: {e.distinct:,}; normalised entropy {e.entropy:.4f}; "
              f"busiest entity holds {e.top_share:.2%} of rows; null entity ids: {e.null_count:,}",
              f"- rows repeating a ({', '.join(dup.key)}) key: {dup.duplicate_rows:,} ({dup.rate:.4%})"]
    return lines


def drift_plot_png(drift: list[FeatureDrift], baseline_name: str, n: int = PLOTTED_FEATURES) -> bytes:
    """PNG of baseline vs candidate shares per baseline bin for the ``n`` most drifted features."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    top = top_drift(drift, n)
    cols = 2 if len(top) > 1 else 1
    rows = max(1, math.ceil(len(top) / cols))
    fig = Figure(figsize=(6.0 * cols, 3.6 * rows + 0.4), layout="constrained")
    FigureCanvasAgg(fig)
    if not top:
        ax = fig.add_subplot(1, 1, 1)
        ax.text(0.5, 0.5, "no numeric feature to compare", ha="center", va="center")
        ax.set_axis_off()
    for i, d in enumerate(top):
        ax = fig.add_subplot(rows, cols, i + 1)
        x = list(range(len(d.baseline_shares)))
        ax.bar([v - 0.2 for v in x], d.baseline_shares, width=0.4, label=f"baseline ({baseline_name})",
               color="#8c8c8c")
        ax.bar([v + 0.2 for v in x], d.candidate_shares, width=0.4, label="candidate", color="#d62728")
        labels = [f"≤{e:.3g}" for e in d.bin_edges] + [f">{d.bin_edges[-1]:.3g}" if d.bin_edges else "all"]
        ax.set_xticks(x, labels, rotation=45, ha="right", fontsize=7)
        ax.set_ylabel("share of rows")
        ax.set_title(f"{d.feature}: PSI {d.psi:.3g}, KS {d.ks:.3g}", fontsize=10)
        if i == 0:
            fig.legend(loc="outside upper center", ncols=2, fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()
