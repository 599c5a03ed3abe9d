"""Fail-closed verify of a parquet dataset (docs/ARCHITECTURE.md §3, §7).

The manifest is the authority: every file it lists is re-hashed, schema, feature order and row
counts are read from parquet footers only, and anything unexpected (an extra file, a symlink out,
an unsafe id) is a failed check. Unexpected exceptions become a failed ``verify_completed`` check.
The feature contract is passed in, or found through a ``ContractResolver``: this module knows no
dataset definitions.
"""

from __future__ import annotations

import stat
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from feature_platform.contracts.canonical import sha256_file
from feature_platform.contracts.feature_contract import FeatureContract, load_feature_contract
from feature_platform.contracts.manifest import MANIFEST_NAME, DatasetManifest, parse_manifest
from feature_platform.contracts.paths import UnsafePathError, resolve_inside
from feature_platform.datasets.checks import (
    VerifyReport,
    check_column_roles,
    check_location,
    check_no_extra_files,
    check_size,
    read_manifest,
    walk_entries,
)

# The contract of a definition-built dataset (``source.kind == "definition"``); raises ValueError when the
# definition is missing or changed, which verify records as a failed ``feature_order`` check.
ContractResolver = Callable[[DatasetManifest], FeatureContract]


def verify_parquet_dataset(
    manifest_path: Path | str,
    base_dir: Path | str | None = None,
    *,
    max_bytes: int | None = None,
    expected_digest: str | None = None,
    contract: FeatureContract | None = None,
    known_sha256: Mapping[str, str] | None = None,
    resolve_contract: ContractResolver | None = None,
    workers: int | None = None,
) -> VerifyReport:
    """Verify the parquet dataset whose manifest is at ``manifest_path``; see the module docstring.

    ``workers`` > 1 hashes that many data files at once (threads: reading and sha256 release the GIL);
    the report does not depend on it.
    """
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    report = VerifyReport(manifest_path=str(manifest_path))
    try:
        _verify(report, Path(manifest_path), None if base_dir is None else Path(base_dir),
                max_bytes, expected_digest, contract, known_sha256 or {}, resolve_contract, workers or 1)
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
    resolve_contract: ContractResolver | None,
    workers: int,
) -> None:
    manifest = _read_manifest(report, manifest_path)
    if manifest is None:
        return
    dataset_dir = manifest_path.parent
    check_location(report, manifest.dataset_id, dataset_dir, base_dir)
    if workers > 1:
        known_sha256 = {**_hash_in_parallel(manifest, dataset_dir, known_sha256, workers), **known_sha256}
    footers = _check_files(report, manifest, dataset_dir, known_sha256)
    entries = walk_entries(dataset_dir)
    check_no_extra_files(report, (f.path for f in manifest.files), entries)
    _check_schema(report, manifest, footers)
    resolved = contract or _contract_for(report, manifest, resolve_contract)
    if resolved is not None:
        _check_contract(report, manifest, footers, resolved)
    _check_row_counts(report, manifest, footers)
    check_size(report, manifest.limits.max_bytes, entries, max_bytes)
    if expected_digest is not None:
        report.add("manifest_digest", report.manifest_digest == expected_digest, expected_digest,
                   report.manifest_digest)


def _read_manifest(report: VerifyReport, path: Path) -> DatasetManifest | None:
    return read_manifest(report, path, parse_manifest, "dataset manifest spec v1")


def _hash_in_parallel(m: DatasetManifest, dataset_dir: Path, known: Mapping[str, str], workers: int) -> dict[str, str]:
    """sha256 of each listed regular file not already known, ``workers`` at a time. A file that cannot be
    hashed here is left out: ``_check_files`` hashes it again and records what goes wrong."""
    todo: dict[str, Path] = {}
    for entry in m.files:
        if entry.path in known:
            continue
        try:
            path = resolve_inside(dataset_dir, entry.path)
            if stat.S_ISREG(path.stat().st_mode):
                todo[entry.path] = path
        except (UnsafePathError, OSError):
            continue
    if len(todo) < 2:
        return {}
    with ThreadPoolExecutor(max_workers=min(workers, len(todo)), thread_name_prefix="verify-sha256") as pool:
        futures = {name: pool.submit(sha256_file, path) for name, path in todo.items()}
    return {name: f.result() for name, f in futures.items() if f.exception() is None}


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


def _contract_for(report: VerifyReport, m: DatasetManifest, resolve: ContractResolver | None) -> FeatureContract | None:
    """The global feature contract; for a definition-driven dataset, the contract ``resolve`` finds for it."""
    if m.source.kind != "definition":
        return load_feature_contract()
    try:
        if resolve is None:
            raise ValueError("no contract resolver for definition-built datasets was given")
        return resolve(m)
    except ValueError as exc:
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
