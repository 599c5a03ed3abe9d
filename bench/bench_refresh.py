"""Benchmark: the demo refresh (200,000 synthetic rows) and the code location's load time.

Targets (issue 3): the refresh finishes in <= 60 s on a 2-core machine, with a per-asset breakdown
that separates Dagster's own overhead from the domain work; the code location loads in <= 3 s.

    .venv/bin/python bench/bench_refresh.py [--rows 200000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LOAD_SNIPPET = (
    "import time; t = time.perf_counter(); import dagster as dg; "
    "from feature_platform.definitions import defs; dg.Definitions.validate_loadable(defs); "
    "print(time.perf_counter() - t)"
)


def code_location_load(repeat: int) -> tuple[list[float], list[float]]:
    """(in-process import+validate seconds, whole-process seconds) per repetition, fresh interpreter each."""
    inner, whole = [], []
    for _ in range(repeat):
        started = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", LOAD_SNIPPET], capture_output=True, text=True, check=True)
        whole.append(time.perf_counter() - started)
        inner.append(float(out.stdout.strip().splitlines()[-1]))
    return inner, whole


def refresh(rows: int, repeat: int, work: Path) -> list[dict[str, object]]:
    os.environ["DAGSTER_HOME"] = str(work / "dagster_home")
    os.environ["FP_DATA_ROOT"] = str(work / "data")
    (work / "dagster_home").mkdir()
    (work / "dagster_home" / "dagster.yaml").symlink_to(Path(__file__).resolve().parents[1] / "dagster.yaml")

    import dagster as dg

    from feature_platform.definitions import build_defs
    from feature_platform.orchestration.headless import run_refresh

    defs = build_defs()
    instance = dg.DagsterInstance.get()
    config = {"ops": {"source_snapshot": {"config": {"rows": rows}}},
              "loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    results = []
    for i in range(repeat):
        started = time.perf_counter()
        outcome = run_refresh(f"bench-{i}", instance=instance, defs=defs, run_config=config)
        total = time.perf_counter() - started
        if not outcome.refresh.succeeded:
            raise SystemExit(f"refresh bench-{i} failed: {outcome.refresh}")
        domain = _domain_seconds(instance, outcome.refresh.run_id)
        results.append({"total": total, "run": outcome.refresh.seconds,
                        "steps": {s.step_key: s.seconds for s in outcome.refresh.steps}, "domain": domain,
                        "archive": outcome.archive.seconds if outcome.archive else 0.0})
    return results


def _domain_seconds(instance: object, run_id: str) -> dict[str, float]:
    """The `duration_s` each asset reports for its own domain work."""
    out = {}
    for entry in instance.all_logs(run_id):  # type: ignore[attr-defined]
        event = entry.dagster_event
        if event is not None and event.is_step_materialization:
            mat = event.step_materialization_data.materialization
            if "duration_s" in mat.metadata:
                out[mat.asset_key.to_user_string()] = float(mat.metadata["duration_s"].value)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"feature_platform refresh benchmark: {args.rows:,} rows, repeat={args.repeat} (medians)\n")

    inner, whole = code_location_load(args.repeat)
    print(f"code location load (import + validate, fresh interpreter): median {statistics.median(inner):.2f} s "
          f"(min {min(inner):.2f}, max {max(inner):.2f}); whole process {statistics.median(whole):.2f} s")

    with tempfile.TemporaryDirectory(prefix="fp-bench-refresh-") as tmp:
        results = refresh(args.rows, args.repeat, Path(tmp))
    med = statistics.median
    steps = sorted({k for r in results for k in r["steps"]}, key=lambda k: list(results[0]["steps"]).index(k)
                   if k in results[0]["steps"] else 99)  # type: ignore[arg-type]
    print(f"\n{'step':<42}{'step s':>9}{'domain s':>10}{'dagster s':>11}")
    print("-" * 72)
    step_total = 0.0
    domain_total = 0.0
    for key in steps:
        step_s = med([r["steps"].get(key, 0.0) for r in results])  # type: ignore[union-attr]
        domain_s = med([r["domain"].get(key, 0.0) for r in results])  # type: ignore[union-attr]
        has_domain = any(key in r["domain"] for r in results)  # type: ignore[operator]
        step_total += step_s
        domain_total += domain_s
        tail = f"{domain_s:>10.3f}{step_s - domain_s:>11.3f}" if has_domain else f"{'(check)':>10}{'':>11}"
        print(f"{key:<42}{step_s:>9.3f}{tail}")
    run_s = med([float(r["run"]) for r in results])  # type: ignore[arg-type]
    total_s = med([float(r["total"]) for r in results])  # type: ignore[arg-type]
    archive_s = med([float(r["archive"]) for r in results])  # type: ignore[arg-type]
    print("-" * 72)
    print(f"{'sum of steps':<42}{step_total:>9.3f}{domain_total:>10.3f}{step_total - domain_total:>11.3f}")
    print(f"refresh run (start to end, SQLite instance)   {run_s:.3f} s  (outside steps: {run_s - step_total:.3f} s)")
    print(f"archive run                                   {archive_s:.3f} s")
    print(f"headless refresh incl. metrics/alert/archive  {total_s:.3f} s")
    print("\nsummary:")
    ok_refresh = total_s <= 60
    ok_load = med(inner) <= 3
    print(f"  demo refresh ({args.rows:,} rows): {total_s:.1f} s   target <= 60 s  {'PASS' if ok_refresh else 'FAIL'}")
    print(f"  code location load:          {med(inner):.2f} s   target <= 3 s   {'PASS' if ok_load else 'FAIL'}")
    print(f"  Dagster's share of the run:  {run_s - domain_total:.2f} s of {run_s:.2f} s "
          f"({100 * (run_s - domain_total) / run_s:.0f}%)")


if __name__ == "__main__":
    main()
