"""The refresh graph: source_snapshot → dataset → quality_report → published_dataset → notify,
plus archive_artifacts, which the run-status sensors request after every refresh run.

Each asset calls one domain function; the rest is metadata for the UI.
"""


import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import dagster as dg
from pydantic import Field

if TYPE_CHECKING:
    from feature_platform.quality.gate import MetricResult

from feature_platform.contracts.data_root import QUALITY_REPORT_NAME
from feature_platform.contracts.manifest import MANIFEST_NAME, data_file_paths
from feature_platform.datasets.build import DEFAULT_MAX_BYTES
from feature_platform.datasets.sharding import MAX_FILES
from feature_platform.datasets.synthetic import DEFAULT_BATCH_ROWS, partition_seed
from feature_platform.orchestration.metadata import floats, image_md, location, sign_if_configured, table
from feature_platform.orchestration.partitions import dataset_versions
from feature_platform.orchestration.resources import (
    CatalogResource,
    NotifierResource,
    ObjectStoreResource,
    PlatformPaths,
    RetrySettings,
)
from feature_platform.orchestration.retries import transient_retries
from feature_platform.orchestration.story import STORE_TAG, platform_asset, run_links
from feature_platform.quality import DEFAULT_BASELINE, LAST_PUBLISHED

GROUP = "dataset_refresh"


class SnapshotConfig(dg.Config):
    kind: Literal["synthetic", "file"] = Field("synthetic", description="synthetic generator or a dropped file")
    inbox_file: str | None = Field(None, description="parquet file to ingest when kind is 'file'")
    expected_sha256: str | None = Field(None, description="checksum the file must have (else its .sha256 sidecar)")
    rows: int = Field(200_000, gt=0, description="rows to generate (synthetic)")
    seed: int | None = Field(None, ge=0, description="generator seed; default derives from the partition key")
    entities: int = Field(2_000, gt=0)
    batch_rows: int = Field(DEFAULT_BATCH_ROWS, gt=0)


@platform_asset(group=GROUP, stage="ingest", partitions_def=dataset_versions, kinds={"python", "parquet"},
                modules=["feature_platform.datasets.snapshot", "feature_platform.datasets.synthetic"])
def source_snapshot(context: dg.AssetExecutionContext, config: SnapshotConfig, paths: PlatformPaths,
                    retry: RetrySettings) -> dg.MaterializeResult:
    """ingest_sources: freeze the inputs of this version and record their checksums and `source_hash`."""
    from feature_platform.datasets.snapshot import snapshot_file, snapshot_synthetic

    version = context.partition_key
    started = time.perf_counter()
    with transient_retries(context, retry):
        if config.kind == "file":
            if not config.inbox_file:
                raise dg.Failure("source_snapshot: kind 'file' needs inbox_file")
            snap = snapshot_file(paths.sources, version, Path(config.inbox_file),
                                 expected_sha256=config.expected_sha256, force=True)
        else:
            snap = snapshot_synthetic(paths.sources, version, rows=config.rows,
                                      seed=partition_seed(version, config.seed),
                                      batch_rows=config.batch_rows, entities=config.entities, force=True)
    return dg.MaterializeResult(
        metadata={
            "source_hash": snap.source_hash,
            "kind": snap.kind,
            "dagster/row_count": snap.rows,
            "files": dg.MetadataValue.json([f.model_dump() for f in snap.files]),
            "parameters": dg.MetadataValue.json(snap.parameters),
            "path": dg.MetadataValue.path(str(paths.sources / version)),
            "duration_s": round(time.perf_counter() - started, 3),
        },
        data_version=dg.DataVersion(snap.source_hash),
    )


class CandidateConfig(dg.Config):
    sample_fraction: float = Field(1.0, gt=0.0, le=1.0, description="share of snapshot rows to keep")
    augment_noise: float = Field(0.0, ge=0.0, le=10.0, description="std of multiplicative jitter on float features")
    seed: int | None = Field(None, ge=0, description="sampling/augmentation seed; default from the partition key")
    max_bytes: int = Field(DEFAULT_MAX_BYTES, gt=0, description="size limit recorded in the manifest")
    files: int = Field(1, ge=1, le=MAX_FILES, description="data files, rows sharded by a stable hash of the entity "
                       "(1: data.parquet, today's bytes); the files' bytes depend on this only")
    executor: Literal["auto", "inline", "process", "ray"] = Field(
        "auto", description="where the files are written when files > 1 (auto: ray when RAY_ADDRESS is set, "
        "else $FP_EXECUTOR or process)")
    workers: int | None = Field(None, ge=1, description="parallel workers (default: the usable CPUs)")


@platform_asset(group=GROUP, stage="build", partitions_def=dataset_versions, deps=[source_snapshot], kinds={"parquet"},
                modules=["feature_platform.datasets.build", "feature_platform.datasets.candidate",
                         "feature_platform.datasets.snapshot"])
def dataset(context: dg.AssetExecutionContext, config: CandidateConfig, paths: PlatformPaths) -> dg.MaterializeResult:
    """generate_candidate: sample and augment the snapshot into a spec v1 dataset (built, verified, published
    atomically), tagged with `dataset_version` and `source_hash`."""
    from feature_platform.datasets.build import build_dataset
    from feature_platform.datasets.candidate import CandidateConfig as Candidate
    from feature_platform.datasets.candidate import candidate_source
    from feature_platform.datasets.executors import choose_executor
    from feature_platform.datasets.snapshot import snapshot_source

    version = context.partition_key
    source = candidate_source(
        snapshot_source(paths.sources / version),
        Candidate(config.sample_fraction, config.augment_noise, partition_seed(version, config.seed)),
    )
    executor, ray_address = choose_executor(None if config.executor == "auto" else config.executor, None)
    result = build_dataset(source, paths.datasets, paths.dataset_id(version), dataset_version=version, force=True,
                           max_bytes=config.max_bytes, files=config.files, executor=executor,
                           workers=config.workers, ray_address=ray_address)
    signed = sign_if_configured(result.manifest_path)
    m = result.manifest
    return dg.MaterializeResult(
        metadata={
            "dataset_id": m.dataset_id,
            "dataset_version": m.dataset_version,
            "manifest_digest": result.digest,
            "source_hash": m.source.source_hash,
            "dagster/row_count": m.row_count,
            "bytes": sum(f.bytes for f in m.files),
            "sha256": dg.MetadataValue.json({f.path: f.sha256 for f in m.files}),
            "splits": dg.MetadataValue.json(m.splits.rows),
            "path": dg.MetadataValue.path(str(result.manifest_path)),
            "dagster/column_schema": dg.TableSchema(
                columns=[dg.TableColumn(c.name, c.type, constraints=dg.TableColumnConstraints(nullable=c.nullable))
                         for c in m.columns]
            ),
            **signed,
            "duration_s": round(result.seconds, 3),
        },
        data_version=dg.DataVersion(result.digest),
        tags={"dataset_version": version},
    )


class QualityConfig(dg.Config):
    baseline: str = Field(DEFAULT_BASELINE, description=f"baseline name or path, or '{LAST_PUBLISHED}'")
    thresholds_path: str | None = Field(None, description="YAML thresholds file (default: the packaged one)")
    thresholds: dict[str, Any] = Field(default_factory=dict,
                                      description="overrides of single thresholds (checked strictly)")
    executor: Literal["inline", "process", "ray"] = Field(
        "inline", description="where the profile's per-file passes run (the report does not depend on it)")
    workers: int | None = Field(None, ge=1, description="parallel workers for the profile (default: the usable CPUs)")


@platform_asset(group=GROUP, stage="quality", partitions_def=dataset_versions, deps=[dataset], kinds={"duckdb"},
                modules=["feature_platform.quality.gate", "feature_platform.quality.report",
                         "feature_platform.quality.baseline", "feature_platform.quality.thresholds"])
def quality_report(context: dg.AssetExecutionContext, config: QualityConfig, paths: PlatformPaths,
                   catalog: CatalogResource) -> dg.MaterializeResult:
    """quality_gate: coverage, diversity, toxicity and drift vs the baseline; the blocking check reads it."""
    from feature_platform.contracts.manifest import load_manifest
    from feature_platform.quality.baseline import choose_baseline
    from feature_platform.quality.gate import evaluate_quality
    from feature_platform.quality.report import write_quality_outputs
    from feature_platform.quality.thresholds import load_thresholds, parse_thresholds

    version = context.partition_key
    started = time.perf_counter()
    dataset_dir = paths.dataset_dir(version)
    manifest = load_manifest(dataset_dir / MANIFEST_NAME)
    thresholds = load_thresholds(Path(config.thresholds_path) if config.thresholds_path else None)
    if config.thresholds:
        thresholds = parse_thresholds({**thresholds.model_dump(), **config.thresholds}, "run config thresholds")
    previous = None
    if config.baseline == LAST_PUBLISHED:
        current = catalog.open().current(paths.dataset_name)
        previous = paths.layout.quality_report(current.dataset_version) if current else None
    baseline = choose_baseline(config.baseline, previous)
    report = evaluate_quality(data_file_paths(dataset_dir / MANIFEST_NAME, manifest), manifest, baseline, thresholds,
                              executor=config.executor, workers=config.workers)
    outputs = write_quality_outputs(report, baseline, paths.reports(version))
    failures = report.failures
    metadata: dict[str, Any] = {
        "passed": report.passed,
        "metrics": len(report.metrics),
        "failed_metrics": len(failures),
        "baseline": baseline.name,
        "failures": table([{"metric": f.metric, "feature": f.feature or "", "value": f.value,
                            "threshold": f.threshold, "comparison": f.comparison} for f in failures],
                          ["metric", "feature", "value", "threshold", "comparison"]),
        **floats(_worst_per_metric(report.metrics), prefix="quality/"),
        "report": dg.MetadataValue.path(str(outputs[QUALITY_REPORT_NAME])),
        "coverage_gap_report": dg.MetadataValue.path(str(outputs["coverage_gap_report.md"])),
        "duration_s": round(time.perf_counter() - started, 3),
    }
    plot = outputs.get("drift_top_features.png")
    if plot is not None:
        metadata["drift_plot"] = image_md(plot, "distribution vs baseline")
    return dg.MaterializeResult(metadata=metadata)


def _worst_per_metric(metrics: "list[MetricResult]") -> dict[str, float]:
    """Per metric name, the value nearest its threshold's wrong side over all features: one plottable series."""
    worst: dict[str, float] = {}
    for m in metrics:
        pick = max if m.comparison == "max" else min
        worst[m.metric] = pick(worst[m.metric], m.value) if m.metric in worst else m.value
    return worst


@platform_asset(group=GROUP, stage="publish", partitions_def=dataset_versions, deps=[quality_report, dataset],
                kinds={"sqlite"}, tags={STORE_TAG: "true"}, modules=["feature_platform.storage.dataset_publish"])
def published_dataset(context: dg.AssetExecutionContext, paths: PlatformPaths, object_store: ObjectStoreResource,
                      catalog: CatalogResource, retry: RetrySettings) -> dg.MaterializeResult:
    """publish_dataset: copy to object storage and record in the catalog, only if the gate passed.

    Blocking checks stop this step in the same run; it still re-reads the gate result and re-verifies the
    dataset itself, because a later run that selects only this asset bypasses them.
    """
    from feature_platform.contracts.manifest import load_manifest
    from feature_platform.quality.report import read_verdict
    from feature_platform.storage.dataset_publish import (
        DatasetPublishError,
        DatasetPublishUnavailable,
        publish_dataset_version,
    )

    version = context.partition_key
    started = time.perf_counter()
    report_dir = paths.reports(version)
    verdict = read_verdict(report_dir / QUALITY_REPORT_NAME)
    failed = verdict.failed_rows()
    if failed:
        raise dg.Failure(f"quality gate failed for {version}: {len(failed)} metric(s) below threshold; not publishing",
                         metadata={"failed": dg.MetadataValue.json(failed[:20])})
    dataset_dir = paths.dataset_dir(version)
    manifest = load_manifest(dataset_dir / MANIFEST_NAME)
    extras = {p.name: p for p in sorted(report_dir.iterdir()) if p.is_file()}
    # only an unreachable store or catalog is retried; a failed verification or refusal fails the run now
    try:
        with transient_retries(context, retry, extra=(DatasetPublishUnavailable,)):
            published = publish_dataset_version(
                dataset_dir, manifest, object_store.open(), catalog.open(),
                extra_files=extras, quality_summary={"passed": True, "metrics": len(verdict.checks)},
                name=paths.dataset_name,
            )
    except DatasetPublishError as exc:
        if isinstance(exc, DatasetPublishUnavailable):
            raise  # retries exhausted: the original error
        raise dg.Failure(str(exc), allow_retries=False) from None
    return dg.MaterializeResult(
        metadata={
            "location": location(published.location),
            "prefix": published.prefix,
            "manifest_digest": published.manifest_digest,
            "dataset_version": version,
            "previous_version": published.previous_version or "none",
            "dagster/row_count": manifest.row_count,
            "duration_s": round(time.perf_counter() - started, 3),
        },
        data_version=dg.DataVersion(published.manifest_digest),
    )


# kind "python" only: which channels exist (Slack, email, only the outbox) depends on configuration
@platform_asset(group=GROUP, stage="notify", partitions_def=dataset_versions, deps=[published_dataset, quality_report],
                kinds={"python"}, modules=["feature_platform.observability.notify"])
def notify_stakeholders(context: dg.AssetExecutionContext, paths: PlatformPaths,
                        notifier: NotifierResource) -> dg.MaterializeResult:
    """Slack summary and email to the evaluation list, with coverage gap highlights attached."""
    from feature_platform.observability.notify import Notification

    version = context.partition_key
    started = time.perf_counter()
    gaps = paths.reports(version) / "coverage_gap_report.md"
    text = gaps.read_text(encoding="utf-8")
    highlights = "\n".join(text.splitlines()[:25])
    delivery = notifier.open(paging=False).send(Notification(
        title=f"Dataset {paths.dataset_id(version)} published", text=highlights, severity="info",
        dataset_version=version, details={"dataset_id": paths.dataset_id(version)},
        links=run_links(notifier.dagster_url, context.run.run_id, asset=["published_dataset"], partition=version,
                        files={"coverage gap report": gaps,
                               "quality report": paths.layout.quality_report(version)}),
        attachments=[("coverage_gap_report.md", text.encode("utf-8"), "text/markdown")],
    ))
    return dg.MaterializeResult(metadata={
        "delivered": delivery.ok,
        "channels": dg.MetadataValue.json({r.channel: r.error or "ok" for r in delivery.results}),
        "duration_s": round(time.perf_counter() - started, 3),
    })


@platform_asset(group=GROUP, stage="archive", partitions_def=dataset_versions, deps=[quality_report],
                kinds={"python"}, tags={STORE_TAG: "true"},
                modules=["feature_platform.orchestration.run_report", "feature_platform.storage.dataset_publish"])
def archive_artifacts(context: dg.AssetExecutionContext, paths: PlatformPaths, object_store: ObjectStoreResource,
                      catalog: CatalogResource) -> dg.MaterializeResult:
    """archive_artifacts: logs, metrics, quality report and the diff vs the previous version, kept 90 days.

    Requested by the run-status sensors after every refresh run, whether it succeeded or failed. Also the
    retention sweep: archives and Dagster runs older than ``retention_days`` are deleted, and so are
    upload attempts a killed publish left behind (never named by the catalog, older than a day).
    """
    from feature_platform.orchestration.run_report import archive_refresh_run, purge_old_runs
    from feature_platform.storage.dataset_publish import sweep_abandoned_uploads

    refresh_run_id = context.run.tags.get("fp/refresh_run_id")
    store = object_store.open()
    archived = archive_refresh_run(context.instance, refresh_run_id, context.partition_key, paths, store)
    purged = purge_old_runs(context.instance, paths.retention_days)
    abandoned = sweep_abandoned_uploads(store, catalog.open(), paths.dataset_name)
    return dg.MaterializeResult(metadata={
        "archive": archived.location,
        "files": dg.MetadataValue.json(archived.files),
        "refresh_run_id": refresh_run_id or "none",
        "archives_swept": len(archived.swept),
        "runs_purged": len(purged),
        "abandoned_uploads_swept": dg.MetadataValue.json(abandoned),
    })


REFRESH_ASSETS = [source_snapshot, dataset, quality_report, published_dataset, notify_stakeholders]
ALL_ASSETS = [*REFRESH_ASSETS, archive_artifacts]
