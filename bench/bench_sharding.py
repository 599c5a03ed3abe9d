"""Benchmark: sharded dataset build, parallel verify, and the quality profile inside the refresh.

Targets (issue 16), each ratio measured in one run:
  - sharded build of 5M rows, 2 workers vs 1 (process executor): >= 1.7x
  - Ray vs process executor at equal workers: <= 1.3x the time
  - verify of a 4-file dataset, 2 workers vs 1: >= 1.7x
  - `fp refresh run` at 5M rows: quality_report step <= 1.5x the dataset step
  - peak RSS of a 5M-row refresh <= 1.2x that of a 200k-row refresh (each refresh in its own process)

    .venv/bin/python bench/bench_sharding.py [--rows 5000000] [--files 2] [--rounds 3] [--skip-refresh] [--skip-ray]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import log, timed_call, verdict

from feature_platform.contracts.manifest import data_file_paths
from feature_platform.datasets.build import BuildResult, build_dataset
from feature_platform.datasets.synthetic import SyntheticMarketSource
from feature_platform.datasets.verify import verify_dataset
from feature_platform.quality.profile import profile_dataset

PROJECT = Path(__file__).resolve().parents[1]


def build(rows: int, out: Path, name: str, files: int, executor: str, workers: int,
          maps: int | None = None) -> tuple[float, BuildResult]:
    return timed_call(lambda: build_dataset(SyntheticMarketSource(rows, 11), out, name, dataset_version="v1",
                                            files=files, executor=executor, workers=workers,  # type: ignore[arg-type]
                                            force=True, maps=maps))


WRAPPER = ("import json, resource, subprocess, sys; p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
           "print(json.dumps({'rc': p.returncode, 'out': p.stdout, 'err': p.stderr[-2000:], "
           "'maxrss_kb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))")


def refresh_in_process(rows: int, work: Path, version: str) -> tuple[dict[str, float], int]:
    """(step seconds, peak RSS in bytes) of one `fp refresh run` in a fresh interpreter. A wrapper process
    whose only child is the refresh reads the peak RSS, so no earlier child of this benchmark counts."""
    env = {**os.environ, "DAGSTER_HOME": str(work / "dagster_home"), "FP_DATA_ROOT": str(work / "data"),
           "PYTHONPATH": str(PROJECT)}
    home = work / "dagster_home"
    if not home.exists():
        home.mkdir(parents=True)
        (home / "dagster.yaml").symlink_to(PROJECT / "dagster.yaml")
    cmd = [sys.executable, "-m", "feature_platform.cli", "refresh", "run", "--rows", str(rows), "--version", version,
           "--json"]
    wrapped = subprocess.run([sys.executable, "-c", WRAPPER, *cmd], env=env, capture_output=True, text=True,
                             check=True)
    result = json.loads(wrapped.stdout)
    if result["rc"] != 0:
        raise SystemExit(f"refresh {version} failed: {result['err']}")
    outcome = json.loads(result["out"])
    steps = {s["step_key"]: float(s["seconds"]) for s in outcome["refresh"]["steps"]}
    return steps, int(result["maxrss_kb"]) * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--files", type=int, default=2, help="files of the build benchmark (verify uses 4)")
    parser.add_argument("--small-rows", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the build configurations")
    parser.add_argument("--skip-refresh", action="store_true")
    parser.add_argument("--only-refresh", action="store_true", help="only the refresh measurements")
    parser.add_argument("--skip-ray", action="store_true")
    args = parser.parse_args()
    rows = args.rows
    load = os.getloadavg()
    print(f"feature_platform sharding benchmark: {rows:,} rows; cpus {os.cpu_count()}, "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at start (a busy, shared machine)\n")
    summary: list[str] = []
    with tempfile.TemporaryDirectory(prefix="fp-bench-shard-") as tmp:
        work = Path(tmp)

        if not args.only_refresh:
            _builds_verify_profile(args, rows, work, summary)
        # --- the refresh: quality_report vs dataset, and peak RSS ---
        if not args.skip_refresh:
            _refresh(args, rows, work, summary)
    print(f"\nsummary (build: medians of its rounds; the rest: one run; load at end {os.getloadavg()[0]:.2f}):")
    print("\n".join(summary))


def _builds_verify_profile(args: argparse.Namespace, rows: int, work: Path, summary: list[str]) -> None:
    # --- sharded build: rounds of interleaved configurations, medians (fresh page-cache memory is slow
    # on this VM the first time it is touched, so a configuration run once, first, pays for the rest) ---
    configs: dict[str, tuple[str, int, int | None]] = {
        "fan-out x1": ("process", 1, None), "fan-out x2": ("process", 2, None),
        "map/reduce x1": ("process", 1, 1), "map/reduce x2": ("process", 2, 2), "inline": ("inline", 1, None)}
    times: dict[str, list[float]] = {name: [] for name in configs}
    busy: list[float] = []
    reference: list[str] | None = None
    for round_ in range(args.rounds):
        for name, (executor, workers, maps) in configs.items():
            log(f"round {round_ + 1}/{args.rounds}: build {args.files} files, {name}")
            cpu_started = time.process_time()
            seconds, result = build(rows, work, "b", args.files, executor, workers, maps)
            if executor == "inline":  # CPU time of this process (its threads included) over wall time
                busy.append((time.process_time() - cpu_started) / seconds)
            hashes = [f.sha256 for f in result.manifest.files]
            assert reference is None or hashes == reference, f"{name}: bytes differ"
            reference = hashes
            sizes = [f.rows for f in result.manifest.files]
            shutil.rmtree(result.path)
            times[name].append(seconds)
    med = {name: statistics.median(ts) for name, ts in times.items()}
    cores = len(os.sched_getaffinity(0))
    used = statistics.median(busy)
    print(f"build, {args.files} files (rows per file {sizes}), median of {args.rounds} interleaved rounds:")
    for name, ts in times.items():
        print(f"  {name:14s} {med[name]:7.2f} s   (runs {', '.join(f'{t:.2f}' for t in ts)})")
    fan, mr = med["fan-out x1"] / med["fan-out x2"], med["map/reduce x1"] / med["map/reduce x2"]
    print(f"  fan-out (the default on local executors: with 2 workers each task generates every other batch and "
          f"passes the other task its cuts): 2 workers vs 1 {fan:.2f}x")
    print(f"  map/reduce (Ray and the object store: the source is read once, every row is written twice, once as "
          f"a piece): 2 workers vs 1 {mr:.2f}x; fan-out x2 takes {med['fan-out x2'] / med['map/reduce x2']:.2f}x "
          f"map/reduce x2's time")
    print(f"  one inline worker keeps {used:.2f} cores busy (CPU time / wall time), so 2 workers on {cores} cores "
          f"are at most {min(2, cores) / used:.2f}x faster than 1")
    summary.append(f"  sharded build 2 workers vs 1:        {fan:.2f}x  target >= 1.7x  {verdict(fan >= 1.7)} fan-out")
    summary.append(f"                                       {mr:.2f}x  target >= 1.7x  {verdict(mr >= 1.7)} map/reduce")
    summary.append(f"    (bound on this machine: {min(2, cores) / used:.2f}x; one worker uses {used:.2f} cores)")
    if not args.skip_ray:
        import ray

        log("start a local Ray instance (2 CPUs), timed apart from the builds")
        ray_started = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        startup = time.perf_counter() - ray_started
        ray_times = []
        for round_ in range(args.rounds):
            log(f"round {round_ + 1}/{args.rounds}: build {args.files} files, ray x2 (map/reduce)")
            seconds, result = build(rows, work, "b", args.files, "ray", 2)
            assert [f.sha256 for f in result.manifest.files] == reference
            shutil.rmtree(result.path)
            ray_times.append(seconds)
        ray.shutdown()
        tr = statistics.median(ray_times)
        print(f"  ray x2         {tr:7.2f} s   (runs {', '.join(f'{t:.2f}' for t in ray_times)}; starting Ray took "
              f"{startup:.2f} s more); at 2 workers ray / process map/reduce {tr / med['map/reduce x2']:.2f}x, "
              f"ray / process fan-out (each executor's default) {tr / med['fan-out x2']:.2f}x")
        summary.append(f"  ray vs process, 2 workers:           {tr / med['map/reduce x2']:.2f}x  target <= 1.3x  "
                       f"{verdict(tr / med['map/reduce x2'] <= 1.3)} same strategy (map/reduce)")
        summary.append(f"                                       {tr / med['fan-out x2']:.2f}x  target <= 1.3x  "
                       f"{verdict(tr / med['fan-out x2'] <= 1.3)} each executor's default")

    # --- parallel verify of a 4-file dataset ---
    log("build 4 files for verify (process, 2 workers)")
    _, r4 = build(rows, work, "v4", 4, "process", 2)
    verify_times: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(args.rounds):  # a verify takes tenths of a second: interleaved rounds, medians
        for n in (1, 2):
            seconds, rep = timed_call(partial(verify_dataset, r4.manifest_path, workers=n))
            assert rep.ok
            verify_times[n].append(seconds)
    v1, v2 = statistics.median(verify_times[1]), statistics.median(verify_times[2])
    nbytes = sum(f.bytes for f in r4.manifest.files)
    print(f"\nverify, 4 files, {nbytes / 1e6:,.0f} MB (page cache warm), medians of {args.rounds} interleaved rounds:")
    print(f"  x1 {v1:6.2f} s   x2 {v2:6.2f} s   speed-up {v1 / v2:.2f}x; per worker {rows / v1:,.0f} rows/s, "
          f"{nbytes / v1 / 1e6:,.0f} MB/s (runs x1 {', '.join(f'{t:.2f}' for t in verify_times[1])}; "
          f"x2 {', '.join(f'{t:.2f}' for t in verify_times[2])})")
    summary.append(f"  verify 4 files 2 workers vs 1:       {v1 / v2:.2f}x  target >= 1.7x  {verdict(v1 / v2 >= 1.7)}")

    # --- profile map/reduce ---
    files = data_file_paths(r4.manifest_path, r4.manifest)
    p1, prof1 = timed_call(lambda: profile_dataset(files, r4.manifest))
    p2, prof2 = timed_call(lambda: profile_dataset(files, r4.manifest, executor="process", workers=2))
    assert prof1 == prof2
    print(f"\nprofile, 4 files: inline (column groups in threads, one per core) {p1:6.2f} s   process x2 (one "
          f"thread per task) {p2:6.2f} s   speed-up {p1 / p2:.2f}x; per worker (one CPU) {rows / (2 * p2):,.0f} rows/s")
    shutil.rmtree(r4.path)


def _refresh(args: argparse.Namespace, rows: int, work: Path, summary: list[str]) -> None:
    log(f"refresh {args.small_rows:,} rows (own process)")
    small_steps, small_rss = refresh_in_process(args.small_rows, work / "small", "bench-small")
    log(f"refresh {rows:,} rows (own process)")
    big_steps, big_rss = refresh_in_process(rows, work / "big", "bench-big")
    ds, qr = big_steps.get("dataset", 0.0), big_steps.get("quality_report", 0.0)
    print(f"\nrefresh ({rows:,} rows): dataset {ds:.2f} s, quality_report {qr:.2f} s ({qr / ds:.2f}x); "
          f"steps {', '.join(f'{k} {v:.1f}s' for k, v in big_steps.items())}")
    print(f"refresh ({args.small_rows:,} rows): dataset {small_steps.get('dataset', 0.0):.2f} s, "
          f"quality_report {small_steps.get('quality_report', 0.0):.2f} s")
    print(f"peak RSS: {small_rss / 1e6:,.0f} MB at {args.small_rows:,} rows, {big_rss / 1e6:,.0f} MB at "
          f"{rows:,} rows ({big_rss / small_rss:.2f}x)")
    summary.append(f"  quality_report / dataset step (5M):  {qr / ds:.2f}x  target <= 1.5x  "
                   f"{verdict(qr / ds <= 1.5)}")
    summary.append(f"  peak RSS 5M / 200k refresh:          {big_rss / small_rss:.2f}x  target <= 1.2x  "
                   f"{verdict(big_rss / small_rss <= 1.2)}")


if __name__ == "__main__":
    main()
