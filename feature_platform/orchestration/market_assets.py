"""Market data: daily OHLCV backfill (coingecko_sync), validation, review queue and idempotent upsert."""

import os
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import dagster as dg
from pydantic import Field

from feature_platform.orchestration.resources import NotifierResource, PlatformPaths
from feature_platform.orchestration.story import TIMESERIES_TAG, platform_asset, run_links

if TYPE_CHECKING:
    from feature_platform.market.store import TimeSeriesStore

GROUP = "market_data"
OVERRIDE_TAG = "fp/override-data-gap"
OVERRIDE_COMMAND = "fp market override ID --by NAME --note WHY"
market_days = dg.DailyPartitionsDefinition(start_date="2024-01-01", timezone="UTC", end_offset=1)


class TimeSeriesResource(dg.ConfigurableResource):
    """The time-series store: DuckDB under the data root, or PostgreSQL/TimescaleDB by URL."""

    url: str | None = Field(default_factory=lambda: os.environ.get("FP_TIMESERIES_URL"))
    paths: dg.ResourceDependency[PlatformPaths]

    def open(self) -> "TimeSeriesStore":
        from feature_platform.market.store import open_store

        return open_store(self.url or f"duckdb:///{self.paths.root / 'market.duckdb'}")


class MarketConfig(dg.Config):
    source: Literal["simulator", "coingecko"] = Field("simulator", description="closed network: simulator")
    assets: list[str] = Field(default_factory=lambda: ["bitcoin", "ethereum", "solana"])
    vs_currency: str = "usd"
    seed: int = Field(7, ge=0, description="simulator seed")
    base_url: str = Field(default_factory=lambda: os.environ.get("FP_COINGECKO_URL",
                                                                 "https://api.coingecko.com/api/v3"))
    rate_per_second: float = Field(0.5, gt=0, description="MarketDataLimiter rate shared by every call")
    inject_gap_minutes: int = Field(0, ge=0, description="demo/test: drop this many minutes of bars at 12:00")
    inject_jump: float = Field(0.0, description="demo/test: log-return level jump at 15:00 for the first asset")


def _window(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> Any:
    ctx = context if isinstance(context, dg.AssetExecutionContext) else context.op_execution_context
    return ctx.partition_time_window


def market_source(config: MarketConfig, day_start: datetime) -> Any:
    from feature_platform.market.ingest import make_source

    return make_source(config.source, seed=config.seed, base_url=config.base_url,
                       rate_per_second=config.rate_per_second, vs_currency=config.vs_currency, day_start=day_start,
                       inject_gap_minutes=config.inject_gap_minutes, inject_jump=config.inject_jump,
                       fault_asset=config.assets[0])


def raw_path(paths: PlatformPaths, day: str) -> Path:
    return paths.layout.market_raw(day)


def curated_dir(paths: PlatformPaths) -> Path:
    return paths.layout.market_curated


def _write_parquet(table: Any, path: Path) -> None:
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


@platform_asset(group=GROUP, stage="ingest", partitions_def=market_days, kinds={"python", "parquet"},
                modules=["feature_platform.market.ingest", "feature_platform.market.validation",
                         "feature_platform.market.review"])
def market_data_raw(context: dg.AssetExecutionContext, config: MarketConfig,
                    paths: PlatformPaths) -> dg.MaterializeResult:
    """coingecko_sync: one UTC day of OHLCV for the configured assets, payloads validated against
    schemas/market_data.json by the client and the frame against the pandera schema; a duplicate candle with
    other values goes to the review queue (the first is kept)."""
    from feature_platform.market.ingest import MarketDataInvalid, accept_day, fetch_day

    started = time.perf_counter()
    window = _window(context)
    source = market_source(config, window.start)
    table = fetch_day(source, config.source, config.assets, window.start, window.end)
    try:
        table, duplicates = accept_day(table, context.partition_key, _review(paths))
    except MarketDataInvalid as exc:
        raise dg.Failure(str(exc), metadata={"problems": dg.MetadataValue.json(exc.problems)}) from None
    path = raw_path(paths, context.partition_key)
    _write_parquet(table, path)
    return dg.MaterializeResult(metadata={
        "dagster/row_count": table.num_rows,
        "duplicates_queued": duplicates,
        "assets": dg.MetadataValue.json(config.assets),
        "coingecko_snapshot": source.snapshot_id(),
        "source": config.source,
        "path": dg.MetadataValue.path(str(path)),
        "duration_s": round(time.perf_counter() - started, 3),
    })


def _review(paths: PlatformPaths) -> Any:
    from feature_platform.market.review import ReviewQueue

    return ReviewQueue(paths.layout.review_db)


@dg.asset_check(asset=market_data_raw, name="no_data_gaps",
                description="No asset has a gap over 5 minutes; gaps block training until overridden "
                            f"(`{OVERRIDE_COMMAND}` with an ID from `fp market blocks`, or run tag "
                            f"{OVERRIDE_TAG}=true).")
def no_data_gaps(context: dg.AssetCheckExecutionContext, paths: PlatformPaths) -> dg.AssetCheckResult:
    import pyarrow.parquet as pq

    from feature_platform.market.ingest import day_gaps

    day = context.op_execution_context.partition_key
    window = _window(context)
    gaps = day_gaps(pq.read_table(raw_path(paths, day)), window.start, window.end)
    review = _review(paths)
    review.record_gaps(gaps, day)
    overridden = context.run.tags.get(OVERRIDE_TAG) == "true"
    if overridden:
        for block in review.open_blocks():
            if block.kind == "data-gap" and block.partition == day:
                review.override_block(block.id, f"run-tag:{context.run.run_id}", f"{OVERRIDE_TAG}=true")
    rows = [{"asset": g.asset, "from": g.start.isoformat(), "to": g.end.isoformat(), "minutes": g.minutes}
            for g in gaps]
    return dg.AssetCheckResult(
        passed=not gaps or overridden, severity=dg.AssetCheckSeverity.ERROR,
        metadata={"gaps": dg.MetadataValue.json(rows), "expected": "no gap over 5 minutes",
                  "actual": f"{len(gaps)} gap(s)", "overridden": overridden},
    )


@dg.asset_check(asset=market_data_raw, name="no_unreviewed_anomalies",
                description="Price jumps beyond 8σ of the rolling window, and duplicate candles with other values, "
                            "go to the review queue (`fp market review`).")
def no_unreviewed_anomalies(context: dg.AssetCheckExecutionContext, paths: PlatformPaths) -> dg.AssetCheckResult:
    import pyarrow.parquet as pq

    from feature_platform.market.validation import flag_anomalies

    day = context.op_execution_context.partition_key
    flagged = flag_anomalies(pq.read_table(raw_path(paths, day)).drop_columns(["source_ts"]), sigma=8.0)
    review = _review(paths)
    added = review.enqueue_anomalies(flagged, day)
    still_open = [i for i in review.list(status="open") if i.partition == day]  # anomalies and duplicates
    return dg.AssetCheckResult(
        passed=not still_open, severity=dg.AssetCheckSeverity.WARN,
        metadata={"flagged": flagged.num_rows, "queued_now": added, "open": len(still_open),
                  "rows": dg.MetadataValue.json([{"id": i.id, "asset": i.asset, "ts": i.ts.isoformat(), **i.detail}
                                                 for i in still_open[:50]])},
    )


@platform_asset(group=GROUP, stage="upsert", partitions_def=market_days, deps=[market_data_raw],
                kinds={"duckdb"}, tags={TIMESERIES_TAG: "true"}, modules=["feature_platform.market.store"])
def market_data(context: dg.AssetExecutionContext, paths: PlatformPaths,
                timeseries: TimeSeriesResource) -> dg.MaterializeResult:
    """timescale_upsert: idempotent upsert of the day into the time-series store, then the curated
    parquet the Feast `market_ohlcv` view reads."""
    import pyarrow.parquet as pq

    day = context.partition_key
    window = _window(context)
    store = timeseries.open()
    try:
        result = store.upsert(pq.read_table(raw_path(paths, day)))
        curated = store.read(start=window.start, end=window.end)
        marker = store.snapshot_marker()
    finally:
        store.close()
    path = curated_dir(paths) / f"{day}.parquet"
    _write_parquet(curated, path)
    return dg.MaterializeResult(metadata={
        "inserted": result.inserted, "updated": result.updated, "unchanged": result.unchanged,
        "batches": result.batches, "copy_batches": result.copy_batches,
        "dagster/row_count": curated.num_rows, "snapshot_marker": marker,
        "curated": dg.MetadataValue.path(str(path)), "duration_s": round(result.seconds, 3),
    })


market_job = dg.define_asset_job("market_backfill_job", selection=dg.AssetSelection.assets(market_data_raw,
                                                                                            market_data),
                                 description="coingecko_sync → validation → timescale_upsert for one UTC day")


@dg.sensor(minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.STOPPED)
def data_gap_alert(context: dg.SensorEvaluationContext, paths: PlatformPaths,
                   notifier: NotifierResource) -> dg.SkipReason:
    """Pages (`data-gap`, P2) once for every new open data-gap block; training stays blocked until overridden."""
    from feature_platform.observability.notify import Notification

    last = int(context.cursor or 0)
    new = [b for b in _review(paths).open_blocks() if b.kind == "data-gap" and b.id > last]
    if not new:
        return dg.SkipReason("no new data gaps")
    notifier.open(paging=True).send(Notification(
        title=f"data-gap: {len(new)} gap(s) in market data; training blocked",
        text="\n".join(f"block {b.id}: {b.reason}" for b in new[:20])
             + f"\nList open blocks: fp market blocks\nOverride after review: {OVERRIDE_COMMAND}",
        severity="error", dataset_version=None, kind="data-gap",
        details={"blocks": len(new), "partitions": ", ".join(sorted({b.partition for b in new}))},
        links=run_links(notifier.dagster_url, None, asset=["market_data_raw"],
                        partition=max(b.partition for b in new),
                        files={"review queue": paths.layout.review_db}),
    ))
    context.update_cursor(str(max(b.id for b in new)))
    return dg.SkipReason(f"alerted on {len(new)} new data gap(s)")
