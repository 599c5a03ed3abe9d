"""The time-series store against real backends: a DuckDB file and a real PostgreSQL server started for the session."""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from feature_platform.market.store import (
    STORED_SCHEMA,
    DuckDBTimeSeriesStore,
    PostgresTimeSeriesStore,
    TimeSeriesStore,
    UpsertResult,
    open_store,
    prepare,
    row_checksums,
)
from tests.postgres_server import PostgresServer, postgres_dsn_fixture, postgres_server_fixture  # noqa: F401

T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
FETCHED = dt.datetime(2024, 3, 1, 12, 0, tzinfo=dt.UTC)
TS = pa.timestamp("us", tz="UTC")

StoreFactory = Callable[..., TimeSeriesStore]


def bars(rows: int, assets: tuple[str, ...] = ("bitcoin", "ethereum", "solana"), fetched: dt.datetime = FETCHED,
         start: int = 0) -> pa.Table:  # fmt: skip
    """Deterministic OHLCV bars, hourly per asset, with awkward floats (0.1 sums, tiny, huge, NaN) on purpose."""
    records: list[dict[str, Any]] = []
    for i in range(start, start + rows):
        asset = assets[i % len(assets)]
        base = 100.0 + (i * 0.1) + 1e-9 * (i % 7)
        records.append({
            "asset": asset, "ts": T0 + dt.timedelta(hours=i // len(assets)),
            "open": base, "high": base + 0.3, "low": base - 0.2, "close": base + 0.1,
            "volume": math.nan if i % 97 == 5 else 1e15 / (i + 3), "source_ts": fetched,
        })  # fmt: skip
    schema = pa.schema([("asset", pa.string()), ("ts", TS), *((c, pa.float64()) for c in
                        ("open", "high", "low", "close", "volume")), ("source_ts", TS)])  # fmt: skip
    return pa.Table.from_pylist(records, schema=schema)


def with_column(table: pa.Table, name: str, values: pa.Array | pa.ChunkedArray) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, values)


def shifted_source_ts(table: pa.Table, delta: dt.timedelta) -> pa.Table:
    return with_column(table, "source_ts", pa.array([FETCHED + delta] * table.num_rows, TS))


def same_rows(a: pa.Table, b: pa.Table) -> bool:
    """Cell-for-cell equality where NaN equals NaN (stored values must round-trip bit-exact, NaN included)."""
    return a.schema == b.schema and _nan_equal(a.to_pylist(), b.to_pylist())


def _nan_equal(left: list[dict[str, Any]], right: list[dict[str, Any]]) -> bool:
    def norm(v: Any) -> Any:
        return "NaN" if isinstance(v, float) and math.isnan(v) else v

    return [{k: norm(v) for k, v in r.items()} for r in left] == [{k: norm(v) for k, v in r.items()} for r in right]


def expected(table: pa.Table) -> pa.Table:
    return prepare(table).sort_by([("asset", "ascending"), ("ts", "ascending")])


@pytest.fixture(params=["duckdb", "postgres"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """Fresh, empty store per call (a new DuckDB file, or a new database on the session's PostgreSQL server)."""
    opened: list[TimeSeriesStore] = []

    def factory(**options: Any) -> TimeSeriesStore:
        store: TimeSeriesStore
        if request.param == "duckdb":
            store = DuckDBTimeSeriesStore(tmp_path / f"store{len(opened)}.duckdb", **options)
        else:
            server: PostgresServer = request.getfixturevalue("postgres_server")
            store = PostgresTimeSeriesStore(server.create_database(), **options)
        opened.append(store)
        return store

    def close_all() -> None:
        for store in opened:
            store.close()

    request.addfinalizer(close_all)
    return factory


def counts(result: UpsertResult) -> tuple[int, int, int]:
    return result.inserted, result.updated, result.unchanged


def test_reingest_same_batch_changes_nothing(make_store: StoreFactory) -> None:
    store = make_store()
    table = bars(300)
    assert counts(store.upsert(table)) == (300, 0, 0)
    marker = store.snapshot_marker()
    again = store.upsert(table)
    assert counts(again) == (0, 0, 300)
    assert store.count() == 300
    assert store.snapshot_marker() == marker


def test_changed_value_is_updated(make_store: StoreFactory) -> None:
    store = make_store()
    table = bars(60)
    store.upsert(table)
    close = table.column("close").to_pylist()
    for i in (0, 10, 59):
        close[i] = close[i] + 1e-12  # one ulp-scale change must still change the checksum
    changed = with_column(table, "close", pa.array(close, pa.float64()))
    assert counts(store.upsert(changed)) == (0, 3, 57)
    assert same_rows(store.read(), expected(changed))


def test_newer_source_ts_same_values_is_updated(make_store: StoreFactory) -> None:
    store = make_store()
    table = bars(40)
    store.upsert(table)
    newer = shifted_source_ts(table, dt.timedelta(hours=1))
    assert counts(store.upsert(newer)) == (0, 40, 0)
    assert set(store.read().column("source_ts").to_pylist()) == {FETCHED + dt.timedelta(hours=1)}


def test_older_source_ts_same_values_is_unchanged(make_store: StoreFactory) -> None:
    store = make_store()
    table = bars(40)
    store.upsert(table)
    marker = store.snapshot_marker()
    assert counts(store.upsert(shifted_source_ts(table, -dt.timedelta(days=1)))) == (0, 0, 40)
    assert set(store.read().column("source_ts").to_pylist()) == {FETCHED}
    assert store.snapshot_marker() == marker


def test_mixed_batch_exact_counts(make_store: StoreFactory) -> None:
    store = make_store()
    store.upsert(bars(30))
    old = bars(30)
    # rows 0-9 unchanged, 10-14 newer source_ts, 15-19 older source_ts, 20-24 changed value with older source_ts
    # (a checksum difference wins over age: the rule is "newer OR different"), 25-29 changed value; 20 new rows.
    source = [FETCHED] * 10 + [FETCHED + dt.timedelta(minutes=1)] * 5 + [FETCHED - dt.timedelta(minutes=1)] * 10
    source += [FETCHED] * 5
    volume = old.column("volume").to_pylist()[:20] + [v * 2 for v in old.column("volume").to_pylist()[20:]]
    existing = with_column(with_column(old, "source_ts", pa.array(source, TS)), "volume", pa.array(volume))
    incoming = pa.concat_tables([bars(20, start=30), existing]).combine_chunks()
    result = store.upsert(incoming)
    assert counts(result) == (20, 15, 15)
    assert result.rows == incoming.num_rows == 50
    assert store.count() == 50
    stored = {(r["asset"], r["ts"]): r for r in store.read().to_pylist()}
    for row in prepare(existing).to_pylist()[15:20]:  # older + same values: the stored row keeps its source_ts
        assert stored[(row["asset"], row["ts"])]["source_ts"] == FETCHED
    for row in prepare(existing).to_pylist()[20:25]:  # changed values: the stored row takes the incoming one
        assert stored[(row["asset"], row["ts"])] == row


def test_batches_are_split_and_counted(make_store: StoreFactory) -> None:
    store = make_store(batch_size=7)
    first = store.upsert(bars(50))
    assert (first.batches, counts(first)) == (8, (50, 0, 0))
    second = store.upsert(pa.concat_tables([bars(45), bars(10, start=50)]))
    assert (second.batches, counts(second)) == (8, (10, 0, 45))
    empty = store.upsert(bars(0))
    assert (empty.batches, counts(empty)) == (0, (0, 0, 0))


def test_read_round_trip_and_filters(make_store: StoreFactory) -> None:
    store = make_store()
    table = bars(200)
    store.upsert(table.take(pa.array(list(range(199, -1, -1)))))  # reversed input: read() must sort
    result = store.read()
    assert result.schema == STORED_SCHEMA
    assert same_rows(result, expected(table))
    assert pc.all(pc.equal(row_checksums(result), result.column("checksum"))).as_py()  # values are bit-exact
    start, end = T0 + dt.timedelta(hours=10), T0 + dt.timedelta(hours=20)
    window = store.read(asset="ethereum", start=start, end=end)
    assert window.num_rows == 10
    assert set(window.column("asset").to_pylist()) == {"ethereum"}
    assert min(window.column("ts").to_pylist()) == start and max(window.column("ts").to_pylist()) < end
    assert store.read(asset="dogecoin").num_rows == 0


def test_snapshot_marker_tracks_data(make_store: StoreFactory) -> None:
    store = make_store()
    empty_marker = store.snapshot_marker()
    assert empty_marker.startswith("none|rows=0|")
    store.upsert(bars(30))
    first = store.snapshot_marker()
    assert first.startswith("2024-03-01T12:00:00Z|rows=30|sha256=") and first != empty_marker
    store.upsert(bars(30))
    assert store.snapshot_marker() == first
    table = bars(30)
    changed = with_column(table, "open", pc.add(table.column("open"), 1.0))
    store.upsert(changed)  # same source_ts, same row count: only the digest can tell
    second = store.snapshot_marker()
    assert second != first and second.split("|")[:2] == first.split("|")[:2]


def test_source_ts_defaults_to_ingest_time(make_store: StoreFactory) -> None:
    store = make_store()
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    store.upsert(bars(6).drop_columns(["source_ts"]))
    stamps = set(store.read().column("source_ts").to_pylist())
    assert len(stamps) == 1 and before <= stamps.pop() <= dt.datetime.now(dt.UTC)
    assert counts(store.upsert(bars(6).drop_columns(["source_ts"]))) == (0, 6, 0)  # a later fetch is newer


def test_markers_agree_across_backends(tmp_path: Path, postgres_server: PostgresServer) -> None:
    table = bars(120)
    duck = DuckDBTimeSeriesStore(tmp_path / "a.duckdb")
    pg = PostgresTimeSeriesStore(postgres_server.create_database())
    try:
        assert counts(duck.upsert(table)) == counts(pg.upsert(table)) == (120, 0, 0)
        assert duck.snapshot_marker() == pg.snapshot_marker()
        assert same_rows(duck.read(), pg.read())
    finally:
        duck.close()
        pg.close()


def test_postgres_copy_fallback_matches_normal_path(postgres_server: PostgresServer) -> None:
    normal = PostgresTimeSeriesStore(postgres_server.create_database(), batch_size=9)
    copying = PostgresTimeSeriesStore(postgres_server.create_database(), batch_size=9, copy_threshold_seconds=0)
    try:
        old = bars(60)
        volume = old.column("volume").to_pylist()
        volume[3] = 0.5
        second = pa.concat_tables([bars(25, start=60), shifted_source_ts(old, dt.timedelta(seconds=1)).slice(0, 20),
                                   with_column(old, "volume", pa.array(volume)).slice(20)])  # fmt: skip
        for table in (old, old, second):
            a, b = normal.upsert(table), copying.upsert(table)
            assert counts(a) == counts(b)
            assert a.batches == b.batches and a.copy_batches == 0
            assert b.copy_batches == b.batches - 1  # the first batch is "slow" (> 0 s); every later one uses COPY
        assert counts(b) == (25, 20, 40)
        assert same_rows(normal.read(), copying.read())
        assert normal.snapshot_marker() == copying.snapshot_marker()
    finally:
        normal.close()
        copying.close()


def test_postgres_table_kind_follows_timescaledb_availability(postgres_server: PostgresServer) -> None:
    dsn = postgres_server.create_database()
    store = PostgresTimeSeriesStore(dsn)
    try:
        with psycopg.connect(dsn) as con:
            available = con.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone()
            kind = con.execute("SELECT relkind FROM pg_class WHERE relname = 'market_ohlcv'").fetchone()
            procs = {r[0] for r in con.execute("SELECT proname FROM pg_proc WHERE proname LIKE 'timescale_upsert%'")}
        assert procs == {"timescale_upsert", "timescale_upsert_staged"}
        if available:  # a hypertable is a partitioned parent table
            assert store.hypertable is True
        else:
            assert store.hypertable is False
            assert kind == ("r",)
            assert any("timescaledb" in note for note in store.notes)
        PostgresTimeSeriesStore(dsn).close()  # re-opening an existing store is idempotent
    finally:
        store.close()


def test_open_store_urls(tmp_path: Path, postgres_dsn: str) -> None:
    stores = [open_store(f"duckdb://{tmp_path}/x/a.duckdb"), open_store(str(tmp_path / "b.duckdb")),
              open_store("duckdb://:memory:"), open_store(postgres_dsn, batch_size=10)]  # fmt: skip
    try:
        assert [type(s).__name__ for s in stores] == ["DuckDBTimeSeriesStore"] * 3 + ["PostgresTimeSeriesStore"]
        assert (tmp_path / "x" / "a.duckdb").exists()
        assert all(isinstance(s, TimeSeriesStore) for s in stores)
    finally:
        for s in stores:
            s.close()
    with pytest.raises(ValueError, match="unsupported store URL scheme"):
        open_store("mysql://localhost/db")


def test_row_checksums_are_canonical() -> None:
    table = bars(3)
    row = table.slice(0, 1).to_pylist()[0]
    micros = (row["ts"] - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)
    text = "|".join([row["asset"], str(micros), *(repr(row[c]) for c in ("open", "high", "low", "close", "volume"))])
    assert row_checksums(table)[0].as_py() == hashlib.sha256(text.encode()).hexdigest()
    as_ints = bars(1).set_column(2, "open", pa.array([100], pa.int64()))
    as_floats = bars(1).set_column(2, "open", pa.array([100.0]))
    assert row_checksums(as_ints) == row_checksums(as_floats)  # 100 and 100.0 are one value
    ns = table.set_column(1, "ts", pc.cast(table.column("ts"), pa.timestamp("ns", tz="Europe/Paris")))
    assert row_checksums(ns) == row_checksums(table)  # unit and display timezone are not part of the value


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda t: t.drop_columns(["close"]), "missing columns"),
        (lambda t: t.set_column(1, "ts", pc.cast(t.column("ts"), pa.timestamp("us"))), "timezone-aware"),
        (lambda t: pa.concat_tables([t, t.slice(0, 1)]), "duplicate"),
        (lambda t: t.set_column(0, "asset", pa.array([None] * t.num_rows, pa.string())), "nulls"),
    ],
)
def test_invalid_input_is_rejected(mutate: Callable[[pa.Table], pa.Table], message: str, tmp_path: Path) -> None:
    store = DuckDBTimeSeriesStore(tmp_path / "s.duckdb")
    try:
        with pytest.raises(ValueError, match=message):
            store.upsert(mutate(bars(5)))
        assert store.count() == 0
    finally:
        store.close()
