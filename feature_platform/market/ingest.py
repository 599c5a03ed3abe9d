"""One UTC day of market data: fetch (with `source_ts`), screen duplicates, validate, review and upsert.

The Dagster market assets run these steps as separate assets and checks; a training run with
`run_coingecko_fetch` runs them in one go. Either way each rule is the one written here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from feature_platform.market.review import ReviewQueue
from feature_platform.market.source import MarketDataSource
from feature_platform.market.store import TimeSeriesStore, UpsertResult
from feature_platform.market.validation import Gap, find_gaps, flag_anomalies, split_duplicates, validate_frame

SourceKind = Literal["simulator", "coingecko"]
MAX_GAP = timedelta(minutes=5)
BAR = timedelta(minutes=1)


class MarketDataInvalid(ValueError):
    """A day whose frame fails the pandera schema; nothing of it is stored."""

    def __init__(self, day: str, problems: list[str]) -> None:
        super().__init__(f"market data {day} failed validation: {problems[0]}")
        self.problems = problems


def make_source(kind: SourceKind, *, seed: int = 7, base_url: str = "", rate_per_second: float = 0.5,
                vs_currency: str = "usd", day_start: datetime | None = None, inject_gap_minutes: int = 0,
                inject_jump: float = 0.0, fault_asset: str | None = None) -> MarketDataSource:
    """The CoinGecko client behind a shared limiter, or the seeded simulator (with optional demo faults)."""
    from feature_platform.market.client import CoinGeckoClient
    from feature_platform.market.limiter import MarketDataLimiter
    from feature_platform.market.source import CoinGeckoSource, SimulatedMarketSource

    if kind == "coingecko":
        limiter = MarketDataLimiter(rate_per_second=rate_per_second, burst=5)
        return CoinGeckoSource(CoinGeckoClient(base_url, limiter=limiter), vs_currency)
    faults: dict[str, Any] = {}
    if inject_gap_minutes and day_start is not None:
        faults.update(gap_at=day_start + timedelta(hours=12), gap=timedelta(minutes=inject_gap_minutes))
    if inject_jump and day_start is not None:
        faults.update(jump_at=day_start + timedelta(hours=15), jump_log_return=inject_jump)
    if faults and fault_asset is not None:
        faults["fault_assets"] = [fault_asset]
    return SimulatedMarketSource(seed, **faults)


def fetch_day(source: MarketDataSource, kind: SourceKind, assets: list[str], start: datetime,
              end: datetime) -> pa.Table:
    """Every asset's bars in [start, end) plus `source_ts`: when the source produced each row.

    A simulated bar is final at its close, a fetched one when fetched, so re-ingesting the same rows
    changes nothing while a re-fetch from the API counts as newer.
    """
    fetched_at = datetime.now(tz=UTC)
    table = pa.concat_tables([source.fetch_ohlcv(asset, start, end) for asset in assets])
    if kind == "coingecko":
        times = pa.array([fetched_at] * table.num_rows, pa.timestamp("us", tz="UTC"))
    else:
        times = pc.add(table.column("ts"), pa.scalar(BAR, pa.duration("us")))
    return table.append_column("source_ts", times)


def require_valid(table: pa.Table, day: str) -> None:
    problems = validate_frame(table.drop_columns([c for c in ("source_ts",) if c in table.column_names]))
    if problems:
        raise MarketDataInvalid(day, problems)


def accept_day(table: pa.Table, day: str, review: ReviewQueue) -> tuple[pa.Table, int]:
    """The rows of a day that may be stored, and how many duplicate items were newly queued.

    Of each (asset, ts) the first row is kept; a repeat with other values goes to the review queue (it blocks
    training until reviewed, like an anomaly). The kept frame must then pass validation, else nothing of the
    day is stored or queued (``MarketDataInvalid``).
    """
    kept, duplicates = split_duplicates(table)
    require_valid(kept, day)
    return kept, review.record_duplicates(duplicates, day)


def day_gaps(table: pa.Table, start: datetime, end: datetime) -> list[Gap]:
    """Gaps over 5 minutes, including a feed that starts late or stops early within the day."""
    return find_gaps(table, MAX_GAP, expected_start=start, expected_end=end - BAR)


@dataclass(frozen=True)
class IngestResult:
    rows: int
    gaps: list[Gap]
    anomalies_queued: int
    upsert: UpsertResult
    snapshot_marker: str
    duplicates_queued: int = 0


def ingest_day(source: MarketDataSource, kind: SourceKind, assets: list[str], start: datetime, end: datetime,
               store: TimeSeriesStore, review: ReviewQueue) -> IngestResult:
    """All steps for one day: validation refuses bad frames; duplicates, gaps and anomalies block training via
    the review queue but the rows are still stored (the data is real, only its use is held back)."""
    day = start.date().isoformat()
    table, duplicates = accept_day(fetch_day(source, kind, assets, start, end), day, review)
    gaps = day_gaps(table, start, end)
    review.record_gaps(gaps, day)
    queued = review.enqueue_anomalies(flag_anomalies(table.drop_columns(["source_ts"])), day)
    result = store.upsert(table)
    return IngestResult(table.num_rows, gaps, queued, result, store.snapshot_marker(), duplicates)
