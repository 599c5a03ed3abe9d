"""Warehouse introspection on the sample warehouse, checked against independent pandas computations."""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pandas as pd  # type: ignore[import-untyped]  # no pandas-stubs in the env
import pytest

from feature_platform.warehouse import introspect as wi
from feature_platform.warehouse.connection import WarehouseError, connect


@pytest.fixture
def conn(warehouse: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    with connect(warehouse) as c:
        yield c


def test_list_tables_counts_and_columns(conn: duckdb.DuckDBPyConnection) -> None:
    infos = {t.name: t for t in wi.list_tables(conn)}
    assert sorted(infos) == ["products", "transactions", "users"]
    for name, info in infos.items():
        assert info.row_count == conn.execute(f"SELECT count(*) FROM raw_data.{name}").fetchone()[0]  # type: ignore[index]
        assert info.column_count == len(conn.execute(f"DESCRIBE raw_data.{name}").fetchall())
        assert info.size_bytes > 0
    assert infos["transactions"].size_bytes >= infos["users"].size_bytes


def test_schema_suggests_roles_and_join_keys(conn: duckdb.DuckDBPyConnection) -> None:
    cols = {c.name: c for c in wi.table_schema(conn, "transactions")}
    assert [c.name for c in wi.table_schema(conn, "transactions")][:3] == ["transaction_id", "user_id", "product_id"]
    roles = {name: c.suggested_role for name, c in cols.items()}
    assert roles == {"transaction_id": None, "user_id": "user_id", "product_id": "product_id", "quantity": None,
                     "amount": "revenue", "transaction_ts": "timestamp", "channel": None, "returned": "label"}
    assert {n for n, c in cols.items() if c.join_key} == {"transaction_id", "user_id", "product_id"}
    assert not cols["user_id"].nullable and cols["amount"].nullable
    assert cols["transaction_ts"].type == "TIMESTAMP WITH TIME ZONE"


def test_suggest_columns_across_tables(conn: duckdb.DuckDBPyConnection) -> None:
    assert wi.suggest_columns(conn, ["transactions", "products"]) == {
        "user_id": ["transactions.user_id"], "product_id": ["transactions.product_id", "products.product_id"],
        "timestamp": ["transactions.transaction_ts"], "revenue": ["transactions.amount", "products.price"],
        "label": ["transactions.returned"],
    }


def test_role_patterns_respect_types() -> None:
    assert wi.suggest_role("customer_id", "VARCHAR") == "user_id"
    assert wi.suggest_role("created_at", "TIMESTAMP") == "timestamp"
    assert wi.suggest_role("created_at", "VARCHAR") is None  # a timestamp role needs a temporal column
    assert wi.suggest_role("total", "VARCHAR") is None
    assert wi.suggest_role("sku", "BIGINT") == "product_id"
    assert wi.suggest_role("country") is None


def test_unknown_table_names_it_and_lists_available(conn: duckdb.DuckDBPyConnection) -> None:
    with pytest.raises(WarehouseError, match=r"unknown table 'orders' in schema raw_data; "
                                             r"available: products, transactions, users"):
        wi.table_schema(conn, "orders")
    with pytest.raises(WarehouseError, match="has no column 'nope'"):
        wi.column_stats(conn, "users", ["nope"])


def test_column_stats_equal_pandas(conn: duckdb.DuckDBPyConnection) -> None:
    frame = conn.execute("SELECT * FROM raw_data.transactions").df()
    stats = {s.name: s for s in wi.column_stats(conn, "transactions")}
    assert list(stats) == list(frame.columns)
    for name, s in stats.items():
        col = frame[name]
        assert s.count == int(col.notna().sum()) and s.nulls == int(col.isna().sum())
        assert s.cardinality == col.nunique()
        assert math.isclose(s.uniqueness, col.nunique() / len(col), rel_tol=1e-5)
    for name in ("amount", "quantity", "user_id"):
        assert math.isclose(stats[name].mean, frame[name].mean(), rel_tol=1e-9)  # type: ignore[arg-type]
        assert math.isclose(stats[name].stddev, frame[name].std(ddof=1), rel_tol=1e-9)  # type: ignore[arg-type]
        assert stats[name].min == frame[name].min() and stats[name].max == frame[name].max()
    assert math.isclose(stats["returned"].mean, frame["returned"].mean(), rel_tol=1e-9)  # type: ignore[arg-type]
    ts = frame["transaction_ts"]
    assert stats["transaction_ts"].min == ts.min() and stats["transaction_ts"].max == ts.max()
    assert math.isclose(stats["transaction_ts"].range_days, (ts.max() - ts.min()) / pd.Timedelta(days=1))  # type: ignore[arg-type]
    assert stats["channel"].mean is None and stats["channel"].range_days is None
    assert stats["transaction_id"].uniqueness == 1.0


def test_column_stats_subset_and_json(conn: duckdb.DuckDBPyConnection) -> None:
    stats = wi.column_stats(conn, "users", ["signup_date", "segment"])
    assert [s.name for s in stats] == ["signup_date", "segment"]
    payload = stats[0].to_json_dict()
    assert isinstance(payload["min"], str) and payload["range_days"] > 0


def test_sample_values_are_the_most_frequent(conn: duckdb.DuckDBPyConnection) -> None:
    frame = conn.execute("SELECT segment FROM raw_data.users").df()
    expected = frame["segment"].value_counts()
    got = wi.sample_values(conn, "users", "segment", limit=2)
    assert [(v.value, v.count) for v in got] == list(expected.items())[:2]


def test_detect_joins_finds_foreign_keys(conn: duckdb.DuckDBPyConnection) -> None:
    joins = wi.detect_joins(conn, ["transactions", "users", "products"])
    top = {(j.left_table, j.left_column, j.right_table, j.right_column): j for j in joins if j.level == "high"}
    assert set(top) == {("transactions", "user_id", "users", "user_id"),
                        ("transactions", "product_id", "products", "product_id")}
    assert all(j.confidence >= 0.95 for j in top.values())
    assert "100.0% of" in top[("transactions", "user_id", "users", "user_id")].reason


def test_detect_joins_ranks_a_bogus_pair_low(warehouse: Path, tmp_path: Path) -> None:
    copy = tmp_path / "w.duckdb"
    shutil.copy(warehouse, copy)
    with duckdb.connect(str(copy)) as rw:
        rw.execute("CREATE TABLE raw_data.reviews AS SELECT range + 100000 AS product_id, 'u' || range AS user_id, "
                   "range AS review_id FROM range(50)")
    with connect(copy) as conn:
        joins = wi.detect_joins(conn, ["reviews", "products", "users"])
    by_pair = {(j.left_table, j.left_column, j.right_table): j for j in joins}
    bogus_product = by_pair[("reviews", "product_id", "products")]
    bogus_user = by_pair[("reviews", "user_id", "users")]
    assert bogus_product.level == "low" and bogus_product.confidence < 0.5
    assert bogus_user.level == "low" and "incompatible" in bogus_user.reason
    assert joins[-1].confidence <= bogus_product.confidence


def test_dry_run_ok_and_error(conn: duckdb.DuckDBPyConnection) -> None:
    ok = wi.dry_run(conn, "SELECT u.segment, sum(t.amount) FROM raw_data.transactions t "
                          "JOIN raw_data.users u USING (user_id) WHERE t.amount > 10 GROUP BY 1")
    rows = {t.name: t.row_count for t in wi.list_tables(conn)}
    assert ok.ok and ok.error is None
    assert ok.estimated_rows_scanned == rows["transactions"] + rows["users"]
    assert ok.estimated_rows_out is not None and 0 < ok.estimated_rows_out <= rows["transactions"]
    assert "raw_data.transactions" in ok.plan_text
    cte = wi.dry_run(conn, "WITH u AS MATERIALIZED (SELECT * FROM raw_data.users WHERE segment <> 'x') "
                           "SELECT count(*) FROM u a JOIN u b USING (user_id)")
    assert cte.ok and cte.estimated_rows_scanned == rows["users"]  # the CTE re-read is not a second scan
    bad = wi.dry_run(conn, "SELECT nope FROM raw_data.users")
    assert not bad.ok and bad.error is not None and '"nope"' in bad.error and "\n" not in bad.error
    assert bad.estimated_rows_scanned is None


def test_dry_run_never_executes_a_second_statement(warehouse: Path, tmp_path: Path) -> None:
    copy = tmp_path / "w.duckdb"
    shutil.copy(warehouse, copy)
    with connect(copy, read_only=False) as rw:
        result = wi.dry_run(rw, "SELECT 1; DROP TABLE raw_data.users")
        assert not result.ok and result.error == "expected exactly one SQL statement; got 2"
        assert "users" in wi.table_names(rw)
        syntax = wi.dry_run(rw, "SELEC 1")
        assert not syntax.ok and syntax.error is not None and "syntax error" in syntax.error
