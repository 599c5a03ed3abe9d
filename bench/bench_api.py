"""API benchmark: p50/p99 latency and requests/s of ``GET /api/trainings/{id}`` at 50 concurrent clients on
loopback, against ``GET /api/health`` (no token, no storage) measured the same way in the same run.

Setup (untimed): a data root and a Dagster instance that queues runs (SQLite) in a temporary directory; a
``--rows`` dataset refreshed, its feature build and one training run headless, so the GET reads a finished
training (status from Dagster, outcome from MLflow, cached once ended) and a second training queued through the
API (status and MLflow experiment read on every request); ``fp api serve`` as a subprocess (uvicorn, one
worker, access log on) on a free loopback port. Each measurement: ``--clients`` asyncio clients with keep-alive
connections send requests back to back for ``--seconds`` after ``--warmup`` seconds; every answer must be 200.
``--get NAME=PATH`` adds endpoints (e.g. ``dataset=/api/datasets/ID/``, ``query=/api/datasets/ID/query/``;
the token has every scope; ``--sample-warehouse`` seeds the warehouse they read). The load generator shares
the machine with the server: numbers are a floor.

Usage: ``.venv/bin/python bench/bench_api.py [--clients 50] [--seconds 10] [--warmup 2] [--rows 6000]
[--get NAME=PATH ...]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import log

PROJECT = Path(__file__).resolve().parents[1]
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _prepare(root: Path, home: Path, rows: int) -> str:
    """A finished training_job run on the instance (headless, in process); returns its run id."""
    import dagster as dg

    from feature_platform.definitions import build_defs
    from feature_platform.orchestration.headless import run_feature_build, run_refresh, run_training
    from feature_platform.orchestration.market_assets import TimeSeriesResource
    from feature_platform.orchestration.resources import MetricsResource, NotifierResource, PlatformPaths, at_launch
    from feature_platform.orchestration.training_assets import training_run_config

    paths = at_launch(PlatformPaths, PlatformPaths(data_root=str(root)))
    defs = build_defs(paths=paths, timeseries=TimeSeriesResource(url=None, paths=paths),
                      notifier=NotifierResource(outbox_dir=str(root / "outbox"), slack_webhook_url=None,
                                                smtp_host=None, pagerduty_routing_key=None, paths=paths),
                      metrics=MetricsResource(textfile_dir=str(root / "metrics"), pushgateway_url=None))
    instance = dg.DagsterInstance.from_config(str(home))
    source = {"rows": rows, "entities": 50, "batch_rows": max(rows // 3, 1), "seed": 3}
    refresh = run_refresh("b1", instance=instance, defs=defs, run_config={**QUIET, "ops": {"source_snapshot": {
        "config": source}}})
    assert refresh.refresh.succeeded, refresh.refresh
    built = run_feature_build("b1", instance=instance, defs=defs, run_config={
        **QUIET, "ops": {"feature_build": {"config": {"allow_dirty": True}}}})
    assert built.succeeded, built
    version, config = training_run_config({"dataset_version": "b1", "hyperparam_profile": "fast",
                                           "run_coingecko_fetch": False})
    trained = run_training(version, instance=instance, defs=defs, run_config={**config, **QUIET})
    assert trained.succeeded, trained
    instance.dispose()
    return trained.run_id


def _serve(root: Path, home: Path, log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("FP_")}, "FP_DATA_ROOT": str(root),
           "DAGSTER_HOME": str(home)}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT), os.environ.get("PYTHONPATH", "")) if p)
    out = log_path.open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "feature_platform.cli", "api", "serve", "--port", "0"],
                            env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = re.search(r"running on (http://127\.0\.0\.1:\d+)", log_path.read_text(errors="replace"), re.I)
        if found:
            return proc, found.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"fp api serve did not start:\n{log_path.read_text(errors='replace')[-2000:]}")


async def _load(url: str, headers: dict[str, str], clients: int, seconds: float,
                warmup: float) -> tuple[list[float], float]:
    latencies: list[float] = []
    limits = httpx2.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx2.AsyncClient(headers=headers, limits=limits, timeout=60) as client:
        started = time.perf_counter()
        measure_from = started + warmup
        stop = measure_from + seconds

        async def worker() -> None:
            while True:
                sent = time.perf_counter()
                if sent >= stop:
                    return
                response = await client.get(url)
                done = time.perf_counter()
                if response.status_code != 200:
                    raise RuntimeError(f"GET {url}: {response.status_code} {response.text[:200]}")
                if sent >= measure_from:
                    latencies.append(done - sent)

        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - measure_from
    return latencies, elapsed


def _report(name: str, latencies: list[float], elapsed: float) -> None:
    ordered = sorted(latencies)
    p50 = statistics.median(ordered) * 1e3
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))] * 1e3
    print(f"  {name:<22} {len(ordered) / elapsed:8.0f} req/s   p50 {p50:7.1f} ms   p99 {p99:7.1f} ms   "
          f"({len(ordered):,} requests)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients (default 50)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per endpoint (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds first (default 2)")
    parser.add_argument("--rows", type=int, default=6_000, help="rows of the trained dataset (default 6000)")
    parser.add_argument("--get", action="append", default=[], metavar="NAME=PATH", help="another GET to measure")
    parser.add_argument("--sample-warehouse", action="store_true",
                        help="seed the sample DuckDB warehouse at the data root's default location (dataset endpoints)")
    args = parser.parse_args()
    extra = [tuple(spec.split("=", 1)) for spec in args.get]
    if any(len(e) != 2 or not e[1].startswith("/") for e in extra):
        parser.error("--get: expected NAME=/path")
    with tempfile.TemporaryDirectory(prefix="fp-bench-api-") as tmp:
        root, home = Path(tmp) / "data", Path(tmp) / "dagster_home"
        home.mkdir(parents=True)
        (home / "dagster.yaml").write_text("run_coordinator:\n  module: dagster.core.run_coordinator\n"
                                           "  class: QueuedRunCoordinator\ntelemetry:\n  enabled: false\n")
        log(f"refresh, feature build and a headless training of a {args.rows:,}-row dataset (untimed)")
        finished = _prepare(root, home, args.rows)
        if args.sample_warehouse:
            from feature_platform.warehouse.sample import seed_sample_warehouse

            seed_sample_warehouse(root / "warehouse" / "warehouse.duckdb", users=300, products=60, days=90, seed=11)
        from feature_platform.api.tokens import SCOPES, TokenStore, token_store_path

        token, _ = TokenStore(token_store_path(root)).create("bench", list(SCOPES))
        headers = {"Authorization": f"Bearer {token}"}
        proc, base = _serve(root, home, Path(tmp) / "server.log")
        try:
            queued = httpx2.post(f"{base}/api/trainings", headers=headers, timeout=60, json={
                "dataset_version": "b1", "hyperparam_profile": "fast", "run_coingecko_fetch": False}).json()
            targets = [("health (no token)", "/api/health"), ("training (finished)", f"/api/trainings/{finished}"),
                       ("training (queued)", f"/api/trainings/{queued['training_id']}"), *extra]
            print(f"GET on loopback, {args.clients} concurrent clients, {args.seconds:g} s each "
                  f"(uvicorn, 1 worker, {os.cpu_count()} CPUs shared with the load generator)")
            for name, path in targets:
                latencies, elapsed = asyncio.run(_load(base + path, headers, args.clients, args.seconds,
                                                       args.warmup))
                _report(name, latencies, elapsed)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
