"""Tensor dataset build: simulator samples → Zarr chunks (one task per chunk, any executor) →
manifest with per-chunk sha256 and Merkle root → verify → atomic publish.

A chunk's bytes depend only on (simulator, seed, T, H, its sample range, codecs): each sample has
its own random stream, the simulators are element-wise per sample and Blosc runs on one thread.
So chunk hashes, ``merkle_root`` and ``config_hash`` are identical whatever the executor and the
number of workers; with ``dataset_version`` and ``created_at`` given, so is the manifest digest.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
from pydantic import JsonValue

from feature_platform.contracts.canonical import digest, sha256_hex
from feature_platform.contracts.manifest import MANIFEST_NAME, SPEC_VERSION, Limits, Source
from feature_platform.contracts.paths import require_safe_id
from feature_platform.contracts.provenance import git_hash, utc_now, utc_timestamp
from feature_platform.contracts.tensor_manifest import (
    BitroundCompression,
    ChunkFile,
    LosslessCompression,
    SimulatorInfo,
    StoreFile,
    TensorArray,
    TensorDatasetManifest,
    TensorRngSeeds,
    TensorSplits,
    merkle_root,
)
from feature_platform.datasets.build import BuildError, DatasetExistsError, _write_durably
from feature_platform.datasets.checks import VerifyReport
from feature_platform.datasets.tensor_splits import SPLIT_DERIVATION, SPLIT_NAMES, TensorSplitSpec, assign_tensor_splits
from feature_platform.datasets.zarr_store import (
    LAYOUT_VERSION,
    SPLIT_ARRAY,
    STORE_NAME,
    ArraySpec,
    WrittenFile,
    array_layout,
    codecs_json,
    create_store,
    encode_range,
    require_inner_chunks,
    store_metadata,
    write_range,
)
from feature_platform.storage.publish import publish_dir, staging_dir
from feature_platform.storage.syscalls import sync_tree

DEFAULT_TENSOR_MAX_BYTES = 8 * 1024**3
DEFAULT_CHUNK_SAMPLES = 1000

Progress = Callable[[int, int | None], None]

__all__ = ["DEFAULT_TENSOR_MAX_BYTES", "BuildError", "DatasetExistsError", "TensorBuildResult", "bitround_bound",
           "build_tensor_dataset"]


@dataclass(frozen=True)
class TensorBuildResult:
    path: Path
    manifest: TensorDatasetManifest
    digest: str
    report: VerifyReport
    seconds: float
    compression: dict[str, float]

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST_NAME


@dataclass(frozen=True)
class ChunkTask:
    """Everything a worker needs to write samples ``[start, stop)``; picklable for processes and Ray."""

    dataset_dir: str
    simulator: str
    seed: int
    start: int
    stop: int
    T: int
    H: int
    n_samples: int
    chunk_samples: int
    layout: tuple[ArraySpec, ...]
    splits: dict[str, Any]
    keepbits: int | None
    # The store's zarr.json documents when the worker may not share the driver's filesystem (Ray):
    # it then encodes its chunks in memory and returns the bytes for the driver to write.
    metadata: dict[str, bytes] | None = None


@dataclass(frozen=True)
class ChunkResult:
    files: list[WrittenFile]
    nonfinite: dict[str, tuple[int, int]]
    split_counts: list[int]
    payload: dict[str, bytes] | None = None


def bitround_bound(keepbits: int) -> float:
    """The relative error promised for ``keepbits``: 2**-keepbits, for normal float32 values.

    Round-to-nearest on ``keepbits`` mantissa bits errs by at most 2**-(keepbits+1) of the value;
    float64 → float32 adds at most 2**-24; the sum stays below 2**-keepbits for keepbits <= 22.
    """
    return float(2.0**-keepbits)


def write_chunk(task: ChunkTask) -> ChunkResult:
    """One task: simulate its samples, validate, assign splits, write its whole chunks, return hashes."""
    from feature_platform.simulators import get_simulator, simulate_range

    batch = simulate_range(task.simulator, task.seed, task.start, task.stop, task.T, task.H)
    spec = get_simulator(task.simulator).spec
    codes = assign_tensor_splits(TensorSplitSpec.from_json(task.splits), batch.theta,
                                 np.arange(task.start, task.stop, dtype=np.int64), spec, task.seed)
    data: dict[str, np.ndarray] = {**batch.arrays(), SPLIT_ARRAY: codes}
    data.update({f"metadata/{k}": v for k, v in batch.metadata.items()})
    counts = [int(c) for c in np.bincount(codes.astype(np.int64), minlength=len(SPLIT_NAMES))]
    if task.metadata is not None:
        files, nonfinite, payload = encode_range(task.metadata, task.layout, task.start, task.stop, data,
                                                 chunk_samples=task.chunk_samples, n_samples=task.n_samples,
                                                 keepbits=task.keepbits)
        return ChunkResult(files, nonfinite, counts, payload)
    files, nonfinite = write_range(Path(task.dataset_dir), task.layout, task.start, task.stop, data,
                                   chunk_samples=task.chunk_samples, n_samples=task.n_samples, keepbits=task.keepbits)
    return ChunkResult(files, nonfinite, counts)


def _land_payload(dataset_dir: Path, result: ChunkResult) -> ChunkResult:
    """Write a detached worker's chunk bytes into the staged store (checking each against the worker's
    sha256) and drop them, so the driver holds only the chunks in flight."""
    if result.payload is None:
        return result
    expected = {f.path: f.sha256 for f in result.files}
    for rel, data in result.payload.items():
        if expected.get(rel) != sha256_hex(data):
            raise BuildError(f"{rel}: chunk bytes from the worker do not match the sha256 it reported")
        path = dataset_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_durably(path, data)
    return ChunkResult(result.files, result.nonfinite, result.split_counts)


def build_tensor_dataset(
    out_dir: Path | str,
    dataset_id: str,
    *,
    samples: int,
    seed: int,
    simulator: str = "var",
    T: int = 200,
    H: int = 40,
    chunk_samples: int = DEFAULT_CHUNK_SAMPLES,
    inner_chunk_samples: int | None = None,
    splits: TensorSplitSpec | None = None,
    executor: str = "process",
    workers: int | None = None,
    ray_address: str | None = None,
    bitround_keepbits: int | None = None,
    dataset_version: str | None = None,
    created_at: str | None = None,
    notes: str = "",
    max_bytes: int = DEFAULT_TENSOR_MAX_BYTES,
    force: bool = False,
    progress: Progress | None = None,
) -> TensorBuildResult:
    from feature_platform.datasets.executors import run_tasks
    from feature_platform.datasets.tensor_verify import verify_tensor_dataset
    from feature_platform.simulators import SEED_DERIVATION, get_simulator, simulate_range

    started = time.perf_counter()
    require_safe_id(dataset_id, "dataset_id")
    _require_positive(samples=samples, T=T, chunk_samples=chunk_samples, max_bytes=max_bytes)
    _require_positive(seed=seed + 1, H=H + 1)  # seed and H may be 0
    require_inner_chunks(chunk_samples, inner_chunk_samples)
    if bitround_keepbits is not None and not 1 <= bitround_keepbits <= 22:
        raise ValueError(f"bitround_keepbits must lie in [1, 22], got {bitround_keepbits}")
    created = utc_now()
    stamp = created_at or utc_timestamp(created)
    version = require_safe_id(dataset_version or created.strftime("%Y%m%dT%H%M%SZ"), "dataset_version")
    sim_spec = get_simulator(simulator).spec
    splits = splits or TensorSplitSpec.default()
    splits.check(sim_spec)
    target = Path(out_dir) / dataset_id
    if (target.exists() or target.is_symlink()) and not force:
        raise DatasetExistsError(f"{target} already exists; pass --force to replace it (nothing was changed)")

    probe = simulate_range(simulator, seed, 0, 1, T, H)
    layout = tuple(array_layout(sim_spec, T, H, {k: v.shape[1:] for k, v in probe.metadata.items()}))
    codecs = {s.name: codecs_json(s, chunk_samples, inner_chunk_samples) for s in layout}
    compression: LosslessCompression | BitroundCompression = (
        LosslessCompression(lossless=True) if bitround_keepbits is None else
        BitroundCompression(lossy="bitround", keepbits=bitround_keepbits,
                            max_relative_error=bitround_bound(bitround_keepbits)))
    source_params: dict[str, Any] = {"simulator": simulator, "simulator_version": sim_spec.version,
                                     "samples": samples, "seed": seed, "T": T, "H": H}
    source = Source(kind="simulator", parameters=source_params,
                    source_hash=digest({"spec": sim_spec.to_json(), "derivation": SEED_DERIVATION, **source_params}))
    limits = Limits(max_bytes=max_bytes)
    config = {"source": source_params, "simulator": sim_spec.to_json(), "splits": splits.to_json(),
              "chunk_samples": chunk_samples, "inner_chunk_samples": inner_chunk_samples,
              "layout_version": LAYOUT_VERSION, "codecs": codecs,
              "compression": compression.model_dump(mode="json"), "limits": limits.model_dump()}

    with staging_dir(target) as staged:
        create_store(staged, samples, layout, chunk_samples=chunk_samples, inner_chunk_samples=inner_chunk_samples,
                     attributes={"dataset_id": dataset_id, "simulator": simulator})
        _require_codecs(staged, layout, codecs)
        detached = store_metadata(staged) if executor == "ray" else None
        tasks = [ChunkTask(str(staged), simulator, seed, a, min(a + chunk_samples, samples), T, H, samples,
                           chunk_samples, layout, splits.to_json(), bitround_keepbits, detached)
                 for a in range(0, samples, chunk_samples)]
        task_progress = None if progress is None else (
            lambda done, total: progress(min(done * chunk_samples, samples), samples))
        results = run_tasks(write_chunk, tasks, executor=executor,  # type: ignore[arg-type]
                            workers=workers, ray_address=ray_address, progress=task_progress,
                            on_result=lambda _, result: _land_payload(staged, result))
        metadata_files = _metadata_files(staged)
        arrays = _arrays(layout, results, samples, chunk_samples, inner_chunk_samples, codecs)
        split_counts = np.sum([r.split_counts for r in results], axis=0)
        all_files = [(f.path, f.sha256) for f in metadata_files] + [
            (c.path, c.sha256) for a in arrays.values() for c in a.chunks]
        manifest = TensorDatasetManifest(
            spec_version=SPEC_VERSION, format="zarr", dataset_id=dataset_id, dataset_version=version,
            version=LAYOUT_VERSION, created_at=stamp, git_hash=git_hash(), config_hash=digest(config),
            source=source, simulators={simulator: SimulatorInfo.model_validate(sim_spec.to_json())},
            T=T, H=H, n_samples=samples, chunk_samples=chunk_samples, store=STORE_NAME, arrays=arrays,
            metadata_files=metadata_files, merkle_root=merkle_root(all_files),
            splits=TensorSplits(algorithm=splits.algorithm, seed=seed,
                                parameters=cast(dict[str, JsonValue], splits.to_json()["parameters"]),
                                names=list(SPLIT_NAMES), derivation=SPLIT_DERIVATION,
                                counts={n: int(c) for n, c in zip(SPLIT_NAMES, split_counts, strict=True)},
                                array=SPLIT_ARRAY),
            rng_seeds=TensorRngSeeds(global_seed=seed, derivation=SEED_DERIVATION),
            compression=compression, limits=limits, notes=notes,
        )
        _write_durably(staged / MANIFEST_NAME, manifest.dumps().encode("utf-8"))
        known = {c.path: c.sha256 for a in arrays.values() for c in a.chunks}
        report = verify_tensor_dataset(staged / MANIFEST_NAME, staged.parent, known_sha256=known, scan_values=False)
        if not report.ok:
            failed = "; ".join(c.line() for c in report.failures)
            raise BuildError(f"{target}: built dataset failed verification, nothing published: {failed}", report)
        sync_tree(staged)  # chunks written by worker processes are durable before the rename publishes them
        publish_dir(staged, target, replace=force)
    return TensorBuildResult(path=target, manifest=manifest, digest=manifest.digest(), report=report,
                             seconds=time.perf_counter() - started,
                             compression={name: a.compression_ratio for name, a in arrays.items()})


def _require_positive(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _require_codecs(staged: Path, layout: tuple[ArraySpec, ...], codecs: dict[str, list[dict[str, Any]]]) -> None:
    """zarr must have written exactly the codec list we record (guards against a zarr upgrade)."""
    for spec in layout:
        meta = json.loads((staged / STORE_NAME / spec.name / "zarr.json").read_text(encoding="utf-8"))
        if meta["codecs"] != codecs[spec.name]:
            raise BuildError(f"{spec.name}/zarr.json: codecs {meta['codecs']} differ from the layout "
                             f"{codecs[spec.name]}")


def _metadata_files(staged: Path) -> list[StoreFile]:
    out = []
    for path in sorted((staged / STORE_NAME).rglob("zarr.json")):
        data = path.read_bytes()
        out.append(StoreFile(path=path.relative_to(staged).as_posix(), bytes=len(data), sha256=sha256_hex(data)))
    return out


def _arrays(layout: tuple[ArraySpec, ...], results: list[ChunkResult], n: int, chunk_samples: int,
            inner: int | None, codecs: dict[str, list[dict[str, Any]]]) -> dict[str, TensorArray]:
    from feature_platform.datasets.zarr_store import _sharded

    arrays: dict[str, TensorArray] = {}
    for spec in layout:
        files = sorted((f for r in results for f in r.files if f.array == spec.name), key=lambda f: f.start)
        stored = sum(f.bytes for f in files)
        raw = n * int(np.prod(spec.sample_shape, dtype=np.int64)) * np.dtype(spec.dtype).itemsize
        nan = sum(r.nonfinite[spec.name][0] for r in results)
        inf = sum(r.nonfinite[spec.name][1] for r in results)
        arrays[spec.name] = TensorArray(
            shape=[n, *spec.sample_shape], dtype=cast(Any, spec.dtype),  # the model checks the literal
            chunk_shape=[inner if _sharded(spec, inner) and inner else chunk_samples, *spec.sample_shape],
            shard_shape=[chunk_samples, *spec.sample_shape] if _sharded(spec, inner) else None,
            axes=list(spec.axes), units=list(spec.units), fill_value=0, codecs=codecs[spec.name],
            raw_bytes=raw, stored_bytes=stored, compression_ratio=raw / stored if stored else 0.0,
            nan_count=nan, inf_count=inf,
            chunks=[ChunkFile(path=f.path, start=f.start, stop=f.stop, bytes=f.bytes, sha256=f.sha256) for f in files],
        )
    return arrays
