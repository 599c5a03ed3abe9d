"""Turn domain results into Dagster metadata the UI renders well."""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import dagster as dg

from feature_platform.contracts.checks import Check, cell, check_rows, failure_summary


def checks_metadata(checks: Iterable[Check]) -> dict[str, Any]:
    """Expected/actual for every underlying check, failures first, as a table and as JSON."""
    ordered = sorted(checks, key=lambda c: c.passed)
    failed = [c for c in ordered if not c.passed]
    return {
        "checks": table(check_rows(ordered), ["check", "target", "expected", "actual", "result"]),
        "failed": dg.MetadataValue.json([c.to_json_dict(("name", "target", "expected", "actual", "detail"))
                                         for c in failed]),
        "expected": dg.MetadataValue.text(failure_summary(failed, "expected")),
        "actual": dg.MetadataValue.text(failure_summary(failed, "actual")),
    }


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> dg.MetadataValue:
    """Rows as a Dagster table, which the UI renders inline (Markdown hides behind "Show Markdown")."""
    def scalar(value: Any) -> str | int | float | bool | None:
        return value if value is None or isinstance(value, (str, int, float, bool)) else cell(value)

    types = {c: "float" if rows and all(isinstance(r.get(c), float) for r in rows) else "string" for c in columns}
    return dg.MetadataValue.table(
        records=[dg.TableRecord({c: scalar(r.get(c)) for c in columns}) for r in rows],
        schema=dg.TableSchema(columns=[dg.TableColumn(c, types[c]) for c in columns]),
    )


def floats(values: Mapping[str, Any], prefix: str = "") -> dict[str, dg.MetadataValue]:
    """Numeric values as top-level float metadata: the UI's Plots tab charts each key across runs.

    Booleans and non-numbers are left out; NaN and infinities too (a plot cannot place them).
    """
    return {f"{prefix}{k}": dg.MetadataValue.float(float(v)) for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def location(uri: str) -> dg.MetadataValue:
    """Where a copy lives: a local path for ``file://`` (a browser will not open it), a link for http(s)."""
    parts = urlsplit(uri)
    if parts.scheme == "file":
        return dg.MetadataValue.path(unquote(parts.path))
    if parts.scheme in ("http", "https"):
        return dg.MetadataValue.url(uri)
    return dg.MetadataValue.text(uri)


def image_md(path: Path, alt: str) -> dg.MetadataValue:
    """A PNG embedded in Markdown so the UI shows the plot inline."""
    encoded = base64.b64encode(path.read_bytes()).decode("ascii")
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{encoded})")


def sign_if_configured(path: Path) -> dict[str, Any]:
    """Sign the dataset (its ``manifest.json``) or model directory at ``path`` when ``FP_SIGNING_KEY`` is set;
    the metadata says whether and where. A key that cannot sign fails the asset permanently."""
    from feature_platform.attest.attestation import AttestationError, SigningRefused, sign_path, signing_key_from_env

    key = signing_key_from_env()
    if key is None:
        return {"signed": False}
    try:
        written = sign_path(path, key)
    except (AttestationError, SigningRefused) as exc:
        raise dg.Failure(f"signing {path} failed: {exc}", allow_retries=False) from None
    return {"signed": True, "attestation": dg.MetadataValue.path(str(written))}


def signature_metadata(signatures: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The signature verdicts promotion reached (empty without a trust policy)."""
    if not signatures:
        return {}
    return {"signatures_verified": all(bool(v.get("ok")) for v in signatures.values()),
            "signatures": dg.MetadataValue.json({k: dict(v) for k, v in signatures.items()})}
