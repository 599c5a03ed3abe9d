"""Training sets: label rows joined point-in-time with a feature build, the leakage audit, "as of" rebuilds."""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from feature_platform.contracts.feature_contract import FEATURE_ORDER
from feature_platform.datasets.build import BuildResult, build_dataset
from feature_platform.datasets.verify import sha256_file, verify_dataset
from feature_platform.features.build import (
    CREATED_COLUMN,
    FeatureBuild,
    OutputFile,
    build_features,
    feature_build_path,
)
from feature_platform.features.training_set import (
    FEATURE_CREATED_TS,
    FEATURE_EVENT_TS,
    PROVENANCE_FIELDS,
    TrainingSetRefused,
    _JoinedSource,
    audit_leakage,
    build_training_set,
    current_training_set,
    parse_as_of,
)
from feature_platform.training.data import load_splits
from tests.conftest import committed_feast_repo

TS = pa.timestamp("us", tz="UTC")
CREATED = datetime(2025, 6, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def built(golden: BuildResult, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(dataset manifest, feature_build.json): features built from the golden dataset, created at CREATED."""
    root = tmp_path_factory.mktemp("ts")
    repo = committed_feast_repo(root / "repo")
    build_features(repo, golden.path / "data.parquet", "v1", root / "features", None, created_at=CREATED)
    return golden.manifest_path, feature_build_path(root / "features", "v1")


def _copy_features(built: tuple[Path, Path], tmp_path: Path) -> Path:
    """A private copy of the feature output tree; returns its feature_build.json."""
    src = built[1].parent.parent.parent
    shutil.copytree(src, tmp_path / "features")
    return feature_build_path(tmp_path / "features", "v1")


def test_training_set_joins_every_label_row_with_its_own_features(built: tuple[Path, Path], golden: BuildResult,
                                                                  tmp_path: Path) -> None:
    result = build_training_set(built[0], built[1], tmp_path / "ts")
    assert verify_dataset(result.manifest_path).ok
    m = result.manifest
    assert m.dataset_id == "golden_ds-training" and m.dataset_version == "v1" and m.source.kind == "training_set"
    assert [c.name for c in m.columns][-2:] == [FEATURE_EVENT_TS, FEATURE_CREATED_TS]
    assert m.splits.rows == golden.manifest.splits.rows and m.row_count == golden.manifest.row_count
    params = m.source.parameters
    assert params["feature_build"]["sha256"] == sha256_file(built[1])  # type: ignore[index,call-overload]
    assert params["dataset"]["manifest_digest"] == golden.digest  # type: ignore[index,call-overload]
    view = params["feature_views"][0]  # type: ignore[index]
    assert view["name"] == "dataset_features" and view["ttl_seconds"] == 2 * 86_400  # type: ignore[index]
    assert params["join"]["as_of"] is None and params["unmatched_label_rows"] == 0  # type: ignore[index]

    got = pq.read_table(result.path / "data.parquet")
    want = pq.read_table(golden.path / "data.parquet")
    # every label row matched its own feature row (no two rows of an entity share a timestamp)
    assert got.select(want.column_names).equals(want)
    assert got.column(FEATURE_EVENT_TS).equals(got.column("event_timestamp"))
    assert pc.all(pc.equal(got.column(FEATURE_CREATED_TS), pa.scalar(CREATED, TS))).as_py()
    assert audit_leakage(result.manifest_path).ok

    data = load_splits(result.manifest_path)  # training reads it like any verified dataset
    assert sum(s.rows for s in data.splits.values()) == golden.manifest.row_count

    # immutable: the same inputs reuse the set (a model trained on it keeps it); current.json points at it
    again = build_training_set(built[0], built[1], tmp_path / "ts")
    assert again.digest == result.digest and again.path == result.path
    assert current_training_set(tmp_path / "ts", "golden_ds") == (result.manifest_path, result.digest)
    other = build_training_set(built[0], built[1], tmp_path / "ts", as_of=CREATED)
    assert other.path != result.path and current_training_set(tmp_path / "ts", "golden_ds")[1] == other.digest
    assert verify_dataset(result.manifest_path).ok


def test_late_correction_is_invisible_as_of_and_the_rebuild_reproduces_the_bytes(
        built: tuple[Path, Path], tmp_path: Path) -> None:
    build_json = _copy_features(built, tmp_path)
    as_of = CREATED + timedelta(hours=1)
    first = build_training_set(built[0], build_json, tmp_path / "a", as_of=as_of)
    assert first.manifest.source.parameters["join"]["as_of"] == "2025-06-01T01:00:00.000000Z"  # type: ignore[index]
    assert audit_leakage(first.manifest_path).ok

    # A late correction arrives: new values for existing (entity, timestamp) rows, created a day later.
    record = FeatureBuild.model_validate_json(build_json.read_bytes())
    offline = build_json.parent / "dataset_features.parquet"
    table = pq.read_table(offline)
    late = table.slice(0, 50)
    late = late.set_column(late.schema.get_field_index("ret_1d"), "ret_1d",
                           pc.add(late.column("ret_1d"), pa.scalar(1.0, pa.float32())))
    late = late.set_column(late.schema.get_field_index(CREATED_COLUMN), CREATED_COLUMN,
                           pa.array([CREATED + timedelta(days=1)] * 50, TS))
    pq.write_table(pa.concat_tables([table, late.cast(table.schema)]), offline)
    outputs = [OutputFile(path=o.path, bytes=offline.stat().st_size, sha256=sha256_file(offline))
               if o.path.endswith("dataset_features.parquet") else o for o in record.outputs]
    build_json.write_text(record.model_copy(update={"outputs": outputs}).model_dump_json(indent=2))

    again = build_training_set(built[0], build_json, tmp_path / "b", as_of=as_of)
    assert again.manifest.files[0].sha256 == first.manifest.files[0].sha256
    assert again.manifest.source.parameters["feature_build"] != first.manifest.source.parameters["feature_build"]
    # Without as_of the correction wins (newest created on the same event time), so the bytes differ.
    now = build_training_set(built[0], build_json, tmp_path / "c")
    assert now.manifest.files[0].sha256 != first.manifest.files[0].sha256
    changed = pq.read_table(now.path / "data.parquet")
    assert pc.sum(pc.cast(pc.equal(changed.column(FEATURE_CREATED_TS),
                                   pa.scalar(CREATED + timedelta(days=1), TS)), pa.int64())).as_py() == 50
    assert audit_leakage(now.manifest_path).ok


def test_as_of_before_any_feature_row_refuses(built: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(TrainingSetRefused, match=re.escape("visible as of 2025-05-31T00:00:00.000000Z")):
        build_training_set(built[0], built[1], tmp_path / "ts", as_of=CREATED - timedelta(days=1))
    assert not list((tmp_path / "ts").rglob("manifest.json"))


def test_leakage_audit_catches_a_future_feature_a_stale_one_and_a_late_one(built: tuple[Path, Path],
                                                                           tmp_path: Path) -> None:
    good = build_training_set(built[0], built[1], tmp_path / "good", as_of=CREATED)
    table = pq.read_table(good.path / "data.parquet")
    event = table.column(FEATURE_EVENT_TS).to_pylist()
    created = table.column(FEATURE_CREATED_TS).to_pylist()
    event[0] = event[0] + timedelta(seconds=1)  # a feature from the label's future
    event[1] = event[1] - timedelta(days=3)  # older than the 2-day ttl
    created[2] = CREATED + timedelta(microseconds=1)  # created after as_of
    table = table.set_column(table.num_columns - 2, PROVENANCE_FIELDS[0], pa.array(event, TS))
    table = table.set_column(table.num_columns - 1, PROVENANCE_FIELDS[1], pa.array(created, TS))
    params = dict(good.manifest.source.parameters)
    leaky = build_dataset(_JoinedSource(table, params), tmp_path / "leaky", "golden_ds-training",
                          dataset_version="v1", extra_fields=PROVENANCE_FIELDS)
    report = audit_leakage(leaky.manifest_path)
    failed = {c.name: c.actual for c in report.failures}
    assert failed == {"no_feature_after_label": 1, "feature_within_ttl": 1, "no_feature_created_after_as_of": 1}


def test_refuses_damaged_inputs_and_a_build_of_other_bytes(built: tuple[Path, Path], dataset: Path,
                                                            tmp_path: Path) -> None:
    build_json = _copy_features(built, tmp_path)
    offline = build_json.parent / "dataset_features.parquet"
    data = bytearray(offline.read_bytes())
    data[100] ^= 0xFF
    offline.write_bytes(bytes(data))
    with pytest.raises(TrainingSetRefused, match="sha256"):
        build_training_set(built[0], build_json, tmp_path / "ts")
    damaged = dataset / "data.parquet"
    raw = bytearray(damaged.read_bytes())
    raw[200] ^= 0xFF
    damaged.write_bytes(bytes(raw))
    with pytest.raises(TrainingSetRefused, match="failed verification"):
        build_training_set(dataset / "manifest.json", built[1], tmp_path / "ts")
    assert not list((tmp_path / "ts").rglob("manifest.json"))


def test_as_of_is_parsed_strictly() -> None:
    assert parse_as_of("2026-01-31T00:00:00Z") == datetime(2026, 1, 31, tzinfo=UTC)
    for bad in ("2026-13-45T99:99:99Z", "2026-01-31T00:00:00", "yesterday", ""):
        with pytest.raises(ValueError, match="as_of must be a UTC timestamp"):
            parse_as_of(bad)


def test_offline_features_carry_the_created_column(built: tuple[Path, Path]) -> None:
    table = pq.read_table(built[1].parent / "dataset_features.parquet")
    assert table.column_names == ["entity_id", "event_timestamp", *FEATURE_ORDER, CREATED_COLUMN]
    record = json.loads(built[1].read_text())
    assert record["feature_views"][0]["created_timestamp_column"] == CREATED_COLUMN
