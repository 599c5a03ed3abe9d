"""API tokens: `fp api token create|list|revoke` and the store behind them (only a SHA-256 is kept)."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from feature_platform.api.tokens import (
    AuthError,
    TokenConflict,
    TokenInputError,
    TokenStore,
    parse_expiry,
    token_digest,
    token_store_path,
)
from tests.conftest import CliResult

TOKEN_RE = re.compile(r"^fpt_[A-Za-z0-9_-]{43}$")


@pytest.fixture
def fp(cli: Callable[..., CliResult], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., CliResult]:
    monkeypatch.setenv("FP_DATA_ROOT", str(tmp_path / "data"))
    return cli


def test_create_prints_the_token_once_and_stores_only_its_hash(fp: Callable[..., CliResult], tmp_path: Path) -> None:
    code, out, err = fp("api", "token", "create", "--name", "ci-bot", "--scopes", "ml:train,datasets:read")
    assert code == 0, err
    token = out.strip()
    assert TOKEN_RE.match(token), out  # stdout is the token alone: `TOKEN=$(fp api token create ...)` works
    assert "shown only this once" in err and token not in err
    path = token_store_path(tmp_path / "data")
    raw = path.read_bytes()
    assert token.encode() not in raw and token_digest(token).encode() in raw
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700

    code, out, _ = fp("api", "token", "list", "--json")
    listed = json.loads(out)
    assert code == 0 and len(listed) == 1
    assert listed[0]["name"] == "ci-bot" and listed[0]["scopes"] == ["datasets:read", "ml:train"]
    assert listed[0]["state"] == "active" and listed[0]["expires_at"] is None
    assert token not in out and token_digest(token) not in out and "sha256" not in out

    code, out, _ = fp("api", "token", "list")
    assert code == 0 and "ci-bot" in out and token not in out
    record = TokenStore(path).authenticate(token)
    assert record.name == "ci-bot"


def test_create_json_expiry_and_name_reuse_after_revoke(fp: Callable[..., CliResult]) -> None:
    code, out, _ = fp("api", "token", "create", "--name", "n1", "--scopes", "ml:write", "--expires", "12h", "--json")
    first = json.loads(out)
    assert code == 0 and TOKEN_RE.match(first["token"])
    made = datetime.fromisoformat(first["created_at"].replace("Z", "+00:00"))
    assert datetime.fromisoformat(first["expires_at"].replace("Z", "+00:00")) - made == timedelta(hours=12)

    code, _, err = fp("api", "token", "create", "--name", "n1", "--scopes", "ml:write")
    assert code == 1 and "already has this name" in err and len(err.strip().splitlines()) == 1

    code, out, _ = fp("api", "token", "revoke", "n1", "--json")
    assert code == 0 and json.loads(out)["revoked_now"] is True and json.loads(out)["state"] == "revoked"
    code, out, _ = fp("api", "token", "revoke", first["id"])
    assert code == 0 and "already revoked" in out
    code, _, err = fp("api", "token", "revoke", "n1")  # by name: only an active token is found by name
    assert code == 1 and "no such token" in err

    code, out, _ = fp("api", "token", "create", "--name", "n1", "--scopes", "ml:write", "--json")
    assert code == 0 and json.loads(out)["id"] != first["id"]
    code, out, _ = fp("api", "token", "list", "--json")
    assert sorted(r["state"] for r in json.loads(out)) == ["active", "revoked"]


@pytest.mark.parametrize(("args", "needle"), [
    (["--name", "x", "--scopes", ""], "--scopes"),
    (["--name", "x", "--scopes", "ml:train,"], "--scopes"),
    (["--name", "x", "--scopes", "admin"], "unknown scope(s) admin"),
    (["--name", "x", "--scopes", "ml:train,ML:WRITE"], "unknown scope(s) ML:WRITE"),
    (["--name", "../x", "--scopes", "ml:train"], "--name"),
    (["--name", "", "--scopes", "ml:train"], "--name"),
    (["--name", "x", "--scopes", "ml:train", "--expires", "0d"], "--expires"),
    (["--name", "x", "--scopes", "ml:train", "--expires", "-1d"], "--expires"),
    (["--name", "x", "--scopes", "ml:train", "--expires", "1.5d"], "--expires"),
    (["--name", "x", "--scopes", "ml:train", "--expires", "tomorrow"], "--expires"),
    (["--name", "x", "--scopes", "ml:train", "--expires", "2030-01-01"], "--expires"),
    (["--name", "x", "--scopes", "ml:train", "--expires", "2030-01-01T00:00:00"], "--expires"),  # no zone
    (["--name", "x", "--scopes", "ml:train", "--expires", "2020-01-01T00:00:00Z"], "in the future"),
    (["--scopes", "ml:train"], "--name"),
    (["--name", "x"], "--scopes"),
])
def test_create_refuses_bad_input_and_creates_nothing(fp: Callable[..., CliResult], args: list[str],
                                                      needle: str) -> None:
    code, out, err = fp("api", "token", "create", *args)
    assert code == 2 and needle in err and out == "", (code, out, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    code, out, _ = fp("api", "token", "list", "--json")
    assert json.loads(out) == []


def test_revoke_unknown_and_list_empty(fp: Callable[..., CliResult]) -> None:
    code, out, _ = fp("api", "token", "list")
    assert code == 0 and "no tokens" in out
    code, _, err = fp("api", "token", "revoke", "nobody")
    assert code == 1 and "no such token" in err
    code, _, err = fp("api", "token")
    assert code == 2


def test_store_authenticates_only_active_tokens(tmp_path: Path) -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    clock = [now]
    store = TokenStore(tmp_path / "tokens.sqlite", clock=lambda: clock[0])
    secret, record = store.create("svc", ["ml:train"], expires_at=now + timedelta(hours=1))
    assert store.authenticate(secret).id == record.id

    for presented, reason in [(None, "missing"), ("", "missing"), ("Bearer " + secret, "malformed"),
                              (secret[:-1], "malformed"), (secret + "x", "malformed"),
                              ("fpt_" + "A" * 43, "unknown"), ("fpt_" + secret[4:].swapcase(), "unknown"),
                              ("x' OR '1'='1", "malformed")]:
        with pytest.raises(AuthError) as caught:
            store.authenticate(presented)
        assert caught.value.reason == reason, presented

    clock[0] = now + timedelta(hours=1)  # expiry is exclusive: at expires_at the token is expired
    with pytest.raises(AuthError) as caught:
        store.authenticate(secret)
    assert caught.value.reason == "expired" and secret not in str(caught.value)

    clock[0] = now
    other, _ = store.create("svc2", ["ml:write"])
    store.revoke("svc2")
    with pytest.raises(AuthError) as caught:
        store.authenticate(other)
    assert caught.value.reason == "revoked"

    with pytest.raises(TokenConflict):
        store.create("svc", ["ml:train"])
    with pytest.raises(TokenInputError):
        store.create("svc3", ["ml:train"], expires_at=now - timedelta(seconds=1))
    with pytest.raises(TokenInputError):
        store.create("svc3", [])
    # two tokens never share a secret; only hashes are in the database
    rows = sqlite3.connect(store.path).execute("SELECT sha256 FROM tokens").fetchall()
    assert len({r[0] for r in rows}) == len(rows) == 2
    assert parse_expiry("90m", now) == now + timedelta(minutes=90)


def test_fp_api_serve_answers_on_loopback_and_stops_on_interrupt(tmp_path: Path) -> None:
    from tests.api_support import queued_dagster_home

    env = {**os.environ, "FP_DATA_ROOT": str(tmp_path / "data"),
           "DAGSTER_HOME": str(queued_dagster_home(tmp_path / "dagster_home"))}
    env.pop("FP_DAGSTER_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "feature_platform.cli", "api", "serve", "--port", "0"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = None
        lines = []
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            found = re.search(r"running on (http://127\.0\.0\.1:\d+)", line, re.IGNORECASE)
            if found:
                url = found.group(1)
                break
        assert url and not url.endswith(":0"), lines
        import httpx2

        assert httpx2.get(f"{url}/api/health").json()["status"] == "ok"
        answer = httpx2.get(f"{url}/api/trainings/00000000-0000-0000-0000-000000000000")
        assert answer.status_code == 401 and answer.headers["www-authenticate"].startswith("Bearer")
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
    assert code == 0


@pytest.mark.parametrize("port", ["70000", "-1", "http", "80.5"])
def test_fp_api_serve_refuses_bad_ports(cli: Callable[..., CliResult], port: str) -> None:
    code, _, err = cli("api", "serve", "--port", port)
    assert code == 2 and "--port" in err
