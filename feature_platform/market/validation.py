"""Is this market data usable? Payload schema, frame contract, duplicate candles, gaps (> 5 min) and price
jumps (> 8σ).

Rules return data (failure lines, gaps, flagged rows) rather than raising, so the asset check, the CLI and the
review queue each decide what a failure means for them.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pandera.pandas as pa_
import pyarrow as pa

from feature_platform.market.errors import MarketDataError
from feature_platform.market.payload import market_data_schema, validate_payload
from feature_platform.market.source import OHLCV_ARROW_SCHEMA

__all__ = [
    "ANOMALY_ARROW_SCHEMA",
    "MAX_MARKET_VALUE",
    "OHLCV_SCHEMA",
    "Duplicate",
    "Gap",
    "MarketDataError",
    "find_gaps",
    "flag_anomalies",
    "split_duplicates",
    "validate_frame",
    "validate_payload",
]


def _high_covers_body(df: pd.DataFrame) -> pd.Series:
    return df["high"] >= np.maximum(df["open"], df["close"])


def _low_under_body(df: pd.DataFrame) -> pd.Series:
    return df["low"] <= np.minimum(df["open"], df["close"])


def _ts_sorted_per_asset(df: pd.DataFrame) -> pd.Series:
    # A row fails when its ts is not after the previous row of the same asset (in table order).
    prev = df.groupby("asset", sort=False)["ts"].shift(1)
    return prev.isna() | (df["ts"] > prev)


# The payload schema's bound (one rule for payloads and frames): finite, and far enough from float overflow
# that sums, products and log returns over a day stay finite. NaN is refused as a null, inf by the bound.
MAX_MARKET_VALUE = float(market_data_schema()["$defs"]["price"]["maximum"])
_POSITIVE = [pa_.Check.gt(0), pa_.Check.le(MAX_MARKET_VALUE)]
_NON_NEGATIVE = [pa_.Check.ge(0), pa_.Check.le(MAX_MARKET_VALUE)]

OHLCV_SCHEMA = pa_.DataFrameSchema(
    {
        "asset": pa_.Column(str, pa_.Check.str_length(min_value=1), nullable=False),
        "ts": pa_.Column(pd.DatetimeTZDtype("us", "UTC"), nullable=False),
        "open": pa_.Column("float64", _POSITIVE, nullable=False),
        "high": pa_.Column("float64", _POSITIVE, nullable=False),
        "low": pa_.Column("float64", _POSITIVE, nullable=False),
        "close": pa_.Column("float64", _POSITIVE, nullable=False),
        "volume": pa_.Column("float64", _NON_NEGATIVE, nullable=False),
    },
    checks=[
        pa_.Check(_high_covers_body, name="high_ge_max_open_close", error="high >= max(open, close)"),
        pa_.Check(_low_under_body, name="low_le_min_open_close", error="low <= min(open, close)"),
        pa_.Check(_ts_sorted_per_asset, name="ts_sorted_per_asset", error="ts strictly increasing per asset"),
    ],
    unique=["asset", "ts"],
    strict=True,
    ordered=True,
    name="ohlcv",
)


def validate_frame(table: pa.Table, *, max_lines: int = 20) -> list[str]:
    """Every contract failure as a readable one-liner (empty list: valid). Validation is lazy: all rules run."""
    problems: list[str] = []
    if table.schema.names != OHLCV_ARROW_SCHEMA.names:
        problems.append(f"columns {table.schema.names} != expected {OHLCV_ARROW_SCHEMA.names}")
    else:
        for field in OHLCV_ARROW_SCHEMA:
            actual = table.schema.field(field.name).type
            if actual != field.type:
                problems.append(f"column {field.name}: Arrow type {actual} != expected {field.type}")
    if problems:
        return problems
    frame = table.to_pandas()
    try:
        OHLCV_SCHEMA.validate(frame, lazy=True)
    except pa_.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        # Frame-wide checks (row rules, uniqueness) are reported once, not once per column they touched.
        where = cases["column"].where(cases["schema_context"] == "Column", "frame")
        for (column, check), rows in cases.assign(where=where).groupby(["where", "check"], sort=False):
            index = sorted({int(i) for i in rows["index"].dropna().tolist()})
            sample = [str(v) for v in rows["failure_case"].tolist()[:3]] if column != "frame" else []
            shown = f"rows {index[:5]}" + (f" (+{len(index) - 5})" if len(index) > 5 else "")
            values = f"; values {sample}" if sample else ""
            problems.append(f"{column}: failed {check} ({shown}{values})")
    if len(problems) > max_lines:
        problems = [*problems[:max_lines], f"... and {len(problems) - max_lines} more failure(s)"]
    return problems


VALUE_COLUMNS = ("open", "high", "low", "close", "volume")


@dataclass(frozen=True)
class Duplicate:
    """Different candles for one ``asset`` and bar time in one batch; ``versions[0]`` is the one kept."""

    asset: str
    ts: datetime
    versions: tuple[Mapping[str, float | None], ...]


def _same(a: Mapping[str, float | None], b: Mapping[str, float | None]) -> bool:
    # repr: NaN equals NaN here, and -0.0 differs from 0.0, as in the store's row checksums.
    return all(repr(a.get(c)) == repr(b.get(c)) for c in VALUE_COLUMNS)


def split_duplicates(table: pa.Table) -> tuple[pa.Table, list[Duplicate]]:
    """Keep the first row of each (asset, ts); return it with every key whose rows disagree on a value.

    A repeat with identical values carries no information and is dropped silently; a repeat that differs
    must not silently win (nor lose): the caller queues each ``Duplicate`` for review, like an anomaly.
    """
    if table.num_rows == 0:
        return table, []
    keys = table.select(["asset", "ts"]).group_by(["asset", "ts"]).aggregate([([], "count_all")])
    if keys.num_rows == table.num_rows:
        return table, []
    values = [c for c in VALUE_COLUMNS if c in table.column_names]
    first: dict[tuple[str, datetime], int] = {}
    versions: dict[tuple[str, datetime], list[dict[str, float | None]]] = {}
    rows = table.select(["asset", "ts", *values]).to_pylist()
    for i, row in enumerate(rows):
        key = (row["asset"], row["ts"])
        record = {c: row[c] for c in values}
        if key not in first:
            first[key] = i
            versions[key] = [record]
        elif not any(_same(record, seen) for seen in versions[key]):
            versions[key].append(record)
    kept = table.take(pa.array(sorted(first.values()), pa.int64()))
    duplicates = [Duplicate(asset, ts, tuple(found)) for (asset, ts), found in versions.items() if len(found) > 1]
    return kept, duplicates


def json_value(value: float | None) -> float | str | None:
    """A value for a JSON detail: finite floats as numbers, NaN and infinities spelled out."""
    return value if value is None or math.isfinite(value) else repr(value)


@dataclass(frozen=True)
class Gap:
    """No bar for ``asset`` strictly between ``start`` and ``end`` (consecutive bar open times)."""

    asset: str
    start: datetime
    end: datetime
    minutes: float


def find_gaps(table: pa.Table, max_gap: timedelta = timedelta(minutes=5), *, expected_start: datetime | None = None,
              expected_end: datetime | None = None) -> list[Gap]:
    """Spacings between consecutive bars of an asset larger than ``max_gap`` (optionally also at the edges).

    ``expected_start``/``expected_end`` (the partition's window) also catch a feed that starts late or stops early.
    """
    gaps: list[Gap] = []
    if table.num_rows == 0:
        return gaps
    frame = table.select(["asset", "ts"]).to_pandas()
    for asset, group in frame.groupby("asset", sort=True):
        times = [expected_start] if expected_start is not None else []
        times += [t.to_pydatetime() for t in sorted(group["ts"])]
        if expected_end is not None:
            times.append(expected_end)
        for before, after in itertools.pairwise(times):
            if after - before > max_gap:
                gaps.append(Gap(str(asset), before, after, (after - before).total_seconds() / 60))
    return gaps


ANOMALY_ARROW_SCHEMA = pa.schema([
    pa.field("asset", pa.string()),
    pa.field("ts", pa.timestamp("us", tz="UTC")),
    pa.field("close", pa.float64()),
    pa.field("prev_close", pa.float64()),
    pa.field("log_return", pa.float64()),
    pa.field("rolling_std", pa.float64()),
    pa.field("zscore", pa.float64()),
])


def flag_anomalies(table: pa.Table, sigma: float = 8.0, window: int = 60) -> pa.Table:
    """Rows whose close-to-close log return exceeds ``sigma`` × the std of the previous ``window`` returns.

    No look-ahead: a row is judged only against returns strictly before it, and only once a full window exists.
    A flat window (std 0) cannot scale a move, so it is skipped rather than flagged with an infinite z-score.
    """
    if window < 2:
        raise ValueError("window must be >= 2")
    if table.num_rows == 0:
        return ANOMALY_ARROW_SCHEMA.empty_table()
    frame = table.select(["asset", "ts", "close"]).to_pandas().sort_values(["asset", "ts"], kind="stable")
    out: list[pd.DataFrame] = []
    for _, group in frame.groupby("asset", sort=True):
        close = group["close"].astype("float64")
        prev = close.shift(1)
        ret = np.log(close / prev)
        std = ret.shift(1).rolling(window, min_periods=window).std(ddof=1)
        z = ret / std
        hit = (std > 0) & (z.abs() > sigma)
        if hit.any():
            out.append(pd.DataFrame({"asset": group["asset"][hit], "ts": group["ts"][hit], "close": close[hit],
                                     "prev_close": prev[hit], "log_return": ret[hit], "rolling_std": std[hit],
                                     "zscore": z[hit]}))
    if not out:
        return ANOMALY_ARROW_SCHEMA.empty_table()
    return pa.Table.from_pandas(pd.concat(out, ignore_index=True), schema=ANOMALY_ARROW_SCHEMA, preserve_index=False)
