"""Blocking asset checks: integrity and quality rules that stop the chain when they fail."""


from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import dagster as dg

from feature_platform.contracts.checks import Check
from feature_platform.contracts.manifest import MANIFEST_NAME
from feature_platform.datasets.checks import VerifyReport, grouped
from feature_platform.datasets.verify import verify_dataset
from feature_platform.orchestration.assets import dataset, published_dataset, quality_report, source_snapshot
from feature_platform.orchestration.metadata import checks_metadata
from feature_platform.orchestration.resources import CatalogResource, ObjectStoreResource, PlatformPaths

_ERROR = dg.AssetCheckSeverity.ERROR


@dg.asset_check(asset=source_snapshot, blocking=True, name="source_valid",
                description="Snapshot checksums match and its schema/contract versions are the current ones.")
def source_valid(context: dg.AssetCheckExecutionContext, paths: PlatformPaths) -> dg.AssetCheckResult:
    from feature_platform.datasets.snapshot import validate_snapshot

    version = context.op_execution_context.partition_key
    report = validate_snapshot(paths.sources / version)
    return dg.AssetCheckResult(passed=report.ok, severity=_ERROR, metadata=checks_metadata(report.checks))


DATASET_CHECK_DESCRIPTIONS = {
    "sha256_matches": "Every file exists inside the dataset directory and matches its manifest sha256 and size.",
    "feature_order_matches": "Manifest and parquet footer follow FEATURE_ORDER and the contract's types.",
    "schema_valid": "Manifest matches spec v1; footer columns, types, nullability and row counts match it.",
    "size_within_limit": "The dataset directory is within its size limit.",
}


def integrity_checks(
    asset: dg.AssetsDefinition,
    *,
    name: str,
    descriptions: Mapping[str, str],
    verify: Callable[[dg.AssetCheckExecutionContext, PlatformPaths], VerifyReport],
    groups: Callable[[VerifyReport], dict[str, list[Check]]] = grouped,
) -> dg.AssetChecksDefinition:
    """Blocking checks fed by one verify pass (one read of the bytes), one check per group of named checks.

    Every dataset-shaped asset (tabular, definition-driven, tensor) gets its checks from here, so a
    verification failure blocks the chain the same way everywhere.
    """

    @dg.multi_asset_check(
        specs=[dg.AssetCheckSpec(check, asset=asset, blocking=True, description=text)
               for check, text in descriptions.items()],
        name=name,
    )
    def _checks(context: dg.AssetCheckExecutionContext, paths: PlatformPaths) -> Iterator[dg.AssetCheckResult]:
        report = verify(context, paths)
        for check, found in groups(report).items():
            passed = bool(found) and all(c.passed for c in found)
            if not found:
                found = [Check(check, False, "verification reached this check", "stopped earlier",
                               detail="see the other checks of this asset for the failure that stopped verification")]
            yield dg.AssetCheckResult(check_name=check, asset_key=asset.key, passed=passed, severity=_ERROR,
                                      metadata={**checks_metadata(found),
                                                "manifest_digest": report.manifest_digest or ""})

    return _checks


def _verify_dataset(context: dg.AssetCheckExecutionContext, paths: PlatformPaths) -> VerifyReport:
    version = context.op_execution_context.partition_key
    return verify_dataset(paths.dataset_dir(version) / MANIFEST_NAME, paths.datasets)


dataset_integrity = integrity_checks(dataset, name="dataset_integrity", descriptions=DATASET_CHECK_DESCRIPTIONS,
                                     verify=_verify_dataset)


@dg.asset_check(asset=quality_report, blocking=True, name="quality_thresholds",
                description="Every quality metric meets its threshold (coverage, diversity, toxicity, drift).")
def quality_thresholds(context: dg.AssetCheckExecutionContext, paths: PlatformPaths) -> dg.AssetCheckResult:
    version = context.op_execution_context.partition_key
    from feature_platform.quality.report import read_verdict

    verdict = read_verdict(paths.layout.quality_report(version))
    return dg.AssetCheckResult(
        passed=verdict.ok, severity=_ERROR,
        metadata={**checks_metadata(verdict.failures), "metrics": len(verdict.checks),
                  "failed": len(verdict.failures)},
    )


def published_copy_check(
    asset: dg.AssetsDefinition,
    *,
    name: str,
    located: Callable[[str, PlatformPaths], tuple[Path, str]],
) -> dg.AssetChecksDefinition:
    """Blocking check that the object-store copy of a partition re-hashes to its manifest at the destination.

    ``located(version, paths)`` gives the local dataset directory and the catalog name it was published under.
    """

    @dg.asset_check(asset=asset, blocking=True, name=name,
                    description="The published copy re-hashes to the manifest's sha256s at the destination.")
    def _check(context: dg.AssetCheckExecutionContext, paths: PlatformPaths, object_store: ObjectStoreResource,
               catalog: CatalogResource) -> dg.AssetCheckResult:
        from feature_platform.contracts.manifest import load_manifest
        from feature_platform.storage.dataset_publish import verify_published

        version = context.op_execution_context.partition_key
        dataset_dir, catalog_name = located(version, paths)
        entry = catalog.open().get(catalog_name, version)
        if entry is None:
            return dg.AssetCheckResult(passed=False, severity=_ERROR, metadata={"reason": "not in the catalog"})
        manifest = load_manifest(dataset_dir / MANIFEST_NAME)
        checks = verify_published(object_store.open(), entry.prefix, manifest)
        return dg.AssetCheckResult(passed=bool(checks) and all(c.passed for c in checks), severity=_ERROR,
                                   metadata={**checks_metadata(checks), "location": entry.location})

    return _check


published_copy_verifies = published_copy_check(
    published_dataset, name="published_copy_verifies",
    located=lambda version, paths: (paths.dataset_dir(version), paths.dataset_name))


ALL_CHECKS = [source_valid, dataset_integrity, quality_thresholds, published_copy_verifies]
