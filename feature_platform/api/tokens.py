"""API tokens: a random secret shown once, only its SHA-256 kept, with a name, scopes, times and a revoked flag.

The store is SQLite at ``<data_root>/api/tokens.sqlite`` (directory 0700, file 0600). A presented token is
hashed and looked up by its hash; the stored hash is compared again with ``hmac.compare_digest``. A token
is never written anywhere, logged or kept in memory beyond the request that carries it.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import secrets
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, get_args

from feature_platform.contracts.paths import id_problem

Scope = Literal["ml:train", "ml:write", "datasets:read", "datasets:write"]
SCOPES: tuple[str, ...] = get_args(Scope)
TOKEN_PREFIX = "fpt_"
_TOKEN_BYTES = 32
_TOKEN_RE = re.compile(r"^fpt_[A-Za-z0-9_-]{43}$")
_DURATION_RE = re.compile(r"^([1-9][0-9]{0,5})([mhd])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}
Clock = Callable[[], datetime]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    sha256 TEXT NOT NULL UNIQUE,
    scopes TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT,
    revoked_at TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS tokens_active_name ON tokens(name) WHERE revoked_at IS NULL;
"""


class TokenInputError(ValueError):
    """A name, scope list or expiry the store does not accept; one line naming the input and the expected value."""


class TokenNotFound(LookupError):
    """No token with that name or id."""


class TokenConflict(ValueError):
    """An active token already has that name."""


AuthFailure = Literal["missing", "malformed", "unknown", "revoked", "expired"]


class AuthError(Exception):
    """A presented token that does not authenticate; ``reason`` says why (never the token itself)."""

    def __init__(self, reason: AuthFailure) -> None:
        super().__init__(f"token {reason}")
        self.reason: AuthFailure = reason


def utc_now() -> datetime:
    return datetime.now(tz=UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_iso(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text.replace("Z", "+00:00"))


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_store_path(data_root: Path) -> Path:
    return Path(data_root) / "api" / "tokens.sqlite"


def parse_scopes(text: str, source: str = "--scopes") -> tuple[str, ...]:
    """``"ml:train,datasets:read"`` → sorted unique scopes; an empty or unknown scope is refused."""
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p for p in parts):
        raise TokenInputError(f"{source}: expected a comma-separated list of {', '.join(SCOPES)}; got {text!r}")
    unknown = sorted({p for p in parts if p not in SCOPES})
    if unknown:
        raise TokenInputError(f"{source}: unknown scope(s) {', '.join(unknown)}; expected some of {', '.join(SCOPES)}")
    return tuple(sorted(set(parts)))


def parse_expiry(text: str, now: datetime, source: str = "--expires") -> datetime:
    """A duration (``90m``, ``12h``, ``30d``) from ``now``, or an ISO-8601 instant with a time zone, in the future."""
    match = _DURATION_RE.match(text)
    if match:
        return now + timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    expected = "a duration like 90m, 12h, 30d or an ISO-8601 time with a zone like 2027-01-31T00:00:00Z"
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00")) if "T" in text else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise TokenInputError(f"{source}: expected {expected}; got {text!r}")
    if moment <= now:
        raise TokenInputError(f"{source}: expected a time in the future; got {text!r} (now {_iso(now)})")
    return moment.astimezone(UTC)


@dataclass(frozen=True)
class TokenRecord:
    id: str
    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    def state(self, now: datetime) -> Literal["active", "revoked", "expired"]:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

    def to_json_dict(self, now: datetime) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "scopes": list(self.scopes), "created_at": _iso(self.created_at),
                "expires_at": _iso(self.expires_at) if self.expires_at else None,
                "revoked_at": _iso(self.revoked_at) if self.revoked_at else None, "state": self.state(now)}


def _record(row: sqlite3.Row) -> TokenRecord:
    created = _parse_iso(row["created_at"])
    assert created is not None
    return TokenRecord(id=row["id"], name=row["name"], scopes=tuple(row["scopes"].split(",")), created_at=created,
                       expires_at=_parse_iso(row["expires_at"]), revoked_at=_parse_iso(row["revoked_at"]))


class TokenStore:
    """Tokens under one data root. Every call opens its own connection: safe from any thread or process."""

    def __init__(self, path: Path, clock: Clock = utc_now) -> None:
        self.path = Path(path)
        self.clock = clock
        self._ready = False

    @contextlib.contextmanager
    def _connect(self, *, create: bool) -> Iterator[sqlite3.Connection | None]:
        if not self.path.exists():
            if not create:
                yield None
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(self.path.parent, 0o700)
            fd = os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
        conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
        conn.row_factory = sqlite3.Row
        try:
            if not self._ready:
                conn.executescript(_SCHEMA)
                self._ready = True
            yield conn
        finally:
            conn.close()

    def create(self, name: str, scopes: tuple[str, ...] | list[str], *,
               expires_at: datetime | None = None) -> tuple[str, TokenRecord]:
        """A new token: (the secret, shown to the caller once; its record). Raises on a taken name."""
        problem = id_problem(name, "--name")
        if problem is not None:
            raise TokenInputError(f"{problem}; expected letters, digits, '.', '_', '-'")
        chosen = parse_scopes(",".join(scopes)) if scopes else parse_scopes("")
        now = self.clock()
        if expires_at is not None and expires_at <= now:
            raise TokenInputError(f"--expires: expected a time in the future; got {_iso(expires_at)}")
        secret = TOKEN_PREFIX + secrets.token_urlsafe(_TOKEN_BYTES)
        record = TokenRecord(id="tok-" + secrets.token_hex(6), name=name, scopes=chosen,
                             created_at=now.replace(microsecond=0),
                             expires_at=expires_at.replace(microsecond=0) if expires_at else None, revoked_at=None)
        with self._connect(create=True) as conn:
            assert conn is not None
            try:
                conn.execute("INSERT INTO tokens (id, name, sha256, scopes, created_at, expires_at, revoked_at) "
                             "VALUES (?, ?, ?, ?, ?, ?, NULL)",
                             (record.id, name, token_digest(secret), ",".join(chosen), _iso(record.created_at),
                              _iso(record.expires_at) if record.expires_at else None))
            except sqlite3.IntegrityError:
                raise TokenConflict(f"--name {name}: an active token already has this name; expected a new name, "
                                    f"or revoke it first (fp api token revoke {name})") from None
        return secret, record

    def list(self) -> list[TokenRecord]:
        with self._connect(create=False) as conn:
            if conn is None:
                return []
            rows = conn.execute("SELECT * FROM tokens ORDER BY created_at, id").fetchall()
        return [_record(r) for r in rows]

    def revoke(self, name_or_id: str) -> tuple[TokenRecord, bool]:
        """(the token, whether it was revoked now): by id, or by the name of the active token."""
        with self._connect(create=False) as conn:
            row = None
            if conn is not None:
                row = conn.execute("SELECT * FROM tokens WHERE id = ?", (name_or_id,)).fetchone() or conn.execute(
                    "SELECT * FROM tokens WHERE name = ? AND revoked_at IS NULL", (name_or_id,)).fetchone()
            if conn is None or row is None:
                raise TokenNotFound(f"{name_or_id}: no such token; expected the name of an active token or a token "
                                    "id (fp api token list)")
            if row["revoked_at"] is not None:
                return _record(row), False
            conn.execute("UPDATE tokens SET revoked_at = ? WHERE id = ?", (_iso(self.clock()), row["id"]))
            row = conn.execute("SELECT * FROM tokens WHERE id = ?", (row["id"],)).fetchone()
        return _record(row), True

    def authenticate(self, token: str | None) -> TokenRecord:
        """The active token record for ``token``, or ``AuthError`` saying why not."""
        if not token:
            raise AuthError("missing")
        if not _TOKEN_RE.match(token):
            raise AuthError("malformed")
        digest = token_digest(token)
        with self._connect(create=False) as conn:
            row = None if conn is None else conn.execute(
                "SELECT * FROM tokens WHERE sha256 = ?", (digest,)).fetchone()
        if row is None or not hmac.compare_digest(str(row["sha256"]), digest):
            raise AuthError("unknown")
        record = _record(row)
        state = record.state(self.clock())
        if state != "active":
            raise AuthError(state)
        return record
