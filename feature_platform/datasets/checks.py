"""The named checks every dataset verify records, and the helpers both formats share (docs/ARCHITECTURE.md §7).

``VerifyReport`` collects ``Check`` rows; ``read_manifest``, ``check_location``, ``walk_entries``,
``check_no_extra_files``, ``check_size`` and ``check_column_roles`` are the steps the parquet and the
tensor verify have in common.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from feature_platform.contracts.checks import Check, CheckList
from feature_platform.contracts.feature_contract import FeatureContract
from feature_platform.contracts.manifest import (
    MANIFEST_NAME,
    SIDECAR_NAMES,
    SPEC_MAX_BYTES,
    DatasetManifest,
    ManifestError,
)
from feature_platform.contracts.paths import SAFE_ID_PATTERN, id_problem
from feature_platform.contracts.safe_read import InputError, loads_json, read_input_bytes

MAX_MANIFEST_BYTES = 16 * 1024 * 1024


@dataclass
class VerifyReport(CheckList):
    """The checks of one dataset verify, with the manifest's identity once it has been read."""

    manifest_path: str
    dataset_id: str | None = None
    manifest_digest: str | None = None
    checks: list[Check] = field(default_factory=list)

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "manifest_path": self.manifest_path,
            "dataset_id": self.dataset_id,
            "manifest_digest": self.manifest_digest,
            "checks": [c.to_json_dict() for c in self.checks],
        }


class _Identified(Protocol):
    @property
    def dataset_id(self) -> str: ...

    def digest(self) -> str: ...


M = TypeVar("M", bound=_Identified)


def read_manifest(report: VerifyReport, path: Path, parse: Callable[[Any, str], M], kind: str) -> M | None:
    """Stat, parse and validate a manifest of either format, recording each step as a named check."""
    try:
        st = path.lstat()
    except OSError as exc:
        report.add("manifest_exists", False, "a regular file", exc.strerror or "missing", str(path))
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_MANIFEST_BYTES:
        actual = "a regular file" if stat.S_ISREG(st.st_mode) else "not a regular file (symlink or directory)"
        report.add("manifest_exists", False, f"a regular file of at most {MAX_MANIFEST_BYTES} bytes",
                   f"{actual}, {st.st_size} bytes", str(path))
        return None
    try:  # the same checks again on the open file: it may have been swapped since lstat
        data = read_input_bytes(path, max_bytes=MAX_MANIFEST_BYTES, nofollow=True)
    except InputError as exc:
        report.add("manifest_exists", False, f"a regular file of at most {MAX_MANIFEST_BYTES} bytes", str(exc),
                   str(path))
        return None
    report.add("manifest_exists", True, "a regular file", "a regular file", str(path))
    expected = "UTF-8 JSON without NaN/Infinity or duplicate keys"
    try:
        raw = loads_json(data, str(path))
    except InputError as exc:
        report.add("manifest_parses", False, expected, str(exc))
        return None
    report.add("manifest_parses", True, expected, "parsed")
    raw_id = raw.get("dataset_id") if isinstance(raw, dict) else None
    problem = id_problem(raw_id)
    report.add("dataset_id_safe", problem is None, SAFE_ID_PATTERN, raw_id, detail=problem or "")
    try:
        manifest = parse(raw, str(path))
    except ManifestError as exc:
        report.add("manifest_schema", False, kind, "invalid", detail=str(exc))
        return None
    report.add("manifest_schema", True, kind, "valid")
    report.dataset_id = manifest.dataset_id
    report.manifest_digest = manifest.digest()
    return manifest if problem is None else None


def check_location(report: VerifyReport, dataset_id: str, dataset_dir: Path, base_dir: Path | None) -> None:
    actual = os.path.realpath(dataset_dir)
    if base_dir is None:
        report.add("dataset_location", Path(actual).name == dataset_id and not dataset_dir.is_symlink(),
                   f"a directory named {dataset_id}", actual)
        return
    expected = os.path.join(os.path.realpath(base_dir), dataset_id)
    report.add("dataset_location", actual == expected and not dataset_dir.is_symlink(), expected, actual,
               detail="" if actual == expected else "manifest is not at <base-dir>/<dataset_id>/manifest.json")


def walk_entries(dataset_dir: Path) -> dict[str, int]:
    """Every non-directory entry under ``dataset_dir`` (symlinks not followed) → size."""
    entries: dict[str, int] = {}
    for root, dirs, files in os.walk(dataset_dir, followlinks=False):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            full = os.path.join(root, name)
            entries[os.path.relpath(full, dataset_dir).replace(os.sep, "/")] = os.lstat(full).st_size
    return entries


def check_no_extra_files(report: VerifyReport, listed: Iterable[str], entries: dict[str, int]) -> None:
    extra = sorted(set(entries) - {MANIFEST_NAME, *SIDECAR_NAMES, *listed})
    report.add("no_extra_files", not extra, f"only manifest.json, the files it lists and {sorted(SIDECAR_NAMES)}",
               extra or "none",
               detail=f"unlisted: {', '.join(extra)}" if extra else "")


def check_column_roles(report: VerifyReport, m: DatasetManifest, contract: FeatureContract) -> None:
    """The manifest's entity, timestamp and label columns are the contract's: training reads its inputs
    through these names, so a manifest that points a role at another column (or drops the label) fails."""
    expected_label = contract.label.name if contract.label is not None else None
    for role, expected, actual in (("entity_column", contract.entity.name, m.entity_column),
                                   ("timestamp_column", contract.timestamp.name, m.timestamp_column),
                                   ("label_column", expected_label, m.label_column)):
        report.add("column_roles", actual == expected, expected, actual, role,
                   detail="" if actual == expected else f"manifest field {role} must name the contract's {role}")


def check_size(report: VerifyReport, manifest_limit: int, entries: dict[str, int], max_bytes: int | None) -> None:
    limit = min(manifest_limit, SPEC_MAX_BYTES, max_bytes if max_bytes is not None else SPEC_MAX_BYTES)
    total = sum(entries.values())
    report.add("size_limit", total <= limit, f"<= {limit} bytes", total)


# How verify's named checks roll up into the four blocking checks on the `dataset` asset.
CHECK_GROUPS: dict[str, frozenset[str]] = {
    "sha256_matches": frozenset({"manifest_exists", "manifest_parses", "manifest_schema", "dataset_id_safe",
                                 "dataset_location", "file_path_safe", "file_exists", "file_size", "file_sha256",
                                 "no_extra_files", "manifest_digest", "verify_completed"}),
    "feature_order_matches": frozenset({"feature_order", "column_roles", "contract_types"}),
    "schema_valid": frozenset({"parquet_footer", "schema_columns", "schema_types", "schema_nullability",
                               "row_count"}),
    "size_within_limit": frozenset({"size_limit"}),
}


def grouped(report: VerifyReport) -> dict[str, list[Check]]:
    """Checks of ``report`` per group; a group with no checks at all counts as failed upstream."""
    return {group: [c for c in report.checks if c.name in names] for group, names in CHECK_GROUPS.items()}
