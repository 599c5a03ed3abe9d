"""What a definition would produce, before anyone builds it: counts, date range, split sizes, quality issues.

Every number comes from the definition's own generated DuckDB query (``render_query``), so the analysis
describes exactly the rows a build would write; aggregations run inside DuckDB (one metrics query over a
materialised result, one query for the split sizes) and only the results reach Python. The split sizes
run the rendered train and eval queries themselves, so a random split is counted with the same
FARM_FINGERPRINT bucket rule the build and the BigQuery SQL use.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from feature_platform.contracts.canonical import FieldsAsJson
from feature_platform.datasets.definitions.model import DatasetDefinition, DefinitionError
from feature_platform.warehouse.render import aligned_table, finite_or_none

if TYPE_CHECKING:
    import duckdb

# Quality thresholds (the replaced system's rules, made explicit). Each rule has a medium and a high level.
LOW_ENGAGEMENT_MEDIAN = (5.0, 2.0)  # median interactions per user below this -> medium / high
SPARSE_PRODUCT_MEDIAN = (5.0, 2.0)  # median interactions per product below this -> medium / high
COLD_START_SHARE = (0.2, 0.5)  # share of users (or products) with <= 1 interaction above this -> medium / high
MIN_USERS, MIN_PRODUCTS = 100, 20  # fewer distinct users / products than this is a cold-start problem (medium)
EXTREME_SPARSITY_DENSITY = (1e-3, 1e-4)  # distinct (user, product) pairs / (users × products) below this
SHORT_RANGE_DAYS = (30.0, 7.0)  # covered date range shorter than this many days -> medium / high
SEVERITY_PENALTY = {"high": 30, "medium": 10, "low": 3}
COMPARE_MIN, COMPARE_MAX = 2, 5


class AnalysisError(DefinitionError):
    """An analysis request that cannot be answered (bad arguments); one line."""


@dataclass(frozen=True)
class QualityIssue(FieldsAsJson):
    kind: str  # low_engagement, sparse_product_coverage, cold_start, extreme_sparsity, short_date_range, empty(_split)
    severity: str  # high | medium | low
    message: str
    value: float | None
    threshold: float | None


@dataclass(frozen=True)
class SplitEstimate:
    strategy: str  # time | random
    rule: str
    train_rows: int
    eval_rows: int
    train_users: int
    eval_users: int

    @property
    def eval_share(self) -> float:
        total = self.train_rows + self.eval_rows
        return self.eval_rows / total if total else 0.0

    def to_json_dict(self) -> dict[str, Any]:
        return {**asdict(self), "eval_share": round(self.eval_share, 6)}


@dataclass(frozen=True)
class Analysis:
    definition: str
    source_file: str | None
    definition_sha256: str
    as_of: date | None
    rows: int
    users: int
    products: int | None  # None when the definition maps no product_id column
    first_timestamp: datetime | None
    last_timestamp: datetime | None
    range_days: float | None
    median_per_user: float | None
    mean_per_user: float | None
    median_per_product: float | None
    cold_start_user_share: float | None
    cold_start_product_share: float | None
    density: float | None  # distinct (user, product) pairs / (users × products)
    split: SplitEstimate
    issues: list[QualityIssue] = field(default_factory=list)

    @property
    def quality_score(self) -> int:
        return max(0, 100 - sum(SEVERITY_PENALTY[i.severity] for i in self.issues))

    def to_json_dict(self) -> dict[str, Any]:
        out = {k: _jsonable(v) for k, v in asdict(self).items() if k not in ("split", "issues")}
        return {**out, "split": self.split.to_json_dict(), "issues": [i.to_json_dict() for i in self.issues],
                "quality_score": self.quality_score}

    def render(self) -> str:
        facts = [
            ("definition", self.definition), ("file", self.source_file), ("as of", self.as_of or "CURRENT_DATE"),
            ("rows", self.rows), ("users", self.users), ("products", self.products),
            ("first timestamp", self.first_timestamp), ("last timestamp", self.last_timestamp),
            ("range (days)", self.range_days), ("median rows per user", self.median_per_user),
            ("median rows per product", self.median_per_product),
            ("cold-start users (<=1 row)", _pct(self.cold_start_user_share)),
            ("cold-start products (<=1 row)", _pct(self.cold_start_product_share)),
            ("density (user x product)", self.density), ("quality score", self.quality_score),
        ]
        s = self.split
        split_rows = [["train", s.train_rows, s.train_users, _pct(1 - s.eval_share if s.train_rows + s.eval_rows
                                                                   else 0.0)],
                      ["eval", s.eval_rows, s.eval_users, _pct(s.eval_share)]]
        parts = [aligned_table(["metric", "value"], facts), "",
                 f"split: {s.strategy} ({s.rule})", aligned_table(["split", "rows", "users", "share"], split_rows), ""]
        if self.issues:
            issue_rows = [[i.severity, i.kind, i.message] for i in self.issues]
            parts.append(aligned_table(["severity", "issue", "detail"], issue_rows))
        else:
            parts.append("no quality issues")
        return "\n".join(parts)


@dataclass(frozen=True)
class PreviewColumn(FieldsAsJson):
    name: str
    role: str
    type: str
    source: str  # table.column it comes from


@dataclass(frozen=True)
class Preview:
    definition: str
    columns: list[PreviewColumn]
    rows: list[list[Any]]

    def to_json_dict(self) -> dict[str, Any]:
        return {"definition": self.definition, "columns": [c.to_json_dict() for c in self.columns],
                "rows": [[_jsonable(v) for v in row] for row in self.rows]}

    def render(self) -> str:
        headers = [f"{c.name} [{c.role}]" for c in self.columns]
        return aligned_table(headers, self.rows) + f"\n({len(self.rows)} rows; [role] after each column name)"


@dataclass(frozen=True)
class Comparison:
    analyses: list[Analysis]

    METRICS = (
        "rows", "users", "products", "first_timestamp", "last_timestamp", "range_days", "median_per_user",
        "median_per_product", "cold_start_user_share", "cold_start_product_share", "density",
    )

    def table(self) -> list[tuple[str, list[Any]]]:
        rows: list[tuple[str, list[Any]]] = [(m, [getattr(a, m) for a in self.analyses]) for m in self.METRICS]
        rows.append(("split", [f"{a.split.strategy}" for a in self.analyses]))
        rows.append(("train_rows", [a.split.train_rows for a in self.analyses]))
        rows.append(("eval_rows", [a.split.eval_rows for a in self.analyses]))
        rows.append(("eval_share", [round(a.split.eval_share, 4) for a in self.analyses]))
        rows.append(("issues", [", ".join(f"{i.kind}:{i.severity}" for i in a.issues) or "none"
                                for a in self.analyses]))
        rows.append(("quality_score", [a.quality_score for a in self.analyses]))
        return rows

    def to_json_dict(self) -> dict[str, Any]:
        return {"definitions": [a.definition for a in self.analyses],
                "metrics": {name: [_jsonable(v) for v in values] for name, values in self.table()},
                "analyses": [a.to_json_dict() for a in self.analyses]}

    def render(self) -> str:
        return aligned_table(["metric", *(a.definition for a in self.analyses)],
                             [[name, *values] for name, values in self.table()])


def analyze_definition(
    defn: DatasetDefinition, conn: duckdb.DuckDBPyConnection, *, as_of: date | None = None
) -> Analysis:
    """Counts, date range, split sizes and quality issues of the rows ``defn`` selects (as of ``as_of``)."""
    from feature_platform.datasets.definitions.sql import register_udfs, render_query
    from feature_platform.datasets.definitions.validation import require_valid
    from feature_platform.warehouse.connection import quote_identifier as _q

    require_valid(defn, conn)
    register_udfs(conn)
    user = _q(defn.entity.output_name)
    ts = _q(defn.timestamp.output_name)
    product_col = defn.role_column("product_id")
    product = _q(product_col.output_name) if product_col else None
    query = render_query(defn, dialect="duckdb", as_of=as_of)
    product_parts = (
        f", pp AS (SELECT {product} AS k, count(*) AS n FROM d WHERE {product} IS NOT NULL GROUP BY 1)",
        f"(SELECT count(*) FROM pp), (SELECT median(n)::DOUBLE FROM pp), (SELECT avg((n <= 1)::DOUBLE) FROM pp), "
        f"(SELECT count(*) FROM (SELECT DISTINCT {user}, {product} FROM d WHERE {product} IS NOT NULL))",
    ) if product else ("", "NULL, NULL, NULL, NULL")
    metrics_sql = (
        f"WITH d AS MATERIALIZED (SELECT * FROM (\n{query}\n) AS q), "
        f"pu AS (SELECT {user} AS k, count(*) AS n FROM d GROUP BY 1){product_parts[0]} "
        f"SELECT (SELECT count(*) FROM d), (SELECT count(*) FROM pu), (SELECT min({ts}) FROM d), "
        f"(SELECT max({ts}) FROM d), (SELECT median(n)::DOUBLE FROM pu), (SELECT avg(n)::DOUBLE FROM pu), "
        f"(SELECT avg((n <= 1)::DOUBLE) FROM pu), {product_parts[1]}"
    )
    row = _fetch_one(conn, metrics_sql, defn)
    rows, users, first, last, median_user, mean_user, cold_users, products, median_product, cold_products, pairs = row
    range_days = (last - first).total_seconds() / 86_400 if first is not None and last is not None else None
    density = pairs / (users * products) if product and users and products else None

    split_parts = []
    for name in ("train", "eval"):
        q = render_query(defn, split=name, dialect="duckdb", as_of=as_of)
        split_parts.append(f"(SELECT count(*) FROM (\n{q}\n) AS s)")
        split_parts.append(f"(SELECT count(DISTINCT {user}) FROM (\n{q}\n) AS s)")
    train_rows, train_users, eval_rows, eval_users = _fetch_one(conn, "SELECT " + ", ".join(split_parts), defn)
    split = SplitEstimate(defn.split.strategy, _split_rule(defn), int(train_rows), int(eval_rows), int(train_users),
                          int(eval_users))

    analysis = Analysis(
        definition=defn.name, source_file=str(defn.source_file) if defn.source_file else None,
        definition_sha256=defn.digest(), as_of=as_of, rows=int(rows), users=int(users),
        products=int(products) if product else None, first_timestamp=first, last_timestamp=last,
        range_days=range_days, median_per_user=finite_or_none(median_user), mean_per_user=finite_or_none(mean_user),
        median_per_product=finite_or_none(median_product), cold_start_user_share=finite_or_none(cold_users),
        cold_start_product_share=finite_or_none(cold_products), density=density, split=split,
    )
    return Analysis(**{**analysis.__dict__, "issues": quality_issues(analysis)})


def quality_issues(a: Analysis) -> list[QualityIssue]:
    """The replaced system's quality rules, with the thresholds above; most severe first."""
    if a.rows == 0:
        return [QualityIssue("empty", "high", "the query returns no rows", 0, None)]
    out: list[QualityIssue] = []

    def below(kind: str, value: float | None, limits: tuple[float, float], what: str) -> None:
        if value is None:
            return
        for severity, limit in (("high", limits[1]), ("medium", limits[0])):
            if value < limit:
                out.append(QualityIssue(kind, severity, f"{what} is {_num(value)} (< {_num(limit)})", value, limit))
                return

    def above(kind: str, value: float | None, limits: tuple[float, float], what: str) -> None:
        if value is None:
            return
        for severity, limit in (("high", limits[1]), ("medium", limits[0])):
            if value > limit:
                out.append(QualityIssue(kind, severity, f"{what} is {value:.1%} (> {limit:.0%})", value, limit))
                return

    below("low_engagement", a.median_per_user, LOW_ENGAGEMENT_MEDIAN, "median rows per user")
    below("sparse_product_coverage", a.median_per_product, SPARSE_PRODUCT_MEDIAN, "median rows per product")
    above("cold_start", a.cold_start_user_share, COLD_START_SHARE, "share of users with <= 1 row")
    above("cold_start", a.cold_start_product_share, COLD_START_SHARE, "share of products with <= 1 row")
    if a.users < MIN_USERS:
        out.append(QualityIssue("cold_start", "medium", f"only {a.users} users (< {MIN_USERS})", a.users, MIN_USERS))
    if a.products is not None and a.products < MIN_PRODUCTS:
        out.append(QualityIssue("cold_start", "medium", f"only {a.products} products (< {MIN_PRODUCTS})",
                                a.products, MIN_PRODUCTS))
    for name, rows in (("train", a.split.train_rows), ("eval", a.split.eval_rows)):
        if rows == 0:
            out.append(QualityIssue("empty_split", "high", f"the {name} split has no rows ({a.split.rule})", 0, None))
    below("extreme_sparsity", a.density, EXTREME_SPARSITY_DENSITY, "user x product density")
    below("short_date_range", a.range_days, SHORT_RANGE_DAYS, "covered date range in days")
    order = {"high": 0, "medium": 1, "low": 2}
    return sorted(out, key=lambda i: order[i.severity])


def preview_definition(
    defn: DatasetDefinition, conn: duckdb.DuckDBPyConnection, limit: int = 20, *, as_of: date | None = None
) -> Preview:
    """The first ``limit`` rows (in a stable order) with each column's role, type and source."""
    from feature_platform.datasets.definitions.sql import register_udfs, render_query
    from feature_platform.datasets.definitions.validation import require_valid

    if limit < 1:
        raise AnalysisError(f"preview: expected a positive limit; got {limit}")
    require_valid(defn, conn)
    register_udfs(conn)
    query = render_query(defn, dialect="duckdb", as_of=as_of)
    relation = _run(conn, f"SELECT * FROM (\n{query}\n) AS q ORDER BY ALL LIMIT {int(limit)}", defn)
    types = [str(t) for t in relation.types]
    rows = [list(r) for r in relation.fetchall()]
    by_name = {c.output_name: c for c in defn.output_columns}
    columns = [PreviewColumn(name, by_name[name].role, type_, f"{by_name[name].table}.{by_name[name].column}")
               for name, type_ in zip(relation.columns, types, strict=True)]
    return Preview(defn.name, columns, rows)


def require_compare_count(names: Sequence[str]) -> None:
    """Two to five distinct names; checked before any file or the warehouse is read."""
    if not COMPARE_MIN <= len(names) <= COMPARE_MAX:
        raise AnalysisError(f"compare: field names: expected {COMPARE_MIN} to {COMPARE_MAX} definitions; "
                            f"got {len(names)}")
    duplicates = sorted({n for n in names if list(names).count(n) > 1})
    if duplicates:
        raise AnalysisError(f"compare: field names: expected distinct definitions; got {', '.join(duplicates)} "
                            f"more than once")


def compare_definitions(
    defns: Sequence[DatasetDefinition], conn: duckdb.DuckDBPyConnection, *, as_of: date | None = None
) -> Comparison:
    """Two to five definitions side by side (the replaced system's limit: wider tables stop being readable)."""
    require_compare_count([d.name for d in defns])
    return Comparison([analyze_definition(d, conn, as_of=as_of) for d in defns])


# --- helpers ---------------------------------------------------------------------------------------------


def _split_rule(defn: DatasetDefinition) -> str:
    s = defn.split
    if s.strategy == "random":
        return f"eval_fraction {s.eval_fraction}, FARM_FINGERPRINT(salt {s.salt!r} || {defn.split_key})"
    return f"last {s.eval_days} days -> eval"


def _run(conn: duckdb.DuckDBPyConnection, sql: str, defn: DatasetDefinition) -> duckdb.DuckDBPyRelation:
    import duckdb

    from feature_platform.warehouse.connection import one_line

    try:
        return conn.sql(sql)
    except duckdb.Error as exc:
        raise DefinitionError(f"{defn.where}: field (query): expected a query DuckDB can run; got "
                              f"{one_line(exc).split(' LINE ')[0]}") from None


def _fetch_one(conn: duckdb.DuckDBPyConnection, sql: str, defn: DatasetDefinition) -> tuple[Any, ...]:
    import duckdb

    from feature_platform.warehouse.connection import one_line

    try:
        row = conn.execute(sql).fetchone()
    except duckdb.Error as exc:
        raise DefinitionError(f"{defn.where}: field (query): expected a query DuckDB can run; got "
                              f"{one_line(exc).split(' LINE ')[0]}") from None
    assert row is not None
    return tuple(row)


def _num(value: float) -> str:
    return f"{value:.3g}"


def _pct(value: float | None) -> str | None:
    return None if value is None else f"{value:.1%}"


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, int | str | bool) or value is None:
        return value
    return str(value)
