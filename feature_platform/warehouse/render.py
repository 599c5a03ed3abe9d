"""Aligned plain-text tables for terminal output (the CLI's default; ``--json`` is the machine form)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any


def finite_or_none(value: Any) -> float | None:
    """A SQL aggregate as a float, with NULL, NaN and infinities as None (JSON has no place for them)."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def cell(value: Any) -> str:
    """One value as short text: floats to 4 significant digits (one decimal from 1000), ISO timestamps, ``-``."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4g}" if abs(value) < 1e3 else f"{value:,.1f}"
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def aligned_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns padded to their widest cell; numbers right-aligned, text left-aligned."""
    texts = [[cell(v) for v in row] for row in rows]
    numeric = [
        all(isinstance(row[i], int | float) and not isinstance(row[i], bool) for row in rows if row[i] is not None)
        for i in range(len(headers))
    ]
    widths = [max([len(h), *(len(t[i]) for t in texts)]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
        return "  ".join(parts).rstrip()

    return "\n".join([line(list(headers)), line(["-" * w for w in widths]), *(line(t) for t in texts)])
