"""Source snapshots (ingest_sources): freeze the inputs of one dataset version before building.

A snapshot directory ``<sources_root>/<dataset_version>/`` holds ``snapshot.json`` and, for file
sources, a verbatim copy of the source file. Checksums are computed while copying, a sidecar
``<file>.sha256`` is honoured when present, and the file's parquet footer must match the feature
contract, so a bad drop fails here instead of deep inside the build.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from feature_platform.contracts.canonical import digest, sha256_file
from feature_platform.contracts.feature_contract import FeatureContract, load_feature_contract
from feature_platform.contracts.manifest import RngSeeds, Sha256Hex, UtcTimestamp
from feature_platform.contracts.paths import SAFE_ID_PATTERN, require_safe_id
from feature_platform.contracts.provenance import utc_now, utc_timestamp
from feature_platform.contracts.safe_read import InputError, open_regular_file, read_input_text, read_json
from feature_platform.datasets.checks import VerifyReport
from feature_platform.datasets.source import TableSource
from feature_platform.datasets.synthetic import DEFAULT_BATCH_ROWS, SyntheticMarketSource
from feature_platform.storage.publish import publish_dir, staging_dir
from feature_platform.storage.syscalls import write_all

SNAPSHOT_NAME = "snapshot.json"
SNAPSHOT_SCHEMA_VERSION = 1
SOURCE_FILE = "source.parquet"
MAX_SIDECAR_BYTES = 4096  # a `sha256sum` line


class SnapshotError(ValueError):
    """A source that cannot be snapshotted: bad checksum, wrong schema, unreadable file."""


class SnapshotFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    sha256: Sha256Hex
    bytes: int = Field(ge=0)
    rows: int = Field(ge=0)


class SourceSnapshot(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1]
    dataset_version: str = Field(pattern=SAFE_ID_PATTERN)
    kind: Literal["synthetic", "file"]
    created_at: UtcTimestamp
    contract_version: int
    contract_sha256: Sha256Hex
    parameters: dict[str, JsonValue]
    files: list[SnapshotFile]
    source_hash: Sha256Hex

    @property
    def rows(self) -> int:
        if self.kind == "synthetic":
            return int(self.parameters["rows"])  # type: ignore[arg-type]
        return sum(f.rows for f in self.files)


def _publish(root: Path, snapshot: SourceSnapshot, staged: Path, force: bool) -> None:
    (staged / SNAPSHOT_NAME).write_text(json.dumps(snapshot.model_dump(mode="json"), indent=2, sort_keys=True) + "\n")
    publish_dir(staged, root / snapshot.dataset_version, replace=force)


def snapshot_synthetic(
    root: Path, dataset_version: str, *, rows: int, seed: int, batch_rows: int = DEFAULT_BATCH_ROWS,
    entities: int = 2_000, force: bool = False, contract: FeatureContract | None = None,
) -> SourceSnapshot:
    """Snapshot the synthetic generator: its parameters are the source bytes."""
    require_safe_id(dataset_version, "dataset_version")
    contract = contract or load_feature_contract()
    source = SyntheticMarketSource(rows, seed, batch_rows=batch_rows, entities=entities, contract=contract)
    snapshot = SourceSnapshot(
        schema_version=SNAPSHOT_SCHEMA_VERSION, dataset_version=dataset_version, kind="synthetic",
        created_at=utc_timestamp(utc_now()), contract_version=contract.contract_version,
        contract_sha256=contract.digest(), parameters=source.parameters(), files=[],
        source_hash=source.source_hash(),
    )
    with staging_dir(root / dataset_version) as staged:
        _publish(root, snapshot, staged, force)
    return snapshot


def snapshot_file(
    root: Path, dataset_version: str, src: Path, *, expected_sha256: str | None = None, force: bool = False,
    contract: FeatureContract | None = None,
) -> SourceSnapshot:
    """Copy a dropped parquet file into a snapshot, hashing while copying, and validate it."""
    require_safe_id(dataset_version, "dataset_version")
    contract = contract or load_feature_contract()
    sidecar = src.with_name(src.name + ".sha256")
    if expected_sha256 is None and sidecar.exists():
        try:
            words = read_input_text(sidecar, max_bytes=MAX_SIDECAR_BYTES).split()
        except InputError as exc:
            raise SnapshotError(str(exc)) from None
        expected_sha256 = words[0].strip().lower() if words else ""
    with staging_dir(root / dataset_version) as staged:
        copy = staged / SOURCE_FILE
        try:
            sha, size = _copy_hashing(src, copy)
        except InputError as exc:
            raise SnapshotError(str(exc)) from None
        except OSError as exc:
            raise SnapshotError(f"{src}: cannot read source file: {exc.strerror}") from None
        if expected_sha256 is not None and sha != expected_sha256:
            raise SnapshotError(f"{src}: sha256 mismatch: expected {expected_sha256}, got {sha}")
        rows = _check_contract_schema(copy, src, contract)
        files = [SnapshotFile(path=SOURCE_FILE, sha256=sha, bytes=size, rows=rows)]
        snapshot = SourceSnapshot(
            schema_version=SNAPSHOT_SCHEMA_VERSION, dataset_version=dataset_version, kind="file",
            created_at=utc_timestamp(utc_now()), contract_version=contract.contract_version,
            contract_sha256=contract.digest(), parameters={"original_name": src.name},
            files=files, source_hash=digest([f.model_dump() for f in files]),
        )
        _publish(root, snapshot, staged, force)
    return snapshot


def _copy_hashing(src: Path, dst: Path, block: int = 8 * 1024 * 1024) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open_regular_file(src) as fin, open(dst, "xb", buffering=0) as fout:  # never a FIFO or a device
        while chunk := fin.read(block):
            h.update(chunk)
            write_all(fout.fileno(), chunk)
            size += len(chunk)
    return h.hexdigest(), size


def _check_contract_schema(path: Path, shown_as: Path, contract: FeatureContract) -> int:
    try:
        meta = pq.read_metadata(path)
    except (OSError, pa.ArrowException) as exc:
        raise SnapshotError(f"{shown_as}: not a readable parquet file: {str(exc).splitlines()[0]}") from None
    schema = meta.schema.to_arrow_schema()
    expected = contract.arrow_schema()
    if schema.names != expected.names:
        raise SnapshotError(f"{shown_as}: columns {schema.names} do not match the feature contract {expected.names}")
    for field, want in zip(schema, expected, strict=True):
        if not field.type.equals(want.type):
            raise SnapshotError(f"{shown_as}: column {field.name}: expected type {want.type}, got {field.type}")
    return int(meta.num_rows)


def load_snapshot(snapshot_dir: Path) -> SourceSnapshot:
    path = snapshot_dir / SNAPSHOT_NAME
    try:
        return SourceSnapshot.model_validate(read_json(path))
    except InputError as exc:
        raise SnapshotError(f"cannot read snapshot: {exc}") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "(root)"
        raise SnapshotError(f"{path}: field {field}: {err['msg']}") from None


def validate_snapshot(snapshot_dir: Path, contract: FeatureContract | None = None) -> VerifyReport:
    """Checksums and schema versions of a snapshot, as named checks."""
    report = VerifyReport(manifest_path=str(snapshot_dir / SNAPSHOT_NAME))
    try:
        snapshot = load_snapshot(snapshot_dir)
    except SnapshotError as exc:
        report.add("snapshot_parses", False, "snapshot.json of schema version 1", "invalid", detail=str(exc))
        return report
    report.add("snapshot_parses", True, "snapshot.json of schema version 1", "valid")
    report.dataset_id = snapshot.dataset_version
    contract = contract or load_feature_contract()
    report.add("contract_version", snapshot.contract_version == contract.contract_version
               and snapshot.contract_sha256 == contract.digest(),
               {"version": contract.contract_version, "sha256": contract.digest()},
               {"version": snapshot.contract_version, "sha256": snapshot.contract_sha256})
    if snapshot.kind == "synthetic":
        expected_hash = digest(snapshot.parameters)
        report.add("source_checksum", expected_hash == snapshot.source_hash, snapshot.source_hash, expected_hash,
                   "parameters")
    for entry in snapshot.files:
        path = snapshot_dir / entry.path
        actual = sha256_file(path) if path.is_file() and not path.is_symlink() else "missing"
        report.add("source_checksum", actual == entry.sha256, entry.sha256, actual, entry.path)
        if actual == entry.sha256:
            try:
                rows = _check_contract_schema(path, path, contract)
                report.add("source_schema", rows == entry.rows, f"contract schema, {entry.rows} rows",
                           f"contract schema, {rows} rows", entry.path)
            except SnapshotError as exc:
                report.add("source_schema", False, "contract schema", "mismatch", entry.path, str(exc))
    return report


class ParquetFileSource:
    """``TableSource`` over a snapshotted parquet file, read one batch at a time."""

    def __init__(self, path: Path, snapshot: SourceSnapshot, batch_rows: int = DEFAULT_BATCH_ROWS) -> None:
        self.kind = "file"
        self.path, self.snapshot, self.batch_rows = path, snapshot, batch_rows
        self._schema = pq.read_schema(path)

    @property
    def schema(self) -> pa.Schema:
        return self._schema

    @property
    def expected_rows(self) -> int:
        return self.snapshot.rows

    @property
    def rng_seeds(self) -> RngSeeds | None:
        return None

    def parameters(self) -> dict[str, JsonValue]:
        return {"snapshot": self.snapshot.dataset_version, "files": [f.model_dump() for f in self.snapshot.files]}

    def source_hash(self) -> str:
        return self.snapshot.source_hash

    def batches(self) -> Iterator[pa.RecordBatch]:
        yield from pq.ParquetFile(self.path).iter_batches(batch_size=self.batch_rows)


def snapshot_source(snapshot_dir: Path, contract: FeatureContract | None = None) -> TableSource:
    """The table source a snapshot stands for."""
    snapshot = load_snapshot(snapshot_dir)
    if snapshot.kind == "synthetic":
        p = snapshot.parameters
        return SyntheticMarketSource(
            int(p["rows"]), int(p["seed"]), batch_rows=int(p["batch_rows"]),  # type: ignore[arg-type]
            entities=int(p["entities"]), start=str(p["start"]), days=int(p["days"]),  # type: ignore[arg-type]
            null_rate=float(p["null_rate"]), contract=contract,  # type: ignore[arg-type]
        )
    return ParquetFileSource(snapshot_dir / snapshot.files[0].path, snapshot)
