# Over 400 lines: one introspection API (tables, statistics, joins, dry runs) over shared DuckDB helpers.
"""Warehouse introspection: tables, schemas with ML-role hints, column statistics, joins, dry runs.

The replaced system asked BigQuery for these; here DuckDB answers them, and every aggregate is pushed
into DuckDB (one aggregate query per table for statistics, one per candidate pair for join containment)
so nothing but results crosses into Python.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from feature_platform.contracts.canonical import FieldsAsJson
from feature_platform.warehouse.connection import RAW_SCHEMA, WarehouseError, one_line, quote_identifier
from feature_platform.warehouse.render import finite_or_none

if TYPE_CHECKING:
    import duckdb

# Name patterns for ML-role suggestions, tried in this order (first match wins); names are lower-cased.
ML_COLUMN_PATTERNS: dict[str, tuple[str, ...]] = {
    "user_id": (r"^(user|customer|client|member|account|buyer)(_?id)$", r"^(uid|cust_id|customer_key|user_key)$"),
    "product_id": (r"^(product|item|sku|article|offer)(_?id)$", r"^(sku|pid|item_key|product_key)$"),
    "timestamp": (r"(^|_)(ts|timestamp|time|datetime)$", r"^(event|created|order|purchase|transaction)_(at|date|on)$",
                  r"^date$"),
    "revenue": (r"(^|_)(amount|revenue|sales|total|price|value|spend|gmv)$",),
    "label": (r"^(label|target|y|is_[a-z_]+|returned|churned|converted|clicked)$",),
}
# Columns that may carry a key another table references.
JOIN_KEY_PATTERNS: tuple[str, ...] = (r"^id$", r"_id$", r"_key$", r"_code$", r"^(sku|uid|pid)$")
# Column names the replaced system ranked first when suggesting joins.
HIGH_VALUE_JOIN_COLS: tuple[str, ...] = ("user_id", "customer_id", "product_id", "item_id", "order_id", "sku")

HIGH_CONFIDENCE, MEDIUM_CONFIDENCE = 0.8, 0.5


class UnknownTableError(WarehouseError):
    """The named table is not in the schema."""


class UnknownColumnError(WarehouseError):
    """The named column is not in the table."""

_NUMERIC = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT",
            "FLOAT", "DOUBLE", "REAL")
_INTEGER = _NUMERIC[:9]
_TEMPORAL = ("DATE", "TIMESTAMP", "TIMESTAMP WITH TIME ZONE", "TIMESTAMP_NS", "TIMESTAMP_MS", "TIMESTAMP_S")
_STRING = ("VARCHAR", "TEXT", "STRING", "UUID")


@dataclass(frozen=True)
class TableInfo(FieldsAsJson):
    name: str
    row_count: int
    size_bytes: int  # allocated storage blocks × block size (an estimate: small tables can share a block)
    column_count: int


@dataclass(frozen=True)
class ColumnInfo(FieldsAsJson):
    name: str
    type: str
    nullable: bool
    suggested_role: str | None
    join_key: bool


@dataclass(frozen=True)
class ColumnStats:
    name: str
    type: str
    count: int  # non-null values
    nulls: int
    cardinality: int  # exact distinct non-null values (a full scan, as the replaced system chose)
    uniqueness: float  # cardinality / count (1.0 = a candidate key)
    min: Any
    max: Any
    mean: float | None  # numeric columns (booleans as the share of true)
    stddev: float | None
    range_days: float | None  # temporal columns: max - min in days

    def to_json_dict(self) -> dict[str, Any]:
        return {k: _jsonable(v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class ValueCount:
    value: Any
    count: int

    def to_json_dict(self) -> dict[str, Any]:
        return {"value": _jsonable(self.value), "count": self.count}


@dataclass(frozen=True)
class JoinSuggestion(FieldsAsJson):
    left_table: str  # the referencing (many) side
    left_column: str
    right_table: str  # the referenced side, where the column is (nearly) unique
    right_column: str
    confidence: float
    level: str  # high | medium | low
    reason: str


@dataclass(frozen=True)
class DryRun(FieldsAsJson):
    ok: bool
    error: str | None
    estimated_rows_scanned: int | None  # rows of every scanned table (see dry_run)
    estimated_rows_out: int | None  # the planner's cardinality estimate for the result
    plan_text: str


def table_names(conn: duckdb.DuckDBPyConnection, schema: str = RAW_SCHEMA) -> list[str]:
    rows = conn.execute(
        "SELECT table_name FROM duckdb_tables() WHERE schema_name = ? AND database_name = current_database() "
        "UNION SELECT view_name FROM duckdb_views() WHERE schema_name = ? AND database_name = current_database() "
        "ORDER BY 1",
        [schema, schema],
    ).fetchall()
    return [str(r[0]) for r in rows]


def list_tables(conn: duckdb.DuckDBPyConnection, schema: str = RAW_SCHEMA) -> list[TableInfo]:
    """Every table of ``schema`` with its exact row count and an estimate of its size on disk."""
    block_size = _block_size(conn)
    infos: list[TableInfo] = []
    for name in table_names(conn, schema):
        ref = _ref(schema, name)
        row = conn.execute(f"SELECT count(*) FROM {ref}").fetchone()
        columns = len(_columns(conn, schema, name))
        infos.append(TableInfo(name, int(row[0]) if row else 0, _blocks(conn, ref) * block_size, columns))
    return infos


def table_schema(conn: duckdb.DuckDBPyConnection, table: str, schema: str = RAW_SCHEMA) -> list[ColumnInfo]:
    """Columns in order, each with a suggested ML role (by name) and whether it looks like a join key."""
    return [
        ColumnInfo(name, type_, nullable, suggest_role(name, type_), is_join_key(name, type_))
        for name, type_, nullable in _columns(conn, schema, _require_table(conn, schema, table))
    ]


def joinable_tables(conn: duckdb.DuckDBPyConnection, tables: Sequence[str], schema: str = RAW_SCHEMA) -> list[str]:
    """The tables to look for joins between: the named ones, or every table when none is named."""
    return list(tables) if tables else table_names(conn, schema)


def suggest_columns(
    conn: duckdb.DuckDBPyConnection, tables: Sequence[str], schema: str = RAW_SCHEMA
) -> dict[str, list[str]]:
    """For each ML role, the ``table.column`` candidates across ``tables`` (listed order): a starting mapping."""
    out: dict[str, list[str]] = {role: [] for role in ML_COLUMN_PATTERNS}
    for table in tables:
        name = _require_table(conn, schema, table)
        for column in table_schema(conn, name, schema):
            if column.suggested_role is not None:
                out[column.suggested_role].append(f"{name}.{column.name}")
    return out


def suggest_role(column: str, type_: str | None = None) -> str | None:
    """The ML role a column's name suggests (``ML_COLUMN_PATTERNS``), checked against its type when given."""
    lowered = column.lower()
    for role, patterns in ML_COLUMN_PATTERNS.items():
        fits = type_ is None or _role_fits_type(role, type_.upper())
        if fits and any(re.search(p, lowered) for p in patterns):
            return role
    return None


def is_join_key(column: str, type_: str) -> bool:
    base = type_.upper()
    return (base in _INTEGER or base in _STRING) and any(re.search(p, column.lower()) for p in JOIN_KEY_PATTERNS)


def column_stats(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    columns: Sequence[str] | None = None,
    schema: str = RAW_SCHEMA,
) -> list[ColumnStats]:
    """Statistics for ``columns`` (default: all) from ONE aggregate query over the table."""
    name = _require_table(conn, schema, table)
    known = {c: t for c, t, _ in _columns(conn, schema, name)}
    wanted = list(columns) if columns else list(known)
    for column in wanted:
        if column not in known:
            raise UnknownColumnError(f"table {schema}.{name} has no column {column!r}; columns: {', '.join(known)}")
    selects = ["count(*)"]
    for column in wanted:
        selects.extend(_stat_exprs(_quote(column), known[column].upper()))
    row = conn.execute(f"SELECT {', '.join(selects)} FROM {_ref(schema, name)}").fetchone()
    assert row is not None
    total = int(row[0])
    stats: list[ColumnStats] = []
    for i, column in enumerate(wanted):
        count, distinct, lo, hi, mean, stddev, days = row[1 + 7 * i: 8 + 7 * i]
        count = int(count)
        stats.append(ColumnStats(
            name=column, type=known[column], count=count, nulls=total - count, cardinality=int(distinct),
            uniqueness=int(distinct) / count if count else 0.0, min=lo, max=hi,
            mean=finite_or_none(mean), stddev=finite_or_none(stddev), range_days=finite_or_none(days),
        ))
    return stats


def sample_values(
    conn: duckdb.DuckDBPyConnection, table: str, column: str, limit: int = 10, schema: str = RAW_SCHEMA
) -> list[ValueCount]:
    """The most frequent distinct non-null values (ties by value), so the sample is reproducible."""
    name = _require_table(conn, schema, table)
    known = [c for c, _, _ in _columns(conn, schema, name)]
    if column not in known:
        raise UnknownColumnError(f"table {schema}.{name} has no column {column!r}; columns: {', '.join(known)}")
    col = _quote(column)
    rows = conn.execute(
        f"SELECT {col}, count(*) AS n FROM {_ref(schema, name)} WHERE {col} IS NOT NULL "
        f"GROUP BY {col} ORDER BY n DESC, {col} LIMIT ?",
        [int(limit)],
    ).fetchall()
    return [ValueCount(r[0], int(r[1])) for r in rows]


def detect_joins(
    conn: duckdb.DuckDBPyConnection, tables: Sequence[str], schema: str = RAW_SCHEMA
) -> list[JoinSuggestion]:
    """Foreign-key suggestions between ``tables``, best first.

    Candidates are key-like columns whose names relate (equal, or ``<table>_id`` ↔ ``id``). Structure
    scores name match (0.4 equal / 0.3 derived) + type compatibility (0.3) + a unique right column (0.3);
    the measured containment (share of distinct left values found on the right) then scales it:
    ``confidence = structure × (0.2 + 0.8 × containment)``, so names alone never reach ``medium``
    (0.5) and a pair whose values do not overlap stays ``low``. Each pair is kept in its better direction.
    """
    if len(tables) == 1:
        raise WarehouseError(f"joins: field tables: expected at least two tables (or none for all tables); got "
                             f"{len(tables)}")
    names = [_require_table(conn, schema, t) for t in dict.fromkeys(tables)]
    cols = {t: [(c, ty.upper()) for c, ty, _ in _columns(conn, schema, t)] for t in names}
    best: dict[frozenset[tuple[str, str]], JoinSuggestion] = {}
    for left in names:
        for right in names:
            if left == right:
                continue
            for lcol, ltype in cols[left]:
                for rcol, rtype in cols[right]:
                    name_score, name_reason = _name_match(left, lcol, right, rcol)
                    if not name_score or not (is_join_key(lcol, ltype) or is_join_key(rcol, rtype)):
                        continue
                    suggestion = _score(conn, schema, (left, lcol, ltype), (right, rcol, rtype), name_score,
                                        name_reason)
                    key = frozenset({(left, lcol), (right, rcol)})
                    if key not in best or suggestion.confidence > best[key].confidence:
                        best[key] = suggestion
    high_value = set(HIGH_VALUE_JOIN_COLS)
    return sorted(best.values(), key=lambda s: (-s.confidence, s.left_column not in high_value, s.left_table,
                                                 s.left_column, s.right_table, s.right_column))


def dry_run(conn: duckdb.DuckDBPyConnection, sql: str) -> DryRun:
    """Validate ``sql`` without running it, via ``EXPLAIN``.

    ``estimated_rows_scanned`` sums, over the plan's base-table scans, the row count of each scanned
    table (DuckDB, like BigQuery on-demand, reads whole columns; zone maps may skip row groups, so this
    is an upper bound); scans of files or table functions contribute the planner's estimate instead, and
    re-reads of CTEs are not counted (a query DuckDB answers from metadata, like ``count(*)``, scans 0).
    ``estimated_rows_out`` is the planner's estimated cardinality at the plan root.
    """
    import duckdb

    try:
        statements = len(conn.extract_statements(sql))
        if statements != 1:  # EXPLAIN covers only the first; execute() would run the rest for real
            return DryRun(False, f"expected exactly one SQL statement; got {statements}", None, None, "")
        rows = conn.execute(f"EXPLAIN (FORMAT JSON) {sql}").fetchall()
        text_rows = conn.execute(f"EXPLAIN {sql}").fetchall()
    except duckdb.Error as exc:  # the LINE/caret context would point into our EXPLAIN prefix
        return DryRun(False, one_line(exc).split(" LINE ")[0], None, None, "")
    plan = json.loads(rows[0][1]) if rows else []
    scanned = 0
    for node in _walk(plan):  # base reads only: CTE, delim and column-data scans re-read in-memory results
        info = node.get("extra_info")
        if not isinstance(info, dict):
            continue
        if info.get("Table"):
            counted = _table_rows(conn, str(info["Table"]))
            scanned += counted if counted is not None else _cardinality(info)
        elif info.get("Function"):  # read_parquet(...), read_csv(...): the planner's estimate
            scanned += _cardinality(info)
    root = _cardinality(plan[0].get("extra_info") or {}) if plan else None
    return DryRun(True, None, scanned, root, "\n".join(str(r[1]) for r in text_rows))


# --- helpers ---------------------------------------------------------------------------------------------


def _columns(conn: duckdb.DuckDBPyConnection, schema: str, table: str) -> list[tuple[str, str, bool]]:
    rows = conn.execute(
        "SELECT column_name, data_type, is_nullable FROM duckdb_columns() "
        "WHERE schema_name = ? AND table_name = ? AND database_name = current_database() ORDER BY column_index",
        [schema, table],
    ).fetchall()
    return [(str(r[0]), str(r[1]), bool(r[2])) for r in rows]


def _require_table(conn: duckdb.DuckDBPyConnection, schema: str, table: str) -> str:
    names = table_names(conn, schema)
    short = table.split(".")[-1] if table.startswith(f"{schema}.") else table
    if short not in names:
        raise UnknownTableError(
            f"unknown table {table!r} in schema {schema}; available: {', '.join(names) or '(none)'}"
        )
    return short


def _ref(schema: str, table: str) -> str:
    return f"{_quote(schema)}.{_quote(table)}"


def _quote(identifier: str) -> str:
    return quote_identifier(identifier)


def _block_size(conn: duckdb.DuckDBPyConnection) -> int:
    row = conn.execute("SELECT block_size FROM pragma_database_size() WHERE database_name = current_database()")
    got = row.fetchone()
    return int(got[0]) if got and got[0] else 262_144


def _blocks(conn: duckdb.DuckDBPyConnection, ref: str) -> int:
    import duckdb

    try:
        row = conn.execute(
            "SELECT count(DISTINCT b) FROM (SELECT block_id AS b FROM pragma_storage_info(?) WHERE block_id >= 0 "
            "UNION ALL SELECT unnest(additional_block_ids) FROM pragma_storage_info(?))",
            [ref, ref],
        ).fetchone()
    except duckdb.Error:  # views have no storage
        return 0
    return int(row[0]) if row else 0


def _stat_exprs(col: str, type_: str) -> list[str]:
    """Seven expressions per column: count, distinct, min, max, mean, stddev, range in days."""
    if type_ == "BOOLEAN":
        mean, stddev = f"avg({col}::INTEGER)", f"stddev_samp({col}::INTEGER)"
    elif type_ in _NUMERIC or type_.startswith("DECIMAL"):
        mean, stddev = f"avg({col})::DOUBLE", f"stddev_samp({col})::DOUBLE"
    else:
        mean = stddev = "NULL"
    days = f"epoch(max({col})::TIMESTAMP - min({col})::TIMESTAMP) / 86400.0" if type_ in _TEMPORAL else "NULL"
    if type_ in ("BLOB",) or type_.endswith("[]") or type_.startswith(("STRUCT", "MAP", "LIST")):
        lo = hi = "NULL"
    else:
        lo, hi = f"min({col})", f"max({col})"
    return [f"count({col})", f"count(DISTINCT {col})", lo, hi, mean, stddev, days]


def _name_match(left: str, lcol: str, right: str, rcol: str) -> tuple[float, str]:
    lc, rc = lcol.lower(), rcol.lower()
    if lc == rc:
        return 0.4, f"same column name {lcol}"
    singular = right.lower().rstrip("s")
    if rc == "id" and lc in (f"{singular}_id", f"{right.lower()}_id"):
        return 0.3, f"{lcol} names table {right}"
    singular_left = left.lower().rstrip("s")
    if lc == "id" and rc in (f"{singular_left}_id", f"{left.lower()}_id"):
        return 0.3, f"{rcol} names table {left}"
    return 0.0, ""


def _compatible(ltype: str, rtype: str) -> bool:
    if ltype == rtype:
        return True
    return (ltype in _INTEGER and rtype in _INTEGER) or (ltype in _STRING and rtype in _STRING)


def _score(
    conn: duckdb.DuckDBPyConnection,
    schema: str,
    left: tuple[str, str, str],
    right: tuple[str, str, str],
    name_score: float,
    name_reason: str,
) -> JoinSuggestion:
    (lt, lc, ltype), (rt, rc, rtype) = left, right
    compatible = _compatible(ltype, rtype)
    lexpr, rexpr = (_quote(lc), _quote(rc)) if compatible else (f"{_quote(lc)}::VARCHAR", f"{_quote(rc)}::VARCHAR")
    row = conn.execute(
        f"WITH l AS (SELECT DISTINCT {lexpr} AS v FROM {_ref(schema, lt)} WHERE {lexpr} IS NOT NULL), "
        f"r AS (SELECT {rexpr} AS v FROM {_ref(schema, rt)} WHERE {rexpr} IS NOT NULL), "
        f"rk AS (SELECT count(*) AS n, count(DISTINCT v) AS d FROM r) "
        f"SELECT (SELECT count(*) FROM l), (SELECT count(*) FROM l SEMI JOIN (SELECT DISTINCT v FROM r) r2 "
        f"ON l.v = r2.v), (SELECT n FROM rk), (SELECT d FROM rk)"
    ).fetchone()
    assert row is not None
    left_distinct, found, right_rows, right_distinct = (int(x) for x in row)
    containment = found / left_distinct if left_distinct else 0.0
    right_unique = right_rows > 0 and right_distinct == right_rows
    structure = name_score + (0.3 if compatible else 0.0) + (0.3 if right_unique else 0.0)
    confidence = round(min(structure * (0.2 + 0.8 * containment), 1.0), 3)
    level = "high" if confidence >= HIGH_CONFIDENCE else "medium" if confidence >= MEDIUM_CONFIDENCE else "low"
    reasons = [
        name_reason,
        f"types {ltype}/{rtype} {'compatible' if compatible else 'incompatible'}",
        f"{containment:.1%} of {left_distinct} distinct {lt}.{lc} values found in {rt}.{rc}",
        f"{rt}.{rc} {'is unique' if right_unique else 'is not unique'}",
    ]
    return JoinSuggestion(lt, lc, rt, rc, confidence, level, "; ".join(reasons))


def _role_fits_type(role: str, type_: str) -> bool:
    if role == "timestamp":
        return type_ in _TEMPORAL
    if role == "revenue":
        return type_ in _NUMERIC or type_.startswith("DECIMAL")
    if role in ("user_id", "product_id"):
        return type_ in _INTEGER or type_ in _STRING
    return True


def _walk(nodes: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    stack = list(nodes) if isinstance(nodes, list) else [nodes]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            out.append(node)
            stack.extend(node.get("children") or [])
    return out


def _cardinality(info: Any) -> int:
    if isinstance(info, dict):
        value = info.get("Estimated Cardinality")
        if value is not None and str(value).replace(",", "").isdigit():
            return int(str(value).replace(",", ""))
    return 0


def _table_rows(conn: duckdb.DuckDBPyConnection, qualified: str) -> int | None:
    parts = qualified.split(".")
    if len(parts) < 2:
        return None
    database, schema, table = ([None, *parts] if len(parts) == 2 else parts)[-3:]
    row = conn.execute(
        "SELECT estimated_size FROM duckdb_tables() WHERE schema_name = ? AND table_name = ? "
        "AND database_name = coalesce(?, current_database())",
        [schema, table, database],
    ).fetchone()
    return int(row[0]) if row else None


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    return str(value)
