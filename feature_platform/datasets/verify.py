"""Fail-closed dataset verification (docs/ARCHITECTURE.md §3).

``verify_dataset`` never trusts the directory: the manifest is the authority, every file it
lists is re-hashed, schema, feature order and row counts are read from parquet footers only,
and anything unexpected (an extra file, a symlink out, an unsafe id) is a failed check.
Unexpected exceptions become a failed ``verify_completed`` check, so verify never passes by
crashing.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import JsonValue

from feature_platform.contracts.feature_contract import FeatureContract, load_feature_contract
from feature_platform.contracts.manifest import (
    MANIFEST_NAME,
    SIDECAR_NAMES,
    SPEC_MAX_BYTES,
    DatasetManifest,
    ManifestError,
    parse_manifest,
)
from feature_platform.contracts.paths import SAFE_ID_PATTERN, UnsafePathError, id_problem, resolve_inside
from feature_platform.contracts.safe_read import InputError, loads_json, read_input_bytes, read_json

HASH_BLOCK = 8 * 1024 * 1024
MAX_MANIFEST_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    expected: JsonValue
    actual: JsonValue
    target: str | None = None
    detail: str = ""

    def line(self) -> str:
        where = f"[{self.target}]" if self.target else ""
        status = "PASS" if self.passed else "FAIL"
        text = f"{status} {self.name}{where}: expected {self.expected!r}, actual {self.actual!r}"
        return f"{text} ({self.detail})" if self.detail else text


@dataclass
class VerifyReport:
    manifest_path: str
    dataset_id: str | None = None
    manifest_digest: str | None = None
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def add(self, name: str, passed: bool, expected: Any, actual: Any, target: str | None = None,
            detail: str = "") -> bool:
        self.checks.append(Check(name, bool(passed), _jsonable(expected), _jsonable(actual), target, detail))
        return bool(passed)

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "manifest_path": self.manifest_path,
            "dataset_id": self.dataset_id,
            "manifest_digest": self.manifest_digest,
            "checks": [asdict(c) for c in self.checks],
        }


def _jsonable(value: Any) -> JsonValue:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


def sha256_file(path: Path, block: int = HASH_BLOCK) -> str:
    """sha256 of a file in large blocks into one reused buffer (OpenSSL does the work)."""
    h = hashlib.sha256()
    buf = bytearray(block)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def verify_dataset(
    manifest_path: Path | str,
    base_dir: Path | str | None = None,
    *,
    max_bytes: int | None = None,
    expected_digest: str | None = None,
    contract: FeatureContract | None = None,
    known_sha256: Mapping[str, str] | None = None,
) -> VerifyReport:
    """Verify the dataset whose manifest is at ``manifest_path``; see the module docstring.

    ``known_sha256`` lets the builder pass digests it computed from the very bytes it wrote,
    instead of re-reading files it has just hashed.
    """
    try:  # a tensor (Zarr) manifest has its own verify; anything unreadable falls through and fails below
        raw = read_json(manifest_path, max_bytes=MAX_MANIFEST_BYTES, nofollow=True)
        fmt = raw.get("format") if isinstance(raw, dict) else None
    except InputError:
        fmt = None
    if fmt == "zarr":
        from feature_platform.datasets.tensor_verify import verify_tensor_dataset

        return verify_tensor_dataset(manifest_path, base_dir, max_bytes=max_bytes, expected_digest=expected_digest,
                                     known_sha256=known_sha256)
    report = VerifyReport(manifest_path=str(manifest_path))
    try:
        _verify(report, Path(manifest_path), None if base_dir is None else Path(base_dir),
                max_bytes, expected_digest, contract, known_sha256 or {})
    except Exception as exc:  # noqa: BLE001 - fail closed on anything unforeseen
        report.add("verify_completed", False, "no error", f"{type(exc).__name__}: {exc}")
    return report


def _verify(
    report: VerifyReport,
    manifest_path: Path,
    base_dir: Path | None,
    max_bytes: int | None,
    expected_digest: str | None,
    contract: FeatureContract | None,
    known_sha256: Mapping[str, str],
) -> None:
    manifest = _read_manifest(report, manifest_path)
    if manifest is None:
        return
    dataset_dir = manifest_path.parent
    check_location(report, manifest.dataset_id, dataset_dir, base_dir)
    footers = _check_files(report, manifest, dataset_dir, known_sha256)
    entries = walk_entries(dataset_dir)
    check_no_extra_files(report, (f.path for f in manifest.files), entries)
    _check_schema(report, manifest, footers)
    resolved = contract or _contract_for(report, manifest)
    if resolved is not None:
        _check_contract(report, manifest, footers, resolved)
    _check_row_counts(report, manifest, footers)
    check_size(report, manifest.limits.max_bytes, entries, max_bytes)
    if expected_digest is not None:
        report.add("manifest_digest", report.manifest_digest == expected_digest, expected_digest,
                   report.manifest_digest)


class _Identified(Protocol):
    @property
    def dataset_id(self) -> str: ...

    def digest(self) -> str: ...


M = TypeVar("M", bound=_Identified)


def _read_manifest(report: VerifyReport, path: Path) -> DatasetManifest | None:
    return read_manifest(report, path, parse_manifest, "dataset manifest spec v1")


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


def _check_files(
    report: VerifyReport, m: DatasetManifest, dataset_dir: Path, known_sha256: Mapping[str, str]
) -> dict[str, pq.FileMetaData]:
    footers: dict[str, pq.FileMetaData] = {}
    for entry in m.files:
        try:
            path = resolve_inside(dataset_dir, entry.path)
        except UnsafePathError as exc:
            report.add("file_path_safe", False, "a path inside the dataset directory", entry.path, entry.path,
                       str(exc))
            continue
        report.add("file_path_safe", True, "a path inside the dataset directory", entry.path, entry.path)
        try:
            st = path.stat()
        except OSError as exc:
            report.add("file_exists", False, "a regular file", exc.strerror or "missing", entry.path)
            continue
        if not report.add("file_exists", stat.S_ISREG(st.st_mode), "a regular file",
                          "a regular file" if stat.S_ISREG(st.st_mode) else "not a regular file", entry.path):
            continue
        report.add("file_size", st.st_size == entry.bytes, entry.bytes, st.st_size, entry.path)
        actual_sha = known_sha256.get(entry.path) or sha256_file(path)
        report.add("file_sha256", actual_sha == entry.sha256, entry.sha256, actual_sha, entry.path)
        try:
            footers[entry.path] = pq.read_metadata(path)
        except (OSError, pa.ArrowException) as exc:
            report.add("parquet_footer", False, "a readable parquet footer", str(exc).splitlines()[0], entry.path)
            continue
        report.add("parquet_footer", True, "a readable parquet footer", "readable", entry.path)
    return footers


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


def _check_schema(report: VerifyReport, m: DatasetManifest, footers: dict[str, pq.FileMetaData]) -> None:
    expected_names = [c.name for c in m.columns]
    expected_types = [c.type for c in m.columns]
    expected_nulls = [c.nullable for c in m.columns]
    for path, meta in footers.items():
        schema = meta.schema.to_arrow_schema()
        report.add("schema_columns", schema.names == expected_names, expected_names, schema.names, path)
        report.add("schema_types", [str(f.type) for f in schema] == expected_types and schema.names == expected_names,
                   dict(zip(expected_names, expected_types, strict=True)),
                   {f.name: str(f.type) for f in schema}, path)
        report.add("schema_nullability", [f.nullable for f in schema] == expected_nulls,
                   dict(zip(expected_names, expected_nulls, strict=True)), {f.name: f.nullable for f in schema}, path)


def _check_contract(
    report: VerifyReport, m: DatasetManifest, footers: dict[str, pq.FileMetaData], contract: FeatureContract
) -> None:
    order = list(contract.feature_order)
    report.add("feature_order", m.feature_order == order, order, m.feature_order, MANIFEST_NAME,
               detail="" if m.feature_order == order else _order_diff(order, m.feature_order))
    check_column_roles(report, m, contract)
    wanted = {c.name: c for c in contract.columns}
    for path, meta in footers.items():
        schema = meta.schema.to_arrow_schema()
        in_file = [n for n in schema.names if n in set(order)]
        report.add("feature_order", in_file == order, order, in_file, path,
                   detail="" if in_file == order else _order_diff(order, in_file))
        expected = {name: str(c.arrow_type) + ("" if c.nullable else " not null") for name, c in wanted.items()}
        actual = {
            name: (str(schema.field(name).type) + ("" if schema.field(name).nullable else " not null"))
            if name in schema.names else "missing"
            for name in wanted
        }
        # A required contract column must be required in the file; a nullable one may be either.
        ok = all(
            name in schema.names and str(schema.field(name).type) == str(c.arrow_type)
            and (c.nullable or not schema.field(name).nullable)
            for name, c in wanted.items()
        )
        report.add("contract_types", ok, expected, actual, path)


def check_column_roles(report: VerifyReport, m: DatasetManifest, contract: FeatureContract) -> None:
    """The manifest's entity, timestamp and label columns are the contract's: training reads its inputs
    through these names, so a manifest that points a role at another column (or drops the label) fails."""
    expected_label = contract.label.name if contract.label is not None else None
    for role, expected, actual in (("entity_column", contract.entity.name, m.entity_column),
                                   ("timestamp_column", contract.timestamp.name, m.timestamp_column),
                                   ("label_column", expected_label, m.label_column)):
        report.add("column_roles", actual == expected, expected, actual, role,
                   detail="" if actual == expected else f"manifest field {role} must name the contract's {role}")


def _contract_for(report: VerifyReport, m: DatasetManifest) -> FeatureContract | None:
    """The global feature contract; for a definition-driven dataset, the contract of its (unchanged) definition."""
    if m.source.kind != "definition":
        return load_feature_contract()
    from feature_platform.datasets.definitions.model import DefinitionError
    from feature_platform.datasets.definitions.source import recorded_contract

    try:
        return recorded_contract(m)
    except DefinitionError as exc:
        report.add("feature_order", False, f"definition {m.source.parameters.get('definition')!r}, unchanged",
                   "missing or changed", MANIFEST_NAME, detail=str(exc))
        return None


def _order_diff(expected: list[str], actual: list[str]) -> str:
    missing = [n for n in expected if n not in actual]
    extra = [n for n in actual if n not in expected]
    if missing or extra:
        return f"missing {missing}, unexpected {extra}"
    first = next(i for i, (a, b) in enumerate(zip(expected, actual, strict=True)) if a != b)
    return f"first difference at position {first}: expected {expected[first]!r}, got {actual[first]!r}"


def _check_row_counts(report: VerifyReport, m: DatasetManifest, footers: dict[str, pq.FileMetaData]) -> None:
    by_path = {f.path: f for f in m.files}
    for path, meta in footers.items():
        report.add("row_count", meta.num_rows == by_path[path].rows, by_path[path].rows, meta.num_rows, path)
    listed = sum(f.rows for f in m.files)
    report.add("row_count", listed == m.row_count, m.row_count, listed, MANIFEST_NAME,
               detail="" if listed == m.row_count else "files[].rows do not add up to row_count")
    split_rows = sum(m.splits.rows.values())
    report.add("row_count", split_rows == m.row_count, m.row_count, split_rows, "splits",
               detail="" if split_rows == m.row_count else "splits.rows do not add up to row_count")


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
