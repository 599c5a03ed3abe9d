"""Metadata catalog of published dataset versions, on SQLite (the embedded default, docs/ARCHITECTURE.md §5).

One connection per call and ``BEGIN IMMEDIATE`` for every write, so writers from many threads or
processes serialise on SQLite's lock instead of failing half-way; WAL keeps readers unblocked.
``transaction()`` exposes that lock so a publish can switch the store's ``current`` pointer and
record the version as one step no other publisher can interleave with.

The pointer lives in another system, so no transaction covers both: a publisher writes an *intent*
(the catalog row it is about to record) to the catalog's journal directory before it switches the
pointer, and removes it once the row is committed or the switch undone. An intent still present when
the write lock is free belongs to a killed publisher; ``dataset_publish.reconcile_publish`` settles it.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Concatenate, Literal, ParamSpec, TypeVar, get_args

from feature_platform.contracts.paths import require_safe_id
from feature_platform.storage.files import fsync_dir, write_atomic

SCHEMA_VERSION = 1
INTENT_SUFFIX = ".intent.json"
MAX_INTENT_BYTES = 1024 * 1024
BUSY_TIMEOUT_S = 30.0
Status = Literal["published", "rolled_back"]
STATUSES: tuple[str, ...] = get_args(Status)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS dataset_versions (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    dataset_id       TEXT NOT NULL,
    dataset_version  TEXT NOT NULL,
    manifest_digest  TEXT NOT NULL,
    location         TEXT NOT NULL,
    prefix           TEXT NOT NULL,
    quality_summary  TEXT NOT NULL,
    status           TEXT NOT NULL,
    published_at     TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    previous_version TEXT,
    UNIQUE (dataset_id, dataset_version)
);
CREATE INDEX IF NOT EXISTS dataset_versions_by_id ON dataset_versions (dataset_id, status, seq);
"""
_COLUMNS = ("dataset_id, dataset_version, manifest_digest, location, prefix, quality_summary, status, "
            "published_at, updated_at, previous_version")


P = ParamSpec("P")
R = TypeVar("R")

class CatalogError(RuntimeError):
    """The catalog refused a change (duplicate version, unknown version or status, newer schema)."""


@dataclass(frozen=True)
class CatalogEntry:
    dataset_id: str
    dataset_version: str
    manifest_digest: str
    location: str
    prefix: str
    quality_summary: dict[str, Any]
    status: str
    published_at: str
    updated_at: str
    previous_version: str | None


def utc_iso_now() -> str:
    return datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def summary_json(summary: Mapping[str, Any] | None) -> str:
    """Quality summary as sorted JSON; NaN/Infinity refused so every reader can parse it."""
    try:
        return json.dumps(dict(summary or {}), sort_keys=True, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise CatalogError(f"quality_summary is not JSON-serialisable: {exc}") from None


def _entry(row: sqlite3.Row) -> CatalogEntry:
    return CatalogEntry(
        dataset_id=row["dataset_id"], dataset_version=row["dataset_version"],
        manifest_digest=row["manifest_digest"], location=row["location"], prefix=row["prefix"],
        quality_summary=json.loads(row["quality_summary"]), status=row["status"],
        published_at=row["published_at"], updated_at=row["updated_at"], previous_version=row["previous_version"],
    )


class CatalogTransaction:
    """Reads and writes inside one ``BEGIN IMMEDIATE`` transaction (the catalog's write lock)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.committed = False

    def get(self, dataset_id: str, dataset_version: str) -> CatalogEntry | None:
        return _get(self._conn, dataset_id, dataset_version)

    def current(self, dataset_id: str) -> CatalogEntry | None:
        return _current(self._conn, dataset_id)

    def prefixes(self, dataset_id: str) -> set[str]:
        """Object-store prefixes of every recorded version of ``dataset_id``, whatever its status."""
        rows = self._conn.execute("SELECT prefix FROM dataset_versions WHERE dataset_id = ?", (dataset_id,))
        return {str(row[0]) for row in rows}

    def record_publish(
        self,
        *,
        dataset_id: str,
        dataset_version: str,
        manifest_digest: str,
        location: str,
        prefix: str,
        quality_summary: Mapping[str, Any] | None = None,
        previous_version: str | None = None,
        published_at: str | None = None,
    ) -> CatalogEntry:
        require_safe_id(dataset_id, "dataset_id")
        require_safe_id(dataset_version, "dataset_version")
        now = published_at or utc_iso_now()
        try:
            self._conn.execute(
                f"INSERT INTO dataset_versions ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, 'published', ?, ?, ?)",
                (dataset_id, dataset_version, manifest_digest, location, prefix, summary_json(quality_summary),
                 now, now, previous_version),
            )
        except sqlite3.IntegrityError:
            raise CatalogError(f"{dataset_id} {dataset_version} is already in the catalog") from None
        entry = self.get(dataset_id, dataset_version)
        assert entry is not None
        return entry

    def mark(self, dataset_id: str, dataset_version: str, status: str) -> CatalogEntry:
        if status not in STATUSES:
            raise CatalogError(f"status {status!r} is not one of {list(STATUSES)}")
        cur = self._conn.execute(
            "UPDATE dataset_versions SET status = ?, updated_at = ? WHERE dataset_id = ? AND dataset_version = ?",
            (status, utc_iso_now(), dataset_id, dataset_version),
        )
        if cur.rowcount != 1:
            raise CatalogError(f"{dataset_id} {dataset_version} is not in the catalog")
        entry = self.get(dataset_id, dataset_version)
        assert entry is not None
        return entry

    def commit(self) -> None:
        self._conn.execute("COMMIT")
        self.committed = True


def _get(conn: sqlite3.Connection, dataset_id: str, dataset_version: str) -> CatalogEntry | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM dataset_versions WHERE dataset_id = ? AND dataset_version = ?",
                       (dataset_id, dataset_version)).fetchone()
    return None if row is None else _entry(row)


def _current(conn: sqlite3.Connection, dataset_id: str) -> CatalogEntry | None:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM dataset_versions WHERE dataset_id = ? AND status = 'published' "
        "ORDER BY seq DESC LIMIT 1", (dataset_id,)).fetchone()
    return None if row is None else _entry(row)


def _enable_wal(conn: sqlite3.Connection, path: Path) -> None:
    """Switch a new file to WAL. SQLite answers "locked" at once here, without waiting on the busy
    timeout, while another connection is switching it too, so retry for as long as a write would wait."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    delay = 0.001
    while True:
        try:
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() == "wal" or str(conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]) == "wal":
                return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
        if time.monotonic() > deadline:
            raise CatalogError(f"{path}: cannot switch to WAL mode (still locked, or no WAL support here)")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back if a transaction is still open; never mask the error that got us here."""
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def _in_own_transaction(
        write: Callable[Concatenate[CatalogTransaction, P], R]) -> Callable[Concatenate[Catalog, P], R]:
    """A write of the transaction as a method of the catalog, in a transaction of its own."""

    def method(catalog: Catalog, /, *args: P.args, **kwargs: P.kwargs) -> R:
        with catalog.transaction() as tx:
            return write(tx, *args, **kwargs)

    return method


class Catalog:
    """Dataset versions by ``(dataset_id, dataset_version)``; ``current`` is the newest still published."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._init_schema()

    def __repr__(self) -> str:
        return f"Catalog({str(self.path)!r})"

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        conn.row_factory = sqlite3.Row
        try:
            yield conn
        finally:
            conn.close()

    def _init_schema(self) -> None:
        with self._connect() as conn:
            _enable_wal(conn, self.path)
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
                found = row[0]
                if found is None:
                    conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
                elif int(found) > SCHEMA_VERSION:
                    raise CatalogError(f"{self.path}: catalog schema version {found} is newer than this code "
                                       f"({SCHEMA_VERSION}); upgrade feature_platform")
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise

    def schema_version(self) -> int:
        with self._connect() as conn:
            return int(conn.execute("SELECT max(version) FROM schema_version").fetchone()[0])

    @contextlib.contextmanager
    def transaction(self) -> Iterator[CatalogTransaction]:
        """Hold the write lock: committed on clean exit (or by ``commit()``), rolled back on error."""
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            tx = CatalogTransaction(conn)
            try:
                yield tx
            except BaseException:
                if not tx.committed:
                    _rollback(conn)
                raise
            if not tx.committed:
                tx.commit()

    record_publish = _in_own_transaction(CatalogTransaction.record_publish)
    mark = _in_own_transaction(CatalogTransaction.mark)

    def get(self, dataset_id: str, dataset_version: str) -> CatalogEntry | None:
        with self._connect() as conn:
            return _get(conn, dataset_id, dataset_version)

    def current(self, dataset_id: str) -> CatalogEntry | None:
        with self._connect() as conn:
            return _current(conn, dataset_id)

    # -- the intent journal (see the module docstring) ------------------------------------------

    @property
    def journal_dir(self) -> Path:
        return self.path.parent / f"{self.path.name}.intents"

    def write_intent(self, dataset_id: str, token: str, record: Mapping[str, Any]) -> Path:
        """Durably record what a publish is about to do (fsynced file and directory entry) before it does it."""
        path = self.journal_dir / require_safe_id(dataset_id, "dataset_id") / f"{require_safe_id(token, 'token')}" \
            f"{INTENT_SUFFIX}"
        try:
            data = json.dumps(dict(record), sort_keys=True, allow_nan=False).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise CatalogError(f"publish intent for {dataset_id} is not JSON-serialisable: {exc}") from None
        write_atomic(path, data)
        fsync_dir(path.parent)
        return path

    def intents(self, dataset_id: str) -> list[tuple[Path, dict[str, Any]]]:
        """Intents left for ``dataset_id``, oldest token first; an unreadable one is an error, never skipped."""
        folder = self.journal_dir / require_safe_id(dataset_id, "dataset_id")
        if not folder.is_dir():
            return []
        out: list[tuple[Path, dict[str, Any]]] = []
        for path in sorted(folder.glob(f"*{INTENT_SUFFIX}")):
            try:
                raw = path.read_bytes() if path.is_file() and path.stat().st_size <= MAX_INTENT_BYTES else b""
                record = json.loads(raw)
            except (OSError, ValueError):
                record = None
            if not isinstance(record, dict):
                raise CatalogError(f"{path}: unreadable publish intent (expected a JSON object of at most "
                                   f"{MAX_INTENT_BYTES} bytes); inspect it and the dataset's current.json")
            out.append((path, record))
        return out

    def drop_intent(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        fsync_dir(path.parent)

    def versions(self, dataset_id: str) -> list[CatalogEntry]:
        """Every recorded version of ``dataset_id``, newest first, whatever its status."""
        with self._connect() as conn:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM dataset_versions WHERE dataset_id = ? ORDER BY seq DESC",
                                (dataset_id,)).fetchall()
        return [_entry(r) for r in rows]
