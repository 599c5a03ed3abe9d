"""A real, throwaway PostgreSQL server for tests: initdb into a temp dir, loopback TCP on a free port, unix socket
in the same temp dir, stopped and removed at the end of the session.

PostgreSQL refuses to run as root, so under root every server command runs as ``nobody`` (``runuser``, else
``setpriv``) with the temp dir owned by that user. Test modules import ``postgres_server_fixture`` and
``postgres_dsn_fixture`` (``# noqa: F401``); they register as ``postgres_server`` and
``postgres_dsn``. Without binaries the fixture fails, naming where it looked (`make test` installs them first).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

TOOLS = ("initdb", "pg_ctl", "postgres")
UNPRIVILEGED_USER = "nobody"


def candidate_dirs() -> list[str]:
    """Where binaries are looked for, in order: ``$PG_BIN``, ``$PATH``, Debian/RPM/Homebrew/source-install layouts."""
    dirs = [os.environ.get("PG_BIN", "")]
    dirs += os.environ.get("PATH", "").split(os.pathsep)
    dirs += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    dirs += sorted(glob.glob("/usr/pgsql-*/bin"), key=_version_key, reverse=True)
    dirs += ["/usr/local/pgsql/bin", "/opt/homebrew/bin", "/usr/local/opt/postgresql/bin"]
    return [d for d in dirs if d]


def _version_key(path: str) -> tuple[int, ...]:
    digits = "".join(ch if ch.isdigit() else " " for ch in path).split()
    return tuple(int(d) for d in digits)


def find_bin_dir() -> Path | None:
    """The first directory holding all of initdb, pg_ctl and postgres (resolving symlinks, as pg_ctl needs)."""
    for directory in candidate_dirs():
        paths = [Path(directory) / tool for tool in TOOLS]
        if all(p.is_file() and os.access(p, os.X_OK) for p in paths):
            resolved = {p.resolve().parent for p in paths}
            return resolved.pop() if len(resolved) == 1 else Path(directory)
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_user_prefix() -> tuple[list[str], int | None, int | None]:
    """Command prefix that drops root to ``nobody`` (and its uid/gid for chown); empty when not root."""
    if os.geteuid() != 0:
        return [], None, None
    entry = pwd.getpwnam(UNPRIVILEGED_USER)
    if shutil.which("runuser"):
        return ["runuser", "-u", UNPRIVILEGED_USER, "--"], entry.pw_uid, entry.pw_gid
    if shutil.which("setpriv"):
        prefix = ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups"]
        return prefix, entry.pw_uid, entry.pw_gid
    raise RuntimeError("running as root but neither runuser nor setpriv is available to drop privileges")


class PostgresServer:
    """One server process; ``dsn`` is TCP on 127.0.0.1, ``socket_dir`` holds the unix socket."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.prefix, uid, gid = _as_user_prefix()
        self.root = Path(tempfile.mkdtemp(prefix="fp-pg-"))
        if uid is not None and gid is not None:
            os.chown(self.root, uid, gid)
        self.data_dir = self.root / "data"
        self.socket_dir = self.root  # short path: unix socket paths are limited to ~107 bytes
        self.log_file = self.root / "server.log"
        self.port = 0
        self.dsn = ""

    def _run(self, *args: str) -> None:
        cmd = [*self.prefix, *args]
        proc = subprocess.run(cmd, cwd=self.root, capture_output=True, text=True, timeout=60, check=False)
        if proc.returncode != 0:
            log = self.log_file.read_text() if self.log_file.exists() else ""
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}{log}")

    def start(self) -> None:
        self._run(
            str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", "postgres", "-A", "trust",
            "-E", "UTF8", "--locale=C", "--no-sync",
        )  # fmt: skip
        for attempt in range(3):  # the free port can be taken between probe and bind; retry with a fresh one
            self.port = _free_port()
            options = (
                f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            )
            try:
                self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_file),
                          "-w", "-t", "30", "-o", options, "start")  # fmt: skip
                break
            except RuntimeError:
                if attempt == 2:
                    raise
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError):
            if (self.data_dir / "postmaster.pid").exists():
                self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def create_database(self) -> str:
        """A fresh, empty database; returns its TCP DSN. Cheaper than a server per test."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.dsn, autocommit=True) as con:
            con.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"


@pytest.fixture(scope="session", name="postgres_server")
def postgres_server_fixture() -> Iterator[PostgresServer]:
    """The session's server, from the machine's binaries (``make test`` installs them where missing)."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        pytest.fail(f"no PostgreSQL binaries ({', '.join(TOOLS)}) found in: {', '.join(candidate_dirs())}; "
                    "`make postgres` installs Debian's postgresql package")
    server = PostgresServer(bin_dir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session", name="postgres_dsn")
def postgres_dsn_fixture(postgres_server: PostgresServer) -> str:
    """DSN of the ``postgres`` database on the session server (TCP loopback, trust auth, user ``postgres``)."""
    return postgres_server.dsn
