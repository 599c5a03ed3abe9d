# Over 400 lines: the DuckDB and PostgreSQL stores implement one upsert rule side by side.
"""Idempotent upsert of OHLCV bars into the time-series store: DuckDB by default, PostgreSQL by configuration.

The rule (runbook "Timescale Upsert"): rows are keyed by ``(asset, ts)``; an existing row is replaced only when the
incoming ``source_ts`` is newer or the incoming ``checksum`` differs, so re-ingesting the same batch changes 0 rows.
Both backends apply the rule inside the database, one transaction per batch, and report exact counts.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import duckdb
import psycopg
import pyarrow as pa
import pyarrow.compute as pc

TABLE = "market_ohlcv"
STAGE = "market_ohlcv_stage"
DEFAULT_BATCH_SIZE = 5_000
DEFAULT_COPY_THRESHOLD_SECONDS = 2.0
VALUE_COLUMNS = ("open", "high", "low", "close", "volume")
INPUT_COLUMNS = ("asset", "ts", *VALUE_COLUMNS)
STORED_COLUMNS = (*INPUT_COLUMNS, "source_ts", "checksum")
TS_TYPE = pa.timestamp("us", tz="UTC")
STORED_SCHEMA = pa.schema(
    [
        pa.field("asset", pa.string(), nullable=False),
        pa.field("ts", TS_TYPE, nullable=False),
        *(pa.field(name, pa.float64()) for name in VALUE_COLUMNS),
        pa.field("source_ts", TS_TYPE, nullable=False),
        pa.field("checksum", pa.string(), nullable=False),
    ]
)

# The one statement of the rule, shared by both backends and both PostgreSQL paths (t = stored, EXCLUDED = incoming).
_SET = ", ".join(f"{c} = EXCLUDED.{c}" for c in (*VALUE_COLUMNS, "source_ts", "checksum"))
_CHANGED = f"EXCLUDED.source_ts > {TABLE}.source_ts OR EXCLUDED.checksum <> {TABLE}.checksum"
_COLS = ", ".join(STORED_COLUMNS)
_UPSERT_TAIL = f"ON CONFLICT (asset, ts) DO UPDATE SET {_SET} WHERE {_CHANGED}"

# The SQL type of each stored column's arrow type, per backend.
_SQL_TYPES = {"duckdb": {pa.string(): "VARCHAR", TS_TYPE: "TIMESTAMPTZ", pa.float64(): "DOUBLE"},
              "postgres": {pa.string(): "text", TS_TYPE: "timestamptz", pa.float64(): "float8"}}


def _create_table(backend: str) -> str:
    """The stored table of ``backend``, from STORED_SCHEMA: types, nullability, and one row per (asset, ts)."""
    types = _SQL_TYPES[backend]
    columns = ", ".join(f"{f.name} {types[f.type]}{'' if f.nullable else ' NOT NULL'}" for f in STORED_SCHEMA)
    return f"CREATE TABLE IF NOT EXISTS {TABLE} ({columns}, PRIMARY KEY (asset, ts))"


@dataclasses.dataclass(frozen=True)
class UpsertResult:
    """Exact per-call counts; ``inserted + updated + unchanged`` equals the number of input rows."""

    inserted: int
    updated: int
    unchanged: int
    batches: int
    copy_batches: int
    seconds: float

    @property
    def rows(self) -> int:
        return self.inserted + self.updated + self.unchanged


@runtime_checkable
class TimeSeriesStore(Protocol):
    """What ingestion and lineage need from a time-series backend."""

    def upsert(self, table: pa.Table) -> UpsertResult: ...

    def read(
        self, asset: str | None = None, start: dt.datetime | None = None, end: dt.datetime | None = None
    ) -> pa.Table: ...

    def count(self) -> int: ...

    def snapshot_marker(self) -> str: ...

    def close(self) -> None: ...


# --------------------------------------------------------------------------------------------------------------------
# Input normalisation and checksums (backend-independent, so both stores agree on every digest).


def _canonical_float(value: float | None) -> str:
    """``repr`` is the shortest string that round-trips, so equal doubles give equal text and unequal ones differ."""
    return "" if value is None else repr(float(value))


def row_checksums(table: pa.Table) -> pa.Array:
    """sha256 hex of ``asset|ts|open|high|low|close|volume`` per row.

    ``ts`` is written as integer microseconds since the epoch (UTC) and floats with ``repr`` (shortest round-trip;
    ``nan``/``inf`` spelled out, null as the empty string), so the digest does not depend on locale, timezone
    display or the backend that later stores the row.
    """
    ts = pc.cast(pc.cast(table.column("ts"), TS_TYPE), pa.int64()).to_pylist()
    assets = table.column("asset").to_pylist()
    values = [table.column(name).cast(pa.float64()).to_pylist() for name in VALUE_COLUMNS]
    out = [
        hashlib.sha256("|".join((asset, str(micros), *(_canonical_float(v) for v in vals))).encode("utf-8")).hexdigest()
        for asset, micros, *vals in zip(assets, ts, *values, strict=True)
    ]
    return pa.array(out, pa.string())


def prepare(table: pa.Table, ingest_time: dt.datetime | None = None) -> pa.Table:
    """Validate and canonicalise input into the stored schema (adds ``source_ts`` if absent, adds ``checksum``).

    Fails closed on missing columns, naive or null timestamps, null assets and duplicate keys: a duplicate
    ``(asset, ts)`` in one call has no defined winner, and PostgreSQL would reject it mid-batch anyway.
    """
    missing = [c for c in INPUT_COLUMNS if c not in table.column_names]
    if missing:
        raise ValueError(f"missing columns: {missing}")
    for name in ("ts", "source_ts"):
        if name in table.column_names:
            typ = table.schema.field(name).type
            if not pa.types.is_timestamp(typ) or typ.tz is None:
                raise ValueError(f"column {name!r} must be a timezone-aware timestamp, got {typ}")
    now = ingest_time or dt.datetime.now(dt.UTC)
    if "source_ts" in table.column_names:
        source_ts = pc.fill_null(pc.cast(table.column("source_ts"), TS_TYPE), pa.scalar(now, TS_TYPE))
    else:
        source_ts = pa.array([now] * table.num_rows, TS_TYPE)
    columns: dict[str, Any] = {
        "asset": pc.cast(table.column("asset"), pa.string()),
        "ts": pc.cast(table.column("ts"), TS_TYPE),
        **{name: pc.cast(table.column(name), pa.float64()) for name in VALUE_COLUMNS},
        "source_ts": source_ts,
    }
    for name in ("asset", "ts"):
        if columns[name].null_count:
            raise ValueError(f"column {name!r} has nulls; it is part of the key")
    base = pa.table(columns)
    if base.num_rows:
        keys = base.group_by(["asset", "ts"]).aggregate([([], "count_all")])
        dupes = keys.filter(pc.greater(keys.column("count_all"), 1))
        if dupes.num_rows:
            first = dupes.slice(0, 1).to_pylist()[0]
            raise ValueError(f"{dupes.num_rows} duplicate (asset, ts) keys in one upsert, e.g. {first}")
    base = base.append_column("checksum", row_checksums(base))
    return base.cast(STORED_SCHEMA)


def _batches(table: pa.Table, size: int) -> Iterator[pa.Table]:
    for offset in range(0, table.num_rows, size):
        yield table.slice(offset, size)


def _marker(max_source_ts: dt.datetime | None, rows: int, digest: str) -> str:
    """``<max source_ts>|rows=<n>|sha256=<digest>``: readable freshness, plus a digest of every key, value, version."""
    stamp = "none" if max_source_ts is None else max_source_ts.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    return f"{stamp}|rows={rows}|sha256={digest}"


# --------------------------------------------------------------------------------------------------------------------
# DuckDB (embedded default)


class DuckDBTimeSeriesStore:
    """A DuckDB file (or ``:memory:``) holding ``market_ohlcv`` with primary key ``(asset, ts)``."""

    def __init__(self, path: str | Path = ":memory:", batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be positive")
        self.path = str(path)
        self.batch_size = batch_size
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._con = duckdb.connect(self.path)
        self._con.execute("SET TimeZone = 'UTC'")
        self._con.execute(_create_table("duckdb"))

    def upsert(self, table: pa.Table) -> UpsertResult:
        """Per batch: count keys already present, then one ``INSERT … ON CONFLICT … DO UPDATE … WHERE``.

        DuckDB reports the rows the statement inserted or updated; with the pre-count taken in the same transaction
        that splits exactly into inserted / updated / unchanged.
        """
        started = time.perf_counter()
        rows = prepare(table)
        inserted = updated = batches = 0
        for batch in _batches(rows, self.batch_size):
            self._con.begin()
            try:
                self._con.register("incoming", batch)
                existing = self._scalar(
                    f"SELECT count(*) FROM incoming i JOIN {TABLE} t ON t.asset = i.asset AND t.ts = i.ts"
                )
                changed = self._scalar(f"INSERT INTO {TABLE} ({_COLS}) SELECT {_COLS} FROM incoming {_UPSERT_TAIL}")
                self._con.unregister("incoming")
                self._con.commit()
            except BaseException:
                self._con.rollback()
                raise
            inserted += batch.num_rows - existing
            updated += changed - (batch.num_rows - existing)
            batches += 1
        unchanged = rows.num_rows - inserted - updated
        return UpsertResult(inserted, updated, unchanged, batches, 0, time.perf_counter() - started)

    def read(
        self, asset: str | None = None, start: dt.datetime | None = None, end: dt.datetime | None = None
    ) -> pa.Table:
        """Rows sorted by ``(asset, ts)``; ``start`` inclusive, ``end`` exclusive."""
        where, params = _filters(asset, start, end, "?")
        result = self._con.sql(f"SELECT {_COLS} FROM {TABLE}{where} ORDER BY asset, ts", params=params).to_arrow_table()
        return result.cast(STORED_SCHEMA)

    def _scalar(self, query: str) -> int:
        """DuckDB 2 keeps a result open until it is fully fetched, so always drain it."""
        rows = self._con.execute(query).fetchall()
        return int(rows[0][0])

    def count(self) -> int:
        return self._scalar(f"SELECT count(*) FROM {TABLE}")

    def snapshot_marker(self) -> str:
        (row,) = self._con.execute(
            f"""SELECT max(source_ts), count(*),
                sha256(coalesce(string_agg(
                    asset || '|' || CAST(epoch_us(ts) AS VARCHAR) || '|' || CAST(epoch_us(source_ts) AS VARCHAR)
                    || '|' || checksum, ',' ORDER BY asset, ts), ''))
                FROM {TABLE}"""
        ).fetchall()
        return _marker(row[0], int(row[1]), str(row[2]))

    def close(self) -> None:
        self._con.close()


def _filters(
    asset: str | None, start: dt.datetime | None, end: dt.datetime | None, placeholder: str
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    for clause, value in (("asset = {}", asset), ("ts >= {}", start), ("ts < {}", end)):
        if value is not None:
            if isinstance(value, dt.datetime) and value.tzinfo is None:
                raise ValueError("start/end must be timezone-aware")
            clauses.append(clause.format(placeholder))
            params.append(value)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


# --------------------------------------------------------------------------------------------------------------------
# PostgreSQL / TimescaleDB (scale-out by configuration)

_PG_TYPES = tuple(_SQL_TYPES["postgres"][f.type] for f in STORED_SCHEMA)
_PG_COUNTS = "count(*) FILTER (WHERE ins), count(*) FILTER (WHERE NOT ins)"

# timescale_upsert: the runbook's stored procedure. One call per batch; arrays in, exact counts out.
# ``xmax = 0`` on a RETURNING row means the row version was freshly inserted; an updated row carries our xid.
_PG_FUNCTIONS = f"""
CREATE OR REPLACE FUNCTION timescale_upsert(
    p_asset text[], p_ts timestamptz[], p_open float8[], p_high float8[], p_low float8[], p_close float8[],
    p_volume float8[], p_source_ts timestamptz[], p_checksum text[],
    OUT inserted bigint, OUT updated bigint, OUT unchanged bigint)
LANGUAGE sql VOLATILE AS $fn$
    WITH up AS (
        INSERT INTO {TABLE} ({_COLS})
        SELECT * FROM unnest(p_asset, p_ts, p_open, p_high, p_low, p_close, p_volume, p_source_ts, p_checksum)
        {_UPSERT_TAIL}
        RETURNING (xmax = 0) AS ins)
    SELECT {_PG_COUNTS}, cardinality(p_asset) - count(*) FROM up
$fn$;

CREATE OR REPLACE FUNCTION timescale_upsert_staged(
    p_stage regclass, OUT inserted bigint, OUT updated bigint, OUT unchanged bigint)
LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE n bigint;
BEGIN
    EXECUTE format('SELECT count(*) FROM %s', p_stage) INTO n;
    EXECUTE format('WITH up AS (INSERT INTO {TABLE} ({_COLS}) SELECT {_COLS} FROM %s {_UPSERT_TAIL} '
                   'RETURNING (xmax = 0) AS ins) SELECT {_PG_COUNTS} FROM up', p_stage)
        INTO inserted, updated;
    unchanged := n - inserted - updated;
END
$fn$;
"""


class PostgresTimeSeriesStore:
    """``market_ohlcv`` in PostgreSQL, a TimescaleDB hypertable when the extension can be created.

    Normal path: one ``timescale_upsert(arrays…)`` call per batch. Once a batch takes longer than
    ``copy_threshold_seconds``, the remaining batches of that call go through ``COPY`` into a temporary staging table
    and one ``timescale_upsert_staged`` (same rule, same counts), which keeps a slow server from being fed
    parameter-bound statements it cannot keep up with.
    """

    def __init__(
        self,
        dsn: str,
        batch_size: int = DEFAULT_BATCH_SIZE,
        copy_threshold_seconds: float = DEFAULT_COPY_THRESHOLD_SECONDS,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be positive")
        self.batch_size = batch_size
        self.copy_threshold_seconds = copy_threshold_seconds
        self.hypertable = False
        self.notes: list[str] = []
        self._stage_ready = False
        self._con = psycopg.connect(dsn, autocommit=True)
        self._con.execute("SET TIME ZONE 'UTC'")
        with self._con.transaction():
            self._con.execute(_create_table("postgres"))
            self._con.execute(_PG_FUNCTIONS)
        self._setup_hypertable()

    def _setup_hypertable(self) -> None:
        """Use TimescaleDB when it is installable here; otherwise keep the plain table and say why."""
        available = self._con.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone()
        if not available:
            self.notes.append("timescaledb not in pg_available_extensions; using a plain table")
            return
        try:
            with self._con.transaction():
                self._con.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
                self._con.execute(
                    "SELECT create_hypertable(%s, 'ts', if_not_exists => TRUE, migrate_data => TRUE)", (TABLE,)
                )
            self.hypertable = True
        except psycopg.Error as exc:  # e.g. not in shared_preload_libraries, or no privilege to create it
            self.notes.append(f"timescaledb available but not usable ({exc.diag.message_primary}); plain table")

    def upsert(self, table: pa.Table) -> UpsertResult:
        started = time.perf_counter()
        rows = prepare(table)
        inserted = updated = unchanged = batches = copy_batches = 0
        use_copy = False
        for batch in _batches(rows, self.batch_size):
            t0 = time.perf_counter()
            with self._con.transaction():
                counts = self._upsert_copy(batch) if use_copy else self._upsert_arrays(batch)
            inserted, updated, unchanged = inserted + counts[0], updated + counts[1], unchanged + counts[2]
            batches += 1
            copy_batches += use_copy
            if time.perf_counter() - t0 > self.copy_threshold_seconds:
                use_copy = True
        return UpsertResult(inserted, updated, unchanged, batches, copy_batches, time.perf_counter() - started)

    def _upsert_arrays(self, batch: pa.Table) -> tuple[int, int, int]:
        arrays = [batch.column(name).to_pylist() for name in STORED_COLUMNS]
        casts = ", ".join(f"%s::{typ}[]" for typ in _PG_TYPES)
        row = self._con.execute(f"SELECT * FROM timescale_upsert({casts})", arrays).fetchone()
        assert row is not None
        return int(row[0]), int(row[1]), int(row[2])

    def _upsert_copy(self, batch: pa.Table) -> tuple[int, int, int]:
        if not self._stage_ready:  # session-lifetime temp table; ON COMMIT empties it after every batch
            self._con.execute(f"CREATE TEMP TABLE {STAGE} (LIKE {TABLE} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
            self._stage_ready = True
        with self._con.cursor() as cur:
            with cur.copy(f"COPY {STAGE} ({_COLS}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(list(_PG_TYPES))
                for record in _rows(batch):
                    copy.write_row(record)
            row = cur.execute("SELECT * FROM timescale_upsert_staged(%s::regclass)", (STAGE,)).fetchone()
        assert row is not None
        return int(row[0]), int(row[1]), int(row[2])

    def read(
        self, asset: str | None = None, start: dt.datetime | None = None, end: dt.datetime | None = None
    ) -> pa.Table:
        """Rows sorted by ``(asset, ts)``; ``start`` inclusive, ``end`` exclusive."""
        where, params = _filters(asset, start, end, "%s")
        with self._con.cursor() as cur:
            cur.execute(f"SELECT {_COLS} FROM {TABLE}{where} ORDER BY asset, ts", params)
            records = cur.fetchall()
        columns: list[Sequence[Any]] = list(zip(*records, strict=True)) if records else [()] * len(STORED_COLUMNS)
        arrays = [pa.array(list(col), field.type) for field, col in zip(STORED_SCHEMA, columns, strict=True)]
        return pa.Table.from_arrays(arrays, schema=STORED_SCHEMA)

    def count(self) -> int:
        row = self._con.execute(f"SELECT count(*) FROM {TABLE}").fetchone()
        return int(row[0]) if row else 0

    def snapshot_marker(self) -> str:
        """Same text as the DuckDB store for the same rows, so the lineage tag does not depend on the backend."""
        micros = "(extract(epoch FROM {0}) * 1000000)::bigint"
        row = self._con.execute(
            f"""SELECT max(source_ts), count(*), encode(sha256(convert_to(coalesce(string_agg(
                    asset || '|' || {micros.format("ts")} || '|' || {micros.format("source_ts")} || '|' || checksum,
                    ',' ORDER BY asset, ts), ''), 'UTF8')), 'hex')
                FROM {TABLE}"""
        ).fetchone()
        assert row is not None
        return _marker(row[0], int(row[1]), str(row[2]))

    def close(self) -> None:
        self._con.close()


def _rows(batch: pa.Table) -> Iterator[Sequence[Any]]:
    columns = [batch.column(name).to_pylist() for name in STORED_COLUMNS]
    return iter(zip(*columns, strict=True))


def open_store(url: str, **options: Any) -> TimeSeriesStore:
    """``duckdb:///abs/path.duckdb`` / ``duckdb://rel/path.duckdb`` / ``duckdb://:memory:`` / a bare path (DuckDB,
    the default), or ``postgresql://…`` / ``postgres://…``; ``options`` go to the store (batch_size, …)."""
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresTimeSeriesStore(url, **options)
    if url.startswith("duckdb://"):
        path = url.removeprefix("duckdb://") or ":memory:"
        return DuckDBTimeSeriesStore(path, **options)
    if "://" in url:
        raise ValueError(f"unsupported store URL scheme: {url.split('://', 1)[0]!r}")
    return DuckDBTimeSeriesStore(url, **options)
