"""Tensor datasets in Dagster: ``tensor_dataset`` (simulator output in Zarr) and its sanity report.

Partitions are their own dynamic set, ``tensor_dataset_version``: a simulated training corpus is
versioned by whoever runs a new simulation, not by the nightly market refresh, so it must not add
(or show as missing) a partition on every asset of the refresh graph. The blocking checks are the
shared ``integrity_checks`` fed by ``verify_tensor_dataset``, the same verify as
``fp dataset verify``; the report is the child they protect.
"""


import time
from pathlib import Path
from typing import Any, Literal

import dagster as dg
from pydantic import Field

from feature_platform.contracts.checks import Check
from feature_platform.contracts.manifest import MANIFEST_NAME
from feature_platform.contracts.paths import require_safe_id
from feature_platform.datasets.checks import VerifyReport
from feature_platform.orchestration.checks import integrity_checks
from feature_platform.orchestration.metadata import image_md
from feature_platform.orchestration.resources import PlatformPaths
from feature_platform.orchestration.story import platform_asset

GROUP = "tensor_datasets"
TENSOR_DATASET_VERSION = "tensor_dataset_version"
TENSOR_DATASET_NAME = "simulated"
tensor_dataset_versions = dg.DynamicPartitionsDefinition(name=TENSOR_DATASET_VERSION)


def tensor_datasets_dir(paths: PlatformPaths) -> Path:
    """Tensor datasets live beside, not among, the tabular ones: ``<data_root>/tensor_datasets/``."""
    return paths.root / "tensor_datasets"


def tensor_dataset_id(version: str) -> str:
    return require_safe_id(f"{TENSOR_DATASET_NAME}-{require_safe_id(version, 'tensor_dataset_version')}")


def tensor_manifest_path(paths: PlatformPaths, version: str) -> Path:
    return tensor_datasets_dir(paths) / tensor_dataset_id(version) / MANIFEST_NAME


class TensorDatasetConfig(dg.Config):
    simulator: str = Field("var", description="simulator name: var or regime_switching")
    samples: int = Field(10_000, gt=0, description="samples to simulate")
    seed: int | None = Field(None, ge=0, description="global seed; default derives from the partition key")
    T: int = Field(200, gt=0, description="trajectory length")
    H: int = Field(40, ge=0, description="impulse response horizon (H+1 steps stored)")
    chunk_samples: int = Field(1_000, gt=0, description="samples per chunk file: unit of work and of integrity")
    inner_chunk_samples: int | None = Field(
        None, gt=0, description="zarr v3 sharding: inner chunks of N samples for faster random reads (divides chunk)")
    split: str = Field("random_interpolation", description="ALGO[:PARAMS], e.g. 'extrapolation_slice:rho>=0.9'")
    executor: Literal["auto", "inline", "process", "ray"] = Field(
        "auto", description="where chunks are computed; auto: ray when ray_address/$RAY_ADDRESS is set, else process")
    workers: int | None = Field(None, gt=0,
                                description="parallel workers (default: the usable CPUs); bytes do not change")
    ray_address: str | None = Field(None, description="Ray cluster address (default $RAY_ADDRESS)")
    bitround_keepbits: int | None = Field(None, ge=1, le=22, description="LOSSY opt-in: float32 mantissa bits kept")


@platform_asset(group=GROUP, stage="build", partitions_def=tensor_dataset_versions, kinds={"python", "zarr"},
                modules=["feature_platform.datasets.tensor_build", "feature_platform.datasets.tensor_splits",
                         "feature_platform.datasets.executors"])
def tensor_dataset(context: dg.AssetExecutionContext, config: TensorDatasetConfig,
                   paths: PlatformPaths) -> dg.MaterializeResult:
    """Simulate, write a Zarr v3 store chunk by chunk (bit-identical whatever the executor), verify, publish
    atomically; the manifest digest is the partition's data version."""
    from feature_platform.datasets.executors import choose_executor
    from feature_platform.datasets.synthetic import partition_seed
    from feature_platform.datasets.tensor_build import build_tensor_dataset
    from feature_platform.datasets.tensor_splits import parse_split_arg

    version = context.partition_key
    try:
        splits = parse_split_arg(config.split)
        executor, ray_address = choose_executor(None if config.executor == "auto" else config.executor,
                                                config.ray_address)
    except ValueError as exc:
        raise dg.Failure(f"tensor_dataset config: {exc}") from None
    result = build_tensor_dataset(
        tensor_datasets_dir(paths), tensor_dataset_id(version), samples=config.samples,
        seed=partition_seed(version, config.seed, namespace="tensor:"), simulator=config.simulator, T=config.T,
        H=config.H,
        chunk_samples=config.chunk_samples, inner_chunk_samples=config.inner_chunk_samples, splits=splits,
        executor=executor, workers=config.workers, ray_address=ray_address,
        bitround_keepbits=config.bitround_keepbits, dataset_version=version, force=True)
    m = result.manifest
    rows = ["| array | shape | raw bytes | stored bytes | ratio | NaN | Inf |", "|---|---|---|---|---|---|---|"]
    rows += [f"| {name} | {tuple(a.shape)} | {a.raw_bytes:,} | {a.stored_bytes:,} | {a.compression_ratio:.3f} | "
             f"{a.nan_count} | {a.inf_count} |" for name, a in m.arrays.items()]
    return dg.MaterializeResult(
        metadata={
            "dataset_id": m.dataset_id,
            "dataset_version": m.dataset_version,
            "manifest_digest": result.digest,
            "merkle_root": m.merkle_root,
            "dagster/row_count": m.n_samples,
            "simulator": ", ".join(m.simulators),
            "seed": m.rng_seeds.global_seed,
            "bytes": sum(b for _, b, _ in m.files()),
            "chunks": sum(len(a.chunks) for a in m.arrays.values()),
            "compression": "lossless" if getattr(m.compression, "lossless", False)
            else f"LOSSY bitround keepbits={getattr(m.compression, 'keepbits', '?')}",
            "compression_ratio": dg.MetadataValue.json({n: round(a.compression_ratio, 4) for n, a in m.arrays.items()}),
            "arrays": dg.MetadataValue.md("\n".join(rows)),
            "splits": dg.MetadataValue.json({"algorithm": m.splits.algorithm, **m.splits.counts}),
            "path": dg.MetadataValue.path(str(result.manifest_path)),
            "duration_s": round(result.seconds, 3),
        },
        data_version=dg.DataVersion(result.digest),
        tags={TENSOR_DATASET_VERSION: version},
    )


class TensorReportConfig(dg.Config):
    max_samples: int = Field(2_000, gt=0, description="samples read for the report, evenly spaced over the store")


@platform_asset(group=GROUP, stage="report", partitions_def=tensor_dataset_versions, deps=[tensor_dataset],
                kinds={"python"}, modules=["feature_platform.datasets.tensor_report"])
def tensor_sanity_report(context: dg.AssetExecutionContext, config: TensorReportConfig,
                         paths: PlatformPaths) -> dg.MaterializeResult:
    """Parameter histograms and a grid of sample impulse responses from a bounded sample of the store."""
    from feature_platform.datasets.tensor_report import sanity_report_of

    version = context.partition_key
    started = time.perf_counter()
    out = paths.layout.tensor_reports(version, TENSOR_DATASET_VERSION)
    sampled, written = sanity_report_of(tensor_manifest_path(paths, version), out, max_samples=config.max_samples)
    metadata: dict[str, Any] = {"samples_read": sampled, "path": dg.MetadataValue.path(str(out)),
                                "duration_s": round(time.perf_counter() - started, 3)}
    for path in written:
        if path.suffix == ".png":
            metadata[path.stem] = image_md(path, path.stem.replace("_", " "))
    return dg.MaterializeResult(metadata=metadata)


def _verify_tensor(context: dg.AssetCheckExecutionContext, paths: PlatformPaths) -> VerifyReport:
    from feature_platform.datasets.tensor_verify import verify_tensor_dataset

    version = context.op_execution_context.partition_key
    return verify_tensor_dataset(tensor_manifest_path(paths, version), tensor_datasets_dir(paths),
                                 reproduce=REPRODUCE_SAMPLES, reproduce_seed=0)


REPRODUCE_SAMPLES = 4  # regenerated from their seeds on every check run: cheap, and catches a drifting simulator
TENSOR_CHECK_DESCRIPTIONS = {
    "sha256_matches": "Manifest parses; every chunk file and zarr.json exists inside the store and matches its "
                      "manifest sha256 and size; no file is missing or extra.",
    "merkle_root_matches": "The Merkle root recomputed over every listed file equals the manifest's.",
    "schema_valid": "Each zarr.json matches the manifest: shape, dtype, chunk grid, codecs, fill value, axes.",
    "values_finite": f"NaN/Inf and split counts re-counted from the values match the manifest; {REPRODUCE_SAMPLES} "
                     "samples regenerated from their seeds equal the stored bytes.",
    "size_within_limit": "The dataset directory is within its size limit.",
}


def _grouped(report: VerifyReport) -> dict[str, list[Check]]:
    from feature_platform.datasets.tensor_verify import grouped_tensor

    return grouped_tensor(report)


tensor_dataset_integrity = integrity_checks(tensor_dataset, name="tensor_dataset_integrity",
                                            descriptions=TENSOR_CHECK_DESCRIPTIONS, verify=_verify_tensor,
                                            groups=_grouped)

tensor_dataset_job = dg.define_asset_job(
    "tensor_dataset_job", selection=dg.AssetSelection.assets(tensor_dataset, tensor_sanity_report),
    description="Simulate a tensor dataset version, verify it (blocking checks), then render its sanity report.",
)

TENSOR_ASSETS = [tensor_dataset, tensor_sanity_report]
TENSOR_CHECKS = [tensor_dataset_integrity]
