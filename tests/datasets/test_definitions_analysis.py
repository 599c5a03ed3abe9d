"""Definition analysis, preview and comparison on the sample warehouse, checked against direct SQL."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml

from feature_platform.datasets.definitions.analysis import (
    Analysis,
    AnalysisError,
    SplitEstimate,
    analyze_definition,
    compare_definitions,
    preview_definition,
    quality_issues,
)
from feature_platform.datasets.definitions.model import DatasetDefinition, DefinitionError, load_definition
from feature_platform.datasets.definitions.sql import split_of
from feature_platform.warehouse.connection import connect
from tests.conftest import WAREHOUSE_END_DATE, CliResult

AS_OF = date.fromisoformat(WAREHOUSE_END_DATE) - timedelta(days=1)  # the last day with data
COLUMNS = [
    {"table": "transactions", "column": "user_id", "role": "user_id"},
    {"table": "transactions", "column": "transaction_ts", "alias": "event_timestamp", "role": "timestamp"},
    {"table": "transactions", "column": "product_id", "role": "product_id"},
    {"table": "transactions", "column": "amount", "role": "revenue"},
    {"table": "users", "column": "segment"},
    {"table": "transactions", "column": "returned", "role": "label"},
]
JOINS = [{"left_table": "transactions", "left_column": "user_id", "right_table": "users", "right_column": "user_id"}]


def _spec(name: str, **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": name, "description": "test", "status": "draft",
        "tables": [{"name": "transactions"}, {"name": "users"}], "joins": JOINS, "columns": COLUMNS,
        "filters": {"date_range": {"last_days": 60}},
        "split": {"strategy": "random", "eval_fraction": 0.25, "salt": "t1"},
    }
    spec.update(overrides)
    return spec


def _write(directory: Path, spec: dict[str, Any]) -> DatasetDefinition:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return load_definition(path)


@pytest.fixture
def conn(warehouse: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    with connect(warehouse) as c:
        yield c


@pytest.fixture(scope="module")
def defs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("definitions")
    _write(directory, _spec("healthy"))
    _write(directory, _spec("healthy_time", split={"strategy": "time", "eval_days": 14}))
    # two days, customers of one rare segment, no minimum: few rows per user and per product
    _write(directory, _spec("sparse", filters={"date_range": {"start": "2026-05-20", "end": "2026-05-21"}},
                            split={"strategy": "time", "eval_days": 1}))
    _write(directory, _spec("empty", filters={"date_range": {"start": "2020-01-01", "end": "2020-01-31"}}))
    return directory


def _one(conn: duckdb.DuckDBPyConnection, sql: str) -> Any:
    row = conn.execute(sql).fetchone()
    assert row is not None
    return row[0]


WINDOW = (f"transaction_ts >= TIMESTAMPTZ '{AS_OF - timedelta(days=60)} 00:00:00+00' "
          f"AND transaction_ts < TIMESTAMPTZ '{AS_OF + timedelta(days=1)} 00:00:00+00'")


def test_counts_equal_direct_sql(conn: duckdb.DuckDBPyConnection, defs_dir: Path) -> None:
    a = analyze_definition(load_definition(defs_dir / "healthy.yaml"), conn, as_of=AS_OF)
    where = f"FROM raw_data.transactions WHERE {WINDOW}"
    assert a.rows == _one(conn, f"SELECT count(*) {where}") > 0
    assert a.users == _one(conn, f"SELECT count(DISTINCT user_id) {where}")
    assert a.products == _one(conn, f"SELECT count(DISTINCT product_id) {where}")
    assert a.first_timestamp == _one(conn, f"SELECT min(transaction_ts) {where}")
    assert a.last_timestamp == _one(conn, f"SELECT max(transaction_ts) {where}")
    assert a.median_per_user == _one(conn, f"SELECT median(n) FROM (SELECT count(*) AS n {where} GROUP BY user_id)")
    pairs = _one(conn, f"SELECT count(*) FROM (SELECT DISTINCT user_id, product_id {where})")
    assert a.products is not None and a.density == pytest.approx(pairs / (a.users * a.products))
    assert a.definition_sha256 == load_definition(defs_dir / "healthy.yaml").digest()


def test_random_split_counts_follow_the_farm_fingerprint_rule(conn: duckdb.DuckDBPyConnection,
                                                              defs_dir: Path) -> None:
    defn = load_definition(defs_dir / "healthy.yaml")
    a = analyze_definition(defn, conn, as_of=AS_OF)
    per_user = conn.execute(f"SELECT user_id, count(*) FROM raw_data.transactions WHERE {WINDOW} "
                            f"GROUP BY user_id").fetchall()
    eval_users = [(u, n) for u, n in per_user if split_of(defn, u) == "eval"]
    assert a.split.strategy == "random"
    assert a.split.eval_users == len(eval_users) and a.split.eval_rows == sum(n for _, n in eval_users)
    assert a.split.train_rows + a.split.eval_rows == a.rows
    assert a.split.train_users + a.split.eval_users == a.users
    assert 0.1 < a.split.eval_share < 0.4


def test_time_split_counts(conn: duckdb.DuckDBPyConnection, defs_dir: Path) -> None:
    a = analyze_definition(load_definition(defs_dir / "healthy_time.yaml"), conn, as_of=AS_OF)
    cutoff = AS_OF + timedelta(days=1) - timedelta(days=14)
    expected = _one(conn, f"SELECT count(*) FROM raw_data.transactions WHERE {WINDOW} "
                          f"AND transaction_ts >= TIMESTAMPTZ '{cutoff} 00:00:00+00'")
    assert a.split.eval_rows == expected > 0
    assert a.split.train_rows == a.rows - expected


def test_healthy_definition_has_no_issues(conn: duckdb.DuckDBPyConnection, defs_dir: Path) -> None:
    a = analyze_definition(load_definition(defs_dir / "healthy.yaml"), conn, as_of=AS_OF)
    assert a.issues == [] and a.quality_score == 100
    assert "no quality issues" in a.render()


def test_sparse_definition_triggers_issues(conn: duckdb.DuckDBPyConnection, defs_dir: Path) -> None:
    a = analyze_definition(load_definition(defs_dir / "sparse.yaml"), conn, as_of=AS_OF)
    kinds = {(i.kind, i.severity) for i in a.issues}
    assert ("short_date_range", "high") in kinds
    assert ("low_engagement", "high") in kinds
    assert ("sparse_product_coverage", "medium") in kinds or ("sparse_product_coverage", "high") in kinds
    assert any(k == "cold_start" for k, _ in kinds)
    assert a.quality_score < 50
    assert [i.severity for i in a.issues] == sorted((i.severity for i in a.issues), key=["high", "medium"].index)
    payload = a.to_json_dict()
    assert json.loads(json.dumps(payload))["issues"][0]["severity"] == "high"


def _analysis(**overrides: Any) -> Analysis:
    base: dict[str, Any] = {
        "definition": "x", "source_file": None, "definition_sha256": "0" * 64, "as_of": None, "rows": 100_000,
        "users": 5000, "products": 4000, "first_timestamp": None, "last_timestamp": None, "range_days": 90.0,
        "median_per_user": 10.0, "mean_per_user": 20.0, "median_per_product": 10.0, "cold_start_user_share": 0.05,
        "cold_start_product_share": 0.05, "density": 0.01,
        "split": SplitEstimate("random", "r", 80_000, 20_000, 4000, 1000),
    }
    return Analysis(**{**base, **overrides})


def test_quality_rules_and_thresholds() -> None:
    assert quality_issues(_analysis()) == []
    sparse = quality_issues(_analysis(density=5e-5))
    assert [(i.kind, i.severity) for i in sparse] == [("extreme_sparsity", "high")]
    assert [(i.kind, i.severity) for i in quality_issues(_analysis(density=5e-4))] == [("extreme_sparsity", "medium")]
    assert [i.kind for i in quality_issues(_analysis(rows=0))] == ["empty"]
    one_sided = quality_issues(_analysis(split=SplitEstimate("random", "r", 100_000, 0, 5000, 0)))
    assert [(i.kind, i.severity) for i in one_sided] == [("empty_split", "high")]
    few = quality_issues(_analysis(users=50, products=10))
    assert sorted(i.message for i in few) == ["only 10 products (< 20)", "only 50 users (< 100)"]


def test_preview_rows_carry_roles(conn: duckdb.DuckDBPyConnection, defs_dir: Path) -> None:
    defn = load_definition(defs_dir / "healthy.yaml")
    p = preview_definition(defn, conn, 5, as_of=AS_OF)
    assert [(c.name, c.role) for c in p.columns] == [
        ("user_id", "user_id"), ("event_timestamp", "timestamp"), ("product_id", "product_id"),
        ("amount", "revenue"), ("segment", "feature"), ("returned", "label"),
    ]
    assert p.columns[4].source == "users.segment" and p.columns[1].type.startswith("TIMESTAMP")
    assert len(p.rows) == 5
    first_user = _one(conn, f"SELECT min(user_id) FROM raw_data.transactions WHERE {WINDOW}")
    assert p.rows[0][0] == first_user
    assert "event_timestamp [timestamp]" in p.render().splitlines()[0]
    with pytest.raises(AnalysisError, match="expected a positive limit"):
        preview_definition(defn, conn, 0)


def test_compare_two_to_five(conn: duckdb.DuckDBPyConnection, defs_dir: Path) -> None:
    healthy, sparse = (load_definition(defs_dir / f"{n}.yaml") for n in ("healthy", "sparse"))
    comparison = compare_definitions([healthy, sparse], conn, as_of=AS_OF)
    metrics = comparison.to_json_dict()["metrics"]
    assert comparison.to_json_dict()["definitions"] == ["healthy", "sparse"]
    assert metrics["rows"][0] > metrics["rows"][1] > 0
    assert metrics["quality_score"][0] == 100 > metrics["quality_score"][1]
    assert comparison.render().splitlines()[0].split() == ["metric", "healthy", "sparse"]
    with pytest.raises(AnalysisError, match="expected 2 to 5 definitions; got 1"):
        compare_definitions([healthy], conn)
    with pytest.raises(AnalysisError, match="expected 2 to 5 definitions; got 6"):
        compare_definitions([healthy] * 6, conn)
    with pytest.raises(AnalysisError, match="expected distinct definitions; got healthy more than once"):
        compare_definitions([healthy, healthy], conn)


def test_bad_definition_names_file_and_field(conn: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    columns = [*COLUMNS[:-1], {"table": "users", "column": "shoe_size"}]
    defn = _write(tmp_path, _spec("bad_column", columns=columns))
    with pytest.raises(DefinitionError) as info:
        analyze_definition(defn, conn, as_of=AS_OF)
    message = str(info.value)
    assert message.startswith(str(tmp_path / "bad_column.yaml")) and "columns[5].column" in message
    assert "shoe_size" in message and "\n" not in message


Cli = Callable[..., CliResult]


def test_cli_analyze_preview_compare(cli: Cli, warehouse: Path, defs_dir: Path) -> None:
    common = ["--definitions-dir", defs_dir, "--warehouse", warehouse, "--as-of", AS_OF.isoformat()]
    code, out, _ = cli("definitions", "analyze", "healthy", *common, "--json")
    assert code == 0 and json.loads(out)["rows"] > 0 and json.loads(out)["issues"] == []
    code, out, _ = cli("definitions", "analyze", "sparse", *common)
    assert code == 0 and "short_date_range" in out
    code, out, err = cli("definitions", "analyze", "empty", *common)
    assert code == 1 and "no rows" in err and str(defs_dir / "empty.yaml") in err
    code, out, _ = cli("definitions", "preview", "healthy", "--limit", 3, *common, "--json")
    assert code == 0 and len(json.loads(out)["rows"]) == 3
    code, out, _ = cli("definitions", "compare", "healthy", "sparse", *common)
    assert code == 0 and out.splitlines()[0].split() == ["metric", "healthy", "sparse"]


def test_cli_errors_are_one_line(cli: Cli, warehouse: Path, defs_dir: Path, tmp_path: Path) -> None:
    common = ["--definitions-dir", defs_dir, "--warehouse", warehouse]
    code, _, err = cli("definitions", "compare", "healthy", *common)
    assert code == 2 and "expected 2 to 5 definitions; got 1" in err and err.count("\n") == 1
    code, _, err = cli("definitions", "compare", *["healthy"] * 6, *common)
    assert code == 2 and "got 6" in err
    code, _, err = cli("definitions", "analyze", "nope", *common)
    assert code == 2 and "no definition named 'nope'" in err and err.count("\n") == 1
    code, _, err = cli("definitions", "analyze", "healthy", "--definitions-dir", defs_dir,
                       "--warehouse", tmp_path / "missing.duckdb")
    assert code == 2 and "fp warehouse seed" in err
    code, out, _ = cli("definitions", "analyze", "--help")
    assert code == 0 and "--as-of" in out


def test_parquet_tables_analyze_like_warehouse_tables(conn: duckdb.DuckDBPyConnection, defs_dir: Path,
                                                      tmp_path: Path) -> None:
    for table in ("transactions", "users"):
        conn.execute(f"COPY raw_data.{table} TO '{tmp_path / table}.parquet' (FORMAT parquet)")
    tables = [{"name": "transactions", "path": "transactions.parquet"}, {"name": "users", "path": "users.parquet"}]
    from_files = analyze_definition(_write(tmp_path, _spec("from_files", tables=tables)), conn, as_of=AS_OF)
    from_tables = analyze_definition(load_definition(defs_dir / "healthy.yaml"), conn, as_of=AS_OF)
    assert (from_files.rows, from_files.users, from_files.products, from_files.split) == (
        from_tables.rows, from_tables.users, from_tables.products, from_tables.split)
