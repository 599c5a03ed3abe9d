"""Hostile market data: duplicate candles that disagree, and floats out of range, through the real client
(a loopback CoinGecko stub serving exact bytes), the frame rule, the review queue and the DuckDB store.
"""

from __future__ import annotations

import json
import math
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from feature_platform.market.errors import MarketDataError
from feature_platform.market.ingest import MarketDataInvalid, accept_day, ingest_day
from feature_platform.market.payload import validate_payload
from feature_platform.market.review import ReviewQueue
from feature_platform.market.source import CoinGeckoSource, ohlcv_table
from feature_platform.market.store import DuckDBTimeSeriesStore
from feature_platform.market.validation import MAX_MARKET_VALUE, split_duplicates, validate_frame
from tests.market.test_market_client import Planned, Sleeps, StubCoinGecko, make_client

DAY = datetime(2023, 11, 15, tzinfo=UTC)
DAY_MS = int(DAY.timestamp() * 1000)
STEP_MS = 30 * 60_000
DUP_AT = 10  # the candle repeated with other values


def candle(i: int, bump: float = 0.0) -> list[float]:
    return [DAY_MS + (i + 1) * STEP_MS, 100.0 + i, 103.0 + i + bump, 99.0 + i, 101.0 + i + bump]


def day_payloads(repeats: list[list[float]]) -> tuple[list[list[float]], dict[str, Any]]:
    rows = [candle(i) for i in range(48)]
    rows[DUP_AT + 1:DUP_AT + 1] = repeats  # repeats follow the original, as a feed that re-sends would
    closes = [DAY_MS + (i + 1) * STEP_MS for i in range(48)]
    chart = {"prices": [[t, 100.0] for t in closes], "market_caps": [[t, 1e9] for t in closes],
             "total_volumes": [[t, 50.0] for t in closes]}
    return rows, chart


@pytest.fixture
def stub() -> Any:
    s = StubCoinGecko()
    yield s
    s.close()


def source_for(stub: StubCoinGecko) -> CoinGeckoSource:
    return CoinGeckoSource(make_client(stub, Sleeps()), now=lambda: DAY + timedelta(hours=23))


# -- duplicate candles ---------------------------------------------------------------------------------------


def test_a_differing_duplicate_candle_goes_to_review_and_the_first_is_stored(stub: StubCoinGecko,
                                                                            tmp_path: Path) -> None:
    stub.ohlc, stub.chart = day_payloads([candle(DUP_AT, bump=0.75), candle(DUP_AT)])
    review, store = ReviewQueue(tmp_path / "review.sqlite"), DuckDBTimeSeriesStore(tmp_path / "market.duckdb")
    result = ingest_day(source_for(stub), "coingecko", ["bitcoin"], DAY, DAY + timedelta(days=1), store, review)

    assert result.rows == 48 and result.duplicates_queued == 1
    (item,) = review.list(kind="duplicate")
    ts = DAY + timedelta(minutes=30 * DUP_AT)
    assert (item.asset, item.ts, item.status) == ("bitcoin", ts, "open")
    first, second = item.detail["versions"]
    assert (first["close"], second["close"]) == (101.0 + DUP_AT, 101.75 + DUP_AT)  # the exact repeat collapsed
    stored = [r for r in store.read(asset="bitcoin").to_pylist() if r["ts"] == ts]
    assert [r["close"] for r in stored] == [first["close"]]  # the first was kept, not silently replaced
    blocked, reasons = review.training_blocked()
    assert blocked and any(r.startswith(f"duplicate #{item.id} bitcoin") for r in reasons)
    assert item in review.list()  # a reviewer's default listing shows it

    again = ingest_day(source_for(stub), "coingecko", ["bitcoin"], DAY, DAY + timedelta(days=1), store, review)
    assert again.duplicates_queued == 0 and len(review.list(kind="duplicate")) == 1  # idempotent
    review.resolve(item.id, "approved", "alice", "first candle matches the exchange")
    assert not any(r.startswith("duplicate") for r in review.training_blocked()[1])
    store.close()


def test_an_identical_repeat_is_dropped_silently(stub: StubCoinGecko, tmp_path: Path) -> None:
    stub.ohlc, stub.chart = day_payloads([candle(DUP_AT), candle(DUP_AT)])
    review = ReviewQueue(tmp_path / "review.sqlite")
    table = source_for(stub).fetch_ohlcv("bitcoin", DAY, DAY + timedelta(days=1))
    assert table.num_rows == 50  # the source keeps every row; deciding is the validation rule's job
    kept, queued = accept_day(table, "2023-11-15", review)
    assert kept.num_rows == 48 and queued == 0 and review.list(kind=None) == []


NAN = float("nan")


@pytest.mark.parametrize(("versions", "distinct"), [
    ([(1.0, 50.0), (1.0, 50.0)], 1),
    ([(NAN, 50.0), (NAN, 50.0)], 1),  # NaN equals NaN here; the frame rule refuses it afterwards
    ([(1.0, 0.0), (1.0, -0.0)], 2),  # the store's checksums tell -0.0 from 0.0, so does this
    ([(1.0, 50.0), (1.0, None)], 2),
    ([(1.0, 50.0), (2.0, 50.0), (1.0, 50.0), (3.0, 50.0)], 3),
    ([(1.0, 50.0), (1.0 + 1e-12, 50.0)], 2),
])
def test_split_duplicates_compares_exact_values_and_keeps_the_first(versions: list[tuple[float, float | None]],
                                                                    distinct: int) -> None:
    n = len(versions)
    ts = [0, *([0] * (n - 1)), 60_000_000]
    closes = [v[0] for v in versions] + [1.0]
    vols = [v[1] for v in versions] + [1.0]
    table = pa.concat_tables([ohlcv_table("btc", ts, closes, [5.0] * (n + 1), [0.5] * (n + 1), closes, vols),
                              ohlcv_table("eth", [0], [1.0], [1.0], [1.0], [1.0], [1.0])])
    kept, duplicates = split_duplicates(table)
    assert kept.num_rows == 3 and kept.column("asset").to_pylist() == ["btc", "btc", "eth"]
    assert repr(kept.column("close")[0].as_py()) == repr(versions[0][0])
    assert len(duplicates) == (0 if distinct == 1 else 1)
    if duplicates:
        assert len(duplicates[0].versions) == distinct and duplicates[0].versions[0]["volume"] == versions[0][1]


def test_a_queued_duplicate_with_non_finite_values_stays_readable_json(tmp_path: Path) -> None:
    table = ohlcv_table("btc", [0, 0], [1.0, 1.0], [2.0, math.inf], [0.5, 0.5], [1.0, NAN], [1.0, 1.0])
    review = ReviewQueue(tmp_path / "review.sqlite")
    kept, queued = accept_day(table, "1970-01-01", review)
    assert kept.num_rows == 1 and queued == 1
    (item,) = review.list()
    assert item.detail["versions"][1] == {"open": 1.0, "high": "inf", "low": 0.5, "close": "nan", "volume": 1.0}
    json.loads(json.dumps(item.detail, allow_nan=False))


def test_a_queue_created_before_duplicates_existed_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "review.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE review_items (
            id INTEGER PRIMARY KEY AUTOINCREMENT, asset TEXT NOT NULL, ts TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('anomaly', 'data-gap')), detail TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'approved', 'rejected', 'overridden')),
            partition TEXT NOT NULL, created_at TEXT NOT NULL, resolved_at TEXT, resolver TEXT, note TEXT,
            UNIQUE (asset, ts, kind));
        CREATE INDEX review_items_status ON review_items (status, kind);
        INSERT INTO review_items (asset, ts, kind, detail, partition, created_at)
        VALUES ('btc', '2026-01-01T00:00:00.000000Z', 'anomaly', '{"zscore": 9.5}', 'p', '2026-01-01T00:00:00Z');
    """)
    conn.close()
    review = ReviewQueue(path)
    table = ohlcv_table("btc", [0, 0], [1.0, 1.0], [2.0, 2.5], [0.5, 0.5], [1.0, 1.5], [1.0, 1.0])
    assert accept_day(table, "p2", review)[1] == 1
    assert [(i.id, i.kind) for i in review.list()] == [(2, "duplicate"), (1, "anomaly")]
    indexes = sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type = 'index'").fetchall()
    assert ("review_items_status",) in indexes
    ReviewQueue(path)  # a second open finds nothing to migrate
    assert len(review.list(kind=None)) == 2


# -- out-of-range floats: refused by the rule, at the payload and at the frame -------------------------------

T = DAY_MS + STEP_MS


@pytest.mark.parametrize(("kind", "raw", "where", "why"), [
    ("ohlc", f"[[{T}, 1e999, 2, 0.5, 1]]", r"\$\[0\]\[1\]", "inf is not of type 'number'"),  # parses as inf
    ("ohlc", f"[[{T}, -1e999, 2, 0.5, 1]]", r"\$\[0\]\[1\]", "-inf is not of type 'number'"),
    ("ohlc", f"[[{T}, 1e308, 1e308, 0.5, 1]]", r"\$\[0\]\[1\]", "greater than the maximum"),
    ("ohlc", f"[[{T}, 1, 2, 0.5, 1.0000000000000001e19]]", r"\$\[0\]\[4\]", "greater than the maximum"),
    ("ohlc", f"[[{T}, -5, 2, 0.5, 1]]", r"\$\[0\]\[1\]", "less than or equal to the minimum"),
    ("ohlc", f"[[{T}, 0, 2, 0.5, 1]]", r"\$\[0\]\[1\]", "less than or equal to the minimum"),
    ("ohlc", f"[[{T}, -0.0, 2, 0.5, 1]]", r"\$\[0\]\[1\]", "less than or equal to the minimum"),
    ("ohlc", f"[[{T}, true, 2, 0.5, 1]]", r"\$\[0\]\[1\]", "not of type 'number'"),
    ("ohlc", f'[[{T}, "1", 2, 0.5, 1]]', r"\$\[0\]\[1\]", "not of type 'number'"),
    ("ohlc", "[[1e308, 1, 2, 0.5, 1]]", r"\$\[0\]\[0\]", "greater than the maximum"),
    ("ohlc", "[[1e999, 1, 2, 0.5, 1]]", r"\$\[0\]\[0\]", "not of type 'integer'"),
    ("ohlc", f"[[{T}.5, 1, 2, 0.5, 1]]", r"\$\[0\]\[0\]", "not of type 'integer'"),
    ("ohlc", "[[-1, 1, 2, 0.5, 1]]", r"\$\[0\]\[0\]", "less than the minimum"),
    ("chart", f'{{"prices": [[{T}, 1]], "market_caps": [], "total_volumes": [[{T}, 1e999]]}}',
     r"\$\.total_volumes\[0\]\[1\]", "inf is not of type 'number'"),
    ("chart", f'{{"prices": [[{T}, 1]], "market_caps": [], "total_volumes": [[{T}, -0.5]]}}',
     r"\$\.total_volumes\[0\]\[1\]", "less than the minimum"),
    ("chart", f'{{"prices": [[{T}, 1]], "market_caps": [[{T}, 2e18]], "total_volumes": []}}',
     r"\$\.market_caps\[0\]\[1\]", "greater than the maximum"),
    ("chart", f'{{"prices": [[{T}, 0]], "market_caps": [], "total_volumes": []}}',
     r"\$\.prices\[0\]\[1\]", "less than or equal to the minimum"),
])
def test_out_of_range_payload_values_are_refused_by_the_schema(stub: StubCoinGecko, kind: str, raw: str,
                                                               where: str, why: str) -> None:
    stub.plan.append(Planned(200, raw=raw.encode()))
    client = make_client(stub, Sleeps())
    with pytest.raises(MarketDataError, match=rf"{'ohlc' if kind == 'ohlc' else 'market_chart'} payload invalid "
                                              rf"at {where}: .*{why}") as error:
        if kind == "ohlc":
            client.ohlc("bitcoin", "usd", 1)
        else:
            client.market_chart_range("bitcoin", "usd", 0, 1)
    assert "\n" not in str(error.value) and len(stub.seen) == 1  # one line, not retried


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_json_constants_are_not_json(stub: StubCoinGecko, constant: str) -> None:
    stub.plan.append(Planned(200, raw=f"[[{T}, {constant}, 2, 0.5, 1]]".encode()))
    with pytest.raises(MarketDataError, match=f"invalid JSON: non-JSON constant {constant}"):
        make_client(stub, Sleeps()).ohlc("bitcoin", "usd", 1)


@pytest.mark.parametrize("value", [NAN, math.inf, -math.inf, 1e308, -1.0, 0.0])
def test_the_payload_rule_itself_refuses_python_floats_no_encoder_involved(value: float) -> None:
    with pytest.raises(MarketDataError, match=r"ohlc payload invalid at \$\[0\]\[2\]"):
        validate_payload("ohlc", [[T, 1.0, value, 0.5, 1.0]])
    validate_payload("ohlc", [[T, 1.0, MAX_MARKET_VALUE, 0.5, 1.0]])  # the bound itself is allowed


def bar(**values: float | None) -> pa.Table:
    row = {"open": 100.0, "high": 101.0, "low": 99.0, "close": 100.5, "volume": 10.0, **values}
    return ohlcv_table("btc", [0], [row["open"]], [row["high"]], [row["low"]], [row["close"]], [row["volume"]])


@pytest.mark.parametrize(("values", "column", "check"), [
    ({"close": math.inf, "high": math.inf}, "close", "less_than_or_equal_to"),
    ({"high": 1e308}, "high", "less_than_or_equal_to"),
    ({"open": NAN}, "open", "not_nullable"),
    ({"low": -math.inf}, "low", "greater_than"),
    ({"low": -1.0}, "low", "greater_than"),
    ({"volume": math.inf}, "volume", "less_than_or_equal_to"),
    ({"volume": 2e18}, "volume", "less_than_or_equal_to"),
    ({"volume": -0.5}, "volume", "greater_than_or_equal_to"),
    ({"volume": NAN}, "volume", "not_nullable"),
    ({"volume": None}, "volume", "not_nullable"),
])
def test_out_of_range_frame_values_are_refused_by_the_frame_rule(values: dict[str, float | None], column: str,
                                                                 check: str) -> None:
    problems = validate_frame(bar(**values))
    assert any(p.startswith(f"{column}: failed {check}") for p in problems), problems


class FixedSource:
    """A MarketDataSource serving one fixed table (what a broken feed would send)."""

    def __init__(self, table: pa.Table) -> None:
        self.table = table

    def fetch_ohlcv(self, asset: str, start: datetime, end: datetime) -> pa.Table:
        return self.table

    def snapshot_id(self) -> str:
        return "fixed"


@pytest.mark.parametrize("values", [{"close": math.inf, "high": math.inf}, {"volume": 1e300}, {"open": NAN}])
def test_ingest_refuses_an_out_of_range_day_and_stores_and_queues_nothing(values: dict[str, float],
                                                                           tmp_path: Path) -> None:
    review, store = ReviewQueue(tmp_path / "review.sqlite"), DuckDBTimeSeriesStore(":memory:")
    dup = pa.concat_tables([bar(**values), bar(close=100.7)])  # a differing duplicate too: not queued either
    start = datetime(1970, 1, 1, tzinfo=UTC)
    with pytest.raises(MarketDataInvalid, match="market data 1970-01-01 failed validation") as error:
        ingest_day(FixedSource(dup), "simulator", ["btc"], start, start + timedelta(days=1), store, review)
    assert "\n" not in str(error.value)
    assert store.count() == 0 and review.list(kind=None) == []
    store.close()
