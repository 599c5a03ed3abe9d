"""Tensor dataset benchmark: N simulator samples (default 100,000) with T=200, H=40, all measured in one run.

Targets (printed with PASS/FAIL; the script always exits 0, it is a report):

(a) the project's Zarr write path (``create_store`` + ``write_range``: float64 -> float32, NaN/Inf counts, sha256 of
    every chunk as it is written) vs raw ``zarr`` writes of the same float64 batches into arrays with the same
    shapes, chunks and codec (bytes + Blosc zstd-3 bit-shuffle, one Blosc thread): <= 1.2x its time.
(b) compression ratio per array (no target: reported honestly, lossless).
(c) ``build_tensor_dataset`` end to end with 2 process workers vs 1: >= 1.7x faster (same manifest digest).
(d) ``verify_tensor_dataset`` (full) throughput vs raw ``hashlib.sha256`` over the same chunk files: >= 85%.
(e) random single-sample read latency (median/p95): per array and for a whole sample (all arrays), with the
    project's plain chunks, compared with the seed's 1-2 ms claim, and with the project's sharded layout
    (``--inner-chunk-samples 10``) on the same samples.

The simulated batches for (a) are generated once, up front, and replayed from memory. Every timed measurement
runs ``--repeat`` times and the median is reported; contenders alternate within a round, and dirty pages are
flushed (``os.sync``) untimed between measurements. Files are read warm (the page cache cannot be dropped
without root).

Usage: ``python bench/bench_tensor.py [--samples N] [--repeat K] [--reads R] [--skip-workers]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from harness import Timing, log, raw_sha256, timed, timed_call, verdict

from feature_platform.contracts.tensor_manifest import parse_tensor_manifest
from feature_platform.datasets.tensor_build import build_tensor_dataset
from feature_platform.datasets.tensor_verify import verify_tensor_dataset
from feature_platform.datasets.zarr_store import (
    BLOSC,
    STORE_NAME,
    ArraySpec,
    array_layout,
    create_store,
    single_thread_blosc,
    write_range,
)
from feature_platform.simulators import get_simulator, simulate_range

BENCH_DIR = Path(__file__).resolve().parent
OUT_ROOT = BENCH_DIR / "out"
SEED = 20240101
SIMULATOR = "var"
VERSION = "bench"
CREATED_AT = "2026-01-01T00:00:00Z"

TARGET_A = 1.2  # project write path at most this multiple of raw zarr writes
TARGET_C = 1.7  # 2 workers at least this much faster than 1
TARGET_D = 0.85  # verify throughput at least this fraction of raw sha256 throughput
SEED_CLAIM_MS = (1.0, 2.0)  # the seed's claimed random single-sample read latency
INNER = 10  # inner chunk samples of the sharded layout measured in (e)


# --- (a) write path --------------------------------------------------------------------------------------------


def ranges(n: int, chunk: int) -> list[tuple[int, int]]:
    return [(a, min(a + chunk, n)) for a in range(0, n, chunk)]


def project_write(root: Path, layout: Sequence[ArraySpec], data: dict[str, np.ndarray], n: int, chunk: int) -> None:
    create_store(root, n, layout, chunk_samples=chunk)
    for a, b in ranges(n, chunk):
        write_range(root, layout, a, b, {k: v[a:b] for k, v in data.items()}, chunk_samples=chunk, n_samples=n)


def raw_zarr_write(root: Path, layout: Sequence[ArraySpec], data: dict[str, np.ndarray], n: int, chunk: int) -> None:
    """Plain zarr: the same arrays, chunks and codec, no hashing, no counting, no validation."""
    from zarr.codecs import BloscCodec, BytesCodec

    single_thread_blosc()
    group = zarr.open_group(root / STORE_NAME, mode="w", zarr_format=3)
    arrays = {}
    for spec in layout:
        blosc = BloscCodec(typesize=np.dtype(spec.dtype).itemsize, **BLOSC)  # type: ignore[arg-type]
        shape = (n, *spec.sample_shape)
        arrays[spec.name] = group.create_array(spec.name, shape=shape, dtype=spec.dtype, filters=[],
                                               serializer=BytesCodec(), compressors=[blosc], fill_value=0,
                                               chunks=(chunk, *spec.sample_shape))
    for a, b in ranges(n, chunk):
        for name, arr in arrays.items():
            arr[a:b] = data[name][a:b]


def store_files(root: Path) -> list[Path]:
    return sorted(p for p in (root / STORE_NAME).rglob("*") if p.is_file())


# --- (e) reads -------------------------------------------------------------------------------------------------


def read_latencies(store_root: Path, names: Sequence[str], n: int, reads: int) -> dict[str, list[float]]:
    """Arrays opened once (as a training loader would), then ``arr[i]`` for random i; seconds per read."""
    group = zarr.open_group(store_root, mode="r", zarr_format=3)
    arrays: dict[str, Any] = {name: group[name] for name in names}
    for arr in arrays.values():
        arr[0]  # warm: the first read pays for opening the codec pipeline
    idx = np.random.default_rng(SEED).integers(0, n, reads)
    out: dict[str, list[float]] = {name: [] for name in names}
    out["whole sample"] = []
    for i in idx.tolist():
        started = time.perf_counter()
        for name, arr in arrays.items():
            t0 = time.perf_counter()
            arr[i]
            out[name].append(time.perf_counter() - t0)
        out["whole sample"].append(time.perf_counter() - started)
    return out


def ms(values: Sequence[float], q: float) -> float:
    return 1000.0 * float(np.percentile(np.asarray(values), q))


# --- main ------------------------------------------------------------------------------------------------------


def run(samples: int, repeat: int, reads: int, chunk: int, T: int, H: int, skip_workers: bool) -> None:
    OUT_ROOT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="tensor-", dir=OUT_ROOT))
    try:
        _run(samples, repeat, reads, chunk, T, H, skip_workers, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if OUT_ROOT.is_dir() and not any(OUT_ROOT.iterdir()):
            OUT_ROOT.rmdir()


def _run(samples: int, repeat: int, reads: int, chunk: int, T: int, H: int, skip_workers: bool, work: Path) -> None:
    print(f"feature_platform tensor benchmark: {samples:,} samples ({SIMULATOR}), T={T}, H={H}, chunks of {chunk:,}, "
          f"repeat={repeat} (median reported)")
    print(f"python {platform.python_version()}, zarr {zarr.__version__}, numpy {np.__version__}, "
          f"{os.cpu_count()} CPUs, {platform.machine()} {platform.system()} {platform.release()}")
    print(f"work dir: {work} (files are read warm)")
    print()

    log("simulating the batches once (replayed from memory by (a))")
    started = time.perf_counter()
    batch = simulate_range(SIMULATOR, SEED, 0, samples, T, H)
    sim_seconds = time.perf_counter() - started
    spec = get_simulator(SIMULATOR).spec
    layout = array_layout(spec, T, H, {k: v.shape[1:] for k, v in batch.metadata.items()})
    data: dict[str, np.ndarray] = {**batch.arrays(), **{f"metadata/{k}": v for k, v in batch.metadata.items()}}
    data["split"] = (np.arange(samples) % 10 == 0).astype(np.int8)
    del batch
    float64_bytes = sum(v.nbytes for v in data.values())
    print(f"simulation alone: {sim_seconds:.2f}s ({samples / sim_seconds:,.0f} samples/s); "
          f"{float64_bytes / 2**20:,.1f} MiB in memory (float64)")

    # (a) write path, alternating contenders.
    ours, raw = Timing("project write path"), Timing("raw zarr writes")
    raw_bytes = 0
    contenders: list[tuple[str, Timing, Callable[..., None]]] = [("ours", ours, project_write),
                                                                   ("raw", raw, raw_zarr_write)]
    for i in range(repeat):
        for name, timing, fn in contenders if i % 2 == 0 else reversed(contenders):
            root = work / f"a-{name}-{i}"
            root.mkdir()
            log(f"(a) round {i + 1}/{repeat}: {timing.name}")
            timing.seconds.append(timed(lambda r=root, f=fn: f(r, layout, data, samples, chunk)))  # type: ignore[misc]
            if name == "raw":
                raw_bytes = sum(p.stat().st_size for p in store_files(root))
            shutil.rmtree(root)
    ratio_a = ours.median / raw.median
    stored32 = sum(int(np.prod(v.shape)) * np.dtype(s.dtype).itemsize for s, v in ((s, data[s.name]) for s in layout))
    print()
    print("(a) write path, same float64 batches from memory, same arrays/chunks/codec")
    for t in (raw, ours):
        print(f"    {t.name:<24} {t.median:8.3f}s  {samples / t.median:12,.0f} samples/s  "
              f"{stored32 / t.median / 1e6:8.1f} MB/s (float32)")
    print(f"    ratio ours/raw = {ratio_a:.3f}x (target <= {TARGET_A}x): {verdict(ratio_a <= TARGET_A)}")

    # (c) end-to-end builds with 1 and 2 process workers; (b) comes from their manifest.
    print()
    builds: dict[int, Timing] = {}
    digests: dict[int, set[str]] = {}
    manifest_path: Path | None = None
    worker_counts = [1] if skip_workers else [1, 2]
    for i in range(repeat):
        for w in worker_counts if i % 2 == 0 else reversed(worker_counts):
            out = work / f"c-{w}-{i}"
            log(f"(c) round {i + 1}/{repeat}: build_tensor_dataset, {w} process worker(s)")
            seconds, result = timed_call(lambda o=out, n=w: build_tensor_dataset(  # type: ignore[misc]
                o, "bench_tensor", samples=samples, seed=SEED, simulator=SIMULATOR, T=T, H=H, chunk_samples=chunk,
                executor="process", workers=n, dataset_version=VERSION, created_at=CREATED_AT))
            builds.setdefault(w, Timing(f"build, {w} worker(s)")).seconds.append(seconds)
            digests.setdefault(w, set()).add(result.digest)
            if manifest_path is None:
                manifest_path = result.manifest_path
            else:
                shutil.rmtree(out)
    assert manifest_path is not None
    manifest = parse_tensor_manifest(json.loads(manifest_path.read_text()), str(manifest_path))
    print("(b) compression ratio per array (lossless Blosc zstd-3 + bit-shuffle, float32 on disk)")
    for name, a in manifest.arrays.items():
        print(f"    {name:<18} raw {a.raw_bytes / 2**20:9.1f} MiB  stored {a.stored_bytes / 2**20:9.1f} MiB  "
              f"ratio {a.compression_ratio:6.3f}x")
    total_raw = sum(a.raw_bytes for a in manifest.arrays.values())
    total_stored = sum(a.stored_bytes for a in manifest.arrays.values())
    print(f"    {'all arrays':<18} raw {total_raw / 2**20:9.1f} MiB  stored {total_stored / 2**20:9.1f} MiB  "
          f"ratio {total_raw / total_stored:6.3f}x   (raw zarr in (a) stored {raw_bytes / 2**20:.1f} MiB)")
    print()
    print("(c) build_tensor_dataset end to end (simulate, write, hash, verify, publish), process executor")
    for t in builds.values():
        print(f"    {t.name:<24} {t.median:8.3f}s  {samples / t.median:12,.0f} samples/s")
    all_digests = set().union(*digests.values())
    print(f"    manifest digests identical across workers and rounds: {len(all_digests) == 1} "
          f"({next(iter(all_digests))[:16]}...)")
    if 2 in builds:
        speedup = builds[1].median / builds[2].median
        print(f"    speed-up 2 workers over 1 = {speedup:.2f}x (target >= {TARGET_C}x): {verdict(speedup >= TARGET_C)}")

    # (d) verify vs raw sha256 of the same files.
    dataset_dir = manifest_path.parent
    files = [dataset_dir / p for p, _, _ in manifest.files()]
    nbytes = sum(f.stat().st_size for f in files)
    ver, hashing = Timing("fp dataset verify"), Timing("raw sha256")
    deep = Timing("  same, --deep")
    for i in range(repeat):
        log(f"(d) round {i + 1}/{repeat}")
        seconds, report = timed_call(lambda: verify_tensor_dataset(manifest_path, scan_values=False))
        ver.seconds.append(seconds)
        if not report.ok:
            raise RuntimeError(f"bench dataset does not verify: {[c.line() for c in report.failures][:3]}")
        hashing.seconds.append(timed(lambda: [raw_sha256(f) for f in files]))
        deep.seconds.append(timed(lambda: verify_tensor_dataset(manifest_path, scan_values=True)))
    share = hashing.median / ver.median
    print()
    print(f"(d) full verify over {len(files):,} files, {nbytes / 2**20:.1f} MiB ({len(report.checks):,} checks)")
    for t in (hashing, ver, deep):
        print(f"    {t.name:<26} {t.median:8.3f}s  {nbytes / t.median / 1e6:8.1f} MB/s  "
              f"{100 * hashing.median / t.median:5.1f}% of raw sha256")
    print("    (verify hashes on 2 threads, --deep also decodes every chunk; the baseline is one plain hashlib loop)")
    print(f"    verify throughput (as `fp dataset verify` runs it) = {100 * share:.1f}% of raw sha256 "
          f"(target >= {100 * TARGET_D:.0f}%): {verdict(share >= TARGET_D)}")

    # (e) random single-sample reads: the project's store, and a sharded copy of the same data.
    names = [s.name for s in layout if s.name in ("trajectories", "irfs", "shocks", "theta")]
    log("(e) reads from the project's store")
    plain = read_latencies(dataset_dir / STORE_NAME, names, samples, reads)
    log(f"(e) building a sharded copy (--inner-chunk-samples {INNER}) and reading it")
    sharded_build = build_tensor_dataset(work / "e-sharded", "bench_tensor", samples=samples, seed=SEED,
                                         simulator=SIMULATOR, T=T, H=H, chunk_samples=chunk, inner_chunk_samples=INNER,
                                         executor="process", workers=2)
    sharded = read_latencies(sharded_build.path / STORE_NAME, names, samples, reads)
    print()
    print(f"(e) random single-sample reads, {reads:,} reads, arrays opened once (seed claims "
          f"{SEED_CLAIM_MS[0]:g}-{SEED_CLAIM_MS[1]:g} ms per sample)")
    print(f"    {'array':<16} {'plain chunks median/p95':>26} {f'sharded (inner {INNER}) median/p95':>32}")
    for name in [*names, "whole sample"]:
        print(f"    {name:<16} {ms(plain[name], 50):11.2f} / {ms(plain[name], 95):6.2f} ms "
              f"{ms(sharded[name], 50):14.2f} / {ms(sharded[name], 95):6.2f} ms")
    for label, lat in (("plain chunks (default)", plain), (f"sharded, inner {INNER}", sharded)):
        whole = ms(lat["whole sample"], 50)
        worst = max(ms(lat[n], 50) for n in names)
        print(f"    {label:<24} vs the claim's {SEED_CLAIM_MS[1]:g} ms: whole sample median {whole:.2f} ms: "
              f"{verdict(whole <= SEED_CLAIM_MS[1])}; slowest array median {worst:.2f} ms: "
              f"{verdict(worst <= SEED_CLAIM_MS[1])}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--samples", type=int, default=100_000, help="samples (default 100000)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds per measurement; the median is reported")
    parser.add_argument("--reads", type=int, default=500, help="random single-sample reads for (e)")
    parser.add_argument("--chunk-samples", type=int, default=1_000, help="samples per chunk (default 1000)")
    parser.add_argument("--T", type=int, default=200, dest="T")
    parser.add_argument("--H", type=int, default=40, dest="H")
    parser.add_argument("--skip-workers", action="store_true", help="build with 1 worker only (no (c) ratio)")
    args = parser.parse_args(argv)
    run(args.samples, args.repeat, args.reads, args.chunk_samples, args.T, args.H, args.skip_workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
