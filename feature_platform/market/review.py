"""Human-in-the-loop queue for flagged market data, and the training blocks it implies (SQLite, stdlib only).

One table holds both kinds of item, unique on (asset, ts, kind) so re-running a partition never duplicates:

* ``anomaly`` — a price jump beyond the σ threshold; ``open`` until a reviewer ``approved`` (real move, keep) or
  ``rejected`` (bad tick, exclude) it.
* ``data-gap`` — missing bars beyond the allowed spacing; ``open`` until someone ``overridden`` it (accepts
  training on data with the hole).
* ``duplicate`` — two different candles for the same asset and time in one batch; the first is stored, the
  item holds every version; ``open`` until a reviewer ``approved`` (the first is right) or ``rejected`` it.

Every open item blocks training: ``training_blocked()`` is what the training gate asks.
"""

from __future__ import annotations

import builtins
import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa

from feature_platform.market.validation import Duplicate, Gap, json_value

__all__ = ["Block", "ReviewError", "ReviewItem", "ReviewQueue"]

ItemKind = Literal["anomaly", "data-gap", "duplicate"]
KINDS: tuple[str, ...] = ("anomaly", "data-gap", "duplicate")
REVIEWED_KINDS: tuple[str, ...] = ("anomaly", "duplicate")  # what approve/reject applies to
ItemStatus = Literal["open", "approved", "rejected", "overridden"]
REVIEW_STATUSES: tuple[str, ...] = ("approved", "rejected")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS review_items (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    asset       TEXT NOT NULL,
    ts          TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('anomaly', 'data-gap', 'duplicate')),
    detail      TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'open'
                CHECK (status IN ('open', 'approved', 'rejected', 'overridden')),
    partition   TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    resolved_at TEXT,
    resolver    TEXT,
    note        TEXT,
    UNIQUE (asset, ts, kind)
);
CREATE INDEX IF NOT EXISTS review_items_status ON review_items (status, kind);
"""


class ReviewError(ValueError):
    """A review action that cannot apply (unknown id, wrong kind, already resolved, bad status)."""


@dataclass(frozen=True)
class ReviewItem:
    id: int
    asset: str
    ts: datetime
    kind: str
    detail: dict[str, Any]
    status: str
    partition: str
    created_at: datetime
    resolved_at: datetime | None
    resolver: str | None
    note: str | None


@dataclass(frozen=True)
class Block:
    """An open item seen from the training gate's side."""

    id: int
    kind: str
    asset: str
    ts: datetime
    partition: str
    reason: str


def _iso(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware (UTC)")
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value.replace("Z", "+00:00"))


def _now() -> datetime:
    return datetime.now(UTC)


def _item(row: sqlite3.Row) -> ReviewItem:
    ts, created = _dt(row["ts"]), _dt(row["created_at"])
    assert ts is not None and created is not None
    return ReviewItem(id=row["id"], asset=row["asset"], ts=ts, kind=row["kind"], detail=json.loads(row["detail"]),
                      status=row["status"], partition=row["partition"], created_at=created,
                      resolved_at=_dt(row["resolved_at"]), resolver=row["resolver"], note=row["note"])


def _reason(item: ReviewItem) -> str:
    when = _iso(item.ts)
    if item.kind == "data-gap":
        return (f"data-gap #{item.id} {item.asset} {when} → {item.detail.get('end')} "
                f"({item.detail.get('minutes')} min, partition {item.partition}): needs an override")
    if item.kind == "duplicate":
        return (f"duplicate #{item.id} {item.asset} {when} ({len(item.detail.get('versions', []))} different "
                f"candles in one batch, the first stored, partition {item.partition}): needs review (approve or "
                "reject)")
    return (f"anomaly #{item.id} {item.asset} {when} (z={item.detail.get('zscore')}, partition {item.partition}): "
            "needs review (approve or reject)")


def _migrate(conn: sqlite3.Connection) -> None:
    """Queues created before the ``duplicate`` kind have a CHECK that refuses it: rebuild that table once."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        row = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'review_items'").fetchone()
        if row is not None and "'duplicate'" not in row[0]:
            conn.execute("ALTER TABLE review_items RENAME TO review_items_old")
            conn.execute("DROP INDEX IF EXISTS review_items_status")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("INSERT INTO review_items SELECT * FROM review_items_old")
            conn.execute("DROP TABLE review_items_old")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


class ReviewQueue:
    """The queue in one SQLite file (WAL, so the CLI can read while a run writes). Safe to open concurrently."""

    def __init__(self, path: str | Path, *, clock: Any = _now) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        with self._connect() as conn:
            _migrate(conn)
            conn.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA busy_timeout=30000")
            yield conn
        finally:
            conn.close()

    def _insert(self, rows: Iterable[tuple[str, str, str, str, str]]) -> int:
        now = _iso(self._clock())
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                before = conn.total_changes
                conn.executemany(
                    "INSERT OR IGNORE INTO review_items (asset, ts, kind, detail, partition, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)", [(*r, now) for r in rows])
                added = conn.total_changes - before
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return added

    # -- writers --------------------------------------------------------------------------------------------

    def enqueue_anomalies(self, table: pa.Table, partition: str) -> int:
        """Add each flagged row (``flag_anomalies`` output) as an open ``anomaly``; returns how many were new."""
        rows = []
        for rec in table.to_pylist():
            detail = {k: (None if rec.get(k) is None else float(rec[k]))
                      for k in ("zscore", "log_return", "rolling_std", "close", "prev_close") if k in rec}
            rows.append((str(rec["asset"]), _iso(rec["ts"]), "anomaly", json.dumps(detail, sort_keys=True),
                         partition))
        return self._insert(rows)

    def record_gaps(self, gaps: Iterable[Gap], partition: str) -> int:
        """Add each gap as an open ``data-gap`` block (keyed by its start); returns how many were new."""
        rows = [(g.asset, _iso(g.start), "data-gap",
                 json.dumps({"end": _iso(g.end), "minutes": round(g.minutes, 3)}, sort_keys=True), partition)
                for g in gaps]
        return self._insert(rows)

    def record_duplicates(self, duplicates: Iterable[Duplicate], partition: str) -> int:
        """Add each conflicting duplicate candle as an open ``duplicate`` item with every version in its detail;
        returns how many were new."""
        rows = [(d.asset, _iso(d.ts), "duplicate",
                 json.dumps({"versions": [{k: json_value(x) for k, x in v.items()} for v in d.versions]},
                            sort_keys=True, allow_nan=False), partition)
                for d in duplicates]
        return self._insert(rows)

    def _transition(self, item_id: int, kinds: tuple[str, ...], status: str, resolver: str,
                    note: str) -> ReviewItem:
        if not resolver.strip():
            raise ReviewError("a resolver name is required")
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute("SELECT * FROM review_items WHERE id = ?", (item_id,)).fetchone()
                if row is None:
                    raise ReviewError(f"no review item #{item_id}")
                if row["kind"] not in kinds:
                    raise ReviewError(f"item #{item_id} is a {row['kind']}, not {' or '.join(kinds)}")
                if row["status"] != "open":
                    raise ReviewError(f"item #{item_id} is already {row['status']} "
                                      f"(by {row['resolver']} at {row['resolved_at']})")
                conn.execute("UPDATE review_items SET status = ?, resolved_at = ?, resolver = ?, note = ? "
                             "WHERE id = ? AND status = 'open'",
                             (status, _iso(self._clock()), resolver, note, item_id))
                row = conn.execute("SELECT * FROM review_items WHERE id = ?", (item_id,)).fetchone()
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return _item(row)

    def resolve(self, item_id: int, status: str, resolver: str, note: str = "") -> ReviewItem:
        """Close an open anomaly or duplicate as ``approved`` (a real move / the stored candle is right) or
        ``rejected`` (bad data)."""
        if status not in REVIEW_STATUSES:
            raise ReviewError(f"status must be one of {', '.join(REVIEW_STATUSES)}, got {status!r}")
        return self._transition(item_id, REVIEWED_KINDS, status, resolver, note)

    def override_block(self, block_id: int, resolver: str, note: str) -> ReviewItem:
        """Accept a data gap for training (status ``overridden``); the note is the audit trail, so it is required."""
        if not note.strip():
            raise ReviewError("an override needs a note saying why")
        return self._transition(block_id, ("data-gap",), "overridden", resolver, note)

    # -- readers --------------------------------------------------------------------------------------------

    def get(self, item_id: int) -> ReviewItem:
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM review_items WHERE id = ?", (item_id,)).fetchone()
        if row is None:
            raise ReviewError(f"no review item #{item_id}")
        return _item(row)

    def list(self, status: str | None = None, asset: str | None = None,
             kind: str | tuple[str, ...] | None = REVIEWED_KINDS) -> list[ReviewItem]:
        """Queue items, oldest first; by default what a reviewer approves or rejects (anomalies and duplicates);
        ``kind=None`` lists data-gap blocks too."""
        clauses: builtins.list[str] = []
        params: builtins.list[str] = []
        for column, value in (("status", status), ("asset", asset)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if kind is not None:
            kinds = (kind,) if isinstance(kind, str) else kind
            clauses.append(f"kind IN ({', '.join('?' for _ in kinds)})")
            params.extend(kinds)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._connect() as conn:
            rows = conn.execute(f"SELECT * FROM review_items {where} ORDER BY ts, asset, id", params).fetchall()
        return [_item(r) for r in rows]

    def open_blocks(self, asset: str | None = None) -> builtins.list[Block]:
        """Everything that stops training: open data gaps, unreviewed anomalies and duplicates."""
        items = self.list(status="open", asset=asset, kind=None)
        return [Block(i.id, i.kind, i.asset, i.ts, i.partition, _reason(i)) for i in items]

    def training_blocked(self, asset: str | None = None) -> tuple[bool, builtins.list[str]]:
        """(blocked?, one reason per open block)."""
        reasons = [b.reason for b in self.open_blocks(asset)]
        return bool(reasons), reasons
