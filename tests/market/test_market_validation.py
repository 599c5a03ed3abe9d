"""Simulator, payload/frame validation, gap and anomaly rules, and the review queue with its training blocks."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from feature_platform.market.errors import MarketDataError
from feature_platform.market.review import ReviewError, ReviewQueue
from feature_platform.market.source import (
    OHLCV_ARROW_SCHEMA,
    MarketDataSource,
    Regime,
    SimulatedMarketSource,
    ohlcv_table,
)
from feature_platform.market.validation import Gap, find_gaps, flag_anomalies, validate_frame, validate_payload

DAY = datetime(2024, 3, 1, tzinfo=UTC)


def day_of(source: SimulatedMarketSource, asset: str = "BTC", days: int = 1) -> pa.Table:
    return source.fetch_ohlcv(asset, DAY, DAY + timedelta(days=days))


# ------------------------------------------------------------------------------------------------ simulator


def test_simulator_is_deterministic_and_seeded_per_asset() -> None:
    a = day_of(SimulatedMarketSource(42))
    assert a.schema == OHLCV_ARROW_SCHEMA and a.num_rows == 1440
    assert a.equals(day_of(SimulatedMarketSource(42)))
    assert not a["close"].equals(day_of(SimulatedMarketSource(43))["close"])
    assert not a["close"].equals(day_of(SimulatedMarketSource(42), "ETH")["close"])
    assert SimulatedMarketSource(42).snapshot_id() == SimulatedMarketSource(42).snapshot_id()
    assert SimulatedMarketSource(42).snapshot_id() != SimulatedMarketSource(43).snapshot_id()
    assert SimulatedMarketSource(42).snapshot_id() != SimulatedMarketSource(42, jump_at=DAY).snapshot_id()
    assert isinstance(SimulatedMarketSource(42), MarketDataSource)


def test_a_daily_partition_regenerates_alone_and_days_join_without_a_seam() -> None:
    two_days = day_of(SimulatedMarketSource(5), days=2)
    second_alone = SimulatedMarketSource(5).fetch_ohlcv("BTC", DAY + timedelta(days=1), DAY + timedelta(days=2))
    assert two_days.slice(1440).equals(second_alone)
    closes, opens = two_days["close"].to_numpy(), two_days["open"].to_numpy()
    assert opens[1440] == pytest.approx(closes[1439])  # next day opens where the previous one closed
    partial = SimulatedMarketSource(5).fetch_ohlcv("BTC", DAY + timedelta(hours=6), DAY + timedelta(hours=7))
    assert partial.num_rows == 60 and partial.equals(two_days.slice(360, 60))


def test_simulated_prices_are_plausible_and_valid() -> None:
    source = SimulatedMarketSource(11)
    for asset in ("BTC", "ETH", "SOL"):
        table = day_of(source, asset, days=3)
        assert validate_frame(table) == []
        close = table["close"].to_numpy()
        assert (close > 0).all()
        returns = np.diff(np.log(close))
        assert 1e-5 < returns.std() < 5e-3  # per-minute vol of a crypto-like asset
        assert find_gaps(table) == [] and flag_anomalies(table).num_rows == 0


def test_regimes_set_the_volatility() -> None:
    calm = (Regime("calm", 0.0, 0.01),)
    wild = (Regime("wild", 0.0, 0.08),)
    one = ((1.0,),)
    vol_calm = np.diff(np.log(day_of(SimulatedMarketSource(1, regimes=calm, transitions=one))["close"].to_numpy()))
    vol_wild = np.diff(np.log(day_of(SimulatedMarketSource(1, regimes=wild, transitions=one))["close"].to_numpy()))
    assert vol_wild.std() / vol_calm.std() == pytest.approx(8.0, rel=0.25)
    # With the default regimes, the realised daily volatility changes as the chain moves between regimes.
    table = SimulatedMarketSource(3).fetch_ohlcv("BTC", DAY, DAY + timedelta(days=30))
    daily = np.log(table["close"].to_numpy()).reshape(30, 1440)
    per_day = np.diff(daily, axis=1).std(axis=1)
    assert per_day.max() / per_day.min() > 2.0


def test_injected_gap_and_jump_are_detected() -> None:
    gap_at, jump_at = DAY + timedelta(hours=5), DAY + timedelta(hours=12)
    source = SimulatedMarketSource(9, gap_at=gap_at, gap=timedelta(minutes=10), jump_at=jump_at,
                                   fault_assets={"BTC"})
    table = day_of(source)
    assert validate_frame(table) == []
    assert find_gaps(table) == [Gap("BTC", gap_at - timedelta(minutes=1), gap_at + timedelta(minutes=10), 11.0)]
    flagged = flag_anomalies(table).to_pylist()
    assert [r["ts"] for r in flagged] == [jump_at]
    assert flagged[0]["log_return"] == pytest.approx(0.25, abs=0.01) and flagged[0]["zscore"] > 8
    clean = day_of(source, "ETH")  # faults limited to BTC
    assert find_gaps(clean) == [] and flag_anomalies(clean).num_rows == 0


def test_simulator_rejects_bad_configuration() -> None:
    with pytest.raises(ValueError, match="interval"):
        SimulatedMarketSource(1, interval=timedelta(minutes=7))
    with pytest.raises(ValueError, match="timezone"):
        SimulatedMarketSource(1).fetch_ohlcv("BTC", datetime(2024, 1, 1), datetime(2024, 1, 2))
    with pytest.raises(ValueError, match="empty range"):
        SimulatedMarketSource(1).fetch_ohlcv("BTC", DAY, DAY)


# ------------------------------------------------------------------------------------------------ payload + frame


def test_committed_schema_accepts_both_shapes_and_names_the_failing_path() -> None:
    validate_payload("ohlc", [[1_700_000_000_000, 1.0, 2.0, 0.5, 1.5]])
    validate_payload("market_chart", {"prices": [[0, 1.0]], "market_caps": [[0, 0.0]], "total_volumes": [[0, 0]]})
    with pytest.raises(MarketDataError, match=r"ohlc payload invalid at \$\[1\]\[2\]"):
        validate_payload("ohlc", [[1, 1.0, 2.0, 0.5, 1.5], [2, 1.0, 0.0, 0.5, 1.5]])
    with pytest.raises(MarketDataError, match=r"\$\[0\]\[0\]"):
        validate_payload("ohlc", [[-1, 1.0, 2.0, 0.5, 1.5]])
    with pytest.raises(MarketDataError, match=r"\$\[0\]"):
        validate_payload("ohlc", [[1, 1.0, 2.0, 0.5, 1.5, 9.0]])
    with pytest.raises(MarketDataError, match=r"\$\.prices\[0\]\[1\]"):
        validate_payload("market_chart", {"prices": [[0, 0]], "market_caps": [], "total_volumes": []})
    with pytest.raises(ValueError, match="unknown payload kind"):
        validate_payload("trades", [])  # type: ignore[arg-type]


def _frame(rows: list[tuple[str, int, float, float, float, float, float]]) -> pa.Table:
    cols = list(zip(*rows, strict=True))
    ts = [int((DAY + timedelta(minutes=m)).timestamp() * 1_000_000) for m in cols[1]]
    assets = set(cols[0])
    parts = [ohlcv_table(a, [t for t, r in zip(ts, rows, strict=True) if r[0] == a],
                         *[[r[i] for r in rows if r[0] == a] for i in range(2, 7)]) for a in sorted(assets)]
    return pa.concat_tables(parts)


def test_frame_schema_accepts_a_good_frame() -> None:
    good = _frame([("BTC", 0, 10, 11, 9, 10.5, 5), ("BTC", 1, 10.5, 10.5, 10, 10, 0), ("ETH", 0, 1, 1, 1, 1, 1)])
    assert validate_frame(good) == []


@pytest.mark.parametrize(("rows", "needle"), [
    ([("BTC", 0, 10, 9, 11, 10, 1)], "high >= max(open, close)"),  # high < low
    ([("BTC", 0, 10, 12, 10.5, 11, 1)], "low <= min(open, close)"),
    ([("BTC", 0, 10, 11, 9, 10, 1), ("BTC", 0, 10, 11, 9, 10, 1)], "uniqueness"),
    ([("BTC", 0, 0.0, 11, 9, 10, 1)], "open: failed greater_than(0)"),
    ([("BTC", 0, 10, 11, -9, 10, 1)], "low: failed greater_than(0)"),
    ([("BTC", 0, 10, 11, 9, 10, -1)], "volume: failed greater_than_or_equal_to(0)"),
    ([("BTC", 2, 10, 11, 9, 10, 1), ("BTC", 1, 10, 11, 9, 10, 1)], "ts strictly increasing per asset"),
])
def test_frame_schema_catches_bad_bars(rows: list[tuple[str, int, float, float, float, float, float]],
                                       needle: str) -> None:
    problems = validate_frame(_frame(rows))
    assert any(needle in p for p in problems), problems
    assert all("\n" not in p for p in problems)


def test_frame_validation_is_lazy_and_checks_arrow_types() -> None:
    bad = _frame([("BTC", 0, 10, 9, 11, -10, -1)])
    problems = validate_frame(bad)
    assert len(problems) >= 3  # all rules ran, not just the first failure
    wrong_type = bad.set_column(6, "volume", pa.array([1], pa.int64()))
    assert validate_frame(wrong_type) == ["column volume: Arrow type int64 != expected double"]
    assert "columns" in validate_frame(bad.drop(["volume"]))[0]


def test_missing_volume_is_a_failure() -> None:
    table = ohlcv_table("BTC", [0], [1.0], [1.0], [1.0], [1.0], [None])
    assert any("volume" in p for p in validate_frame(table))


# ------------------------------------------------------------------------------------------------ gaps + anomalies


def test_find_gaps_threshold_is_strictly_more_than_five_minutes_and_sees_edges() -> None:
    minutes = [0, 5, 11, 12]  # 5 min apart is fine, 6 is a gap
    table = _frame([("BTC", m, 1, 1, 1, 1, 1) for m in minutes])
    assert find_gaps(table) == [Gap("BTC", DAY + timedelta(minutes=5), DAY + timedelta(minutes=11), 6.0)]
    edges = find_gaps(table, expected_start=DAY - timedelta(minutes=10), expected_end=DAY + timedelta(minutes=20))
    assert [g.minutes for g in edges] == [10.0, 6.0, 8.0]
    assert find_gaps(table, max_gap=timedelta(minutes=6)) == []


def test_anomaly_detection_has_no_look_ahead() -> None:
    rng = np.random.default_rng(0)
    returns = rng.normal(0, 0.001, 200)
    returns[150] = 0.05  # ~50σ against the previous 60 returns
    close = 100 * np.exp(np.cumsum(returns))
    n = len(close)
    ts = [int((DAY + timedelta(minutes=i)).timestamp() * 1_000_000) for i in range(n)]
    table = ohlcv_table("BTC", ts, close, close, close, close, np.ones(n))
    flagged = flag_anomalies(table, sigma=8.0, window=60).to_pylist()
    assert [r["ts"] for r in flagged] == [DAY + timedelta(minutes=150)]  # close[150] / close[149] = exp(returns[150])
    row = flagged[0]
    expected_std = np.std(returns[90:150], ddof=1)  # exactly the 60 returns *before* the jump
    assert row["rolling_std"] == pytest.approx(expected_std, rel=1e-9)
    assert row["zscore"] == pytest.approx(returns[150] / expected_std, rel=1e-9)
    # Changing anything after the jump cannot change the verdict on it (no look-ahead).
    tampered = close.copy()
    tampered[152:] *= 1.3
    again = flag_anomalies(ohlcv_table("BTC", ts, tampered, tampered, tampered, tampered, np.ones(n)))
    assert again.to_pylist()[0] == row
    # And the first `window` returns are never judged: not enough history.
    early = returns.copy()
    early[150], early[30] = 0.0, 0.05
    c2 = 100 * np.exp(np.cumsum(early))
    assert flag_anomalies(ohlcv_table("BTC", ts, c2, c2, c2, c2, np.ones(n))).num_rows == 0


# ------------------------------------------------------------------------------------------------ review queue


def _flagged() -> pa.Table:
    source = SimulatedMarketSource(9, jump_at=DAY + timedelta(hours=12), gap_at=DAY + timedelta(hours=5))
    return flag_anomalies(day_of(source))


def test_enqueue_is_idempotent_and_items_carry_detail(tmp_path: Path) -> None:
    queue = ReviewQueue(tmp_path / "review" / "queue.sqlite")
    flagged = _flagged()
    assert queue.enqueue_anomalies(flagged, "2024-03-01") == 1
    assert queue.enqueue_anomalies(flagged, "2024-03-01") == 0
    assert ReviewQueue(tmp_path / "review" / "queue.sqlite").enqueue_anomalies(flagged, "2024-03-01") == 0
    [item] = queue.list()
    assert (item.asset, item.ts, item.kind, item.status, item.partition) == (
        "BTC", DAY + timedelta(hours=12), "anomaly", "open", "2024-03-01")
    assert item.detail["zscore"] > 8 and item.detail["log_return"] == pytest.approx(0.25, abs=0.01)
    assert item.resolved_at is None and item.resolver is None
    with sqlite3.connect(tmp_path / "review" / "queue.sqlite") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_resolve_transitions_only_from_open(tmp_path: Path) -> None:
    queue = ReviewQueue(tmp_path / "q.sqlite")
    queue.enqueue_anomalies(_flagged(), "p1")
    [item] = queue.list(status="open")
    done = queue.resolve(item.id, "approved", "alice", "real listing pump")
    assert (done.status, done.resolver, done.note) == ("approved", "alice", "real listing pump")
    assert done.resolved_at is not None
    assert queue.list(status="open") == [] and queue.list(status="approved") == [done]
    assert queue.list(asset="ETH") == []
    with pytest.raises(ReviewError, match="already approved"):
        queue.resolve(item.id, "rejected", "bob", "")
    with pytest.raises(ReviewError, match="no review item #999"):
        queue.resolve(999, "approved", "bob", "")
    with pytest.raises(ReviewError, match="status must be one of"):
        queue.resolve(item.id, "open", "bob", "")


def test_gaps_and_open_anomalies_block_training_until_overridden_or_reviewed(tmp_path: Path) -> None:
    queue = ReviewQueue(tmp_path / "q.sqlite")
    assert queue.training_blocked() == (False, [])
    gap = Gap("BTC", DAY + timedelta(hours=5), DAY + timedelta(hours=5, minutes=11), 11.0)
    assert queue.record_gaps([gap], "2024-03-01") == 1
    assert queue.record_gaps([gap], "2024-03-01") == 0
    queue.enqueue_anomalies(_flagged(), "2024-03-01")
    blocked, reasons = queue.training_blocked()
    assert blocked and len(reasons) == 2
    assert any(r.startswith("data-gap #") and "11.0 min" in r for r in reasons)
    assert any(r.startswith("anomaly #") and "needs review" in r for r in reasons)
    assert queue.training_blocked(asset="ETH") == (False, [])
    blocks = {b.kind: b for b in queue.open_blocks()}
    assert set(blocks) == {"data-gap", "anomaly"}

    with pytest.raises(ReviewError, match="is a anomaly, not data-gap"):
        queue.override_block(blocks["anomaly"].id, "alice", "ok")
    with pytest.raises(ReviewError, match="is a data-gap, not anomaly"):
        queue.resolve(blocks["data-gap"].id, "approved", "alice", "")
    with pytest.raises(ReviewError, match="needs a note"):
        queue.override_block(blocks["data-gap"].id, "alice", " ")
    overridden = queue.override_block(blocks["data-gap"].id, "alice", "exchange maintenance window; bars absent")
    assert overridden.status == "overridden" and overridden.detail == {"end": "2024-03-01T05:11:00.000000Z",
                                                                       "minutes": 11.0}
    with pytest.raises(ReviewError, match="already overridden"):
        queue.override_block(blocks["data-gap"].id, "bob", "again")
    assert [b.kind for b in queue.open_blocks()] == ["anomaly"]
    queue.resolve(blocks["anomaly"].id, "rejected", "bob", "bad tick")
    assert queue.training_blocked() == (False, [])
    assert queue.open_blocks() == []
    assert {i.kind for i in queue.list(kind=None)} == {"anomaly", "data-gap"}
    json.dumps([i.detail for i in queue.list(kind=None)])  # details stay plain JSON
