# Over 400 lines: the parquet and tensor builds and verify share one command group's options.
"""`fp dataset build|verify`: spec v1 datasets."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from feature_platform.cli import progress
from feature_platform.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    UsageError,
    add_json_flag,
    domain_errors,
    non_negative_int,
    positive_int,
    print_json,
    report_build,
)

if TYPE_CHECKING:
    from feature_platform.cli.common import Commands
    from feature_platform.contracts.tensor_manifest import TensorDatasetManifest
    from feature_platform.datasets.executors import Executor


T = TypeVar("T")


def register(groups: Commands) -> None:
    dataset_cmds = groups.group("dataset", "{build,verify,report,export-croissant}",
                                help="build, verify and report on dataset artifacts (spec v1)")

    build = dataset_cmds.add(
        "build", _dataset_build, help="build a dataset, verify it and publish it atomically",
        description="Build <out-dir>/<dataset-id>/ with its manifest.json: --source synthetic streams rows into "
        "data.parquet (--format parquet), or with --files K into K files sharded by a stable hash of the entity, "
        "on --executor with --workers: inline and process fan out (each task writes its share of the files at "
        "once; process tasks split the source's batches between them and pass each other the rows), ray runs "
        "a map/reduce (the source read once in batch ranges, one task per file writing it from the ranges' "
        "pieces) (same bytes for any executor and worker count; "
        "$SOURCE_DATE_EPOCH fixes created_at so a rebuild reproduces the manifest digest); "
        "--source simulator writes simulator trajectories, shocks, impulse "
        "responses and parameters into a Zarr v3 store data.zarr (--format zarr), chunk by chunk in parallel "
        "(local processes, or Ray when --ray-address/$RAY_ADDRESS is set). Hash while writing, verify, then "
        "publish with one atomic rename. On any failure nothing is left behind; an existing dataset is replaced "
        "(--force) only after the new one verifies.",
    )
    build.add_argument("--out-dir", required=True, type=Path, help="directory holding datasets")
    build.add_argument("--dataset-id", required=True, help="safe id: letters, digits, '.', '_', '-'")
    build.add_argument("--source", required=True, choices=["synthetic", "simulator"], help="where rows come from")
    build.add_argument("--format", choices=["parquet", "zarr"], default="parquet",
                       help="storage format (default parquet): synthetic needs parquet, simulator needs zarr")
    build.add_argument("--seed", type=non_negative_int, default=0, help="global seed (default 0)")
    build.add_argument("--dataset-version", help="version tag (default: UTC build time, YYYYMMDDTHHMMSSZ)")
    build.add_argument("--max-bytes", type=positive_int, default=None,
                       help="size limit recorded in the manifest (default 8 GiB)")
    build.add_argument("--force", action="store_true", help="replace an existing dataset once the new one verifies")
    build.add_argument("--json", action="store_true", help="print the result as JSON")
    build.add_argument("-v", "--verbose", action="store_true", help="show progress and every check")
    table = build.add_argument_group("--source synthetic (parquet)")
    table.add_argument("--rows", type=positive_int, default=None, help="rows to generate (default 10000)")
    table.add_argument("--batch-rows", type=positive_int, default=None,
                       help="rows per record batch and parquet row group (default 131072)")
    table.add_argument("--entities", type=positive_int, default=None, help="distinct entities (default 2000)")
    table.add_argument("--split-fractions", default=None,
                       help="split fractions by entity hash (default train=0.8,val=0.1,test=0.1)")
    table.add_argument("--split-salt", default=None, help="salt of the split hash (default fp-split-v1)")
    table.add_argument("--files", type=positive_int, default=None,
                       help="data files to shard the rows over by a stable hash of the entity, one task each "
                       "(default 1: data.parquet); the files' bytes depend on this, not on --executor/--workers")
    parallel = build.add_argument_group("parallel build (--files > 1, or zarr chunks)")
    parallel.add_argument("--executor", choices=["inline", "process", "ray"], default=None,
                          help="where files/chunks are written (default: ray when a Ray address is set, else process)")
    parallel.add_argument("--workers", type=positive_int, default=None,
                          help="parallel workers (default: the usable CPUs); the bytes do not depend on it")
    parallel.add_argument("--ray-address", default=None,
                          help="Ray cluster address (default $RAY_ADDRESS; with --executor ray and none, a local Ray)")
    tensor = build.add_argument_group("--source simulator (zarr)")
    tensor.add_argument("--samples", type=positive_int, default=None, help="samples to simulate (required)")
    tensor.add_argument("--simulator", default=None, help="simulator name: var (default) or regime_switching")
    tensor.add_argument("--T", type=positive_int, default=None, dest="T", help="trajectory length (default 200)")
    tensor.add_argument("--H", type=non_negative_int, default=None, dest="H",
                        help="impulse response horizon; H+1 steps are stored (default 40)")
    tensor.add_argument("--chunk-samples", type=positive_int, default=None,
                        help="samples per chunk file, the unit of work and of integrity (default 1000)")
    tensor.add_argument("--inner-chunk-samples", type=positive_int, default=None, metavar="N",
                        help="zarr v3 sharding: files stay one per --chunk-samples samples (the integrity unit), "
                        "trajectories/irfs/shocks get inner chunks of N samples (must divide --chunk-samples): "
                        "about 2x faster random single-sample reads, slower sequential reads (default: no sharding)")
    tensor.add_argument("--split", default=None, metavar="ALGO[:PARAMS]",
                        help="split algorithm with parameters: 'random_interpolation[:0.8/0.1/0.1]' (default), "
                        "'extrapolation_slice:rho>=0.9[;val=0.1]' (a parameter region held out), "
                        "'extrapolation_corner:rho,sigma>=0.8[;val=0.1]' (joint extremes held out; '<=' for low)")
    tensor.add_argument("--bitround-keepbits", type=positive_int, default=None, metavar="K",
                        help="LOSSY opt-in: keep K (1..22) of float32's 23 mantissa bits, relative error <= 2**-K, "
                        "recorded in the manifest; default lossless")

    verify = _manifest_command(
        dataset_cmds, "verify", _dataset_verify, help="verify a dataset against its manifest (fail-closed)",
        description="Re-hash every file and check path safety and size limits. Parquet: schema, feature order "
        "and row counts from parquet footers. Zarr: every chunk file's sha256, the Merkle root, shapes, dtypes, "
        "codecs and NaN/Inf counts (--deep recounts them from the decoded chunks); --samples limits the chunk "
        "reads to a sample range, --reproduce K "
        "regenerates K random samples from their seeds and compares them bit for bit. Exit 0 only when every "
        "check passes; a failure names the chunk.",
    )
    verify.add_argument("--base-dir", type=Path, default=None,
                        help="directory the dataset must live in (manifest at <base-dir>/<dataset_id>/)")
    verify.add_argument("--max-bytes", type=positive_int, default=None,
                        help="policy size limit; the smaller of this and the manifest's applies")
    verify.add_argument("--expect-digest", default=None, help="manifest digest the dataset must have")
    verify.add_argument("--samples", type=sample_range, default=None, metavar="START:STOP",
                        help="zarr only: verify only the chunks holding samples [START, STOP)")
    verify.add_argument("--reproduce", type=non_negative_int, default=0, metavar="K",
                        help="zarr only: regenerate K random samples from their seeds, compare bit for bit")
    verify.add_argument("--reproduce-seed", type=non_negative_int, default=None,
                        help="zarr only: seed choosing which samples --reproduce regenerates (default random)")
    verify.add_argument("--deep", action="store_true",
                        help="zarr only: also decode every chunk read and recount NaN/Inf and split codes (about "
                        "half the speed); by default the counts are the manifest's, bound to the hashed bytes")
    verify.add_argument("--workers", type=positive_int, default=None,
                        help="parquet: data files hashed at once (default 1); the report does not depend on it")
    verify.add_argument("--json", action="store_true", help="print the machine-readable report")
    verify.add_argument("-v", "--verbose", action="store_true", help="list passing checks too")

    report = _manifest_command(
        dataset_cmds, "report", _dataset_report,
        help="sanity report of a tensor dataset: parameter histograms and impulse responses (PNG)",
        description="Verify the zarr dataset, then read a bounded, evenly spaced sample of it and render "
        "histograms of every parameter and a grid of sample impulse responses into --out.",
    )
    report.add_argument("--out", required=True, type=Path, help="directory for the PNG files")
    report.add_argument("--max-samples", type=positive_int, default=2_000,
                        help="samples read for the report, evenly spaced over the store (default 2000)")
    report.add_argument("--json", action="store_true", help="print the result as JSON")
    croissant = _manifest_command(
        dataset_cmds, "export-croissant", _dataset_export_croissant,
        help="write Croissant 1.0 metadata for a spec v1 parquet dataset",
        description="Write Croissant 1.0 JSON-LD (mlcroissant and dataset hubs read it): a FileObject per data file "
        "with its sha256 and a contentUrl relative to the Croissant file, a 'records' RecordSet with the schema's "
        "columns in order and their types, and a 'splits' RecordSet (cr:Split) with each split's row count. The "
        "data files are re-hashed first: a file that no longer matches the manifest is refused (exit 1).",
    )
    croissant.add_argument("--out", type=Path, default=None,
                           help="where to write the JSON-LD (default: croissant.json beside the manifest)")
    add_json_flag(croissant)


def _manifest_command(cmds: Commands, name: str, handler: Callable[[argparse.Namespace], int],
                     **kwargs: Any) -> argparse.ArgumentParser:
    """A command reading a dataset through its manifest, given as --path."""
    parser = cmds.add(name, handler, **kwargs)
    parser.add_argument("--path", required=True, type=Path, help="path to the dataset's manifest.json")
    return parser


def _dataset_export_croissant(args: argparse.Namespace) -> int:
    from feature_platform.contracts.manifest import ManifestError
    from feature_platform.datasets.croissant import CROISSANT_NAME, CroissantError, croissant_json
    from feature_platform.storage.files import write_atomic

    out = args.out if args.out is not None else args.path.parent / CROISSANT_NAME
    if out.is_dir():
        raise UsageError(f"--out {out}: a directory; expected a file path")
    with domain_errors(usage=ManifestError, failed=CroissantError):
        text = croissant_json(args.path, out.parent)
    write_atomic(out, text.encode("utf-8"))
    if args.json:
        print_json({"croissant": str(out), "manifest": str(args.path), "conforms_to": json.loads(text)["conformsTo"]})
    else:
        print(f"wrote {out}")
    return EXIT_OK


def _build_failed(exc: Exception, args: argparse.Namespace) -> int:
    """One report for a build that failed: nothing was published (the builder's staging guarantees it)."""
    from feature_platform.datasets.executors import TaskError

    report = getattr(exc, "report", None)
    if args.verbose and report is not None:
        for check in report.failures:
            print(check.line(), file=sys.stderr)
    if isinstance(exc, OSError):
        print(f"fp: error: {exc.filename or args.out_dir}: {exc.strerror or exc}; nothing was published",
              file=sys.stderr)
    elif isinstance(exc, TaskError):  # names the task that failed
        print(f"fp: error: {exc}; nothing was published", file=sys.stderr)
    else:
        print(f"fp: error: {exc}", file=sys.stderr)
    return EXIT_FAILED


def sample_range(text: str) -> tuple[int, int]:
    """START:STOP with 0 <= START < STOP."""
    start, sep, stop = text.partition(":")
    try:
        bounds = (int(start), int(stop)) if sep else (-1, -1)
    except ValueError:
        bounds = (-1, -1)
    if not 0 <= bounds[0] < bounds[1]:
        raise argparse.ArgumentTypeError(f"expected START:STOP with 0 <= START < STOP, got {text!r}")
    return bounds


_TABLE_OPTIONS = ("rows", "batch_rows", "entities", "split_fractions", "split_salt", "files")
_TENSOR_OPTIONS = ("samples", "simulator", "T", "H", "chunk_samples", "inner_chunk_samples", "split",
                   "bitround_keepbits")


def _dataset_build(args: argparse.Namespace) -> int:
    """Check that source, format and options belong together, then build the one or the other."""
    wanted = {"synthetic": "parquet", "simulator": "zarr"}[args.source]
    if args.format != wanted:
        raise UsageError(f"--source {args.source} writes --format {wanted}, got --format {args.format}")
    foreign = _TENSOR_OPTIONS if args.source == "synthetic" else _TABLE_OPTIONS
    given = [f"--{name.replace('_', '-')}" for name in foreign if getattr(args, name) is not None]
    if given:
        raise UsageError(f"{', '.join(given)}: not an option of --source {args.source}")
    return _table_build(args) if args.source == "synthetic" else _tensor_build(args)


def _build_inputs(args: argparse.Namespace, own: Callable[[], T]) -> tuple[T, Executor, str | None]:
    """What a build checks before any work, each failure a usage error: the ids, ``own`` (the format's own
    inputs, returned), the executor (with its Ray address) and ``$SOURCE_DATE_EPOCH``."""
    from feature_platform.contracts.paths import UnsafePathError, require_safe_id
    from feature_platform.datasets.executors import choose_executor

    with domain_errors(usage=(UnsafePathError, ValueError)):
        require_safe_id(args.dataset_id, "--dataset-id")
        if args.dataset_version is not None:
            require_safe_id(args.dataset_version, "--dataset-version")
        inputs = own()
        executor, ray_address = choose_executor(args.executor, args.ray_address)
        created_at_check()
    return inputs, executor, ray_address


def _table_build(args: argparse.Namespace) -> int:
    from feature_platform.datasets.build import DEFAULT_MAX_BYTES, BuildError, build_dataset
    from feature_platform.datasets.executors import TaskError
    from feature_platform.datasets.sharding import require_files
    from feature_platform.datasets.splits import SplitSpec, parse_fractions
    from feature_platform.datasets.synthetic import DEFAULT_BATCH_ROWS, SyntheticMarketSource

    def table_inputs() -> tuple[SplitSpec, SyntheticMarketSource, int]:
        fractions = parse_fractions(args.split_fractions or "train=0.8,val=0.1,test=0.1")
        splits = SplitSpec(fractions=fractions) if args.split_salt is None else SplitSpec(fractions, args.split_salt)
        source = SyntheticMarketSource(args.rows or 10_000, args.seed, batch_rows=args.batch_rows or DEFAULT_BATCH_ROWS,
                                       entities=args.entities or 2_000)
        return splits, source, require_files(args.files or 1)

    (splits, source, files), executor, ray_address = _build_inputs(args, table_inputs)
    try:
        with progress.bar(args, f"building {args.dataset_id}") as bar:
            result = build_dataset(source, args.out_dir, args.dataset_id, dataset_version=args.dataset_version,
                                   splits=splits, max_bytes=args.max_bytes or DEFAULT_MAX_BYTES, force=args.force,
                                   progress=_ProgressPrinter() if args.verbose else bar, files=files,
                                   executor=executor, workers=args.workers, ray_address=ray_address)
    except (TaskError, BuildError, OSError) as exc:
        return _build_failed(exc, args)
    m = result.manifest
    summary: dict[str, Any] = {
        "dataset_id": m.dataset_id,
        "dataset_version": m.dataset_version,
        "path": str(result.path),
        "manifest": str(result.manifest_path),
        "manifest_digest": result.digest,
        "rows": m.row_count,
        "bytes": sum(f.bytes for f in m.files),
        "files": {f.path: f.sha256 for f in m.files},
        "splits": m.splits.rows,
        "seconds": round(result.seconds, 3),
        "checks_passed": len(result.report.checks),
        "executor": executor if files > 1 else "inline",
        "workers": args.workers,
    }
    return report_build(
        args, summary, f"built {m.dataset_id} ({m.row_count:,} rows, {summary['bytes']:,} bytes) "
        f"in {result.seconds:.2f}s",
        [*(f"  {path}:    sha256 {sha}" for path, sha in summary["files"].items()),
         f"  splits:          {', '.join(f'{k}={v:,}' for k, v in m.splits.rows.items())}"])


class _ProgressPrinter:
    """Progress on stderr, at most a few lines a second."""

    def __init__(self, unit: str = "rows") -> None:
        self.unit = unit
        self.started = self.last = time.perf_counter()

    def __call__(self, done: int, total: int | None) -> None:
        now = time.perf_counter()
        if now - self.last < 0.5 and done != total:
            return
        self.last = now
        rate = done / max(now - self.started, 1e-9)
        share = f" ({100 * done / total:.1f}%)" if total else ""
        of = f"/{total:,}" if total else ""
        print(f"  wrote {done:,}{of} {self.unit}{share}, {rate:,.0f} {self.unit}/s", file=sys.stderr, flush=True)


def created_at_check() -> None:
    """Refuse a malformed ``$SOURCE_DATE_EPOCH`` before any work starts (a usage error, exit 2)."""
    from feature_platform.contracts.provenance import utc_now

    utc_now()


def _tensor_build(args: argparse.Namespace) -> int:
    from feature_platform.datasets.build import BuildError
    from feature_platform.datasets.executors import TaskError
    from feature_platform.datasets.tensor_build import build_tensor_dataset
    from feature_platform.datasets.tensor_splits import TensorSplitSpec, parse_split_arg
    from feature_platform.simulators import DEFAULT_SIMULATOR, get_simulator

    if args.samples is None:
        raise UsageError("--source simulator needs --samples N")
    simulator = args.simulator or DEFAULT_SIMULATOR

    def tensor_inputs() -> TensorSplitSpec:
        spec = get_simulator(simulator).spec
        splits = parse_split_arg(args.split) if args.split is not None else TensorSplitSpec.default()
        splits.check(spec)
        return splits

    splits, executor, ray_address = _build_inputs(args, tensor_inputs)
    try:
        with progress.bar(args, f"building {args.dataset_id}") as bar:
            result = build_tensor_dataset(
                args.out_dir, args.dataset_id, samples=args.samples, seed=args.seed, simulator=simulator,
                splits=splits, executor=executor, workers=args.workers, ray_address=ray_address,
                bitround_keepbits=args.bitround_keepbits, dataset_version=args.dataset_version, force=args.force,
                progress=_ProgressPrinter("samples") if args.verbose else bar,
                inner_chunk_samples=args.inner_chunk_samples,
                **{k: v for k, v in (("T", args.T), ("H", args.H), ("chunk_samples", args.chunk_samples),
                                     ("max_bytes", args.max_bytes)) if v is not None})
    except ValueError as exc:  # bad arguments, rejected before anything is written
        raise UsageError(str(exc)) from None
    except (TaskError, BuildError, OSError) as exc:
        return _build_failed(exc, args)
    summary = tensor_summary(result.manifest, result.digest)
    summary.update(path=str(result.path), manifest=str(result.manifest_path), executor=executor,
                   workers=args.workers, seconds=round(result.seconds, 3), checks_passed=len(result.report.checks))
    return report_build(
        args, summary, f"built {summary['dataset_id']} ({summary['samples']:,} samples, zarr, "
        f"{summary['bytes']:,} bytes) in {result.seconds:.2f}s",
        [f"  merkle root:     {summary['merkle_root']}",
         f"  simulator:       {summary['simulator']} (T={summary['T']}, H={summary['H']}, seed {args.seed}), "
         f"{summary['chunk_samples']:,} samples per chunk file{summary['sharding']}, executor {executor}",
         f"  compression:     {summary['compression']}",
         *(f"  {line}" for line in _array_table(summary["arrays"])),
         f"  splits:          {summary['split_algorithm']}: "
         + ", ".join(f"{k}={v:,}" for k, v in summary["splits"].items())])


def tensor_summary(manifest: TensorDatasetManifest, digest: str) -> dict[str, Any]:
    """What a person wants to see of a tensor manifest: sizes and the real compression ratio per array."""
    from feature_platform.contracts.tensor_manifest import BitroundCompression

    comp = manifest.compression
    return {
        "dataset_id": manifest.dataset_id,
        "dataset_version": manifest.dataset_version,
        "format": "zarr",
        "manifest_digest": digest,
        "merkle_root": manifest.merkle_root,
        "samples": manifest.n_samples,
        "simulator": ", ".join(manifest.simulators),
        "T": manifest.T,
        "H": manifest.H,
        "chunk_samples": manifest.chunk_samples,
        "sharding": "".join(sorted({f" (sharded, inner chunks of {a.chunk_shape[0]:,})"
                                    for a in manifest.arrays.values() if a.shard_shape is not None})),
        "compression": f"LOSSY bitround keepbits={comp.keepbits} (relative error <= {comp.max_relative_error:g})"
        if isinstance(comp, BitroundCompression) else "lossless",
        "bytes": sum(b for _, b, _ in manifest.files()),
        "arrays": {name: {"shape": a.shape, "dtype": a.dtype, "raw_bytes": a.raw_bytes, "stored_bytes": a.stored_bytes,
                          "compression_ratio": round(a.compression_ratio, 4), "chunks": len(a.chunks),
                          "nan_count": a.nan_count, "inf_count": a.inf_count}
                   for name, a in manifest.arrays.items()},
        "split_algorithm": manifest.splits.algorithm,
        "splits": manifest.splits.counts,
    }


def _array_table(arrays: dict[str, dict[str, Any]]) -> list[str]:
    w = max(len("array"), *(len(name) for name in arrays))
    lines = [f"{'array':<{w}} {'shape':<20} {'dtype':<8} {'raw bytes':>13} {'stored bytes':>13} {'ratio':>7} "
             f"{'chunks':>6} {'NaN/Inf':>8}"]
    for name, a in arrays.items():
        lines.append(f"{name:<{w}} {tuple(a['shape'])!s:<20} {a['dtype']:<8} {a['raw_bytes']:>13,} "
                     f"{a['stored_bytes']:>13,} {a['compression_ratio']:>6.3f}x {a['chunks']:>6} "
                     f"{a['nan_count']:>4}/{a['inf_count']}")
    return lines


def _dataset_verify(args: argparse.Namespace) -> int:
    from feature_platform.datasets.verify import verify_dataset

    kind = _manifest_format(args.path)
    tensor_only = args.samples is not None or bool(args.reproduce) or args.reproduce_seed is not None or args.deep
    if args.workers is not None and (kind == "zarr" or tensor_only):
        raise UsageError(f"--workers applies to parquet datasets; {args.path} is verified as zarr")
    if kind == "zarr" or (kind is None and tensor_only):
        from feature_platform.datasets.tensor_verify import verify_tensor_dataset

        with domain_errors(usage=ValueError):
            report = verify_tensor_dataset(args.path, args.base_dir, samples=args.samples, reproduce=args.reproduce,
                                           reproduce_seed=args.reproduce_seed, max_bytes=args.max_bytes,
                                           expected_digest=args.expect_digest, scan_values=args.deep)
    elif tensor_only:
        raise UsageError(f"--samples/--reproduce/--reproduce-seed/--deep apply to zarr datasets; "
                         f"{args.path} has format {kind!r}")
    else:
        report = verify_dataset(args.path, args.base_dir, max_bytes=args.max_bytes,
                                expected_digest=args.expect_digest, workers=args.workers)
    if args.json:
        print_json(report.to_json_dict())
    else:
        from feature_platform.contracts.checks import check_lines

        for line in check_lines(report.checks, failures_only=not args.verbose):
            print(line)
        status = "OK" if report.ok else "FAILED"
        failed = ", ".join(sorted({c.name for c in report.failures}))
        where = sorted({c.target for c in report.failures if c.target})
        at = f" at {', '.join(where[:5])}" + (f" (+{len(where) - 5} more)" if len(where) > 5 else "") if where else ""
        print(f"{status}: {report.dataset_id or args.path}: {len(report.checks) - len(report.failures)}/"
              f"{len(report.checks)} checks passed" + (f"; failed: {failed}{at}" if failed else ""))
    return EXIT_OK if report.ok else EXIT_FAILED


def _manifest_format(path: Path) -> str | None:
    """The manifest's declared format ('parquet' when it has none), or None when it cannot be read:
    then verify itself reports why, as a failed check."""
    from feature_platform.contracts.safe_read import InputError, read_json

    try:
        raw = read_json(path)
    except InputError:
        return None
    return str(raw.get("format", "parquet")) if isinstance(raw, dict) else None


def _dataset_report(args: argparse.Namespace) -> int:
    from feature_platform.datasets.tensor_report import sanity_report_of
    from feature_platform.datasets.tensor_verify import verify_tensor_dataset

    kind = _manifest_format(args.path)
    if kind not in (None, "zarr"):
        raise UsageError(f"fp dataset report renders zarr (simulator) datasets; {args.path} has format {kind!r}")
    report = verify_tensor_dataset(args.path)
    if not report.ok:
        for check in report.failures:
            print(check.line(), file=sys.stderr)
        print(f"fp: error: {args.path} does not verify; no report written", file=sys.stderr)
        return EXIT_FAILED
    sampled, written = sanity_report_of(args.path, args.out, max_samples=args.max_samples)
    result = {"dataset_id": report.dataset_id, "manifest_digest": report.manifest_digest, "samples_read": sampled,
              "files": [str(p) for p in written]}
    if args.json:
        print_json(result)
    else:
        print(f"sanity report of {report.dataset_id} from {sampled:,} samples (dataset verified first):")
        for path in written:
            print(f"  {path}")
    return EXIT_OK
