"""Dataset verify: one entry point for every dataset format (docs/ARCHITECTURE.md §3, §7).

``verify_dataset`` reads the manifest's ``format`` and hands over to the tensor (Zarr) verify or the
parquet verify; for a definition-built parquet dataset it passes the definition's recorded contract
as the resolver. The checks themselves live in ``checks``, ``parquet_verify`` and ``tensor_verify``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from feature_platform.contracts.canonical import HASH_BLOCK, sha256_file
from feature_platform.contracts.checks import Check
from feature_platform.contracts.feature_contract import FeatureContract
from feature_platform.contracts.manifest import DatasetManifest
from feature_platform.contracts.safe_read import InputError, read_json
from feature_platform.datasets.checks import (
    CHECK_GROUPS,
    MAX_MANIFEST_BYTES,
    VerifyReport,
    check_column_roles,
    check_location,
    check_no_extra_files,
    check_size,
    grouped,
    read_manifest,
    walk_entries,
)
from feature_platform.datasets.parquet_verify import ContractResolver, verify_parquet_dataset

# Re-exported for the modules that imported them from here before the split.
__all__ = [
    "CHECK_GROUPS", "HASH_BLOCK", "MAX_MANIFEST_BYTES", "Check", "ContractResolver", "VerifyReport",
    "check_column_roles", "check_location", "check_no_extra_files", "check_size", "definition_contract_resolver",
    "grouped", "read_manifest", "sha256_file", "verify_dataset", "walk_entries",
]


def definition_contract_resolver(manifest: DatasetManifest) -> FeatureContract:
    """The contract of the (unchanged) definition a dataset was built from; DefinitionError otherwise."""
    from feature_platform.datasets.definitions.source import recorded_contract

    return recorded_contract(manifest)


def verify_dataset(
    manifest_path: Path | str,
    base_dir: Path | str | None = None,
    *,
    max_bytes: int | None = None,
    expected_digest: str | None = None,
    contract: FeatureContract | None = None,
    known_sha256: Mapping[str, str] | None = None,
    resolve_contract: ContractResolver = definition_contract_resolver,
    workers: int | None = None,
) -> VerifyReport:
    """Verify the dataset whose manifest is at ``manifest_path``, whatever its format.

    ``known_sha256`` lets the builder pass digests it computed from the very bytes it wrote,
    instead of re-reading files it has just hashed. ``workers`` (parquet): data files hashed at once.
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
    return verify_parquet_dataset(manifest_path, base_dir, max_bytes=max_bytes, expected_digest=expected_digest,
                                  contract=contract, known_sha256=known_sha256, resolve_contract=resolve_contract,
                                  workers=workers)
