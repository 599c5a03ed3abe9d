"""The feature_build asset on a sharded dataset: it reads every data file the published manifest lists and
gives the features the same dataset written as one file gives, byte for byte."""

from collections.abc import Iterator

import dagster as dg
import pytest

from feature_platform.contracts.canonical import sha256_file
from feature_platform.contracts.manifest import MANIFEST_NAME, load_manifest
from feature_platform.features.build import FeatureBuild, dataset_digest, read_feature_build
from feature_platform.features.layout import features_dir
from feature_platform.orchestration.headless import run_feature_build, run_refresh
from feature_platform.orchestration.resources import PlatformPaths

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
SNAPSHOT = {"source_snapshot": {"config": {"rows": 3_000, "batch_rows": 1_000, "seed": 11}}}
FEATURES = {**QUIET, "ops": {"feature_build": {"config": {"allow_dirty": True}}}}
EPOCH = "1717200000"  # both refreshes stamp this created_at, so the created column matches too


@pytest.fixture(scope="module")
def built(defs: dg.Definitions, instance: dg.DagsterInstance,
          paths: PlatformPaths) -> Iterator[dict[str, FeatureBuild]]:
    """Feature builds of the same rows published as one data file (f1) and as three (f3)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SOURCE_DATE_EPOCH", EPOCH)
        builds: dict[str, FeatureBuild] = {}
        for version, files in (("f1", 1), ("f3", 3)):
            config = {**QUIET, "ops": {**SNAPSHOT, "dataset": {"config": {"files": files, "executor": "inline",
                                                                          "seed": 5}}}}
            outcome = run_refresh(version, instance=instance, defs=defs, run_config=config)
            assert outcome.refresh.succeeded, outcome.refresh
            summary = run_feature_build(version, instance=instance, defs=defs, run_config=FEATURES)
            assert summary.succeeded, summary
            builds[version] = read_feature_build(features_dir(paths.root) / "offline" / version / "feature_build.json")
        yield builds


def test_feature_build_asset_reads_every_data_file(built: dict[str, FeatureBuild], paths: PlatformPaths) -> None:
    manifest = load_manifest(paths.dataset_dir("f3") / MANIFEST_NAME)
    assert [f.path for f in manifest.files] == [f"data-0000{k}-of-00003.parquet" for k in range(3)]
    shas = [f.sha256 for f in manifest.files]
    assert built["f3"].dataset_files() == shas and built["f3"].dataset_sha256 == dataset_digest(shas)
    assert built["f3"].row_counts == built["f1"].row_counts
    assert built["f3"].row_counts["dataset_features"] == manifest.row_count == 3_000

    out = features_dir(paths.root)
    one = out / built["f1"].view("dataset_features").path
    three = out / built["f3"].view("dataset_features").path
    assert one != three and sha256_file(one) == sha256_file(three)
    assert built["f3"].output(three.relative_to(out).as_posix()).sha256 == sha256_file(three)
