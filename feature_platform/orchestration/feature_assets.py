"""feature_build: the Feast repo pinned to a git sha, applied and materialized per dataset_version."""

import time

import dagster as dg
from pydantic import Field

from feature_platform.contracts.provenance import PROJECT_ROOT
from feature_platform.orchestration.assets import published_dataset
from feature_platform.orchestration.market_assets import TimeSeriesResource, market_data
from feature_platform.orchestration.partitions import dataset_versions
from feature_platform.orchestration.resources import PlatformPaths
from feature_platform.orchestration.story import platform_asset

FEATURE_REPO = PROJECT_ROOT / "feature_repo"


def _repo_digest() -> bytes:
    """The Feast repo's Python and YAML files: a changed feature view is a new code version of the build."""
    files = sorted(p for p in FEATURE_REPO.rglob("*") if p.suffix in (".py", ".yaml", ".yml") and p.is_file())
    return b"".join(p.relative_to(FEATURE_REPO).as_posix().encode() + b"\x00" + p.read_bytes() for p in files)


class FeatureBuildConfig(dg.Config):
    feature_repo_ref: str | None = Field(None, description="git ref the Feast repo must be at (pinned)")
    allow_dirty: bool = Field(False, description="build from uncommitted feature_repo changes (never in prod)")


@platform_asset(group="features", stage="features", partitions_def=dataset_versions, kinds={"feast", "parquet"},
                deps=[published_dataset, dg.AssetDep(market_data, partition_mapping=dg.AllPartitionMapping())],
                modules=["feature_platform.features.build"], extra=[_repo_digest()])
def feature_build(context: dg.AssetExecutionContext, config: FeatureBuildConfig, paths: PlatformPaths,
                  timeseries: TimeSeriesResource) -> dg.MaterializeResult:
    """Pins feature_repo to its git sha, applies it, materializes the version's features offline and
    online, and writes feature_build.json (repo sha, dataset version, timestamp, row counts, sha256s);
    then publishes the build to <data_root>/features/latest/, where feature_repo's Feast config points."""
    import pyarrow.parquet as pq

    from feature_platform.contracts.data_root import feature_build_path
    from feature_platform.contracts.manifest import MANIFEST_NAME, data_file_paths, load_manifest
    from feature_platform.contracts.provenance import parse_utc_timestamp
    from feature_platform.features.build import build_features
    from feature_platform.features.layout import features_dir, latest_paths

    version = context.partition_key
    started = time.perf_counter()
    store = timeseries.open()
    try:
        market = store.read()
    finally:
        store.close()
    market_path = None
    if market.num_rows:
        market_path = paths.layout.feature_inputs(version) / "market_ohlcv.parquet"
        market_path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(market.select(["asset", "ts", "open", "high", "low", "close", "volume"]), market_path)
    manifest_path = paths.dataset_dir(version) / MANIFEST_NAME
    dataset_manifest = load_manifest(manifest_path)
    out_dir = features_dir(paths.root)
    build = build_features(FEATURE_REPO, data_file_paths(manifest_path, dataset_manifest), version,
                           out_dir, market_path, git_ref=config.feature_repo_ref,
                           allow_dirty=config.allow_dirty,
                           created_at=parse_utc_timestamp(dataset_manifest.created_at, "created_at"))
    path = feature_build_path(out_dir, version)
    return dg.MaterializeResult(
        metadata={
            "feast_repo_sha": build.feast_repo_sha,
            "feast_repo_tree_sha": build.feast_repo_tree_sha,
            "dataset_version": version,
            "materialized_at": build.materialized_at,
            "row_counts": dg.MetadataValue.json(build.row_counts),
            "outputs": dg.MetadataValue.json({o.path: o.sha256 for o in build.outputs}),
            "feature_build": dg.MetadataValue.path(str(path)),
            # What `feast -c feature_repo ...` and FeatureStore(repo_path="feature_repo") now serve.
            "feast_published": dg.MetadataValue.path(str(latest_paths(out_dir).dir)),
            "dagster/row_count": build.row_counts.get("dataset_features", 0),
            "duration_s": round(time.perf_counter() - started, 3),
        },
        data_version=dg.DataVersion(build.dataset_sha256),
    )


@dg.asset_check(asset=feature_build, blocking=True, name="feature_contract_drift",
                description="The Feast dataset_features view matches feature_contract.yaml: names, types, order.")
def feature_contract_drift(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    from feature_platform.features.build import check_drift

    report = check_drift(FEATURE_REPO)
    return dg.AssetCheckResult(
        passed=report.ok, severity=dg.AssetCheckSeverity.ERROR,
        metadata={"diff": dg.MetadataValue.md(f"```\n{report.diff_text}\n```" if report.diff_text else "no drift"),
                  "missing": dg.MetadataValue.json(report.missing), "extra": dg.MetadataValue.json(report.extra),
                  "retyped": dg.MetadataValue.json([list(r) for r in report.retyped]),
                  "reordered": dg.MetadataValue.json(list(report.reordered))},
    )


feature_job = dg.define_asset_job("feature_build_job", selection=dg.AssetSelection.assets(feature_build),
                                  description="feature_build for one dataset_version (after publish)")
