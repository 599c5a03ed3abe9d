"""Drift between a Feast feature view and ``feature_contract.yaml``: names, types and order.

A missing, extra, retyped or reordered feature makes the build's blocking check fail, with a
unified diff a reviewer can read without opening either file.
"""

from __future__ import annotations

import difflib
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import BaseModel, ConfigDict

from feature_platform.contracts.feature_contract import FeatureContract

DEFINITIONS_FILE = "definitions.py"

# Feast primitive type names (``PrimitiveFeastType.name``) -> contract type names.
FEAST_TO_CONTRACT: dict[str, str] = {
    "BOOL": "bool",
    "INT32": "int32",
    "INT64": "int64",
    "FLOAT32": "float32",
    "FLOAT64": "float64",
    "STRING": "string",
    "UNIX_TIMESTAMP": "timestamp[us, tz=UTC]",
}


class DriftReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    ok: bool
    missing: tuple[str, ...]
    extra: tuple[str, ...]
    retyped: tuple[tuple[str, str, str], ...]
    """(name, contract type, feast type)"""
    reordered: tuple[str, ...]
    diff_text: str


def contract_type_name(feast_dtype: Any) -> str:
    """The contract spelling of a Feast dtype; unknown types keep a ``feast:`` prefix so they differ."""
    name = getattr(feast_dtype, "name", None)
    if isinstance(name, str) and name in FEAST_TO_CONTRACT:
        return FEAST_TO_CONTRACT[name]
    return f"feast:{feast_dtype}"


def contract_drift(
    contract: FeatureContract, feast_fields: Sequence[tuple[str, str]], *, view_name: str = "feast"
) -> DriftReport:
    """Compare ``(name, contract type name)`` pairs of a feature view with the contract's features."""
    want = [(c.name, c.type) for c in contract.features]
    want_types, got_types = dict(want), dict(feast_fields)
    missing = tuple(n for n, _ in want if n not in got_types)
    extra = tuple(n for n, _ in feast_fields if n not in want_types)
    retyped = tuple((n, t, got_types[n]) for n, t in want if n in got_types and got_types[n] != t)
    common_want = [n for n, _ in want if n in got_types]
    common_got = [n for n, _ in feast_fields if n in want_types]
    # Names outside the longest common subsequence are the ones that moved.
    matcher = difflib.SequenceMatcher(a=common_want, b=common_got, autojunk=False)
    in_place = {common_want[b.a + i] for b in matcher.get_matching_blocks() for i in range(b.size)}
    reordered = tuple(n for n in common_want if n not in in_place)
    dupes = sorted({n for n, _ in feast_fields if [m for m, _ in feast_fields].count(n) > 1})
    ok = not (missing or extra or retyped or reordered or dupes)
    lines: list[str] = []
    if not ok:
        lines.append(f"feature drift between feature_contract.yaml and {view_name}:")
        for label, names in (("missing", missing), ("extra", extra), ("reordered", tuple(reordered)),
                             ("duplicated", tuple(dupes))):
            if names:
                lines.append(f"  {label}: {', '.join(names)}")
        for n, t, g in retyped:
            lines.append(f"  retyped: {n}: contract {t}, feast {g}")
        lines.extend(
            difflib.unified_diff(
                [f"{n}: {t}" for n, t in want], [f"{n}: {t}" for n, t in feast_fields],
                fromfile="feature_contract.yaml", tofile=view_name, lineterm="", n=2,
            )
        )
    return DriftReport(
        ok=ok, missing=missing, extra=extra, retyped=retyped, reordered=reordered, diff_text="\n".join(lines)
    )


def load_repo_definitions(repo_path: Path) -> ModuleType:
    """Import ``<repo_path>/definitions.py`` as a fresh module (repos at other refs may differ)."""
    path = Path(repo_path) / DEFINITIONS_FILE
    name = f"_fp_feature_repo_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"{path}: no Feast definitions module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(name, None)
    return module


def view_fields(view: Any) -> list[tuple[str, str]]:
    """A Feast FeatureView's feature fields (entity columns excluded) as contract-spelled pairs."""
    return [(f.name, contract_type_name(f.dtype)) for f in view.features]


def feature_view_fields(
    repo_path: Path, view_name: str, objects: Sequence[Any] | None = None
) -> list[tuple[str, str]]:
    """Fields of ``view_name`` as defined by the Feast repo at ``repo_path`` (or the given objects)."""
    if objects is None:
        objects = load_repo_definitions(repo_path).make_objects("unused.parquet", "unused.parquet")
    for obj in objects:
        if type(obj).__name__ == "FeatureView" and obj.name == view_name:
            return view_fields(obj)
    raise KeyError(f"{repo_path}: no feature view named {view_name!r}")
