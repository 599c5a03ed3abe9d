"""`fp warehouse seed|tables|schema|stats|samples|joins|explain`: the local DuckDB warehouse.

What the replaced system's BigQuery service answered (tables, schemas with ML-role hints, column
statistics, sample values, join suggestions, dry runs), asked of the local warehouse instead.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from feature_platform.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    UsageError,
    domain_errors,
    iso_date,
    positive_int,
    print_json,
)

if TYPE_CHECKING:
    import duckdb

    from feature_platform.cli.common import Commands


def register(groups: Commands) -> None:
    cmds = groups.group(
        "warehouse", "{seed,tables,schema,stats,samples,joins,explain}",
        help="seed and inspect the local DuckDB warehouse (schema raw_data)",
        description="Seed and inspect the local DuckDB warehouse. Default file: $FP_WAREHOUSE, else "
                    "$FP_DATA_ROOT/warehouse/warehouse.duckdb.",
    )

    seed = cmds.add("seed", _seed,
                    help="write a seeded sample e-commerce warehouse (users, products, transactions)")
    seed.add_argument("--path", type=Path, help="target DuckDB file (default: the warehouse path)")
    seed.add_argument("--users", type=positive_int, default=2000, help="number of users (default 2000)")
    seed.add_argument("--products", type=positive_int, default=300, help="number of products (default 300)")
    seed.add_argument("--days", type=positive_int, default=180, help="days of transaction history (default 180)")
    seed.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    seed.add_argument("--end-date", type=iso_date, help="exclusive end of the history, YYYY-MM-DD (default today UTC)")
    seed.add_argument("--parquet-dir", type=Path, help="also write <dir>/<table>.parquet for every table")
    seed.add_argument("--force", action="store_true", help="replace an existing warehouse file")
    seed.add_argument("--json", action="store_true", help="print rows per table as JSON")

    tables = cmds.add("tables", _tables, help="tables of raw_data with row count, size and column count")
    schema = cmds.add("schema", _schema, help="columns of a table with suggested ML roles and join keys")
    schema.add_argument("table", help="warehouse table name")
    stats = cmds.add("stats", _stats, help="column statistics of a table (one full-scan aggregate query)")
    stats.add_argument("table", help="warehouse table name")
    stats.add_argument("--columns", help="comma-separated columns (default: all)")
    samples = cmds.add("samples", _samples, help="most frequent values of a column")
    samples.add_argument("table", help="warehouse table name")
    samples.add_argument("column", help="column of TABLE to sample distinct values from")
    samples.add_argument("--limit", type=positive_int, default=10, help="how many values (default 10)")
    joins = cmds.add("joins", _joins, help="suggest foreign-key joins between tables (default: all tables)")
    joins.add_argument("tables", nargs="*", metavar="TABLE", help="tables to consider (default: all)")
    explain = cmds.add(
        "explain", _explain,
        help="validate SQL by a dry run (EXPLAIN) and estimate rows scanned; exit 1 if invalid",
    )
    explain.add_argument("sql", help="the query, or @file.sql")
    for parser in (tables, schema, stats, samples, joins, explain):
        parser.add_argument("--warehouse", type=Path, help="DuckDB file (default: $FP_WAREHOUSE or the data root's)")
        parser.add_argument("--json", action="store_true", help="print the result as JSON")


def _open(args: argparse.Namespace) -> duckdb.DuckDBPyConnection:
    from feature_platform.warehouse.connection import connect

    return connect(args.warehouse)


def _emit(args: argparse.Namespace, payload: Any, text: str) -> None:
    if args.json:
        print_json(payload)
    else:
        print(text)


def _seed(args: argparse.Namespace) -> int:
    from feature_platform.warehouse.connection import WarehouseError, warehouse_path
    from feature_platform.warehouse.render import aligned_table
    from feature_platform.warehouse.sample import seed_sample_warehouse

    target = args.path or warehouse_path()
    if target.exists() and not args.force:
        print(f"fp: {target} already exists; pass --force to replace it", file=sys.stderr)
        return EXIT_FAILED
    started = time.perf_counter()
    try:
        counts = seed_sample_warehouse(target, users=args.users, products=args.products, days=args.days,
                                       seed=args.seed, end_date=args.end_date, parquet_dir=args.parquet_dir)
    except (WarehouseError, OSError) as exc:
        raise UsageError(f"seed {target}: {exc}") from None
    seconds = time.perf_counter() - started
    text = f"wrote {target} in {seconds:.2f}s\n" + aligned_table(["table", "rows"], list(counts.items()))
    _emit(args, {"path": str(target), "rows": counts, "seconds": round(seconds, 3)}, text)
    return EXIT_OK


def _report(fn: Callable[[], tuple[Any, str]], args: argparse.Namespace) -> int:
    """Run ``fn`` and print its result: the payload as JSON with --json, else the text."""
    payload, text = fn()
    _emit(args, payload, text)
    return EXIT_OK


def _tables(args: argparse.Namespace) -> int:
    from feature_platform.warehouse.introspect import list_tables
    from feature_platform.warehouse.render import aligned_table

    def run() -> tuple[Any, str]:
        with _open(args) as conn:
            infos = list_tables(conn)
        rows = [[t.name, t.row_count, t.size_bytes, t.column_count] for t in infos]
        return [t.to_json_dict() for t in infos], aligned_table(["table", "rows", "size_bytes~", "columns"], rows)

    return _report(run, args)


def _schema(args: argparse.Namespace) -> int:
    from feature_platform.warehouse.introspect import table_schema
    from feature_platform.warehouse.render import aligned_table

    def run() -> tuple[Any, str]:
        with _open(args) as conn:
            cols = table_schema(conn, args.table)
        rows = [[c.name, c.type, "yes" if c.nullable else "no", c.suggested_role, "yes" if c.join_key else ""]
                for c in cols]
        text = aligned_table(["column", "type", "nullable", "suggested_role", "join_key"], rows)
        return [c.to_json_dict() for c in cols], text

    return _report(run, args)


def _stats(args: argparse.Namespace) -> int:
    from feature_platform.warehouse.introspect import column_stats
    from feature_platform.warehouse.render import aligned_table

    columns = [c.strip() for c in args.columns.split(",") if c.strip()] if args.columns else None

    def run() -> tuple[Any, str]:
        with _open(args) as conn:
            stats = column_stats(conn, args.table, columns)
        rows = [[s.name, s.type, s.count, s.nulls, s.cardinality, s.uniqueness, s.min, s.max, s.mean, s.stddev,
                 s.range_days] for s in stats]
        headers = ["column", "type", "count", "nulls", "distinct", "uniqueness", "min", "max", "mean", "stddev",
                   "range_days"]
        return [s.to_json_dict() for s in stats], aligned_table(headers, rows)

    return _report(run, args)


def _samples(args: argparse.Namespace) -> int:
    from feature_platform.warehouse.introspect import sample_values
    from feature_platform.warehouse.render import aligned_table

    def run() -> tuple[Any, str]:
        with _open(args) as conn:
            values = sample_values(conn, args.table, args.column, args.limit)
        rows = [[v.value, v.count] for v in values]
        return [v.to_json_dict() for v in values], aligned_table(["value", "count"], rows)

    return _report(run, args)


def _joins(args: argparse.Namespace) -> int:
    from feature_platform.warehouse.introspect import detect_joins, joinable_tables
    from feature_platform.warehouse.render import aligned_table

    def run() -> tuple[Any, str]:
        with _open(args) as conn:
            found = detect_joins(conn, joinable_tables(conn, args.tables))
        rows = [[f"{j.left_table}.{j.left_column}", f"{j.right_table}.{j.right_column}", j.confidence, j.level,
                 j.reason] for j in found]
        headers = ["left", "right", "confidence", "level", "reason"]
        text = aligned_table(headers, rows) if found else "no candidate joins"
        return [j.to_json_dict() for j in found], text

    return _report(run, args)


def _explain(args: argparse.Namespace) -> int:
    from feature_platform.warehouse.introspect import dry_run

    sql = args.sql
    if sql.startswith("@"):
        from feature_platform.contracts.safe_read import InputError, read_input_text

        with domain_errors(usage=InputError):
            sql = read_input_text(sql[1:], what=f"explain {sql}")
    with _open(args) as conn:
        if "farm_fingerprint" in sql.lower():
            _register_udfs(conn)
        result = dry_run(conn, sql)
    if args.json:
        print_json(result.to_json_dict())
    elif result.ok:
        print(f"valid; estimated rows scanned {result.estimated_rows_scanned:,}, "
              f"estimated result rows {result.estimated_rows_out:,}\n{result.plan_text}")
    else:
        print(f"fp: invalid query: {result.error}", file=sys.stderr)
    return EXIT_OK if result.ok else EXIT_FAILED


def _register_udfs(conn: duckdb.DuckDBPyConnection) -> None:
    """Definition queries with a random split call ``farm_fingerprint``; register it when it is available."""
    try:
        from feature_platform.datasets.definitions.sql import register_udfs
    except ImportError:
        return
    register_udfs(conn)
