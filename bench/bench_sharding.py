"""Benchmark: sharded dataset build, parallel verify, and the quality profile inside the refresh.

Targets (issue 16), each ratio measured in one run:
  - sharded build of 5M rows, 2 workers vs 1 (process executor): >= 1.7x
  - Ray vs process executor at equal workers: <= 1.3x the time
  - verify of a 4-file dataset, 2 workers vs 1: >= 1.7x
  - `fp refresh run` at 5M rows: quality_report step <= 1.5x the dataset step
  - peak RSS of a 5M-row refresh <= 1.2x that of a 200k-row refresh (each refresh in its own process)

    .venv/bin/python bench/bench_sharding.py [--rows 5000000] [--files 2] [--skip-refresh] [--skip-ray]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
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
    print(f"\nsummary (one run each; machine shared, load at end {os.getloadavg()[0]:.2f}):")
    print("\n".join(summary))


def _builds_verify_profile(args: argparse.Namespace, rows: int, work: Path, summary: list[str]) -> None:
    # --- sharded build ---
    log(f"build {args.files} files, process, 1 worker")
    t1, r1 = build(rows, work, "b1", args.files, "process", 1)
    log(f"build {args.files} files, process, 2 workers")
    t2, r2 = build(rows, work, "b2", args.files, "process", 2)
    assert [f.sha256 for f in r1.manifest.files] == [f.sha256 for f in r2.manifest.files]
    sizes = [f.rows for f in r1.manifest.files]
    print(f"build, {args.files} files (rows per file {sizes}):")
    print(f"  process x1 {t1:7.2f} s   process x2 {t2:7.2f} s   speed-up {t1 / t2:.2f}x")
    summary.append(f"  sharded build 2 workers vs 1:        {t1 / t2:.2f}x  target >= 1.7x  {verdict(t1 / t2 >= 1.7)}")
    print(f"  per worker: {rows / t1:,.0f} rows/s of dataset (fan-out: each task generates the whole source and "
          f"writes its share of the {args.files} files through one open writer per file)")
    shutil.rmtree(r1.path)
    log(f"build {args.files} files, process, 2 workers, map/reduce (maps=2, as on Ray)")
    tm, rm = build(rows, work, "bm", args.files, "process", 2, maps=2)
    assert [f.sha256 for f in rm.manifest.files] == [f.sha256 for f in r2.manifest.files]
    print(f"  map/reduce process x2 {tm:7.2f} s (fan-out {t2 / tm:.2f}x its time: map/reduce writes every row "
          f"twice, once as pieces)")
    shutil.rmtree(rm.path)
    # The bound on the speed-up: one worker already keeps more than one core busy (the parquet writer's
    # hashing/writing thread and the kernel's page-cache copies run beside the encoder), so W workers on
    # C cores can be at most C / (cores one worker uses) times faster.
    cpu_started = time.process_time()
    ti, ri = build(rows, work, "b0", args.files, "inline", 1)
    busy = (time.process_time() - cpu_started) / ti
    cores = len(os.sched_getaffinity(0))
    print(f"  inline     {ti:7.2f} s   one worker keeps {busy:.2f} cores busy (CPU time / wall time), so "
          f"2 workers on {cores} cores are at most {min(2, cores) / busy:.2f}x faster than 1")
    summary.append(f"    (bound on this machine: {min(2, cores) / busy:.2f}x; one worker uses {busy:.2f} cores)")
    assert [f.sha256 for f in ri.manifest.files] == [f.sha256 for f in r2.manifest.files]
    shutil.rmtree(ri.path)
    if not args.skip_ray:
        log("build, ray, 2 workers (local Ray started by the build)")
        tr, rr = build(rows, work, "b3", args.files, "ray", 2)
        assert [f.sha256 for f in rr.manifest.files] == [f.sha256 for f in r2.manifest.files]
        print(f"  ray x2     {tr:7.2f} s   ray / process at 2 workers {tr / t2:.2f}x (incl. starting Ray)")
        summary.append(f"  ray vs process, 2 workers:           {tr / t2:.2f}x  target <= 1.3x  "
                       f"{verdict(tr / t2 <= 1.3)}")
        shutil.rmtree(rr.path)
    shutil.rmtree(r2.path)

    # --- parallel verify of a 4-file dataset ---
    log("build 4 files for verify (process, 2 workers)")
    _, r4 = build(rows, work, "v4", 4, "process", 2)
    v1, rep1 = timed_call(lambda: verify_dataset(r4.manifest_path, workers=1))
    v2, rep2 = timed_call(lambda: verify_dataset(r4.manifest_path, workers=2))
    assert rep1.ok and rep2.ok and rep1.to_json_dict() == rep2.to_json_dict()
    nbytes = sum(f.bytes for f in r4.manifest.files)
    print(f"\nverify, 4 files, {nbytes / 1e6:,.0f} MB (page cache warm):")
    print(f"  x1 {v1:6.2f} s   x2 {v2:6.2f} s   speed-up {v1 / v2:.2f}x; per worker {rows / v1:,.0f} rows/s, "
          f"{nbytes / v1 / 1e6:,.0f} MB/s")
    summary.append(f"  verify 4 files 2 workers vs 1:       {v1 / v2:.2f}x  target >= 1.7x  {verdict(v1 / v2 >= 1.7)}")

    # --- profile map/reduce ---
    files = data_file_paths(r4.manifest_path, r4.manifest)
    p1, prof1 = timed_call(lambda: profile_dataset(files, r4.manifest))
    p2, prof2 = timed_call(lambda: profile_dataset(files, r4.manifest, executor="process", workers=2))
    assert prof1 == prof2
    print(f"\nprofile, 4 files: inline {p1:6.2f} s   process x2 {p2:6.2f} s   speed-up {p1 / p2:.2f}x; "
          f"per worker {rows / p1:,.0f} rows/s")
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
