"""`fp warehouse …` end to end in process: tables, --json, exit codes and one-line errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import duckdb

from tests.conftest import CliResult

Cli = Callable[..., CliResult]


def test_seed_writes_and_refuses_to_overwrite(cli: Cli, tmp_path: Path) -> None:
    target = tmp_path / "wh" / "w.duckdb"
    args = ["warehouse", "seed", "--path", target, "--users", 50, "--products", 10, "--days", 10,
            "--end-date", "2026-01-01", "--json"]
    code, out, _ = cli(*args)
    assert code == 0
    payload = json.loads(out)
    with duckdb.connect(str(target), read_only=True) as conn:
        assert payload["rows"]["users"] == 50
        rows = conn.execute("SELECT count(*) FROM raw_data.transactions").fetchone()
        assert (payload["rows"]["transactions"],) == rows
    before = target.read_bytes()
    code, _, err = cli(*args)
    assert code == 1 and "already exists; pass --force" in err
    assert target.read_bytes() == before
    code, _, _ = cli(*args, "--force", "--seed", 5)
    assert code == 0


def test_seed_rejects_bad_numbers(cli: Cli, tmp_path: Path) -> None:
    code, _, err = cli("warehouse", "seed", "--path", tmp_path / "w.duckdb", "--users", 0)
    assert code == 2 and "expected a positive integer" in err
    assert not any(tmp_path.iterdir())


def test_tables_schema_stats_samples(cli: Cli, warehouse: Path) -> None:
    code, out, _ = cli("warehouse", "tables", "--warehouse", warehouse)
    assert code == 0 and out.splitlines()[0].split() == ["table", "rows", "size_bytes~", "columns"]
    assert [line.split()[0] for line in out.splitlines()[2:]] == ["products", "transactions", "users"]
    code, out, _ = cli("warehouse", "schema", "transactions", "--warehouse", warehouse, "--json")
    roles = {c["name"]: c["suggested_role"] for c in json.loads(out)}
    assert code == 0 and roles["transaction_ts"] == "timestamp" and roles["amount"] == "revenue"
    code, out, _ = cli("warehouse", "stats", "users", "--columns", "user_id,segment", "--warehouse", warehouse,
                       "--json")
    stats = json.loads(out)
    assert code == 0 and [s["name"] for s in stats] == ["user_id", "segment"]
    assert stats[0]["cardinality"] == 300 and stats[0]["uniqueness"] == 1.0
    code, out, _ = cli("warehouse", "samples", "transactions", "channel", "--limit", 2, "--warehouse", warehouse)
    assert code == 0 and len(out.splitlines()) == 4 and out.splitlines()[2].startswith("web")


def test_joins_and_explain(cli: Cli, warehouse: Path) -> None:
    code, out, _ = cli("warehouse", "joins", "--warehouse", warehouse, "--json")
    pairs = {(j["left_table"], j["left_column"], j["right_table"]) for j in json.loads(out) if j["level"] == "high"}
    assert code == 0 and pairs == {("transactions", "user_id", "users"), ("transactions", "product_id", "products")}
    sql = "SELECT count(*) FROM raw_data.users WHERE segment = 'smb'"  # plain count(*) is answered from metadata
    code, out, _ = cli("warehouse", "explain", sql, "--warehouse", warehouse, "--json")
    assert code == 0 and json.loads(out)["estimated_rows_scanned"] == 300
    code, out, err = cli("warehouse", "explain", "SELECT nope FROM raw_data.users", "--warehouse", warehouse)
    assert code == 1 and err.startswith("fp: invalid query:") and '"nope"' in err and err.count("\n") == 1


def test_usage_errors_are_one_line(cli: Cli, warehouse: Path, tmp_path: Path) -> None:
    code, _, err = cli("warehouse", "schema", "orders", "--warehouse", warehouse)
    assert code == 2 and "unknown table 'orders'" in err and "available: products, transactions, users" in err
    assert err.count("\n") == 1
    missing = tmp_path / "missing.duckdb"
    code, _, err = cli("warehouse", "tables", "--warehouse", missing)
    assert code == 2 and str(missing) in err and "fp warehouse seed" in err and not missing.exists()
    code, _, err = cli("warehouse", "joins", "users", "--warehouse", warehouse)
    assert code == 2 and "at least two tables" in err
    code, _, err = cli("warehouse", "stats", "users", "--columns", "nope", "--warehouse", warehouse)
    assert code == 2 and "has no column 'nope'" in err
    code, out, _ = cli("warehouse", "stats", "--help")
    assert code == 0 and "--columns" in out
