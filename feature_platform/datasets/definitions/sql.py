# Over 400 lines: one rendering of a definition for three dialects; the AST rules belong together.
"""One logical query per definition, rendered for DuckDB (run here), BigQuery and PostgreSQL with sqlglot.

The query is written once, in BigQuery's dialect (the system it replaces ran there, so BigQuery's
semantics are the reference: FARM_FINGERPRINT, MOD truncating toward zero, DATE_SUB), parsed into one
sqlglot tree and transpiled. Shape:

    base           the selected columns of the joined tables, aliased to their output names,
                   timestamp as TIMESTAMP (UTC), entity/timestamp not null, date range applied
    product_revenue, top_products   (top N% products: running total of revenue by product, window function)
    active_users   users with >= N rows among the kept products (HAVING COUNT(*) >= N)
    final SELECT   dataset columns in order, kept products and users, and the split predicate

Random split: eval iff ``ABS(MOD(FARM_FINGERPRINT(CONCAT(salt, CAST(key AS STRING))), 1000000)) <
round(eval_fraction * 1e6)``. ``ABS`` after ``MOD`` never overflows, and |trunc-mod(h, m)| == |h| mod m,
so Python's floor ``%`` on ``abs(h)`` gives the same bucket (``split_of``). DuckDB runs the same predicate
through a Python UDF ``farm_fingerprint`` (``register_udfs``); PostgreSQL needs a ``farm_fingerprint(text)
RETURNS bigint`` function installed (the rendered header says so).

No text from a definition is formatted into SQL: the template holds placeholder tokens, and names enter the
tree as quoted identifier nodes, strings as literal nodes (``_Slots``). Every rendering is parsed back and
checked against a whitelist (``check_query_sql``) before it is returned, and DuckDB runs it sandboxed
(``open_warehouse``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from feature_platform.datasets.definitions.farmhash import farm_fingerprint, farm_fingerprints
from feature_platform.datasets.definitions.model import (
    IDENTIFIER,
    DatasetDefinition,
    DefinitionError,
    require_plain_identifiers,
)
from feature_platform.warehouse.connection import RAW_SCHEMA

if TYPE_CHECKING:
    import duckdb
    from sqlglot import exp

Dialect = Literal["duckdb", "bigquery", "postgres"]
SplitName = Literal["train", "eval"]
DIALECTS: tuple[str, ...] = ("duckdb", "bigquery", "postgres")
BUCKETS = 1_000_000
UDF_NAME = "farm_fingerprint"


def eval_threshold(eval_fraction: float) -> int:
    """Buckets [0, threshold) of 1,000,000 go to eval."""
    return round(eval_fraction * BUCKETS)


def bucket_of(salt: str, key: object) -> int:
    """The bucket the SQL computes: ABS(MOD(FARM_FINGERPRINT(CONCAT(salt, CAST(key AS STRING))), 1000000))."""
    if isinstance(key, bool) or not isinstance(key, (int, str)):
        raise TypeError(f"split key must be an integer or a string (hashed as its SQL text); got {type(key).__name__}")
    return abs(farm_fingerprint(salt + str(key))) % BUCKETS


def split_of(defn: DatasetDefinition, key: object) -> SplitName:
    """Where the emitted SQL puts ``key`` (random split only)."""
    s = defn.split
    if s.strategy != "random" or s.eval_fraction is None:
        raise DefinitionError(f"{defn.where}: field split.strategy: expected random for a per-key split; "
                              f"got {s.strategy!r}")
    return "eval" if bucket_of(s.salt, key) < eval_threshold(s.eval_fraction) else "train"


def _day(as_of: date | None) -> str:
    return "CURRENT_DATE()" if as_of is None else f"DATE '{as_of.isoformat()}'"


def time_cutoff_anchor(defn: DatasetDefinition, as_of: date | None) -> str:
    """The day the last N days count back from: the end of a fixed range, else today (or ``as_of``)."""
    r = defn.filters.date_range
    if r is not None and not r.rolling and r.end is not None:
        return f"DATE '{(r.end + timedelta(days=1)).isoformat()}'"
    return f"DATE_ADD({_day(as_of)}, INTERVAL 1 DAY)"


def cutoff_date(defn: DatasetDefinition, as_of: date) -> date:
    """The first day of eval for a time split (rows at or after its UTC midnight are eval)."""
    assert defn.split.eval_days is not None
    r = defn.filters.date_range
    anchor = r.end + timedelta(days=1) if r is not None and not r.rolling and r.end is not None \
        else as_of + timedelta(days=1)
    return anchor - timedelta(days=defn.split.eval_days)


class _Slots:
    """Placeholders for the definition's names and strings. The query template holds only tokens
    ``_fp_<n>_``; ``bind`` swaps each token's node for a quoted identifier or a string literal built with
    sqlglot, so no text from a definition file is ever formatted into SQL."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.strings: dict[str, str] = {}

    def name(self, text: str) -> str:
        token = f"_fp_{len(self.names) + len(self.strings)}_"
        self.names[token] = text
        return token

    def ref(self, table: str, column: str) -> str:
        return f"{self.name(table)}.{self.name(column)}"

    def string(self, text: str) -> str:
        token = f"_fp_{len(self.names) + len(self.strings)}_"
        self.strings[token] = text
        return f"'{token}'"

    def bind(self, tree: exp.Expr) -> exp.Expr:
        from sqlglot import exp

        def swap(node: exp.Expr) -> exp.Expr:
            if isinstance(node, exp.Identifier) and node.this in self.names:
                return exp.to_identifier(self.names[node.this], quoted=True)
            if isinstance(node, exp.Literal) and node.is_string and node.this in self.strings:
                return exp.Literal.string(self.strings[node.this])
            return node

        return tree.transform(swap)


def _split_condition(defn: DatasetDefinition, slots: _Slots, split: SplitName, as_of: date | None) -> str:
    s = defn.split
    if s.strategy == "random":
        assert s.eval_fraction is not None
        key = slots.name(defn.split_key)
        bucket = f"ABS(MOD(FARM_FINGERPRINT(CONCAT({slots.string(s.salt)}, CAST({key} AS STRING))), {BUCKETS}))"
        op = "<" if split == "eval" else ">="
        return f"{bucket} {op} {eval_threshold(s.eval_fraction)}"
    assert s.eval_days is not None
    cutoff = f"CAST(DATE_SUB({time_cutoff_anchor(defn, as_of)}, INTERVAL {int(s.eval_days)} DAY) AS TIMESTAMP)"
    return f"{slots.name(defn.timestamp.output_name)} {'>=' if split == 'eval' else '<'} {cutoff}"


def _template(defn: DatasetDefinition, slots: _Slots, split: SplitName | None, as_of: date | None) -> str:
    """The query in BigQuery's dialect with a token in place of every name and string of the definition;
    everything else in it is this module's text, dates and numbers the model has already typed."""
    ts = defn.timestamp
    select = []
    for c in defn.output_columns:
        ref, out = slots.ref(c.table, c.column), slots.name(c.output_name)
        select.append(f"CAST({ref} AS TIMESTAMP) AS {out}" if c is ts else f"{ref} AS {out}")
    first = defn.tables[0].name
    sources = [f"raw_data.{slots.name(first)} AS {slots.name(first)}"]
    for j in defn.join_order():
        kind = "LEFT JOIN" if j.type == "left" else "INNER JOIN"
        sources.append(f"{kind} raw_data.{slots.name(j.right_table)} AS {slots.name(j.right_table)} "
                       f"ON {slots.ref(j.left_table, j.left_column)} = {slots.ref(j.right_table, j.right_column)}")
    ts_ref = f"CAST({slots.ref(ts.table, ts.column)} AS TIMESTAMP)"
    where = [f"{slots.ref(defn.entity.table, defn.entity.column)} IS NOT NULL",
             f"{slots.ref(ts.table, ts.column)} IS NOT NULL"]
    if defn.split.strategy == "random":  # a NULL key would hash to NULL and land in neither split: leave it out
        key = next(c for c in defn.columns if c.output_name == defn.split_key)
        if key is not defn.entity:
            where.append(f"{slots.ref(key.table, key.column)} IS NOT NULL")
    r = defn.filters.date_range
    if r is not None and r.rolling:
        assert r.last_days is not None
        where.append(f"{ts_ref} >= CAST(DATE_SUB({_day(as_of)}, INTERVAL {int(r.last_days)} DAY) AS TIMESTAMP)")
        where.append(f"{ts_ref} < CAST(DATE_ADD({_day(as_of)}, INTERVAL 1 DAY) AS TIMESTAMP)")
    elif r is not None and r.start is not None and r.end is not None:
        where.append(f"{ts_ref} >= CAST(DATE '{r.start.isoformat()}' AS TIMESTAMP)")
        where.append(f"{ts_ref} < CAST(DATE '{(r.end + timedelta(days=1)).isoformat()}' AS TIMESTAMP)")
    ctes = [f"base AS (SELECT {', '.join(select)} FROM {' '.join(sources)} WHERE {' AND '.join(where)})"]
    keep: list[str] = []
    f = defn.filters
    if f.top_products_percent is not None:
        product, revenue = defn.role_column("product_id"), defn.role_column("revenue")
        assert product is not None and revenue is not None
        p, rev = slots.name(product.output_name), slots.name(revenue.output_name)
        share = float(f.top_products_percent) / 100
        ctes.append(f"product_revenue AS (SELECT {p}, COALESCE(SUM({rev}), 0) AS product_revenue FROM base "
                    f"WHERE {p} IS NOT NULL GROUP BY {p})")
        ctes.append(
            f"top_products AS (SELECT {p} FROM (SELECT {p}, product_revenue, SUM(product_revenue) OVER "
            f"(ORDER BY product_revenue DESC, {p} ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) "
            f"AS running_revenue, "
            f"SUM(product_revenue) OVER () AS total_revenue FROM product_revenue) AS ranked "
            f"WHERE running_revenue - product_revenue < {share!r} * total_revenue)"
        )
        keep.append(f"{p} IN (SELECT {p} FROM top_products)")
    if f.min_transactions_per_user is not None:
        u = slots.name(defn.entity.output_name)
        kept = f" WHERE {keep[0]}" if keep else ""
        ctes.append(f"active_users AS (SELECT {u} FROM base{kept} GROUP BY {u} "
                    f"HAVING COUNT(*) >= {int(f.min_transactions_per_user)})")
        keep.append(f"{u} IN (SELECT {u} FROM active_users)")
    if split is not None:
        keep.append(_split_condition(defn, slots, split, as_of))
    columns = ", ".join(slots.name(c.output_name) for c in defn.output_columns)
    tail = f" WHERE {' AND '.join(keep)}" if keep else ""
    return f"WITH {', '.join(ctes)} SELECT {columns} FROM base{tail}"


def query_tree(defn: DatasetDefinition, *, split: SplitName | None = None, as_of: date | None = None) -> exp.Expr:
    """The definition's query as one sqlglot tree (BigQuery semantics), every name a quoted identifier node."""
    import sqlglot

    require_plain_identifiers(defn)
    slots = _Slots()
    tree = slots.bind(sqlglot.parse_one(_template(defn, slots, split, as_of), read="bigquery"))
    check_query(defn, tree)
    return tree


# The query's own names: its CTEs and the columns and aliases they compute.
_CTES = frozenset({"base", "product_revenue", "top_products", "active_users"})
_INTERNAL_COLUMNS = frozenset({"product_revenue", "running_revenue", "total_revenue"})
_INTERNAL_ALIASES = frozenset({"ranked"})
_UNITS = frozenset({"DAY"})


@cache
def _allowed_nodes() -> tuple[frozenset[type[exp.Expr]], frozenset[type[exp.Expr]]]:
    """(node types, function types) a definition's query may contain, as sqlglot parses it in any dialect."""
    from sqlglot import exp

    nodes = frozenset({
        exp.Select, exp.With, exp.CTE, exp.Subquery, exp.From, exp.Join, exp.Where, exp.Group, exp.Having,
        exp.Window, exp.WindowSpec, exp.Order, exp.Ordered, exp.Table, exp.TableAlias, exp.Alias, exp.Column,
        exp.Identifier, exp.Literal, exp.Null, exp.Boolean, exp.DataType, exp.Interval, exp.Var, exp.Paren,
        exp.And, exp.Or, exp.Not, exp.Is, exp.In, exp.Between, exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE,
        exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Neg, exp.Star,
    })
    functions = frozenset({
        exp.Cast, exp.Abs, exp.Mod, exp.Concat, exp.DPipe, exp.FarmFingerprint, exp.DateSub, exp.DateAdd,
        exp.CurrentDate, exp.Sum, exp.Count, exp.Coalesce,
    })
    return nodes, functions


@dataclass(frozen=True)
class _Allowed:
    """What one definition's query may name: its tables, the columns it lists per table, its output names
    and its own Parquet files."""

    tables: frozenset[str]
    columns: dict[str, frozenset[str]]
    outputs: frozenset[str]
    parquet: frozenset[str]

    @classmethod
    def of(cls, defn: DatasetDefinition) -> _Allowed:
        pairs = [(c.table, c.column) for c in defn.columns]
        for j in defn.joins:
            pairs += [(j.left_table, j.left_column), (j.right_table, j.right_column)]
        return cls(tables=frozenset(t.name for t in defn.tables),
                   columns={t.name: frozenset(c for tb, c in pairs if tb == t.name) for t in defn.tables},
                   outputs=frozenset(c.output_name for c in defn.columns),
                   parquet=frozenset(parquet_paths(defn).values()))


def _node_problem(node: exp.Expr, allowed: _Allowed, ctes: set[str]) -> str | None:
    """What ``node`` should have been, or None when it may stand in a definition's query."""
    from sqlglot import exp

    nodes, functions = _allowed_nodes()
    kind = type(node)
    if node.comments:
        return "no comments in the query"
    if kind is exp.Anonymous or kind is exp.ReadParquet:
        args = node.expressions
        own_parquet = (kind is exp.ReadParquet or node.name.lower() == "read_parquet") \
            and isinstance(node.parent, exp.Table) and node.arg_key == "this" and len(args) == 1 \
            and isinstance(args[0], exp.Literal) and args[0].is_string and args[0].this in allowed.parquet \
            and {k for k, v in node.args.items() if v} <= {"this", "expressions"}
        return None if own_parquet else f"only the functions {_function_names()} (and read_parquet of the " \
                                        f"definition's own Parquet files)"
    if kind in functions:
        return None
    if kind not in nodes:
        return f"only columns, literals, comparisons, boolean logic, IN/BETWEEN/IS NULL and the functions " \
               f"{_function_names()}"
    if isinstance(node, exp.Identifier):
        plain = isinstance(node.this, str) and re.fullmatch(IDENTIFIER, node.this)
        return None if plain else f"plain identifiers ({IDENTIFIER})"
    if isinstance(node, exp.Table):
        if isinstance(node.this, (exp.Anonymous, exp.ReadParquet)):
            return None  # checked as a function
        if node.catalog or node.args.get("pivots") or node.args.get("joins"):
            return "a table named schema.table at most"
        if (node.db == RAW_SCHEMA and node.name in allowed.tables) or (not node.db and node.name in ctes):
            return None
        return f"a table of the definition ({', '.join(f'{RAW_SCHEMA}.{t}' for t in sorted(allowed.tables))}) " \
               f"or one of its CTEs"
    if isinstance(node, exp.Column):
        if node.args.get("db") or node.args.get("catalog"):
            return "a column named table.column at most"
        if node.table:
            ok = node.name in allowed.columns.get(node.table, frozenset())
            return None if ok else f"a column the definition lists for one of its tables " \
                                   f"({', '.join(sorted(allowed.tables))})"
        return None if node.name in allowed.outputs | _INTERNAL_COLUMNS else "an output column of the definition"
    if isinstance(node, exp.Var):
        return None if node.arg_key == "unit" and node.name.upper() in _UNITS else "an interval unit DAY"
    if isinstance(node, exp.Star):
        return None if isinstance(node.parent, exp.Count) else "COUNT(*) as the only star"
    return None


@cache
def _function_names() -> str:
    from sqlglot import exp

    names = {f.sql_name() for f in _allowed_nodes()[1] if issubclass(f, exp.Func)}
    return ", ".join(sorted(names | {"MOD", "||"}))


def check_query(defn: DatasetDefinition, tree: exp.Expr) -> None:
    """Refuse a query tree that holds anything but what a definition's query is made of: the definition's
    tables (``raw_data.<name>``, or ``read_parquet`` of its own Parquet files) and its CTEs, columns of those
    tables that the definition lists, literals, comparisons, boolean logic, IN/BETWEEN/IS NULL and the
    functions of ``_allowed_nodes``; no comments, every name a plain identifier. One line naming the
    definition's file on failure. Every rendering passes through here, so a bug that let a name through
    unquoted would still stop here."""
    from sqlglot import exp

    def refuse(node: exp.Expr, expected: str) -> DefinitionError:
        text = " ".join(node.sql(dialect="bigquery").split())
        return DefinitionError(f"{defn.where}: field (query): expected {expected}; got "
                               f"{text[:120]!r} ({type(node).__name__})")

    if not isinstance(tree, exp.Select):
        raise refuse(tree, "one SELECT statement")
    ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
    if not ctes <= _CTES:
        raise DefinitionError(f"{defn.where}: field (query): expected only the CTEs {', '.join(sorted(_CTES))}; "
                              f"got {', '.join(sorted(ctes - _CTES))}")
    allowed = _Allowed.of(defn)
    for node in tree.walk():
        problem = _node_problem(node, allowed, ctes)
        if problem is not None:
            raise refuse(node, problem)


def check_query_sql(defn: DatasetDefinition, sql: str, dialect: Dialect) -> None:
    """``check_query`` on SQL text: one statement in ``dialect``, no semicolon, no comment anywhere."""
    import sqlglot
    from sqlglot.errors import SqlglotError
    from sqlglot.tokenizer_core import TokenType

    try:
        tokens = sqlglot.tokenize(sql, read=dialect)
        statements = sqlglot.parse(sql, read=dialect)
    except SqlglotError as exc:
        raise DefinitionError(f"{defn.where}: field (query): expected SQL sqlglot can parse; got "
                              f"{' '.join(str(exc).split())[:200]}") from None
    if len(statements) != 1 or statements[0] is None or any(t.token_type == TokenType.SEMICOLON for t in tokens):
        raise DefinitionError(f"{defn.where}: field (query): expected exactly one SQL statement and no semicolon; "
                              f"got {len([s for s in statements if s is not None])} statement(s)")
    if any(t.comments for t in tokens):
        raise DefinitionError(f"{defn.where}: field (query): expected no comments in the query; got "
                              f"{next(t.comments for t in tokens if t.comments)!r}")
    check_query(defn, statements[0])


def _parquet_tables(tree: exp.Expr, defn: DatasetDefinition) -> exp.Expr:
    """DuckDB reads Parquet-backed tables with read_parquet(path) in place of raw_data.<name>."""
    from sqlglot import exp

    paths = parquet_paths(defn)
    if not paths:
        return tree

    def swap(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Table) and node.db == RAW_SCHEMA and node.name in paths:
            func = exp.Anonymous(this="read_parquet", expressions=[exp.Literal.string(paths[node.name])])
            return exp.Table(this=func, alias=exp.TableAlias(this=exp.to_identifier(node.alias_or_name, quoted=True)))
        return node

    return tree.transform(swap)


def parquet_paths(defn: DatasetDefinition) -> dict[str, str]:
    """Table name → the Parquet file DuckDB reads for it (absolute where the definition file is known)."""
    out: dict[str, str] = {}
    for t in defn.tables:
        path = defn.parquet_path(t)
        if path is not None:
            out[t.name] = str(path)
    return out


def _header(defn: DatasetDefinition, split: SplitName | None, dialect: Dialect, as_of: date | None) -> str:
    lines = [f"-- dataset definition {defn.name} (sha256 {defn.digest()}), split {split or 'all'}, "
             f"dialect {dialect}, {'as of ' + as_of.isoformat() if as_of else 'relative to CURRENT_DATE'}"]
    if defn.split.strategy == "random" and split is not None:
        if dialect == "postgres":
            lines.append("-- requires farm_fingerprint(text) RETURNS bigint: FarmHash Fingerprint64 of the UTF-8 "
                         "bytes as a signed int64 (BigQuery FARM_FINGERPRINT); not built into PostgreSQL")
        elif dialect == "duckdb":
            lines.append("-- farm_fingerprint is a Python UDF: call feature_platform.datasets.definitions.sql."
                         "register_udfs(conn) first")
    if dialect != "duckdb" and any(t.path for t in defn.tables):
        lines.append("-- Parquet-backed tables appear as raw_data.<name>: load them there (external table) first")
    return "\n".join(lines) + "\n"


def render_query(defn: DatasetDefinition, *, split: SplitName | None = None, dialect: Dialect = "duckdb",
                 as_of: date | None = None) -> str:
    """The definition's query for ``dialect``; ``split`` restricts it to train or eval rows; ``as_of`` pins
    'today' (rolling ranges, time cutoff) so a build can be re-run to the same rows."""
    if dialect not in DIALECTS:
        raise DefinitionError(f"dialect: expected one of {', '.join(DIALECTS)}; got {dialect!r}")
    tree = query_tree(defn, split=split, as_of=as_of)
    if dialect == "duckdb":
        tree = _parquet_tables(tree, defn)
    body = tree.sql(dialect=dialect, pretty=True)
    check_query_sql(defn, body, dialect)  # the text itself, as the database will read it
    return _header(defn, split, dialect, as_of) + body + "\n"


def tfx_query_config(defn: DatasetDefinition) -> dict[str, Any]:
    """TFX ``BigQueryExampleGen`` configuration (protobuf JSON form): the input splits carry their own
    queries, so the output config does not re-split (hash buckets would undo the definition's split)."""
    return {
        "component": "BigQueryExampleGen",
        "definition": defn.name,
        "definition_sha256": defn.digest(),
        "input_config": {"splits": [{"name": name, "pattern": render_query(defn, split=name, dialect="bigquery")}
                                    for name in ("train", "eval")]},
        "output_config": {},
        "split": defn.split.model_dump(mode="json", exclude_none=True),
    }


def open_warehouse(defns: Iterable[DatasetDefinition], path: Path | None = None) -> duckdb.DuckDBPyConnection:
    """The warehouse for running ``defns``' queries: sandboxed (``connect_sandboxed``: no file access but their
    own Parquet files, configuration locked), UDFs registered. Raises WarehouseError."""
    from feature_platform.warehouse.connection import connect_sandboxed

    files = sorted({p for d in defns for p in parquet_paths(d).values()})
    conn = connect_sandboxed(path, allowed_files=files)
    register_udfs(conn)
    return conn


def register_udfs(conn: duckdb.DuckDBPyConnection) -> None:
    """Register ``farm_fingerprint(VARCHAR) -> BIGINT`` (vectorised over Arrow arrays) once per connection."""
    import duckdb
    import pyarrow as pa
    from duckdb.func import FunctionNullHandling, PythonUDFType

    def fingerprint(texts: Any) -> Any:  # duckdb evaluates these annotations at registration: keep them global
        return pa.array(farm_fingerprints(texts.to_pylist()), type=pa.int64())

    if conn.execute("SELECT count(*) FROM duckdb_functions() WHERE function_name = ?", [UDF_NAME]).fetchall()[0][0]:
        return
    conn.create_function(UDF_NAME, fingerprint, [duckdb.sqltype("VARCHAR")], duckdb.sqltype("BIGINT"),
                         type=PythonUDFType.ARROW, null_handling=FunctionNullHandling.SPECIAL, side_effects=False)
