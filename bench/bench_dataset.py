"""Build/verify benchmark: N rows x 32 float32 features (default 5,000,000), all measured in one run.

Targets (printed with PASS/FAIL; the script always exits 0, it is a report):

(a) ``build_dataset`` vs ``pandas.DataFrame.to_parquet()`` (pandas defaults) + a separate sha256 pass: >= 3x faster.
(b) ``build_dataset`` vs a raw ``pq.ParquetWriter`` write with the project's ``writer_options``: <= 1.25x its time.
(c) ``verify_dataset`` throughput vs raw ``hashlib.sha256`` over the same file in 8 MiB blocks: >= 85%.
(d) peak RSS of a full build (generation included) at 10M rows vs 1M rows, each in a fresh process: <= 1.5x.

For (a) and (b) the batches are generated once, up front, and replayed from memory, so only the write path is
timed. The pandas DataFrame is built before timing. Every timed measurement runs ``--repeat`` times into a fresh
output directory and the median is reported; the rounds are interleaved (and their order rotated) so drift hits
every contender alike, after one untimed warm-up write. Dirty pages are flushed (``os.sync``) between
measurements, untimed, but the page cache cannot be dropped without root, so files are read warm. The peak RSS
children run first, through ``/bin/sh`` so they do not inherit this process's ``ru_maxrss``.

Usage: ``python bench/bench_dataset.py [--rows N] [--repeat K] [--skip-rss] [--rss-rows 1000000,10000000]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq
from harness import Timing, log, raw_sha256, settle, timed, verdict
from pydantic import JsonValue

from feature_platform.contracts.manifest import RngSeeds
from feature_platform.datasets.build import DATA_FILE, build_dataset
from feature_platform.datasets.parquet_writer import write_parquet, writer_options
from feature_platform.datasets.splits import SplitSpec
from feature_platform.datasets.synthetic import SyntheticMarketSource
from feature_platform.datasets.verify import VerifyReport, verify_dataset

if TYPE_CHECKING:
    import pandas as pd  # only for annotations: the RSS child processes must not pay for importing pandas

BENCH_DIR = Path(__file__).resolve().parent
OUT_ROOT = BENCH_DIR / "out"
SEED = 20240101
DATASET_ID = "bench_ds"

TARGET_A = 3.0  # project build at least this many times faster than pandas.to_parquet + sha256
TARGET_B = 1.25  # project build at most this multiple of the raw pyarrow write
TARGET_C = 0.85  # verify throughput at least this fraction of raw sha256 throughput
TARGET_D = 1.5  # peak RSS at the larger row count at most this multiple of the smaller


class ReplaySource:
    """A ``TableSource`` replaying pre-generated batches; provenance comes from the real source."""

    kind = "synthetic"

    def __init__(self, real: SyntheticMarketSource, batches: list[pa.RecordBatch]) -> None:
        self._real = real
        self._batches = batches

    @property
    def schema(self) -> pa.Schema:
        return self._real.schema

    @property
    def expected_rows(self) -> int | None:
        return self._real.expected_rows

    @property
    def rng_seeds(self) -> RngSeeds | None:
        return self._real.rng_seeds

    def parameters(self) -> dict[str, JsonValue]:
        return self._real.parameters()

    def source_hash(self) -> str:
        return self._real.source_hash()

    def batches(self) -> Iterator[pa.RecordBatch]:
        return iter(self._batches)


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def raw_pyarrow_write(path: Path, schema: pa.Schema, batches: list[pa.RecordBatch], *, fsync: bool) -> None:
    with pq.ParquetWriter(path, schema, **writer_options(schema)) as writer:
        for b in batches:
            writer.write_batch(b, row_group_size=b.num_rows)
    if fsync:
        fsync_path(path)


def fmt_rate(nbytes: int | None, seconds: float) -> str:
    if nbytes is None or seconds <= 0:
        return ""
    return f"{nbytes / seconds / 1e6:8.1f} MB/s"


def fmt_mib(nbytes: int) -> str:
    return f"{nbytes / 2**20:.1f} MiB"


# --- peak RSS (d) ------------------------------------------------------------------------------------------------


def vm_hwm_kib() -> int | None:
    """This process's own RSS high-water mark (Linux ``VmHWM``), a cross-check of ``ru_maxrss``."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def child_rss(rows: int, out_dir: Path) -> int:
    """Hidden ``--child-rss`` mode: one full build (generation included) in this fresh process."""
    import_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    result = build_dataset(SyntheticMarketSource(rows, SEED), out_dir, DATASET_ID, force=True)
    seconds = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({
        "rows": rows, "maxrss_kib": peak_kib, "import_maxrss_kib": import_kib, "vm_hwm_kib": vm_hwm_kib(),
        "seconds": seconds, "bytes": result.manifest.files[0].bytes, "ok": result.report.ok,
    }))
    return 0


@dataclass(frozen=True)
class RssSample:
    rows: int
    maxrss_kib: int
    import_maxrss_kib: int
    vm_hwm_kib: int | None
    seconds: float
    nbytes: int


def measure_rss(rows: int, work: Path) -> RssSample:
    """Run one build in a fresh process and return its peak RSS.

    On Linux a child's ``ru_maxrss`` starts at its parent's RSS high-water mark (it survives fork and
    exec), so a direct child of this process would report this process's peak. Going through
    ``/bin/sh``, which forks rather than execs for a command followed by ``exit``, gives the child
    a small parent and so its own ``ru_maxrss``; ``VmHWM`` is read as a cross-check.
    """
    out_dir = work / f"rss-{rows}"
    settle()
    child = [sys.executable, str(Path(__file__).resolve()), "--child-rss", str(rows), str(out_dir)]
    proc = subprocess.run(["/bin/sh", "-c", '"$@"; exit $?', "sh", *child],
                          capture_output=True, text=True, check=False)
    shutil.rmtree(out_dir, ignore_errors=True)
    if proc.returncode != 0:
        raise RuntimeError(f"RSS child for {rows} rows failed ({proc.returncode}):\n{proc.stderr}")
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    if not data["ok"]:
        raise RuntimeError(f"RSS child for {rows} rows built a dataset that did not verify")
    hwm = data.get("vm_hwm_kib")
    return RssSample(rows=rows, maxrss_kib=int(data["maxrss_kib"]), import_maxrss_kib=int(data["import_maxrss_kib"]),
                     vm_hwm_kib=None if hwm is None else int(hwm), seconds=float(data["seconds"]),
                     nbytes=int(data["bytes"]))


# --- main benchmark ----------------------------------------------------------------------------------------------


def run(rows: int, repeat: int, rss_rows: list[int] | None) -> None:
    OUT_ROOT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="run-", dir=OUT_ROOT))
    try:
        _run(rows, repeat, rss_rows, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if OUT_ROOT.is_dir() and not any(OUT_ROOT.iterdir()):
            OUT_ROOT.rmdir()


def _run(rows: int, repeat: int, rss_rows: list[int] | None, work: Path) -> None:
    print(f"feature_platform dataset benchmark: {rows:,} rows, repeat={repeat} (median reported)")
    print(f"python {platform.python_version()}, pyarrow {pa.__version__}, {os.cpu_count()} CPUs, "
          f"{platform.machine()} {platform.system()} {platform.release()}")
    print(f"work dir: {work} (files are read warm: the page cache cannot be dropped without root)")
    print()

    # (d) first, while this process is still small and the machine otherwise idle.
    rss: list[RssSample] = []
    for n in rss_rows or []:
        log(f"peak RSS child: {n:,} rows")
        rss.append(measure_rss(n, work))

    real = SyntheticMarketSource(rows, SEED)
    schema = real.schema
    n_float = sum(pa.types.is_floating(f.type) for f in schema)

    # Generation alone; the first round's batches are kept in memory and replayed by every write below.
    gen = Timing("generation only (SyntheticMarketSource)")
    batches: list[pa.RecordBatch] = []

    def generate_keep() -> None:
        batches.extend(real.batches())

    def generate_drop() -> None:
        for _ in SyntheticMarketSource(rows, SEED).batches():
            pass

    for i in range(repeat):
        log(f"generation round {i + 1}/{repeat}")
        gen.seconds.append(timed(generate_keep if i == 0 else generate_drop))
    in_memory = sum(b.nbytes for b in batches)
    print(f"{len(batches)} batches, {sum(b.num_rows for b in batches):,} rows, {n_float} float32 features, "
          f"{fmt_mib(in_memory)} in memory")

    log("building the pandas DataFrame (untimed)")
    table = pa.Table.from_batches(batches, schema=schema)
    frames: list[pd.DataFrame] = [table.to_pandas()]
    del table

    raw = Timing("raw pq.ParquetWriter + writer_options (b baseline)")
    raw_sync = Timing("  raw pq.ParquetWriter + fsync")
    wp = Timing("  write_parquet (hash thread + fsync, no manifest)")
    splits_t = Timing("  split counting alone (build's on_batch work)")
    proj = Timing("build_dataset, batches replayed from memory")
    pandas_t = Timing("pandas to_parquet + sha256 (a baseline)")
    pandas_write = Timing("  of which df.to_parquet()")
    e2e = Timing("build_dataset end to end (generation included)")
    kept: list[Path] = []  # manifest of the latest replayed project build, verified for (c)
    shas: dict[str, str] = {}

    def step_raw(r: Path) -> None:
        path = r / "raw.parquet"
        raw.seconds.append(timed(partial(raw_pyarrow_write, path, schema, batches, fsync=False)))
        raw.nbytes = path.stat().st_size
        if "raw" not in shas:
            shas["raw"] = raw_sha256(path)
        path.unlink()

    def step_raw_sync(r: Path) -> None:
        path = r / "raw_sync.parquet"
        raw_sync.seconds.append(timed(partial(raw_pyarrow_write, path, schema, batches, fsync=True)))
        raw_sync.nbytes = path.stat().st_size
        path.unlink()

    def step_write_parquet(r: Path) -> None:
        path = r / "wp.parquet"
        wp.seconds.append(timed(partial(write_parquet, path, schema, batches)))
        wp.nbytes = path.stat().st_size
        path.unlink()

    def step_splits(r: Path) -> None:
        spec = SplitSpec()
        entity = schema.names[0]

        def assign_all() -> None:
            for b in batches:
                spec.count(b.column(entity))

        splits_t.seconds.append(timed(assign_all))

    def step_project(r: Path) -> None:
        source = ReplaySource(real, batches)
        results: list[Path] = []

        def project_build() -> None:
            result = build_dataset(source, r / "project", DATASET_ID)
            if not result.report.ok:
                raise RuntimeError("project build did not verify")
            results.append(result.manifest_path)

        proj.seconds.append(timed(project_build))
        manifest_path = results[0]
        proj.nbytes = (manifest_path.parent / DATA_FILE).stat().st_size
        shas["project"] = json.loads(manifest_path.read_text())["files"][0]["sha256"]
        for old in kept:
            shutil.rmtree(old.parent.parent, ignore_errors=True)
        kept[:] = [manifest_path]

    def step_pandas(r: Path) -> None:
        path = r / "pandas.parquet"
        marks: list[float] = []

        def pandas_baseline(df: pd.DataFrame = frames[0]) -> None:
            t0 = time.perf_counter()
            df.to_parquet(path)
            marks.append(time.perf_counter() - t0)
            raw_sha256(path)

        pandas_t.seconds.append(timed(pandas_baseline))
        pandas_write.seconds.append(marks[0])
        pandas_t.nbytes = pandas_write.nbytes = path.stat().st_size
        path.unlink()

    def step_e2e(r: Path) -> None:
        out = r / "e2e"
        e2e.seconds.append(timed(partial(build_dataset, SyntheticMarketSource(rows, SEED), out, DATASET_ID)))
        e2e.nbytes = (out / DATASET_ID / DATA_FILE).stat().st_size
        shutil.rmtree(out, ignore_errors=True)

    steps: list[tuple[str, Callable[[Path], None]]] = [
        ("raw pyarrow write", step_raw), ("raw pyarrow write + fsync", step_raw_sync),
        ("write_parquet", step_write_parquet), ("split assignment", step_splits),
        ("build_dataset (replay)", step_project), ("pandas to_parquet + sha256", step_pandas),
        ("build_dataset end to end", step_e2e),
    ]

    # One untimed pass of the write paths warms the allocator and the page cache for everyone.
    log("warm-up (untimed): raw pyarrow write and build_dataset")
    warm = work / "warm-up"
    warm.mkdir()
    raw_pyarrow_write(warm / "raw.parquet", schema, batches, fsync=False)
    build_dataset(ReplaySource(real, batches), warm, DATASET_ID)
    shutil.rmtree(warm)

    for i in range(repeat):
        r = work / f"round-{i}"
        r.mkdir()
        shift = i % len(steps)  # rotate the order so no contender always runs first or last
        for name, step in steps[shift:] + steps[:shift]:
            log(f"round {i + 1}/{repeat}: {name}")
            step(r)

    frames.clear()
    batches.clear()
    gc.collect()

    # (c) verify vs raw sha256, on the last published project dataset, warm.
    final_manifest = kept[0]
    data_file = final_manifest.parent / DATA_FILE
    data_bytes = data_file.stat().st_size
    base_dir = final_manifest.parent.parent
    raw_sha256(data_file)  # warm the page cache for both contenders
    ver = Timing("verify_dataset (full re-hash)", nbytes=data_bytes)
    sha = Timing("raw hashlib.sha256, 8 MiB blocks (c baseline)", nbytes=data_bytes)
    for i in range(repeat):
        log(f"round {i + 1}/{repeat}: raw sha256 / verify_dataset")
        sha.seconds.append(timed(partial(raw_sha256, data_file)))
        reports: list[VerifyReport] = []

        def verify(out: list[VerifyReport] = reports) -> None:
            out.append(verify_dataset(final_manifest, base_dir))

        ver.seconds.append(timed(verify))
        if not reports[0].ok:
            raise RuntimeError("verify_dataset failed on the benchmark dataset")

    # --- report ---------------------------------------------------------------------------------------------------
    timings = [gen, raw, raw_sync, wp, splits_t, proj, e2e, pandas_t, pandas_write, sha, ver]
    width = max(len(t.name) for t in timings) + 2
    print()
    print(f"{'measurement':<{width}} {'median s':>9} {'min s':>8} {'max s':>8}  {'file':>11}  {'throughput':>13}")
    print("-" * (width + 60))
    for t in timings:
        size = fmt_mib(t.nbytes) if t.nbytes is not None else ""
        print(f"{t.name:<{width}} {t.median:9.3f} {min(t.seconds):8.3f} {max(t.seconds):8.3f}  {size:>11}  "
              f"{fmt_rate(t.nbytes, t.median):>13}")
    print(f"(throughput = file bytes / median seconds; data.parquet identical to the raw pyarrow write: "
          f"{'yes' if shas['project'] == shas['raw'] else 'NO'})")

    print()
    print("where the build time goes (medians, replayed batches):")
    print(f"  raw pyarrow write                 {raw.median:7.3f} s")
    print(f"  + fsync                           {raw_sync.median - raw.median:+7.3f} s")
    print(f"  + hashing sink (write_parquet)    {wp.median - raw_sync.median:+7.3f} s")
    print(f"  + splits/manifest/verify/publish  {proj.median - wp.median:+7.3f} s  "
          f"(split counting alone: {splits_t.median:.3f} s)")
    print(f"  = build_dataset                   {proj.median:7.3f} s")
    print(f"  generation alone                  {gen.median:7.3f} s; end-to-end build {e2e.median:.3f} s")

    if rss:
        print()
        print("peak RSS of a full build (fresh process each, generation included):")
        for s in rss:
            hwm = "n/a" if s.vm_hwm_kib is None else f"{s.vm_hwm_kib / 1024:.1f} MiB"
            print(f"  {s.rows:>12,} rows: ru_maxrss {s.maxrss_kib / 1024:7.1f} MiB (VmHWM {hwm}; after imports "
                  f"{s.import_maxrss_kib / 1024:.1f} MiB, build +{(s.maxrss_kib - s.import_maxrss_kib) / 1024:.1f} "
                  f"MiB)  {s.seconds:6.2f} s  file {fmt_mib(s.nbytes)}")

    ratio_a = pandas_t.median / proj.median
    ratio_b = proj.median / raw.median
    ratio_c = (data_bytes / ver.median) / (data_bytes / sha.median)
    print()
    print("summary (same run, medians):")
    print(f"(a) build vs pandas.to_parquet+sha256: {f'{ratio_a:.2f}x faster':<14} target >= {TARGET_A:g}x   "
          f"{verdict(ratio_a >= TARGET_A)}")
    print(f"(b) build vs raw pyarrow write:        {f'{ratio_b:.2f}x':<14} target <= {TARGET_B:g}x "
          f"{verdict(ratio_b <= TARGET_B)}")
    print(f"(c) verify vs raw sha256 throughput:   {f'{ratio_c:.0%}':<14} target >= {TARGET_C:.0%}   "
          f"{verdict(ratio_c >= TARGET_C)}")
    if len(rss) >= 2:
        lo, hi = min(rss, key=lambda s: s.rows), max(rss, key=lambda s: s.rows)
        ratio_d = hi.maxrss_kib / lo.maxrss_kib
        label = f"peak RSS {hi.rows / 1e6:g}M / {lo.rows / 1e6:g}M:"
        print(f"(d) {label:<35}{f'{ratio_d:.2f}x':<14} target <= {TARGET_D:g}x  {verdict(ratio_d <= TARGET_D)}")
    else:
        print("(d) peak RSS: skipped")


def parse_rows_list(text: str) -> list[int]:
    values = [int(v.replace("_", "")) for v in text.split(",") if v.strip()]
    if len(values) < 2 or min(values) < 1:
        raise argparse.ArgumentTypeError("expected at least two positive row counts, e.g. 1000000,10000000")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=5_000_000, help="rows for the build/verify timings")
    parser.add_argument("--repeat", type=int, default=3, help="timed repetitions; the median is reported")
    parser.add_argument("--skip-rss", action="store_true", help="skip the peak RSS measurement (d)")
    parser.add_argument("--rss-rows", type=parse_rows_list, default=[1_000_000, 10_000_000],
                        help="comma-separated row counts for (d), default 1000000,10000000")
    parser.add_argument("--child-rss", nargs=2, metavar=("ROWS", "OUTDIR"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_rss:
        return child_rss(int(args.child_rss[0]), Path(args.child_rss[1]))
    if args.rows < 1 or args.repeat < 1:
        parser.error("--rows and --repeat must be at least 1")
    run(args.rows, args.repeat, None if args.skip_rss else args.rss_rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
