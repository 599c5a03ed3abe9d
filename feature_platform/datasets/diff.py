"""What changed between two dataset versions: rows, schema, order, source and per-feature stats."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from feature_platform.contracts.data_root import QUALITY_REPORT_NAME, DataRoot
from feature_platform.contracts.manifest import MANIFEST_NAME, DatasetManifest, load_manifest
from feature_platform.contracts.safe_read import read_json

ARCHIVED_REPORTS = (QUALITY_REPORT_NAME, "coverage_gap_report.md")


def diff_manifests(previous: DatasetManifest | None, candidate: DatasetManifest) -> dict[str, Any]:
    """A JSON-ready diff of ``candidate`` against ``previous`` (None: first version)."""
    if previous is None:
        return {"previous": None, "candidate": candidate.dataset_version, "first_version": True,
                "rows": {"previous": 0, "candidate": candidate.row_count, "delta": candidate.row_count}}
    prev_cols = {c.name: (c.type, c.nullable) for c in previous.columns}
    cand_cols = {c.name: (c.type, c.nullable) for c in candidate.columns}
    return {
        "previous": previous.dataset_version,
        "candidate": candidate.dataset_version,
        "first_version": False,
        "rows": {"previous": previous.row_count, "candidate": candidate.row_count,
                 "delta": candidate.row_count - previous.row_count},
        "splits": {name: {"previous": previous.splits.rows.get(name, 0), "candidate": rows}
                   for name, rows in candidate.splits.rows.items()},
        "columns_added": sorted(set(cand_cols) - set(prev_cols)),
        "columns_removed": sorted(set(prev_cols) - set(cand_cols)),
        "columns_changed": {n: {"previous": list(prev_cols[n]), "candidate": list(cand_cols[n])}
                            for n in sorted(set(prev_cols) & set(cand_cols)) if prev_cols[n] != cand_cols[n]},
        "feature_order_changed": previous.feature_order != candidate.feature_order,
        "source_hash_changed": previous.source.source_hash != candidate.source.source_hash,
        "config_hash_changed": previous.config_hash != candidate.config_hash,
        "manifest_digest": {"previous": previous.digest(), "candidate": candidate.digest()},
    }


def feature_stat_deltas(previous: dict[str, dict[str, Any]], candidate: dict[str, dict[str, Any]],
                        stats: tuple[str, ...] = ("mean", "std", "null_rate")) -> dict[str, dict[str, float]]:
    """Per-feature deltas of summary statistics present in both profiles."""
    out: dict[str, dict[str, float]] = {}
    for name, cand in candidate.items():
        prev = previous.get(name)
        if prev is None:
            continue
        deltas = {s: float(cand[s]) - float(prev[s]) for s in stats
                  if isinstance(cand.get(s), (int, float)) and isinstance(prev.get(s), (int, float))}
        if deltas:
            out[name] = deltas
    return out


def diff_markdown(diff: dict[str, Any]) -> str:
    if diff["first_version"]:
        return f"# Candidate {diff['candidate']}\n\nFirst version: {diff['rows']['candidate']:,} rows, no previous.\n"
    lines = [f"# Candidate {diff['candidate']} vs {diff['previous']}", "",
             f"- rows: {diff['rows']['previous']:,} → {diff['rows']['candidate']:,} ({diff['rows']['delta']:+,})",
             f"- columns added: {', '.join(diff['columns_added']) or 'none'}",
             f"- columns removed: {', '.join(diff['columns_removed']) or 'none'}",
             f"- columns changed: {', '.join(diff['columns_changed']) or 'none'}",
             f"- feature order changed: {'yes' if diff['feature_order_changed'] else 'no'}",
             f"- source changed: {'yes' if diff['source_hash_changed'] else 'no'}"]
    stats = diff.get("feature_stats") or {}
    if stats:
        lines += ["", "| feature | Δ mean | Δ std | Δ null rate |", "|---|---|---|---|"]
        ranked = sorted(stats.items(), key=lambda kv: -abs(kv[1].get("mean", 0.0)))
        for name, d in ranked[:15]:
            mean, std, nulls = (d.get(k, 0.0) for k in ("mean", "std", "null_rate"))
            lines.append(f"| {name} | {mean:+.4g} | {std:+.4g} | {nulls:+.4g} |")
    return "\n".join(lines) + "\n"


def version_archive_files(layout: DataRoot, version: str, pointer: Mapping[str, Any] | None) -> dict[str, Path | bytes]:
    """What a refresh archives besides its run log: the quality outputs of ``version`` and the diff of its
    dataset against the version ``pointer`` (the published one) names, as JSON and Markdown."""
    reports = layout.reports(version)
    files: dict[str, Path | bytes] = {name: reports / name for name in ARCHIVED_REPORTS if (reports / name).exists()}
    manifest_path = layout.dataset_dir(version) / MANIFEST_NAME
    if not manifest_path.exists():
        return files
    candidate = load_manifest(manifest_path)
    previous = None
    if pointer and pointer.get("dataset_version") != version:
        prev_path = layout.dataset_dir(str(pointer["dataset_version"])) / MANIFEST_NAME
        previous = load_manifest(prev_path) if prev_path.exists() else None
    diff = diff_manifests(previous, candidate)
    if previous is not None:
        diff["feature_stats"] = feature_stat_deltas(
            _profile_features(layout.reports(previous.dataset_version)), _profile_features(reports))
    files["candidate_diff.json"] = json.dumps(diff, indent=2, sort_keys=True).encode()
    files["candidate_diff.md"] = diff_markdown(diff).encode()
    return files


def _profile_features(report_dir: Path) -> dict[str, dict[str, Any]]:
    path = report_dir / QUALITY_REPORT_NAME
    if not path.exists():
        return {}
    profile = read_json(path).get("profile") or {}
    features = profile.get("features") or {}
    return features if isinstance(features, dict) else {}
