"""Generated SQL: one logical query in three dialects, executed on DuckDB, split identically to split_of."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest
import sqlglot

from feature_platform.datasets.definitions.farmhash import farm_fingerprint
from feature_platform.datasets.definitions.model import DatasetDefinition, load_definition, load_definitions
from feature_platform.datasets.definitions.sql import (
    bucket_of,
    cutoff_date,
    eval_threshold,
    register_udfs,
    render_query,
    split_of,
    tfx_query_config,
)
from tests.datasets.test_definitions_model import BASE, changed, write

REPO = Path(__file__).resolve().parents[2]
AS_OF = date(2026, 5, 31)  # the session warehouse ends 2026-06-01 (tests/conftest.py)


@pytest.fixture
def conn(warehouse: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    from feature_platform.warehouse.connection import connect

    with connect(warehouse) as c:
        register_udfs(c)
        yield c


def rows(conn: duckdb.DuckDBPyConnection, sql: str) -> list[tuple[Any, ...]]:
    return conn.execute(sql).fetchall()


def examples() -> list[DatasetDefinition]:
    return load_definitions(REPO / "definitions")


@pytest.mark.parametrize("dialect", ["duckdb", "bigquery", "postgres"])
def test_every_rendering_parses_back(dialect: str) -> None:
    for d in examples():
        for split in (None, "train", "eval"):
            text = render_query(d, split=split, dialect=dialect)  # type: ignore[arg-type]
            assert text.startswith(f"-- dataset definition {d.name}")
            assert sqlglot.parse_one(text, read=dialect) is not None


def test_bigquery_text_carries_the_split_constants(tmp_path: Path) -> None:
    d = load_definition(write(tmp_path, BASE))
    eval_sql = render_query(d, split="eval", dialect="bigquery")
    train_sql = render_query(d, split="train", dialect="bigquery")
    predicate = "ABS(MOD(FARM_FINGERPRINT(CONCAT('s1', CAST(`user_id` AS STRING))), 1000000))"
    assert f"{predicate} < 200000" in eval_sql
    assert f"{predicate} >= 200000" in train_sql
    assert "DATE_SUB(CURRENT_DATE, INTERVAL '60' DAY)" in eval_sql
    assert "SUM(product_revenue) OVER" in eval_sql and "HAVING\n    COUNT(*) >= 2" in eval_sql
    assert "LEFT JOIN raw_data.`users` AS `users`" in eval_sql
    pg = render_query(d, split="eval", dialect="postgres")
    assert "requires farm_fingerprint(text) RETURNS bigint" in pg and "FARM_FINGERPRINT('s1' ||" in pg
    pinned = render_query(d, split="eval", dialect="bigquery", as_of=AS_OF)
    assert "CURRENT_DATE" not in pinned and "'2026-05-31'" in pinned


def test_tfx_config_has_train_and_eval_bigquery_queries(tmp_path: Path) -> None:
    d = load_definition(write(tmp_path, BASE))
    config = tfx_query_config(d)
    assert config["component"] == "BigQueryExampleGen"
    splits = config["input_config"]["splits"]
    assert [s["name"] for s in splits] == ["train", "eval"]
    assert splits[0]["pattern"] == render_query(d, split="train", dialect="bigquery")
    assert "FARM_FINGERPRINT" in splits[1]["pattern"]


def test_duckdb_train_and_eval_partition_the_rows(conn: duckdb.DuckDBPyConnection) -> None:
    for d in examples():
        full = Counter(rows(conn, render_query(d, as_of=AS_OF)))
        train = Counter(rows(conn, render_query(d, split="train", as_of=AS_OF)))
        evals = Counter(rows(conn, render_query(d, split="eval", as_of=AS_OF)))
        assert sum(full.values()) > 0, d.name
        assert train + evals == full, d.name
        assert not set(train) & set(evals), d.name


def test_local_split_of_matches_duckdb_for_every_key(tmp_path: Path, conn: duckdb.DuckDBPyConnection) -> None:
    d = load_definition(write(tmp_path, BASE))
    for split in ("train", "eval"):
        keys = {r[0] for r in rows(conn, render_query(d, split=split, as_of=AS_OF))}
        assert keys
        assert {split_of(d, k) for k in keys} == {split}
    # String keys too, and the signed/truncating MOD: keys whose fingerprint is negative included.
    texts = [f"user-{i}" for i in range(3000)]
    got = dict(conn.execute(
        "SELECT k, ABS(farm_fingerprint(CONCAT('salt', k)) % 1000000) FROM unnest(?) AS t(k)", [texts]).fetchall())
    assert got == {k: bucket_of("salt", k) for k in texts}
    negative = [k for k in texts if farm_fingerprint("salt" + k) < 0]
    assert negative and any(farm_fingerprint("salt" + k) % 1_000_000 != got[k] for k in negative)


def test_split_of_refuses_keys_sql_would_print_differently(tmp_path: Path) -> None:
    d = load_definition(write(tmp_path, BASE))
    with pytest.raises(TypeError):
        split_of(d, 1.5)
    with pytest.raises(TypeError):
        split_of(d, True)
    assert eval_threshold(0.2) == 200_000


def test_time_split_cuts_at_the_cutoff(tmp_path: Path, conn: duckdb.DuckDBPyConnection) -> None:
    d = load_definition(write(tmp_path, changed(split={"strategy": "time", "eval_days": 10})))
    cutoff = datetime.combine(cutoff_date(d, AS_OF), datetime.min.time(), tzinfo=UTC)
    assert cutoff == datetime(2026, 5, 22, tzinfo=UTC)
    train = rows(conn, render_query(d, split="train", as_of=AS_OF))
    evals = rows(conn, render_query(d, split="eval", as_of=AS_OF))
    assert train and evals
    assert all(r[1] < cutoff for r in train) and all(r[1] >= cutoff for r in evals)


def test_filters_do_what_they_say(tmp_path: Path, conn: duckdb.DuckDBPyConnection) -> None:
    start, end = datetime(2026, 4, 1, tzinfo=UTC), datetime(2026, 5, 1, tzinfo=UTC)
    top = load_definition(write(tmp_path, changed(filters={
        "date_range": {"start": "2026-04-01", "end": "2026-04-30"}, "top_products_percent": 50})))
    out = rows(conn, render_query(top))
    assert out and all(start <= r[1] < end for r in out)
    # Top 50%: the fewest best-selling products whose revenue reaches half the total (running total).
    revenue = dict(conn.execute(
        "SELECT product_id, SUM(amount) FROM raw_data.transactions WHERE transaction_ts >= ? AND transaction_ts < ? "
        "GROUP BY product_id", [start, end]).fetchall())
    ranked = sorted(revenue, key=lambda p: (-revenue[p], p))
    total, running, expected = sum(revenue.values()), 0.0, set()
    for p in ranked:
        if running >= 0.5 * total:
            break
        expected.add(p)
        running += revenue[p]
    assert {r[2] for r in out} == expected
    assert 0 < len(expected) < len(revenue)
    active = load_definition(write(tmp_path, changed(filters={"min_transactions_per_user": 5}), "active.yaml"))
    per_user = Counter(r[0] for r in rows(conn, render_query(active)))
    everyone = Counter(r[0] for r in rows(conn, "SELECT user_id FROM raw_data.transactions"))
    assert per_user and min(per_user.values()) >= 5
    assert set(per_user) == {u for u, n in everyone.items() if n >= 5}


def test_parquet_tables_read_with_read_parquet(tmp_path: Path, conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute(f"COPY raw_data.users TO '{tmp_path / 'users.parquet'}' (FORMAT parquet)")
    raw = changed(tables=[{"name": "transactions"}, {"name": "users", "path": "users.parquet"},
                          {"name": "products"}])
    d = load_definition(write(tmp_path, raw))
    text = render_query(d)
    assert "READ_PARQUET(" in text.upper() and str(tmp_path / "users.parquet") in text
    assert "raw_data.`users`" in render_query(d, dialect="bigquery")
    assert Counter(rows(conn, text)) == Counter(rows(conn, render_query(load_definition(write(tmp_path, BASE,
                                                                                                "wh.yaml")))))


def test_rows_with_a_null_split_key_are_left_out(tmp_path: Path) -> None:
    """FARM_FINGERPRINT(NULL) is NULL: such a row would be in neither split, so the query drops it up front."""
    d = load_definition(write(tmp_path, changed(split={"strategy": "random", "eval_fraction": 0.5,
                                                       "key": "segment"})))
    assert "NOT `users`.`segment` IS NULL" in render_query(d, dialect="bigquery")
    assert '"segment" IS NULL' not in render_query(load_definition(write(tmp_path, BASE, "b.yaml")))


def test_time_split_of_a_fixed_range_counts_back_from_its_end(tmp_path: Path) -> None:
    d = load_definition(write(tmp_path, changed(filters={"date_range": {"start": "2026-03-01", "end": "2026-03-31"}},
                                                split={"strategy": "time", "eval_days": 7})))
    assert cutoff_date(d, AS_OF) == date(2026, 3, 25)
    assert "CAST(DATE_SUB(CAST('2026-04-01' AS DATE), INTERVAL '7' DAY) AS TIMESTAMP)" in render_query(
        d, split="eval", dialect="bigquery")
