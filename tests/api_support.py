"""Real servers for the API tests: uvicorn on a free loopback port, a Dagster instance that queues runs, and
the Dagster daemon as a subprocess that takes runs off the queue."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn

PROJECT = Path(__file__).resolve().parents[1]


def queued_dagster_home(home: Path, *, dequeue_interval_s: int = 1) -> Path:
    """A DAGSTER_HOME whose instance queues runs (at most two at a time), dequeued every ``dequeue_interval_s``."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(
        "run_coordinator:\n"
        "  module: dagster.core.run_coordinator\n"
        "  class: QueuedRunCoordinator\n"
        "  config:\n"
        "    max_concurrent_runs: 2\n"
        f"    dequeue_interval_seconds: {dequeue_interval_s}\n"
        "telemetry:\n"
        "  enabled: false\n")
    return home


@contextlib.contextmanager
def serve(app: Any, *, access_log: bool = False) -> Iterator[str]:
    """``app`` under a real uvicorn server on 127.0.0.1 (a free port); yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="info" if access_log else "warning",
                                           access_log=access_log, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@contextlib.contextmanager
def dagster_daemon(home: Path, data_root: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``dagster-daemon run`` on the project's workspace.yaml, in its own process group (stopped with it)."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("FP_")},  # no real channels, stores
           "DAGSTER_HOME": str(home), "FP_DATA_ROOT": str(data_root),
           "PYTHONPATH": os.pathsep.join([str(PROJECT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("FP_DAGSTER_URL", None)
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "dagster._daemon", "run", "-w", str(PROJECT / "workspace.yaml")],
                                cwd=PROJECT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield proc
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
