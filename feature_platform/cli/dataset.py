"""`fp dataset build|verify`: spec v1 datasets."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from feature_platform.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    UsageError,
    group_help,
    non_negative_int,
    positive_int,
)


def register(groups: Any) -> None:
    dataset = groups.add_parser("dataset", help="build and verify dataset artifacts (spec v1)")
    dataset_cmds = dataset.add_subparsers(dest="command", metavar="{build,verify}")

    build = dataset_cmds.add_parser(
        "build", help="build a dataset, verify it and publish it atomically",
        description="Stream a source into <out-dir>/<dataset-id>/{data.parquet,manifest.json}: "
        "hash while writing, verify, then publish with one atomic rename. On any failure nothing is "
        "left behind; an existing dataset is replaced (--force) only after the new one verifies.",
    )
    build.add_argument("--out-dir", required=True, type=Path, help="directory holding datasets")
    build.add_argument("--dataset-id", required=True, help="safe id: letters, digits, '.', '_', '-'")
    build.add_argument("--source", required=True, choices=["synthetic"], help="where rows come from")
    build.add_argument("--rows", type=positive_int, default=10_000, help="rows to generate (default 10000)")
    build.add_argument("--seed", type=non_negative_int, default=0, help="global seed (default 0)")
    build.add_argument("--dataset-version", help="version tag (default: UTC build time, YYYYMMDDTHHMMSSZ)")
    build.add_argument("--batch-rows", type=positive_int, default=None,
                       help="rows per record batch and parquet row group (default 131072)")
    build.add_argument("--entities", type=positive_int, default=2_000, help="distinct entities (default 2000)")
    build.add_argument("--split-fractions", default="train=0.8,val=0.1,test=0.1",
                       help="split fractions by entity hash (default train=0.8,val=0.1,test=0.1)")
    build.add_argument("--split-salt", default=None, help="salt of the split hash (default fp-split-v1)")
    build.add_argument("--max-bytes", type=positive_int, default=None,
                       help="size limit recorded in the manifest (default 8 GiB)")
    build.add_argument("--force", action="store_true", help="replace an existing dataset once the new one verifies")
    build.add_argument("--json", action="store_true", help="print the result as JSON")
    build.add_argument("-v", "--verbose", action="store_true", help="show progress and every check")

    verify = dataset_cmds.add_parser(
        "verify", help="verify a dataset against its manifest (fail-closed)",
        description="Re-hash every file, read schema, feature order and row counts from parquet "
        "footers, and check path safety and size limits. Exit 0 only when every check passes.",
    )
    verify.add_argument("--path", required=True, type=Path, help="path to the dataset's manifest.json")
    verify.add_argument("--base-dir", type=Path, default=None,
                        help="directory the dataset must live in (manifest at <base-dir>/<dataset_id>/)")
    verify.add_argument("--max-bytes", type=positive_int, default=None,
                        help="policy size limit; the smaller of this and the manifest's applies")
    verify.add_argument("--expect-digest", default=None, help="manifest digest the dataset must have")
    verify.add_argument("--json", action="store_true", help="print the machine-readable report")
    verify.add_argument("-v", "--verbose", action="store_true", help="list passing checks too")
    dataset.set_defaults(handler=group_help(dataset))
    build.set_defaults(handler=_dataset_build)
    verify.set_defaults(handler=_dataset_verify)


def _dataset_build(args: argparse.Namespace) -> int:
    from feature_platform.contracts.paths import UnsafePathError, require_safe_id
    from feature_platform.datasets.build import DEFAULT_MAX_BYTES, BuildError, build_dataset
    from feature_platform.datasets.splits import SplitSpec, parse_fractions
    from feature_platform.datasets.synthetic import DEFAULT_BATCH_ROWS, SyntheticMarketSource

    try:
        require_safe_id(args.dataset_id, "--dataset-id")
        if args.dataset_version is not None:
            require_safe_id(args.dataset_version, "--dataset-version")
        fractions = parse_fractions(args.split_fractions)
        splits = SplitSpec(fractions=fractions) if args.split_salt is None else SplitSpec(fractions, args.split_salt)
        source = SyntheticMarketSource(args.rows, args.seed, batch_rows=args.batch_rows or DEFAULT_BATCH_ROWS,
                                       entities=args.entities)
    except (UnsafePathError, ValueError) as exc:
        raise UsageError(str(exc)) from None

    progress = _ProgressPrinter() if args.verbose else None
    try:
        result = build_dataset(source, args.out_dir, args.dataset_id, dataset_version=args.dataset_version,
                               splits=splits, max_bytes=args.max_bytes or DEFAULT_MAX_BYTES,
                               force=args.force, progress=progress)
    except BuildError as exc:
        if args.verbose and exc.report is not None:
            for check in exc.report.failures:
                print(check.line(), file=sys.stderr)
        print(f"fp: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:
        print(f"fp: error: {exc.filename or args.out_dir}: {exc.strerror or exc}; nothing was published",
              file=sys.stderr)
        return EXIT_FAILED
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
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"built {m.dataset_id} ({m.row_count:,} rows, {summary['bytes']:,} bytes) in {result.seconds:.2f}s")
        print(f"  path:            {result.path}")
        print(f"  manifest digest: {result.digest}")
        for path, sha in summary["files"].items():
            print(f"  {path}:    sha256 {sha}")
        print(f"  splits:          {', '.join(f'{k}={v:,}' for k, v in m.splits.rows.items())}")
        print(f"  verified:        {len(result.report.checks)} checks passed")
    return EXIT_OK


class _ProgressPrinter:
    """Progress on stderr, at most a few lines a second."""

    def __init__(self) -> None:
        self.started = self.last = time.perf_counter()

    def __call__(self, done: int, total: int | None) -> None:
        now = time.perf_counter()
        if now - self.last < 0.5 and done != total:
            return
        self.last = now
        rate = done / max(now - self.started, 1e-9)
        share = f" ({100 * done / total:.1f}%)" if total else ""
        of = f"/{total:,}" if total else ""
        print(f"  wrote {done:,}{of} rows{share}, {rate:,.0f} rows/s", file=sys.stderr, flush=True)


def _dataset_verify(args: argparse.Namespace) -> int:
    from feature_platform.datasets.verify import verify_dataset

    report = verify_dataset(args.path, args.base_dir, max_bytes=args.max_bytes, expected_digest=args.expect_digest)
    if args.json:
        print(json.dumps(report.to_json_dict(), indent=2))
    else:
        for check in report.checks if args.verbose else report.failures:
            print(check.line())
        status = "OK" if report.ok else "FAILED"
        failed = ", ".join(sorted({c.name for c in report.failures}))
        print(f"{status}: {report.dataset_id or args.path}: {len(report.checks) - len(report.failures)}/"
              f"{len(report.checks)} checks passed" + (f"; failed: {failed}" if failed else ""))
    return EXIT_OK if report.ok else EXIT_FAILED
