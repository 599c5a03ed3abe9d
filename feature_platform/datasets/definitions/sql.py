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
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import TYPE_CHECKING, Any, Literal

from feature_platform.datasets.definitions.farmhash import farm_fingerprint, farm_fingerprints
from feature_platform.datasets.definitions.model import DatasetDefinition, DefinitionError

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


def _lit(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _day(as_of: date | None) -> str:
    return "CURRENT_DATE()" if as_of is None else f"DATE {_lit(as_of.isoformat())}"


def time_cutoff_anchor(defn: DatasetDefinition, as_of: date | None) -> str:
    """The day the last N days count back from: the end of a fixed range, else today (or ``as_of``)."""
    r = defn.filters.date_range
    if r is not None and not r.rolling and r.end is not None:
        return f"DATE {_lit((r.end + timedelta(days=1)).isoformat())}"
    return f"DATE_ADD({_day(as_of)}, INTERVAL 1 DAY)"


def cutoff_date(defn: DatasetDefinition, as_of: date) -> date:
    """The first day of eval for a time split (rows at or after its UTC midnight are eval)."""
    assert defn.split.eval_days is not None
    r = defn.filters.date_range
    anchor = r.end + timedelta(days=1) if r is not None and not r.rolling and r.end is not None \
        else as_of + timedelta(days=1)
    return anchor - timedelta(days=defn.split.eval_days)


def _split_condition(defn: DatasetDefinition, split: SplitName, as_of: date | None) -> str:
    s = defn.split
    if s.strategy == "random":
        assert s.eval_fraction is not None
        bucket = f"ABS(MOD(FARM_FINGERPRINT(CONCAT({_lit(s.salt)}, CAST({defn.split_key} AS STRING))), {BUCKETS}))"
        op = "<" if split == "eval" else ">="
        return f"{bucket} {op} {eval_threshold(s.eval_fraction)}"
    assert s.eval_days is not None
    cutoff = f"CAST(DATE_SUB({time_cutoff_anchor(defn, as_of)}, INTERVAL {s.eval_days} DAY) AS TIMESTAMP)"
    return f"{defn.timestamp.output_name} {'>=' if split == 'eval' else '<'} {cutoff}"


def logical_sql(defn: DatasetDefinition, *, split: SplitName | None = None, as_of: date | None = None) -> str:
    """The query in BigQuery's dialect, before parsing: the single source every rendering comes from."""
    ts = defn.timestamp
    select = []
    for c in defn.output_columns:
        ref = f"{c.table}.{c.column}"
        select.append(f"CAST({ref} AS TIMESTAMP) AS {c.output_name}" if c is ts else f"{ref} AS {c.output_name}")
    sources = [f"raw_data.{defn.tables[0].name} AS {defn.tables[0].name}"]
    for j in defn.join_order():
        kind = "LEFT JOIN" if j.type == "left" else "INNER JOIN"
        sources.append(f"{kind} raw_data.{j.right_table} AS {j.right_table} "
                       f"ON {j.left_table}.{j.left_column} = {j.right_table}.{j.right_column}")
    ts_ref = f"CAST({ts.table}.{ts.column} AS TIMESTAMP)"
    where = [f"{defn.entity.table}.{defn.entity.column} IS NOT NULL", f"{ts.table}.{ts.column} IS NOT NULL"]
    if defn.split.strategy == "random":  # a NULL key would hash to NULL and land in neither split: leave it out
        key = next(c for c in defn.columns if c.output_name == defn.split_key)
        if key is not defn.entity:
            where.append(f"{key.table}.{key.column} IS NOT NULL")
    r = defn.filters.date_range
    if r is not None and r.rolling:
        where.append(f"{ts_ref} >= CAST(DATE_SUB({_day(as_of)}, INTERVAL {r.last_days} DAY) AS TIMESTAMP)")
        where.append(f"{ts_ref} < CAST(DATE_ADD({_day(as_of)}, INTERVAL 1 DAY) AS TIMESTAMP)")
    elif r is not None and r.start is not None and r.end is not None:
        where.append(f"{ts_ref} >= CAST(DATE {_lit(r.start.isoformat())} AS TIMESTAMP)")
        where.append(f"{ts_ref} < CAST(DATE {_lit((r.end + timedelta(days=1)).isoformat())} AS TIMESTAMP)")
    ctes = [f"base AS (SELECT {', '.join(select)} FROM {' '.join(sources)} WHERE {' AND '.join(where)})"]
    keep: list[str] = []
    f = defn.filters
    if f.top_products_percent is not None:
        product, revenue = defn.role_column("product_id"), defn.role_column("revenue")
        assert product is not None and revenue is not None
        p, rev = product.output_name, revenue.output_name
        share = f.top_products_percent / 100
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
        u = defn.entity.output_name
        kept = f" WHERE {keep[0]}" if keep else ""
        ctes.append(f"active_users AS (SELECT {u} FROM base{kept} GROUP BY {u} "
                    f"HAVING COUNT(*) >= {f.min_transactions_per_user})")
        keep.append(f"{u} IN (SELECT {u} FROM active_users)")
    if split is not None:
        keep.append(_split_condition(defn, split, as_of))
    columns = ", ".join(c.output_name for c in defn.output_columns)
    tail = f" WHERE {' AND '.join(keep)}" if keep else ""
    return f"WITH {', '.join(ctes)} SELECT {columns} FROM base{tail}"


def query_tree(defn: DatasetDefinition, *, split: SplitName | None = None, as_of: date | None = None) -> exp.Expr:
    import sqlglot
    from sqlglot.errors import ParseError

    try:
        return sqlglot.parse_one(logical_sql(defn, split=split, as_of=as_of), read="bigquery")
    except ParseError as exc:
        raise DefinitionError(f"{defn.where}: field (query): expected names sqlglot can parse; got "
                              f"{' '.join(str(exc).split())[:300]}") from None


def _parquet_tables(tree: exp.Expr, defn: DatasetDefinition) -> exp.Expr:
    """DuckDB reads Parquet-backed tables with read_parquet(path) in place of raw_data.<name>."""
    from sqlglot import exp

    paths = {t.name: defn.parquet_path(t) for t in defn.tables if t.path is not None}
    if not paths:
        return tree

    def swap(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Table) and node.db == "raw_data" and node.name in paths:
            func = exp.Anonymous(this="read_parquet", expressions=[exp.Literal.string(str(paths[node.name]))])
            return exp.Table(this=func, alias=exp.TableAlias(this=exp.to_identifier(node.alias_or_name)))
        return node

    return tree.transform(swap)


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
    return _header(defn, split, dialect, as_of) + tree.sql(dialect=dialect, pretty=True) + "\n"


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
