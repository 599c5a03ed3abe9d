"""Streaming dataset build: source batches → parquet (hashed while written) → manifest → verify
→ atomic publish. A failure at any step leaves no dataset directory behind, and an existing
dataset is replaced (``force``) only by a new one that has already verified.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa

from feature_platform.contracts.canonical import digest
from feature_platform.contracts.feature_contract import FeatureContract, load_feature_contract
from feature_platform.contracts.manifest import (
    MANIFEST_NAME,
    SPEC_VERSION,
    AnySplits,
    Column,
    DataFile,
    DatasetManifest,
    Limits,
    Source,
    Splits,
)
from feature_platform.contracts.paths import require_safe_id
from feature_platform.contracts.provenance import git_hash, utc_now, utc_timestamp
from feature_platform.datasets.checks import VerifyReport
from feature_platform.datasets.parquet_verify import verify_parquet_dataset
from feature_platform.datasets.parquet_writer import write_parquet, writer_options
from feature_platform.datasets.source import TableSource
from feature_platform.datasets.splits import SplitSpec
from feature_platform.storage.publish import publish_dir, staging_dir

DATA_FILE = "data.parquet"
DEFAULT_MAX_BYTES = 8 * 1024**3

Progress = Callable[[int, int | None], None]


class Splitter(Protocol):
    """A split rule other than the entity hash (e.g. a definition's FARM_FINGERPRINT or time cutoff)."""

    @property
    def names(self) -> tuple[str, ...]: ...

    def count(self, batch: pa.RecordBatch) -> np.ndarray:
        """Rows of ``batch`` per split, in ``names`` order."""
        ...

    def manifest_splits(self, rows: dict[str, int]) -> AnySplits: ...


class BuildError(RuntimeError):
    """The dataset could not be built or did not verify; nothing was published."""

    def __init__(self, message: str, report: VerifyReport | None = None) -> None:
        super().__init__(message)
        self.report = report


class DatasetExistsError(BuildError):
    """The target directory exists and ``force`` was not given."""


@dataclass(frozen=True)
class BuildResult:
    path: Path
    manifest: DatasetManifest
    digest: str
    report: VerifyReport
    seconds: float

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST_NAME


def build_dataset(
    source: TableSource,
    out_dir: Path | str,
    dataset_id: str,
    *,
    dataset_version: str | None = None,
    splits: SplitSpec | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    force: bool = False,
    contract: FeatureContract | None = None,
    progress: Progress | None = None,
    splitter: Splitter | None = None,
    extra_fields: tuple[pa.Field, ...] = (),
) -> BuildResult:
    """``splitter`` replaces the entity-hash ``splits`` with another rule; the manifest records that rule.

    ``extra_fields`` are columns after the contract's (a training set's join provenance): the schema,
    the manifest and verify carry them; features, roles and their order stay the contract's.
    """
    started = time.perf_counter()
    require_safe_id(dataset_id, "dataset_id")
    created = utc_now()
    version = require_safe_id(dataset_version or created.strftime("%Y%m%dT%H%M%SZ"), "dataset_version")
    contract = contract or load_feature_contract()
    if splitter is not None and splits is not None:
        raise ValueError("pass either splits or splitter, not both")
    splits = splits or SplitSpec()
    names = splitter.names if splitter is not None else splits.names
    target = Path(out_dir) / dataset_id
    if (target.exists() or target.is_symlink()) and not force:
        raise DatasetExistsError(f"{target} already exists; pass --force to replace it (nothing was changed)")
    _require_contract_schema(source.schema, contract, extra_fields)

    entity = contract.entity.name
    split_rows = np.zeros(len(names), dtype=np.int64)
    done = 0

    def on_batch(batch: pa.RecordBatch) -> None:
        nonlocal done
        split_rows[:] += splitter.count(batch) if splitter is not None else splits.count(batch.column(entity))
        done += batch.num_rows
        if progress is not None:
            progress(done, source.expected_rows)

    with staging_dir(target) as staged:
        written = write_parquet(staged / DATA_FILE, source.schema, source.batches(), on_batch)
        source_info = Source(kind=source.kind, parameters=source.parameters(), source_hash=source.source_hash())
        rows = dict(zip(names, (int(n) for n in split_rows), strict=True))
        split_info: AnySplits
        if splitter is not None:
            split_info = splitter.manifest_splits(rows)
            split_config = split_info.model_dump(mode="json", exclude={"rows"})
        else:
            split_info = Splits(algorithm="entity_hash", key=entity, salt=splits.salt,
                                fractions=dict(splits.fractions), rows=rows)
            split_config = {"algorithm": split_info.algorithm, "key": entity, "salt": splits.salt,
                            "fractions": split_info.fractions}
        limits = Limits(max_bytes=max_bytes)
        config = {
            "source": {"kind": source_info.kind, "parameters": source_info.parameters},
            "splits": split_config,
            "limits": limits.model_dump(),
            "writer": writer_options(source.schema),
            "feature_contract_sha256": contract.digest(),
        }
        manifest = DatasetManifest(
            spec_version=SPEC_VERSION,
            dataset_id=dataset_id,
            dataset_version=version,
            created_at=utc_timestamp(created),
            git_hash=git_hash(),
            config_hash=digest(config),
            source=source_info,
            files=[DataFile(path=DATA_FILE, format="parquet", bytes=written.bytes, rows=written.rows,
                            sha256=written.sha256)],
            columns=[Column(name=f.name, type=str(f.type), nullable=f.nullable) for f in source.schema],
            feature_order=list(contract.feature_order),
            entity_column=entity,
            timestamp_column=contract.timestamp.name,
            label_column=contract.label.name if contract.label else None,
            row_count=written.rows,
            splits=split_info,
            rng_seeds=source.rng_seeds,
            limits=limits,
        )
        _write_durably(staged / MANIFEST_NAME, manifest.dumps().encode("utf-8"))
        report = verify_parquet_dataset(staged / MANIFEST_NAME, staged.parent, contract=contract,
                                        known_sha256={DATA_FILE: written.sha256})
        if not report.ok:
            failed = "; ".join(c.line() for c in report.failures)
            raise BuildError(f"{target}: built dataset failed verification, nothing published: {failed}", report)
        publish_dir(staged, target, replace=force)
    return BuildResult(path=target, manifest=manifest, digest=manifest.digest(), report=report,
                       seconds=time.perf_counter() - started)


def _require_contract_schema(schema: pa.Schema, contract: FeatureContract,
                             extra_fields: tuple[pa.Field, ...] = ()) -> None:
    expected = pa.schema([*contract.arrow_schema(), *extra_fields])
    if not schema.equals(expected):
        want = [f"{f.name}:{f.type}" for f in expected]
        got = [f"{f.name}:{f.type}" for f in schema]
        raise BuildError(f"source schema does not follow the feature contract: expected {want}, got {got}")


def _write_durably(path: Path, data: bytes) -> None:
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
