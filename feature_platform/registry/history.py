"""The history of the ``production`` alias: an append-only SQLite journal that survives kills and races.

MLflow cannot move an alias and append to a tag in one transaction, and a read-modify-write of a
JSON tag loses events when two promotions overlap. So the journal, not a tag, is the history, and
every move of ``production`` happens under an exclusive lock (``flock`` on a file beside the
journal, released by the kernel when its holder dies) in four steps:

1. settle what a killed mover left ``pending`` (``settle_pending``, also run at the start of every
   promotion and rollback);
2. append the event as ``pending``: one committed transaction, so the intent is durable;
3. move the alias and tag the version (MLflow);
4. mark the event ``applied``.

A ``pending`` event found later is ``applied`` when the alias names its version (the mover died
after step 3) and ``abandoned`` otherwise (it died before: production never changed). Events are
never rewritten otherwise, so no move is lost and none is recorded twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

BUSY_TIMEOUT_S = 30.0
JOURNAL_NAME = "production_history.sqlite"
EventState = Literal["pending", "applied", "abandoned"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS production_events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    model_name TEXT NOT NULL,
    action     TEXT NOT NULL,
    version    TEXT NOT NULL,
    previous   TEXT,
    at         TEXT NOT NULL,
    extra      TEXT NOT NULL,
    state      TEXT NOT NULL CHECK (state IN ('pending', 'applied', 'abandoned')),
    settled_at TEXT
);
CREATE INDEX IF NOT EXISTS production_events_by_model ON production_events (model_name, state, seq);
"""


class HistoryError(RuntimeError):
    """The journal cannot record or settle an event (unreadable file, non-JSON detail)."""


@dataclass(frozen=True)
class ProductionEvent:
    seq: int
    model_name: str
    action: str
    version: str
    previous: str | None
    at: str
    extra: dict[str, Any]
    state: str

    def record(self) -> dict[str, Any]:
        """The event as the history lists it: action, version, previous, at, then the action's details."""
        return {**self.extra, "action": self.action, "version": self.version, "previous": self.previous,
                "at": self.at}


def journal_path(data_root: Path) -> Path:
    """Beside the default MLflow store: ``<data_root>/mlflow/production_history.sqlite``."""
    return Path(data_root).resolve() / "mlflow" / JOURNAL_NAME


class ProductionJournal:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        conn.row_factory = sqlite3.Row
        try:
            conn.execute("PRAGMA synchronous=FULL")
            yield conn
        finally:
            conn.close()

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive across processes for the whole move (alias and journal), not just one transaction."""
        fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock; so does the death of the process

    def append(self, model_name: str, action: str, version: str, previous: str | None, at: str,
               extra: Mapping[str, Any]) -> int:
        """Record a move about to happen as ``pending``; durable when this returns."""
        try:
            detail = json.dumps(dict(extra), sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise HistoryError(f"event detail for {model_name} v{version} is not JSON: {exc}") from None
        with self._connect() as conn:
            cur = conn.execute(
                "INSERT INTO production_events (model_name, action, version, previous, at, extra, state) "
                "VALUES (?, ?, ?, ?, ?, ?, 'pending')", (model_name, action, version, previous, at, detail))
            assert cur.lastrowid is not None
            return int(cur.lastrowid)

    def settle(self, seq: int, state: EventState, at: str) -> None:
        with self._connect() as conn:
            cur = conn.execute("UPDATE production_events SET state = ?, settled_at = ? "
                               "WHERE seq = ? AND state = 'pending'", (state, at, seq))
            if cur.rowcount != 1:
                raise HistoryError(f"{self.path}: event #{seq} is not pending")

    def events(self, model_name: str, states: tuple[str, ...] = ("applied",)) -> list[ProductionEvent]:
        """Events of ``model_name`` in ``states``, oldest first."""
        marks = ", ".join("?" for _ in states)
        with self._connect() as conn:
            rows = conn.execute(f"SELECT * FROM production_events WHERE model_name = ? AND state IN ({marks}) "
                                "ORDER BY seq", (model_name, *states)).fetchall()
        out = []
        for row in rows:
            try:
                extra = json.loads(row["extra"])
            except ValueError:
                extra = None
            if not isinstance(extra, dict):
                raise HistoryError(f"{self.path}: event #{row['seq']} has unreadable detail")
            out.append(ProductionEvent(int(row["seq"]), row["model_name"], row["action"], row["version"],
                                       row["previous"], row["at"], extra, row["state"]))
        return out
