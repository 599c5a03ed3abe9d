"""Point-in-time (as-of) joins for training sets, with the semantics below.

Every entity row comes back, duplicates included and in input order: the latest feature row at or
before the entity timestamp (inclusive), at most ``ttl`` older (inclusive); ties on the event
timestamp go to the newest created timestamp (then to the later row of the feature table); no match
gives nulls. Feast's file offline store gets ties and unmatched rows wrong, so training sets are
built here, with one DuckDB ``ASOF JOIN`` over a tie-free feature table.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import numpy as np
import pyarrow as pa

from feature_platform.warehouse.connection import quote_identifier as _quote

_EIDX, _FIDX, _FTS, _ETS = "__fp_eidx", "__fp_fidx", "__fp_fts", "__fp_ets"
_INTERNAL = frozenset({_EIDX, _FIDX, _FTS, _ETS, "__fp_created", "__fp_pick"})  # the join's own column names


class PointInTimeError(ValueError):
    """The inputs cannot be joined (missing or clashing columns, incomparable types)."""


def _naive_ts(column: pa.ChunkedArray | pa.Array, unit: str, what: str) -> pa.ChunkedArray | pa.Array:
    """Timestamps as naive UTC of one unit: tz-aware values keep their instant, naive ones count as UTC."""
    if not pa.types.is_timestamp(column.type):
        raise PointInTimeError(f"{what} must be a timestamp column, got {column.type}")
    return column.cast(pa.timestamp(column.type.unit)).cast(pa.timestamp(unit))


def _ts_unit(*types: pa.DataType) -> str:
    units = [t.unit for t in types if pa.types.is_timestamp(t)]
    return "ns" if "ns" in units else "us"


def point_in_time_join(
    entity_df: pa.Table,
    features: pa.Table,
    *,
    join_keys: Sequence[str],
    entity_ts_col: str,
    feature_ts_col: str,
    created_ts_col: str | None = None,
    ttl: timedelta | None = None,
    feature_names: Sequence[str],
) -> pa.Table:
    """``entity_df`` with ``feature_names`` appended, as of each row's timestamp (see module docstring).

    ``ttl=None`` means no age limit; ``timedelta(0)`` accepts only rows with the same timestamp.
    """
    import duckdb

    keys, names = list(join_keys), list(feature_names)
    if not keys:
        raise PointInTimeError("join_keys must name at least one column")
    taken = sorted(set(keys) & _INTERNAL)
    if taken:
        raise PointInTimeError(f"join keys {taken} are names the join uses for its own columns; rename them")
    for col in [*keys, entity_ts_col]:
        if col not in entity_df.column_names:
            raise PointInTimeError(f"entity_df has no column {col!r}")
    for col in [*keys, feature_ts_col, *names, *([created_ts_col] if created_ts_col else [])]:
        if col not in features.column_names:
            raise PointInTimeError(f"feature table has no column {col!r}")
    clash = sorted(set(names) & set(entity_df.column_names))
    if clash:
        raise PointInTimeError(f"feature names clash with entity_df columns: {clash}")
    if ttl is not None and ttl < timedelta(0):
        raise PointInTimeError(f"ttl must not be negative, got {ttl}")

    unit = _ts_unit(entity_df.schema.field(entity_ts_col).type, features.schema.field(feature_ts_col).type)
    n = entity_df.num_rows
    ent = pa.table(
        [*(entity_df.column(k) for k in keys), _naive_ts(entity_df.column(entity_ts_col), unit, entity_ts_col),
         pa.array(np.arange(n, dtype=np.int64))],
        names=[*keys, _ETS, _EIDX],
    )
    feat_cols = [*(features.column(k) for k in keys), _naive_ts(features.column(feature_ts_col), unit, feature_ts_col)]
    feat_names = [*keys, _FTS]
    if created_ts_col:
        created = features.column(created_ts_col)
        if pa.types.is_timestamp(created.type):
            created = _naive_ts(created, unit, created_ts_col)
        feat_cols.append(created)
        feat_names.append("__fp_created")
    feat_cols.append(pa.array(np.arange(features.num_rows, dtype=np.int64)))
    feat_names.append(_FIDX)
    feat = pa.table(feat_cols, names=feat_names)

    # DuckDB picks the matching feature row per entity row (keys and timestamps only); the feature values
    # are then gathered in Arrow with one ``take`` per column, so wide feature tables never pass through SQL.
    key_list = ", ".join(_quote(k) for k in keys)
    order = ("__fp_created DESC NULLS LAST, " if created_ts_col else "") + f"{_FIDX} DESC"
    on = " AND ".join(f"e.{_quote(k)} = f.{_quote(k)}" for k in keys)
    if ttl is None:
        fresh = "TRUE"
    else:
        micros = ttl // timedelta(microseconds=1)
        fresh = f"f.{_FTS} >= e.{_ETS} - to_microseconds({micros}::BIGINT)"
    sql = f"""
        WITH f AS (
            SELECT * FROM feat WHERE {_FTS} IS NOT NULL
            QUALIFY row_number() OVER (PARTITION BY {key_list}, {_FTS} ORDER BY {order}) = 1
        )
        SELECT CASE WHEN {fresh} THEN f.{_FIDX} END AS __fp_pick
        FROM ent e ASOF LEFT JOIN f ON {on} AND e.{_ETS} >= f.{_FTS}
        ORDER BY e.{_EIDX}
    """
    con = duckdb.connect()
    try:
        con.register("ent", ent)
        con.register("feat", feat)
        pick = con.sql(sql).to_arrow_table().column("__fp_pick")
    finally:
        con.close()
    out = entity_df
    for name in names:
        out = out.append_column(features.schema.field(name).with_nullable(True), features.column(name).take(pick))
    return out
