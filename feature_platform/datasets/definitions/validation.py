"""A dataset definition against the warehouse: tables, columns and role types exist, and DuckDB can plan the
query the definition renders to. The static rules of a definition stay in ``model``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from feature_platform.datasets.definitions.model import DatasetDefinition, DefinitionError
from feature_platform.datasets.definitions.sql import register_udfs, render_query
from feature_platform.warehouse.connection import WarehouseError, one_line
from feature_platform.warehouse.introspect import detect_joins, table_names, table_schema

if TYPE_CHECKING:
    import duckdb

    from feature_platform.warehouse.introspect import JoinSuggestion


# Warehouse types each role accepts (DuckDB type names, prefix match).
_ROLE_TYPES: dict[str, tuple[str, ...]] = {
    "user_id": ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER", "VARCHAR"),
    "product_id": ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER", "VARCHAR"),
    "timestamp": ("TIMESTAMP", "DATE"),
    "revenue": ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "FLOAT", "DOUBLE", "DECIMAL", "REAL"),
    "label": ("BOOLEAN", "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "FLOAT", "DOUBLE", "DECIMAL"),
    "feature": ("BOOLEAN", "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER",
                "FLOAT", "DOUBLE", "DECIMAL", "REAL", "VARCHAR", "DATE", "TIMESTAMP"),
}
_KEY_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER", "VARCHAR")


def _type_ok(duck_type: str, allowed: tuple[str, ...]) -> bool:
    t = duck_type.upper()
    return any(t == a or t.startswith(a + "(") or t.startswith(a + " ") for a in allowed)


def table_columns(defn: DatasetDefinition, conn: duckdb.DuckDBPyConnection) -> dict[str, dict[str, str]]:
    """Column → DuckDB type for every listed table; unknown tables raise DefinitionError naming the field."""
    out: dict[str, dict[str, str]] = {}
    for i, t in enumerate(defn.tables):
        path = defn.parquet_path(t)
        if path is not None:
            if not path.is_file():
                raise DefinitionError(f"{defn.where}: field tables[{i}].path: expected an existing Parquet file; "
                                      f"got {t.path!r} ({path} does not exist)")
            try:
                rows = conn.execute("DESCRIBE SELECT * FROM read_parquet(?)", [str(path)]).fetchall()
            except Exception as exc:  # noqa: BLE001 - duckdb raises many error types for a bad file
                raise DefinitionError(f"{defn.where}: field tables[{i}].path: expected a readable Parquet file; "
                                      f"got {t.path!r}: {one_line(exc)}") from None
            out[t.name] = {str(r[0]): str(r[1]) for r in rows}
            continue
        try:
            out[t.name] = {c.name: c.type for c in table_schema(conn, t.name)}
        except WarehouseError:
            known = ", ".join(table_names(conn)) or "none"
            raise DefinitionError(f"{defn.where}: field tables[{i}].name: expected a table in raw_data ({known}); "
                                  f"got {t.name!r}") from None
    return out


def join_suggestions(defn: DatasetDefinition, conn: duckdb.DuckDBPyConnection) -> list[JoinSuggestion]:
    """Detected foreign-key joins between the definition's warehouse tables that it does not declare yet."""
    tables = [t.name for t in defn.tables if t.path is None]
    if len(tables) < 2:
        return []
    declared = {frozenset({(j.left_table, j.left_column), (j.right_table, j.right_column)}) for j in defn.joins}
    return [s for s in detect_joins(conn, tables)
            if frozenset({(s.left_table, s.left_column), (s.right_table, s.right_column)}) not in declared]


def validate_against(defn: DatasetDefinition, conn: duckdb.DuckDBPyConnection) -> list[str]:
    """Problems against the warehouse (tables, columns, role types, the query itself); [] when valid."""
    w = defn.where
    try:
        schemas = table_columns(defn, conn)
    except DefinitionError as exc:
        return [str(exc)]
    out: list[str] = []

    def known(table: str) -> str:
        return ", ".join(schemas[table])

    for i, j in enumerate(defn.joins):
        for side in ("left", "right"):
            table, column = getattr(j, f"{side}_table"), getattr(j, f"{side}_column")
            if column not in schemas[table]:
                out.append(f"{w}: field joins[{i}].{side}_column: expected a column of {table} ({known(table)}); "
                           f"got {column!r}")
    for i, c in enumerate(defn.columns):
        columns = schemas[c.table]
        if c.column not in columns:
            out.append(f"{w}: field columns[{i}].column: expected a column of {c.table} ({known(c.table)}); "
                       f"got {c.column!r}")
            continue
        duck_type = columns[c.column]
        if not _type_ok(duck_type, _ROLE_TYPES[c.role]):
            out.append(f"{w}: field columns[{i}].role: role {c.role} expects a column of type "
                       f"{' | '.join(_ROLE_TYPES[c.role])}; got {c.role!r} on {c.table}.{c.column} ({duck_type})")
        elif defn.split.strategy == "random" and c.output_name == defn.split_key and not _type_ok(duck_type,
                                                                                                 _KEY_TYPES):
            out.append(f"{w}: field split.key: expected an integer or text column (hashed as its text); got "
                       f"{c.output_name!r} ({duck_type})")
    if out:
        return out
    try:
        query = render_query(defn, dialect="duckdb")
    except DefinitionError as exc:
        return [str(exc)]
    try:
        register_udfs(conn)
        conn.execute(f"EXPLAIN {query}")
    except Exception as exc:  # noqa: BLE001 - any planner error is a problem of the definition
        out.append(f"{w}: field (query): expected a query DuckDB can plan; got {one_line(exc)}")
    return out


def require_valid(defn: DatasetDefinition, conn: duckdb.DuckDBPyConnection) -> None:
    problems = validate_against(defn, conn)
    if problems:
        raise DefinitionError(problems[0])
