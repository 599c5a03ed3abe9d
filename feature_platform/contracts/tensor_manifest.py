"""Tensor dataset manifest, spec v1 ``format: "zarr"`` (docs/ARCHITECTURE.md §3).

The same contract as the parquet manifest (identity = sha256 of canonical JSON, the manifest is
the authority), but integrity is per chunk file: every chunk/shard file and every ``zarr.json``
of the store is listed with its size and sha256, and ``merkle_root`` commits to all of them, so a
sample range can be verified without reading the rest of the store. The committed JSON Schema
``schemas/tensor_manifest.v1.schema.json`` is generated from these models.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, JsonValue, ValidationError, model_validator

from feature_platform.contracts.manifest import (
    MANIFEST_NAME,
    CanonicalManifest,
    DatasetManifest,
    GitHash,
    Limits,
    ManifestError,
    SafeId,
    Sha256Hex,
    Source,
    UtcTimestamp,
    _Strict,
    parse_manifest,
    schema_config,
    schema_text,
    validation_message,
)

TENSOR_FORMAT = "zarr"
TENSOR_SCHEMA_PATH = Path(__file__).parent / "schemas" / "tensor_manifest.v1.schema.json"
TENSOR_SCHEMA_ID = "https://feature-platform.dev/schemas/tensor_manifest.v1.schema.json"
REQUIRED_ARRAYS = ("trajectories", "irfs", "shocks", "theta")
SEMVER_PATTERN = r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?$"

StorePath = Annotated[
    str,
    Field(min_length=1, max_length=1024, pattern=r"^[A-Za-z0-9_][A-Za-z0-9._-]*(/[A-Za-z0-9_][A-Za-z0-9._-]*)*$",
          description="relative POSIX path inside the dataset directory"),
]
Count = Annotated[int, Field(ge=0)]

_LEAF = b"\x00"
_NODE = b"\x01"


def merkle_root(entries: Iterable[tuple[str, str]]) -> str:
    """Merkle root over ``(relative path, sha256 hex)`` of every file the manifest lists.

    Leaves are ordered by path (byte order of the UTF-8 encoding, i.e. Python string order for
    these ASCII paths). ``leaf = sha256(0x00 || utf8(path) || 0x00 || sha256_bytes)``: the path is
    bound in, so swapping two files' hashes changes the root; ``node = sha256(0x01 || left ||
    right)``: the 0x00/0x01 prefixes separate leaves from nodes (no second-preimage by passing a
    node off as a leaf). A level with an odd count promotes its last node unchanged to the next
    level (never duplicated, so ``[a, b, c]`` and ``[a, b, c, c]`` differ). The root of one leaf is
    that leaf; an empty list has no root (ValueError). Returned as lowercase hex.
    """
    items = sorted(entries)
    if not items:
        raise ValueError("merkle_root needs at least one file")
    if len({p for p, _ in items}) != len(items):
        raise ValueError("merkle_root: duplicate paths")
    level = [hashlib.sha256(_LEAF + p.encode("utf-8") + b"\x00" + bytes.fromhex(h)).digest() for p, h in items]
    while len(level) > 1:
        nxt = [hashlib.sha256(_NODE + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0].hex()


class ChunkFile(_Strict):
    """One chunk (or shard) file and the samples ``[start, stop)`` it holds."""

    path: StorePath
    start: Count
    stop: Count
    bytes: Count
    sha256: Sha256Hex


class StoreFile(_Strict):
    """A store metadata file (``zarr.json``): edited metadata changes how bytes decode."""

    path: StorePath
    bytes: Count
    sha256: Sha256Hex


class TensorArray(_Strict):
    shape: list[Count] = Field(min_length=1)
    dtype: Literal["float32", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64"]
    chunk_shape: list[Annotated[int, Field(gt=0)]] = Field(min_length=1)
    shard_shape: list[Annotated[int, Field(gt=0)]] | None = Field(
        description="samples per shard file when zarr v3 sharding is used, else null")
    axes: list[str] = Field(min_length=1, description="dimension names, sample axis first")
    units: list[str] = Field(description="value units: one per entry of the last axis, or one for all")
    fill_value: float | int
    codecs: list[dict[str, JsonValue]] = Field(min_length=1, description="the exact codec list of zarr.json")
    raw_bytes: Count = Field(description="size of the decoded array in bytes")
    stored_bytes: Count = Field(description="sum of the chunk files' sizes")
    compression_ratio: float = Field(ge=0, description="raw_bytes / stored_bytes")
    nan_count: Count
    inf_count: Count
    chunks: list[ChunkFile] = Field(min_length=1, description="every chunk/shard file, in sample order")

    @model_validator(mode="after")
    def _consistent(self) -> TensorArray:
        if len(self.chunk_shape) != len(self.shape) or len(self.axes) != len(self.shape):
            raise ValueError("shape, chunk_shape and axes must have the same length")
        if self.shard_shape is not None and len(self.shard_shape) != len(self.shape):
            raise ValueError("shard_shape must have the same length as shape")
        if sum(c.bytes for c in self.chunks) != self.stored_bytes:
            raise ValueError("stored_bytes must equal the sum of chunks[].bytes")
        expected = self.raw_bytes / self.stored_bytes if self.stored_bytes else 0.0
        if not math.isclose(self.compression_ratio, expected, rel_tol=1e-6, abs_tol=1e-9):
            raise ValueError(f"compression_ratio must be raw_bytes / stored_bytes = {expected}")
        pos = 0
        for c in self.chunks:
            if c.start != pos or c.stop <= c.start:
                raise ValueError(f"chunks must cover the samples contiguously from 0; {c.path} starts at {c.start}")
            pos = c.stop
        if pos != self.shape[0]:
            raise ValueError(f"chunks cover samples [0, {pos}) but shape[0] is {self.shape[0]}")
        return self


class VariableInfo(_Strict):
    """A parameter, shock or observable: name, units and declared bounds."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    units: str
    lower: float
    upper: float
    description: str = ""

    @model_validator(mode="after")
    def _bounds(self) -> VariableInfo:
        if not (math.isfinite(self.lower) and math.isfinite(self.upper) and self.lower <= self.upper):
            raise ValueError(f"bounds of {self.name!r} must be finite with lower <= upper")
        return self


class SimulatorInfo(_Strict):
    """The simulator's own description (``SimulatorSpec.to_json()``)."""

    name: str = Field(min_length=1)
    version: str = Field(pattern=SEMVER_PATTERN)
    parameters: list[VariableInfo] = Field(min_length=1)
    shocks: list[VariableInfo] = Field(min_length=1)
    observables: list[VariableInfo] = Field(min_length=1)
    metadata: dict[str, str] = Field(description="per-sample metadata array name -> dtype the simulator emits")


class TensorSplits(_Strict):
    """How samples were assigned to splits; ``counts`` per split add up to ``n_samples``."""

    algorithm: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    parameters: dict[str, JsonValue]
    seed: int = Field(ge=0)
    names: list[str] = Field(min_length=1)
    counts: dict[str, Count]
    derivation: str = Field(min_length=1, description="how a sample's split follows from seed, index and theta")
    array: str | None = Field(description="the per-sample split-code array (code = index into names), or null")

    @model_validator(mode="after")
    def _consistent(self) -> TensorSplits:
        if len(set(self.names)) != len(self.names) or set(self.names) != set(self.counts):
            raise ValueError("names must be unique and name the same splits as counts")
        return self


class TensorRngSeeds(_Strict):
    global_seed: int = Field(ge=0)
    derivation: str = Field(min_length=1, description="how each sample's seed derives from global_seed")


def _json_boolean(value: object) -> object:
    """``Literal[True]`` alone admits ``1`` and ``1.0`` (they equal True); the schema's ``const: true`` does not."""
    if not isinstance(value, bool):
        raise ValueError("expected the JSON boolean true")
    return value


class LosslessCompression(_Strict):
    lossless: Annotated[Literal[True], BeforeValidator(_json_boolean)]


class BitroundCompression(_Strict):
    """Opt-in lossy storage: float arrays keep ``keepbits`` mantissa bits (numcodecs BitRound)."""

    lossy: Literal["bitround"]
    keepbits: int = Field(ge=1, le=23)
    max_relative_error: float = Field(gt=0, lt=1, description="promised bound, 2**-keepbits, for normal floats")


class TensorDatasetManifest(CanonicalManifest):
    model_config = schema_config("feature_platform tensor dataset manifest, spec v1 (zarr)", TENSOR_SCHEMA_ID)

    spec_version: Literal["1"]
    format: Literal["zarr"]
    dataset_id: SafeId
    dataset_version: SafeId
    version: str = Field(pattern=SEMVER_PATTERN, description="semantic version of the tensor layout")
    created_at: UtcTimestamp
    git_hash: GitHash
    config_hash: Sha256Hex = Field(description="sha256 of the canonical build configuration")
    source: Source
    simulators: dict[str, SimulatorInfo] = Field(min_length=1)
    T: int = Field(gt=0, description="trajectory length")
    H: int = Field(ge=0, description="impulse response horizon (H+1 steps stored)")
    n_samples: int = Field(gt=0)
    chunk_samples: int = Field(gt=0)
    store: Literal["data.zarr"]
    arrays: dict[str, TensorArray]
    metadata_files: list[StoreFile] = Field(min_length=1, description="every zarr.json of the store")
    merkle_root: Sha256Hex = Field(description="merkle_root() over metadata_files and every array's chunks")
    splits: TensorSplits
    rng_seeds: TensorRngSeeds
    compression: LosslessCompression | BitroundCompression
    limits: Limits
    notes: str

    @model_validator(mode="after")
    def _consistent(self) -> TensorDatasetManifest:
        missing = [a for a in REQUIRED_ARRAYS if a not in self.arrays]
        if missing:
            raise ValueError(f"arrays {missing} are required")
        for name, arr in self.arrays.items():
            if arr.shape[0] != self.n_samples:
                raise ValueError(f"arrays.{name}.shape[0] is {arr.shape[0]}, expected n_samples={self.n_samples}")
        if self.arrays["trajectories"].shape[1] != self.T or self.arrays["shocks"].shape[1] != self.T:
            raise ValueError(f"trajectories and shocks must have T={self.T} steps")
        if self.arrays["irfs"].shape[2] != self.H + 1:
            raise ValueError(f"irfs must have H+1={self.H + 1} steps")
        if sum(self.splits.counts.values()) != self.n_samples:
            raise ValueError("splits.counts must add up to n_samples")
        if self.splits.array is not None and self.splits.array not in self.arrays:
            raise ValueError(f"splits.array {self.splits.array!r} is not in arrays")
        paths = [p for p, _, _ in self.files()]
        if len(set(paths)) != len(paths):
            raise ValueError("file paths must be unique")
        if any(not p.startswith(self.store + "/") for p in paths):
            raise ValueError(f"every listed file must lie inside {self.store}/")
        return self

    def files(self) -> list[tuple[str, int, str]]:
        """Every listed store file as (path, bytes, sha256): metadata first, then chunks."""
        out = [(f.path, f.bytes, f.sha256) for f in self.metadata_files]
        out += [(c.path, c.bytes, c.sha256) for a in self.arrays.values() for c in a.chunks]
        return out

    def computed_merkle_root(self) -> str:
        return merkle_root((p, h) for p, _, h in self.files())



def parse_tensor_manifest(raw: Any, source: str = MANIFEST_NAME) -> TensorDatasetManifest:
    try:
        return TensorDatasetManifest.model_validate(raw)
    except ValidationError as exc:
        raise ManifestError(validation_message(exc, source)) from None


def parse_any_manifest(raw: Any, source: str = MANIFEST_NAME) -> DatasetManifest | TensorDatasetManifest:
    """A spec v1 manifest of either variant: ``format: "zarr"`` is a tensor dataset, no format is parquet."""
    fmt = raw.get("format") if isinstance(raw, dict) else None
    if fmt is None:
        return parse_manifest(raw, source)
    if fmt == TENSOR_FORMAT:
        return parse_tensor_manifest(raw, source)
    raise ManifestError(f"{source}: field format: expected 'zarr' or absent (parquet) (got {fmt!r})")


def tensor_json_schema() -> dict[str, Any]:
    return TensorDatasetManifest.model_json_schema(by_alias=True, mode="validation")


def tensor_json_schema_text() -> str:
    return schema_text(tensor_json_schema())
