"""Definition-driven spec v1 datasets: the foundation's builder, verify and atomic publish, split by the SQL rule."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from datetime import date
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from feature_platform.contracts.canonical import canonical_json
from feature_platform.contracts.manifest import FarmFingerprintSplits, TimeCutoffSplits, parse_manifest
from feature_platform.datasets.build import BuildResult
from feature_platform.datasets.definitions.model import DefinitionError, load_definition
from feature_platform.datasets.definitions.source import DefinitionSource, build_definition_dataset
from feature_platform.datasets.definitions.sql import register_udfs, render_query, split_of
from feature_platform.datasets.verify import verify_dataset
from tests.datasets.test_definitions_model import BASE, changed, write

AS_OF = date(2026, 5, 31)


@pytest.fixture
def defs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "definitions"
    directory.mkdir()
    monkeypatch.setenv("FP_DEFINITIONS_DIR", str(directory))
    return directory


def build(defs_dir: Path, out: Path, warehouse: Path, raw: dict[str, object] = BASE,
          version: str = "v1") -> BuildResult:
    defn = load_definition(write(defs_dir, dict(raw)))
    return build_definition_dataset(defn, out, dataset_version=version, warehouse=warehouse, as_of=AS_OF)


def test_random_split_build_verifies_and_counts_like_the_sql(defs_dir: Path, tmp_path: Path,
                                                             warehouse: Path) -> None:
    result = build(defs_dir, tmp_path / "out", warehouse)
    m = result.manifest
    assert result.path == tmp_path / "out" / "demo_def-v1"
    assert m.source.kind == "definition" and m.source.parameters["definition"] == "demo_def"
    assert m.entity_column == "user_id" and m.timestamp_column == "event_timestamp" and m.label_column == "returned"
    assert m.feature_order == ["product_id", "revenue", "segment", "category"]
    assert [c.name for c in m.columns] == ["user_id", "event_timestamp", "product_id", "revenue", "segment",
                                           "category", "returned"]
    assert isinstance(m.splits, FarmFingerprintSplits) and m.splits.threshold == 200_000
    # The manifest's split counts are what the SQL assigns, and what split_of assigns row by row.
    from feature_platform.warehouse.connection import connect

    defn = load_definition(defs_dir / "demo_def.yaml")
    with connect(warehouse) as conn:
        register_udfs(conn)
        sql_rows = {s: len(conn.execute(render_query(defn, split=s, as_of=AS_OF)).fetchall())
                    for s in ("train", "eval")}
    table = pq.read_table(result.path / "data.parquet")
    local = Counter(split_of(defn, k) for k in table.column("user_id").to_pylist())
    assert dict(m.splits.rows) == sql_rows == dict(local)
    assert m.row_count == table.num_rows == sum(sql_rows.values())
    # `fp dataset verify` (default contract resolution) checks it against its definition.
    report = verify_dataset(result.manifest_path, tmp_path / "out")
    assert report.ok, [c.line() for c in report.failures]


def test_time_split_build_and_reproducible_bytes(defs_dir: Path, tmp_path: Path, warehouse: Path) -> None:
    raw = changed(split={"strategy": "time", "eval_days": 7})
    first = build(defs_dir, tmp_path / "a", warehouse, raw)
    again = build(defs_dir, tmp_path / "b", warehouse, raw)
    splits = first.manifest.splits
    assert isinstance(splits, TimeCutoffSplits)
    assert splits.cutoff == "2026-05-25T00:00:00.000000Z" and splits.column == "event_timestamp"
    ts = pq.read_table(first.path / "data.parquet").column("event_timestamp").to_pylist()
    assert splits.rows["eval"] == sum(t.isoformat() >= "2026-05-25" for t in ts) > 0
    assert first.manifest.files[0].sha256 == again.manifest.files[0].sha256
    assert first.manifest.source.source_hash == again.manifest.source.source_hash


def test_entity_hash_manifests_keep_their_canonical_json(golden: BuildResult) -> None:
    raw = json.loads(golden.manifest_path.read_text())
    assert canonical_json(parse_manifest(raw).to_json_dict()) == canonical_json(raw)
    assert parse_manifest(raw).digest() == golden.digest


def test_changed_or_missing_definition_fails_verify(defs_dir: Path, tmp_path: Path, warehouse: Path) -> None:
    result = build(defs_dir, tmp_path / "out", warehouse)
    write(defs_dir, changed(description="edited after the build"))
    report = verify_dataset(result.manifest_path, tmp_path / "out")
    failed = [c for c in report.failures if c.name == "feature_order"]
    assert not report.ok and failed and "demo_def changed since the dataset was built" in failed[0].detail
    (defs_dir / "demo_def.yaml").unlink()
    report = verify_dataset(result.manifest_path, tmp_path / "out")
    assert not report.ok and "no definition named 'demo_def'" in report.failures[0].detail


def test_source_hash_follows_table_content(defs_dir: Path, tmp_path: Path, warehouse: Path) -> None:
    from feature_platform.warehouse.connection import connect

    defn = load_definition(write(defs_dir, BASE))
    copy = tmp_path / "copy.duckdb"
    shutil.copy(warehouse, copy)
    with connect(copy) as conn:
        before = DefinitionSource(defn, conn, as_of=AS_OF).source_hash()
    with connect(copy, read_only=False) as conn:
        conn.execute("UPDATE raw_data.users SET segment = 'changed' WHERE user_id = 1")
    with connect(copy) as conn:
        assert DefinitionSource(defn, conn, as_of=AS_OF).source_hash() != before


@pytest.mark.parametrize(
    ("raw", "pattern"),
    [
        (changed(filters={"date_range": {"start": "2020-01-01", "end": "2020-01-31"}}),
         r"demo_def\.yaml: field filters: query returned 0 rows"),
        (changed(columns=[*BASE["columns"], {"table": "users", "column": "shoe_size"}]),
         r"demo_def\.yaml: field columns\[7\]\.column: expected a column of users"),
        (changed(columns=[BASE["columns"][0], {"table": "users", "column": "country", "role": "timestamp"},
                          *BASE["columns"][2:]]),
         r"demo_def\.yaml: field columns\[1\]\.role: role timestamp expects"),
    ],
)
def test_bad_builds_write_nothing(defs_dir: Path, tmp_path: Path, warehouse: Path, raw: dict[str, object],
                                  pattern: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DefinitionError, match=pattern):
        build(defs_dir, out, warehouse, raw)
    assert list(out.iterdir()) == []


def test_missing_warehouse_is_one_clear_line(defs_dir: Path, tmp_path: Path) -> None:
    from feature_platform.warehouse.connection import WarehouseError

    with pytest.raises(WarehouseError, match="does not exist"):
        build(defs_dir, tmp_path / "out", tmp_path / "nowhere.duckdb")
    assert not (tmp_path / "out").exists()


def test_parquet_backed_table_builds_and_fingerprints_the_file(defs_dir: Path, tmp_path: Path,
                                                               warehouse: Path) -> None:
    from feature_platform.warehouse.connection import connect

    with connect(warehouse) as conn:
        conn.execute(f"COPY raw_data.users TO '{defs_dir / 'users.parquet'}' (FORMAT parquet)")
    raw = changed(tables=[{"name": "transactions"}, {"name": "users", "path": "users.parquet"}, {"name": "products"}])
    parquet = build(defs_dir, tmp_path / "a", warehouse, raw)
    assert verify_dataset(parquet.manifest_path, tmp_path / "a").ok
    plain = build(defs_dir, tmp_path / "b", warehouse, BASE)  # same name: the parquet one's definition changed
    assert parquet.manifest.files[0].sha256 == plain.manifest.files[0].sha256  # same rows, same bytes
    assert parquet.manifest.source.source_hash != plain.manifest.source.source_hash
    (defs_dir / "users.parquet").write_bytes(b"not parquet")
    with pytest.raises(DefinitionError, match=r"field tables\[1\]\.path: expected a readable Parquet file"):
        build(defs_dir, tmp_path / "c", warehouse, raw)
