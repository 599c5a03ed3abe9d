"""Turn domain results into Dagster metadata the UI renders well."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import dagster as dg

from feature_platform.datasets.verify import Check


def checks_metadata(checks: Iterable[Check]) -> dict[str, Any]:
    """Expected/actual for every underlying check, failures first, as a table and as JSON."""
    ordered = sorted(checks, key=lambda c: c.passed)
    rows = ["| check | target | expected | actual | result |", "|---|---|---|---|---|"]
    for c in ordered:
        rows.append(f"| {c.name} | {c.target or ''} | {_cell(c.expected)} | {_cell(c.actual)} | "
                    f"{'pass' if c.passed else '**FAIL**'} |")
    failed = [c for c in ordered if not c.passed]
    return {
        "checks": dg.MetadataValue.md("\n".join(rows)),
        "failed": dg.MetadataValue.json([{"name": c.name, "target": c.target, "expected": c.expected,
                                          "actual": c.actual, "detail": c.detail} for c in failed]),
        "expected": dg.MetadataValue.text("; ".join(f"{c.name}: {_cell(c.expected)}" for c in failed) or "all pass"),
        "actual": dg.MetadataValue.text("; ".join(f"{c.name}: {_cell(c.actual)}" for c in failed) or "all pass"),
    }


def _cell(value: object, limit: int = 80) -> str:
    text = str(value).replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def image_md(path: Path, alt: str) -> dg.MetadataValue:
    """A PNG embedded in Markdown so the UI shows the plot inline."""
    encoded = base64.b64encode(path.read_bytes()).decode("ascii")
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{encoded})")
