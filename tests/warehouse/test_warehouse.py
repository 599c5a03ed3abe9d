"""The seeded sample warehouse: deterministic, skewed like real shop data, built atomically."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from feature_platform.warehouse.connection import WarehouseError, connect, warehouse_path
from feature_platform.warehouse.sample import TABLES, seed_sample_warehouse

END = date(2026, 3, 1)
SMALL = {"users": 120, "products": 30, "days": 30, "end_date": END}


def _tables(path: Path) -> dict[str, list[tuple[object, ...]]]:
    with duckdb.connect(str(path), read_only=True) as conn:
        return {t: conn.execute(f"SELECT * FROM raw_data.{t} ORDER BY ALL").fetchall() for t in TABLES}


def test_same_seed_same_rows_other_seed_other_rows(tmp_path: Path) -> None:
    a = seed_sample_warehouse(tmp_path / "a.duckdb", seed=3, **SMALL)  # type: ignore[arg-type]
    b = seed_sample_warehouse(tmp_path / "b.duckdb", seed=3, **SMALL)  # type: ignore[arg-type]
    c = seed_sample_warehouse(tmp_path / "c.duckdb", seed=4, **SMALL)  # type: ignore[arg-type]
    assert a == b
    assert _tables(tmp_path / "a.duckdb") == _tables(tmp_path / "b.duckdb")
    assert _tables(tmp_path / "a.duckdb")["transactions"] != _tables(tmp_path / "c.duckdb")["transactions"]
    assert c["users"] == 120 and c["products"] == 30


def _one(conn: duckdb.DuckDBPyConnection, sql: str) -> Any:
    row = conn.execute(sql).fetchone()
    assert row is not None
    return row[0]


def test_counts_window_and_skew(warehouse: Path) -> None:
    with connect(warehouse) as conn:
        counts = {t: _one(conn, f"SELECT count(*) FROM raw_data.{t}") for t in TABLES}
        lo = _one(conn, "SELECT min(transaction_ts) FROM raw_data.transactions")
        hi = _one(conn, "SELECT max(transaction_ts) FROM raw_data.transactions")
        per_user = [int(r[0]) for r in conn.execute(
            "SELECT count(t.user_id) FROM raw_data.users u LEFT JOIN raw_data.transactions t USING (user_id) "
            "GROUP BY u.user_id"
        ).fetchall()]
        top_share = _one(conn, "SELECT max(n) / sum(n) FROM "
                               "(SELECT count(*) AS n FROM raw_data.transactions GROUP BY product_id)")
        before_signup = _one(conn, "SELECT count(*) FROM raw_data.transactions t JOIN raw_data.users u USING (user_id) "
                                   "WHERE t.transaction_ts::DATE < u.signup_date")
        orphans = _one(conn, "SELECT count(*) FROM raw_data.transactions t ANTI JOIN raw_data.products p "
                             "USING (product_id)")
    assert counts["users"] == 300 and counts["products"] == 60 and counts["transactions"] > 3000
    end = datetime.fromisoformat("2026-06-01T00:00:00+00:00")
    assert isinstance(lo, datetime) and isinstance(hi, datetime)
    assert end - timedelta(days=90) <= lo and hi < end
    assert per_user.count(1) >= 5  # cold-start users
    assert 0 in per_user  # registered, never bought
    assert max(per_user) > 5 * sorted(per_user)[len(per_user) // 2]  # heavy tail
    assert top_share > 5 / 60  # Zipf: the top product far above a uniform share
    assert before_signup == 0 and orphans == 0


def test_failed_seed_leaves_nothing_and_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "w.duckdb"
    blocker = tmp_path / "parquet"
    blocker.write_text("a file where the parquet directory should go")
    with pytest.raises(FileExistsError):
        seed_sample_warehouse(target, parquet_dir=blocker, **SMALL)  # type: ignore[arg-type]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["parquet"]

    seed_sample_warehouse(target, seed=1, **SMALL)  # type: ignore[arg-type]
    before = target.read_bytes()
    with pytest.raises(FileExistsError):
        seed_sample_warehouse(target, seed=2, parquet_dir=blocker, **SMALL)  # type: ignore[arg-type]
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["parquet", "w.duckdb"]


def test_parquet_export_matches_tables(tmp_path: Path) -> None:
    counts = seed_sample_warehouse(tmp_path / "w.duckdb", parquet_dir=tmp_path / "pq", **SMALL)  # type: ignore[arg-type]
    with duckdb.connect() as conn:
        for table in TABLES:
            rows = conn.execute(f"SELECT count(*) FROM '{tmp_path / 'pq' / table}.parquet'").fetchone()
            assert rows == (counts[table],)
    assert sorted(p.name for p in (tmp_path / "pq").iterdir()) == [f"{t}.parquet" for t in sorted(TABLES)]


def test_bad_sizes_are_refused(tmp_path: Path) -> None:
    with pytest.raises(WarehouseError, match="users must be a positive integer, got 0"):
        seed_sample_warehouse(tmp_path / "w.duckdb", users=0)
    assert not any(tmp_path.iterdir())


def test_connect_missing_file_says_how_to_create_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.duckdb"
    with pytest.raises(WarehouseError) as info:
        connect(missing)
    message = str(info.value)
    assert str(missing) in message and "fp warehouse seed" in message and "\n" not in message
    assert not missing.exists()


def test_warehouse_path_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("FP_WAREHOUSE", raising=False)
    monkeypatch.setenv("FP_DATA_ROOT", str(tmp_path))
    assert warehouse_path() == tmp_path / "warehouse" / "warehouse.duckdb"
    monkeypatch.setenv("FP_WAREHOUSE", str(tmp_path / "elsewhere.duckdb"))
    assert warehouse_path() == tmp_path / "elsewhere.duckdb"


def test_connection_is_read_only_and_utc(warehouse: Path) -> None:
    with connect(warehouse) as conn:
        assert conn.execute("SELECT current_setting('TimeZone')").fetchone() == ("UTC",)
        with pytest.raises(duckdb.Error):
            conn.execute("DELETE FROM raw_data.users")
