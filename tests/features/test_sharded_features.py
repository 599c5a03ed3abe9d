"""Feature builds from sharded datasets: every data file the manifest lists, in its order, resolved inside
the dataset directory; the same offline features, byte for byte, as the dataset written as one file."""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from feature_platform.contracts.canonical import sha256_file
from feature_platform.contracts.data_root import feature_build_path
from feature_platform.contracts.feature_contract import FEATURE_ORDER
from feature_platform.contracts.manifest import ManifestError, data_file_paths, load_manifest
from feature_platform.datasets.build import BuildResult, build_dataset
from feature_platform.datasets.sharding import data_file_name
from feature_platform.features.build import (
    FeatureBuild,
    FeatureBuildError,
    build_features,
    dataset_digest,
    read_feature_build,
)
from feature_platform.features.layout import features_dir
from feature_platform.features.training_set import build_training_set
from tests.conftest import committed_feast_repo, small_source
from tests.features.test_feast_user import assert_serves, latest_rows

CREATED = datetime(2024, 6, 1, tzinfo=UTC)
FILES = 3
OFFLINE = "offline/v1/dataset_features.parquet"


@pytest.fixture(scope="module")
def sharded(tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    """The golden dataset's source written as FILES data files."""
    out = tmp_path_factory.mktemp("sharded") / "datasets"
    return build_dataset(small_source(), out, "golden_ds", dataset_version="v1", files=FILES)


@pytest.fixture(scope="module")
def builds(golden: BuildResult, sharded: BuildResult,
           tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, FeatureBuild, Path, FeatureBuild]:
    """(features dir, build) of the one-file golden dataset and of the sharded one, from one committed repo."""
    root = tmp_path_factory.mktemp("featshard")
    repo = committed_feast_repo(root / "project")
    one, many = root / "one", features_dir(root / "project" / "data")
    build_one = build_features(repo, data_file_paths(golden.manifest_path, golden.manifest), "v1", one, None,
                               created_at=CREATED)
    build_many = build_features(repo, data_file_paths(sharded.manifest_path, sharded.manifest), "v1", many, None,
                                created_at=CREATED)
    return one, build_one, many, build_many


def test_sharded_dataset_gives_the_same_features(golden: BuildResult, sharded: BuildResult,
                                                 builds: tuple[Path, FeatureBuild, Path, FeatureBuild]) -> None:
    one, build_one, many, build_many = builds
    assert [f.path for f in sharded.manifest.files] == [data_file_name(k, FILES) for k in range(FILES)]
    assert all(f.rows > 0 for f in sharded.manifest.files)  # every shard holds rows: the merge is exercised
    # The shards' rows, concatenated in manifest order, are NOT in the one file's order: the build re-sorts.
    concatenated = pa.concat_tables([pq.read_table(p) for p in data_file_paths(sharded.manifest_path,
                                                                               sharded.manifest)])
    assert not concatenated.equals(pq.read_table(golden.path / "data.parquet"))

    assert sha256_file(many / OFFLINE) == sha256_file(one / OFFLINE)  # identical bytes, not only rows
    assert build_many.output(OFFLINE) == build_one.output(OFFLINE)
    assert build_many.row_counts == build_one.row_counts
    assert build_many.row_counts["dataset_features"] == golden.manifest.row_count
    offline = pq.read_table(many / OFFLINE)
    assert offline.column_names == ["entity_id", "event_timestamp", *FEATURE_ORDER, "created"]

    # The build records every file's sha256 in manifest order, and one digest over them.
    shas = [f.sha256 for f in sharded.manifest.files]
    assert build_many.dataset_files() == shas and build_many.dataset_sha256 == dataset_digest(shas)
    assert len(set(shas)) == FILES and build_many.dataset_sha256 not in shas
    assert read_feature_build(feature_build_path(many, "v1")) == build_many
    # A one-file build keeps its dataset_sha256: the data file's own.
    assert build_one.dataset_sha256 == golden.manifest.files[0].sha256 == sha256_file(golden.path / "data.parquet")


def test_training_set_from_a_sharded_feature_build(golden: BuildResult, sharded: BuildResult,
                                                   builds: tuple[Path, FeatureBuild, Path, FeatureBuild],
                                                   tmp_path: Path) -> None:
    """The training set checks the build against every data file; its rows are the one-file set's."""
    one, _, many, _ = builds
    from_one = build_training_set(golden.manifest_path, feature_build_path(one, "v1"), tmp_path / "a")
    from_many = build_training_set(sharded.manifest_path, feature_build_path(many, "v1"), tmp_path / "b")
    assert from_one.manifest.row_count == from_many.manifest.row_count == golden.manifest.row_count
    # The join keeps label rows in the dataset's order (its files', in manifest order): the same rows, which
    # stable-sorted by (timestamp, entity) are the one-file set's, cell for cell.
    order = [("event_timestamp", "ascending"), ("entity_id", "ascending")]
    rows_one = pa.concat_tables([pq.read_table(from_one.path / f.path) for f in from_one.manifest.files])
    rows_many = pa.concat_tables([pq.read_table(from_many.path / f.path) for f in from_many.manifest.files])
    assert rows_many.sort_by(order).equals(rows_one.sort_by(order))
    assert from_many.manifest.splits.rows == from_one.manifest.splits.rows
    # The one-file build does not describe the sharded dataset's bytes: refused, naming the build.
    from feature_platform.features.training_set import TrainingSetRefused

    with pytest.raises(TrainingSetRefused, match=r"feature_build\.json: built from dataset files"):
        build_training_set(sharded.manifest_path, feature_build_path(one, "v1"), tmp_path / "c")


def test_feast_reads_the_offline_features_of_a_sharded_build(
        builds: tuple[Path, FeatureBuild, Path, FeatureBuild], monkeypatch: pytest.MonkeyPatch) -> None:
    """FeatureStore(repo_path="feature_repo") serves the sharded build online and reads its offline source."""
    import feast

    _, _, many, build_many = builds
    monkeypatch.delenv("FP_DATA_ROOT", raising=False)
    monkeypatch.chdir(many.parent.parent)  # the project directory: feature_repo/ beside data/
    store = feast.FeatureStore(repo_path="feature_repo")
    source = store.get_feature_view("dataset_features").batch_source
    assert isinstance(source, feast.FileSource)
    assert Path(source.path).read_bytes() == (many / OFFLINE).read_bytes()
    expected = latest_rows(many / OFFLINE)
    assert len(expected) == build_many.row_counts["online:dataset_features"]
    assert_serves(store, expected)

    # Offline: Feast's file store reads the published parquet for a point-in-time lookup at rows' own times
    # (no two rows of an entity share a timestamp in this data, so there are no ties to break).
    offline = pq.read_table(many / OFFLINE)
    picked = offline.take(pa.array([0, 17, 1234, offline.num_rows - 1]))
    entity_df = picked.select(["entity_id", "event_timestamp"]).to_pandas()
    got = store.get_historical_features(entity_df=entity_df, features=[f"dataset_features:{n}" for n in
                                                                      ("ret_1m", "rsi_14", "macd")]).to_arrow()
    got = got.sort_by([("event_timestamp", "ascending"), ("entity_id", "ascending")])
    want = picked.sort_by([("event_timestamp", "ascending"), ("entity_id", "ascending")])
    for name in ("entity_id", "ret_1m", "rsi_14", "macd"):
        assert got.column(name).to_pylist() == want.column(name).to_pylist(), name


# ------------------------------------------------------------------------------------------- hostile manifests


def _copy_with_path(sharded: BuildResult, tmp_path: Path, index: int, path: str) -> Path:
    """A copy of the sharded dataset whose manifest lists ``path`` as data file ``index``."""
    target = tmp_path / "ds"
    shutil.copytree(sharded.path, target)
    manifest = target / "manifest.json"
    raw = json.loads(manifest.read_text())
    raw["files"][index]["path"] = path
    manifest.write_text(json.dumps(raw))
    return manifest


@pytest.mark.parametrize("path", ["../outside.parquet", "/etc/passwd", "./data-00001-of-00003.parquet",
                                  "sub/../../outside.parquet", "a\\..\\outside.parquet", "link/outside.parquet",
                                  "escape.parquet"])
def test_a_data_file_outside_the_dataset_is_refused(sharded: BuildResult, tmp_path: Path, path: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    pq.write_table(pq.read_table(sharded.path / data_file_name(1, FILES)), outside / "outside.parquet")
    manifest = _copy_with_path(sharded, tmp_path, 1, path)
    os.symlink(outside, manifest.parent / "link")  # a directory link out of the dataset
    os.symlink(outside / "outside.parquet", manifest.parent / "escape.parquet")  # a file link out of it
    with pytest.raises(ManifestError) as caught:
        data_file_paths(manifest, load_manifest(manifest))
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{manifest}: field files.1.path: ")
    assert path in message or repr(path) in message


def test_the_manifest_order_is_kept_and_files_inside_are_accepted(sharded: BuildResult, tmp_path: Path) -> None:
    # A link that stays inside the dataset directory is fine; the order is the manifest's, not the names'.
    manifest = _copy_with_path(sharded, tmp_path, 0, "inner/data-00000-of-00003.parquet")
    (manifest.parent / "inner").mkdir()
    os.replace(manifest.parent / data_file_name(0, FILES), manifest.parent / "inner" / data_file_name(0, FILES))
    paths = data_file_paths(manifest, load_manifest(manifest))
    assert [p.relative_to(manifest.parent).as_posix() for p in paths] == [
        "inner/data-00000-of-00003.parquet", data_file_name(1, FILES), data_file_name(2, FILES)]


def test_build_features_refuses_mismatched_or_unreadable_files(sharded: BuildResult, tmp_path: Path) -> None:
    repo = committed_feast_repo(tmp_path / "project")
    files = data_file_paths(sharded.manifest_path, sharded.manifest)
    with pytest.raises(FeatureBuildError, match="no dataset data files"):
        build_features(repo, [], "v1", tmp_path / "out", None)
    retyped = tmp_path / "retyped.parquet"
    table = pq.read_table(files[1])
    pq.write_table(table.set_column(table.schema.get_field_index("ret_1m"), pa.field("ret_1m", pa.float64(), False),
                                    pc.cast(table.column("ret_1m"), pa.float64())), retyped)
    with pytest.raises(FeatureBuildError) as caught:
        build_features(repo, [files[0], retyped], "v1", tmp_path / "out", None)
    assert str(caught.value) == (f"{retyped}: columns ['ret_1m'] are ['double not null'], {files[0]} has "
                                 "['float not null']")
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"not parquet")
    with pytest.raises(FeatureBuildError, match=rf"^{garbage}: not a readable parquet data file"):
        build_features(repo, [files[0], garbage], "v1", tmp_path / "out", None)
    lacking = tmp_path / "lacking.parquet"
    pq.write_table(table.drop_columns(["macd"]), lacking)
    with pytest.raises(FeatureBuildError, match=rf"^{lacking}: dataset lacks columns \['macd'\]"):
        build_features(repo, [files[0], lacking], "v1", tmp_path / "out", None)
    assert not (tmp_path / "out" / "offline").exists()  # nothing written by a refused build


def test_a_feature_build_whose_dataset_digest_disagrees_is_refused(
        builds: tuple[Path, FeatureBuild, Path, FeatureBuild], tmp_path: Path) -> None:
    _, _, many, _ = builds
    raw = json.loads(feature_build_path(many, "v1").read_text())
    forged = tmp_path / "feature_build.json"
    for field, value in (("dataset_sha256", "0" * 64), ("dataset_file_sha256s", raw["dataset_file_sha256s"][:2]),
                         ("dataset_file_sha256s", ["A" * 64] * 3), ("dataset_file_sha256s", "not a list")):
        forged.write_text(json.dumps({**raw, field: value}))
        with pytest.raises(FeatureBuildError) as caught:
            read_feature_build(forged)
        assert str(caught.value).startswith(f"{forged}: not a readable feature build") and "\n" not in str(caught.value)
    # A build recorded before datasets were sharded (no per-file list) still reads: its one file is dataset_sha256.
    legacy = {k: v for k, v in raw.items() if k != "dataset_file_sha256s"}
    legacy["dataset_sha256"] = raw["dataset_file_sha256s"][0]
    forged.write_text(json.dumps(legacy))
    assert read_feature_build(forged).dataset_files() == [raw["dataset_file_sha256s"][0]]


def test_one_naming_rule_for_dataset_and_training_set_files() -> None:
    from feature_platform.features.training_set import shard_file_name

    assert data_file_name(0, 1) == shard_file_name(0, 1) == "data.parquet"
    assert data_file_name(2, 3) == "data-00002-of-00003.parquet"
    assert shard_file_name(2, 3) == data_file_name(2, 3, "part") == "part-00002-of-00003.parquet"
