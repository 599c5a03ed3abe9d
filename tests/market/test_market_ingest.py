"""One day of market data end to end in the domain: fetch, validate, review, upsert."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from feature_platform.market.ingest import MarketDataInvalid, ingest_day, make_source
from feature_platform.market.review import ReviewQueue
from feature_platform.market.source import SimulatedMarketSource
from feature_platform.market.store import DuckDBTimeSeriesStore

START = datetime(2026, 11, 20, tzinfo=UTC)
END = START + timedelta(days=1)
ASSETS = ["bitcoin", "ethereum"]


def test_ingest_is_idempotent_and_faults_block_training_but_keep_rows(tmp_path: Path) -> None:
    store = DuckDBTimeSeriesStore(tmp_path / "market.duckdb")
    review = ReviewQueue(tmp_path / "review.sqlite")
    clean = ingest_day(make_source("simulator", seed=3), "simulator", ASSETS, START, END, store, review)
    assert clean.rows == 2 * 1440 and clean.upsert.inserted == 2 * 1440 and clean.gaps == []
    again = ingest_day(make_source("simulator", seed=3), "simulator", ASSETS, START, END, store, review)
    assert (again.upsert.inserted, again.upsert.updated, again.upsert.unchanged) == (0, 0, 2 * 1440)
    assert again.snapshot_marker == clean.snapshot_marker
    assert review.training_blocked() == (False, [])

    day2 = START + timedelta(days=1)
    faulty = make_source("simulator", seed=3, day_start=day2, inject_gap_minutes=20, inject_jump=0.4,
                         fault_asset="bitcoin")
    result = ingest_day(faulty, "simulator", ASSETS, day2, day2 + timedelta(days=1), store, review)
    assert [g.asset for g in result.gaps] == ["bitcoin"] and result.anomalies_queued >= 1
    assert result.upsert.inserted == result.rows == 2 * 1440 - 20
    blocked, reasons = review.training_blocked()
    assert blocked and len(reasons) == 1 + result.anomalies_queued
    store.close()


def test_invalid_frames_are_refused_and_nothing_is_stored(tmp_path: Path) -> None:
    store = DuckDBTimeSeriesStore(tmp_path / "market.duckdb")
    review = ReviewQueue(tmp_path / "review.sqlite")

    class Inverted:
        """A feed whose bars have high and low swapped: refused before anything is stored."""

        inner = SimulatedMarketSource(1)

        def snapshot_id(self) -> str:
            return "inverted"

        def fetch_ohlcv(self, asset: str, start: datetime, end: datetime) -> pa.Table:
            table = self.inner.fetch_ohlcv(asset, start, end)
            high, low = table.column("high"), table.column("low")
            table = table.set_column(table.schema.get_field_index("high"), "high", low)
            return table.set_column(table.schema.get_field_index("low"), "low", high)

    with pytest.raises(MarketDataInvalid, match="2026-11-20 failed validation"):
        ingest_day(Inverted(), "simulator", ASSETS, START, END, store, review)
    assert store.count() == 0
    store.close()
