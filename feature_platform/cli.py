"""``fp``: the command line. Every command calls the same domain functions as the Dagster assets.

Exit codes: 0 success, 1 verification or gate failure (or refusal to overwrite), 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import dagster as dg

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
OVERRIDE_TAG = "fp/override-data-gap"  # also in orchestration.market_assets; the CLI avoids importing Dagster


class UsageError(Exception):
    """Bad arguments: reported on one line, exit code 2."""


def _int_at_least(minimum: int, what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text.replace("_", ""))
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a {what} integer, got {text!r}")
        return value

    return parse


_positive_int = _int_at_least(1, "positive")
_non_negative_int = _int_at_least(0, "non-negative")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fp",
        description="feature_platform: verifiable datasets, features and models.",
        epilog="Exit codes: 0 success, 1 verification or gate failure, 2 usage error.",
    )
    groups = parser.add_subparsers(dest="group", metavar="COMMAND")

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
    build.add_argument("--rows", type=_positive_int, default=10_000, help="rows to generate (default 10000)")
    build.add_argument("--seed", type=_non_negative_int, default=0, help="global seed (default 0)")
    build.add_argument("--dataset-version", help="version tag (default: UTC build time, YYYYMMDDTHHMMSSZ)")
    build.add_argument("--batch-rows", type=_positive_int, default=None,
                       help="rows per record batch and parquet row group (default 131072)")
    build.add_argument("--entities", type=_positive_int, default=2_000, help="distinct entities (default 2000)")
    build.add_argument("--split-fractions", default="train=0.8,val=0.1,test=0.1",
                       help="split fractions by entity hash (default train=0.8,val=0.1,test=0.1)")
    build.add_argument("--split-salt", default=None, help="salt of the split hash (default fp-split-v1)")
    build.add_argument("--max-bytes", type=_positive_int, default=None,
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
    verify.add_argument("--max-bytes", type=_positive_int, default=None,
                        help="policy size limit; the smaller of this and the manifest's applies")
    verify.add_argument("--expect-digest", default=None, help="manifest digest the dataset must have")
    verify.add_argument("--json", action="store_true", help="print the machine-readable report")
    verify.add_argument("-v", "--verbose", action="store_true", help="list passing checks too")

    refresh = groups.add_parser("refresh", help="the Dagster dataset refresh graph, headless")
    refresh_cmds = refresh.add_subparsers(dest="command", metavar="{run,add-version}")
    run = refresh_cmds.add_parser(
        "run", help="materialize the whole refresh graph for one dataset_version, in process",
        description="Adds the dataset_version partition to the Dagster instance ($DAGSTER_HOME, default "
        "<project>/.dagster_home), materializes source_snapshot → dataset → quality_report → "
        "published_dataset → notify_stakeholders with their blocking checks, then emits metrics, alerts on "
        "failure and archives the run, like the daemon's sensors would. The UI (`make ui`) shows the result.",
    )
    run.add_argument("--version", default=None, help="dataset_version partition key (default: UTC now)")
    run.add_argument("--rows", type=_positive_int, default=None, help="synthetic rows (default 200000)")
    run.add_argument("--seed", type=_non_negative_int, default=None, help="synthetic seed (default from version)")
    run.add_argument("--inbox-file", type=Path, default=None, help="ingest this parquet file instead of synthetic")
    run.add_argument("--config", type=Path, default=None, help="Dagster run config YAML (launchpad format)")
    run.add_argument("--json", action="store_true", help="print the run summary as JSON")
    run.add_argument("-v", "--verbose", action="store_true", help="show Dagster's event log while running")
    add = refresh_cmds.add_parser("add-version", help="add a dataset_version partition (then run it from the UI)")
    add.add_argument("version", help="safe id, e.g. 2026-11-25 or adhoc-1")

    market = groups.add_parser("market", help="market data backfill, anomaly review queue and training blocks")
    market_cmds = market.add_subparsers(dest="command", metavar="{backfill,review,resolve,blocks,override}")
    backfill = market_cmds.add_parser(
        "backfill", help="fetch, validate and upsert OHLCV for UTC days (the market_backfill_job, headless)")
    backfill.add_argument("--start", required=True, help="first UTC day, YYYY-MM-DD")
    backfill.add_argument("--end", default=None, help="last UTC day, inclusive (default: --start)")
    backfill.add_argument("--config", type=Path, default=None, help="Dagster run config YAML (launchpad format)")
    backfill.add_argument("--override-data-gap", action="store_true",
                          help=f"accept data gaps of these days for training (run tag {OVERRIDE_TAG}=true)")
    backfill.add_argument("-v", "--verbose", action="store_true", help="show Dagster's event log while running")
    review = market_cmds.add_parser("review", help="list the human-in-the-loop queue of flagged rows")
    review.add_argument("--status", choices=["open", "approved", "rejected", "overridden"], default=None)
    review.add_argument("--asset", default=None)
    review.add_argument("--json", action="store_true")
    resolve = market_cmds.add_parser("resolve", help="approve (a real move) or reject (bad data) a flagged row")
    resolve.add_argument("item_id", type=_positive_int)
    resolve.add_argument("--status", required=True, choices=["approved", "rejected"])
    resolve.add_argument("--by", required=True, help="who reviewed it")
    resolve.add_argument("--note", default="")
    blocks = market_cmds.add_parser("blocks", help="what blocks training now (open data gaps, open anomalies)")
    blocks.add_argument("--json", action="store_true")
    override = market_cmds.add_parser("override", help="accept a data gap for training after review")
    override.add_argument("block_id", type=_positive_int)
    override.add_argument("--by", required=True, help="who accepts it")
    override.add_argument("--note", required=True, help="why (kept as the audit trail)")

    features = groups.add_parser("features", help="Feast feature builds")
    feature_cmds = features.add_subparsers(dest="command", metavar="{build}")
    fbuild = feature_cmds.add_parser(
        "build", help="pin feature_repo to its git sha, apply and materialize a published dataset_version",
        description="Runs the feature_build asset (and its blocking contract-drift check) headless; writes "
        "<data_root>/features/offline/<version>/feature_build.json. Refuses uncommitted feature_repo changes.")
    fbuild.add_argument("--version", required=True, help="a published dataset_version")
    fbuild.add_argument("--ref", default=None, help="git ref feature_repo must be at")
    fbuild.add_argument("--allow-dirty", action="store_true", help="accept uncommitted feature_repo changes")
    fbuild.add_argument("-v", "--verbose", action="store_true", help="show Dagster's event log while running")

    train = groups.add_parser(
        "train", help="train, export ONNX, log to MLflow and register a model version",
        description="Refuses unless the dataset verifies. Writes <data_root>/models/<training_id>/ and registers "
        "a version of <model-key> with alias 'staging'.")
    train.add_argument("--dataset-manifest", required=True, type=Path)
    train.add_argument("--model-key", default="market_regime")
    hp = train.add_mutually_exclusive_group()
    hp.add_argument("--hyperparams", default=None, help="JSON object of hyperparameters")
    hp.add_argument("--profile", default=None, help="saved tuning profile: default, fast, deep")
    train.add_argument("--seed", type=_non_negative_int, default=0)
    train.add_argument("--schedule", choices=["adhoc", "backfill"], default="adhoc")
    train.add_argument("--feature-build", type=Path, default=None, help="feature_build.json the features came from")
    train.add_argument("--auto-promote", action="store_true", help="promote to production when every check passes")
    train.add_argument("--json", action="store_true")

    promote = groups.add_parser("promote", help="move alias 'production' after re-checking everything now")
    promote.add_argument("--model-key", required=True)
    promote.add_argument("--version", required=True)
    promote.add_argument("--dataset-id", default=None, help="refuse unless the model was trained on this dataset")
    promote.add_argument("--min-sharpe", type=float, default=0.0, help="guardrail on test Sharpe (default 0)")
    promote.add_argument("--max-drawdown", type=float, default=0.5, help="guardrail on test max drawdown")

    rollback = groups.add_parser("rollback", help="put an earlier version back in production after re-verifying it")
    rollback.add_argument("--model-key", required=True)
    rollback.add_argument("--to-version", required=True)

    rerun = groups.add_parser("rerun", help="retrain from training_manifest.yaml and report reproducibility")
    rerun.add_argument("--training-id", required=True)
    rerun.add_argument("--json", action="store_true")

    lineage = groups.add_parser("lineage", help="walk model → run → dataset → files → source, re-verifying each link")
    lineage.add_argument("--model-key", required=True)
    which = lineage.add_mutually_exclusive_group()
    which.add_argument("--version", default=None)
    which.add_argument("--alias", default=None, help="e.g. production or staging (default: production)")

    training = groups.add_parser("training", help="the Dagster training job: run headless or submit to a webserver")
    training_cmds = training.add_subparsers(dest="command", metavar="{run,submit}")
    trun = training_cmds.add_parser("run", help="run training_job for a dataset_version in process")
    trun.add_argument("--payload", required=True, help="JSON payload (model_key, dataset_version, feature_repo_ref, "
                      "hyperparams, schedule, run_coingecko_fetch, auto_promote) or @file.json")
    trun.add_argument("-v", "--verbose", action="store_true")
    submit = training_cmds.add_parser("submit", help="submit training_job to a running Dagster webserver (GraphQL)")
    submit.add_argument("--payload", required=True, help="JSON payload or @file.json (see `fp training run`)")
    submit.add_argument("--url", default="http://127.0.0.1:3000", help="Dagster webserver (default local)")
    submit.add_argument("--no-wait", action="store_true", help="print the run id and return at once")
    submit.add_argument("--timeout", type=float, default=1800.0)

    contracts = groups.add_parser("contracts", help="manifest JSON Schemas and the feature contract")
    contract_cmds = contracts.add_subparsers(dest="command", metavar="{schema,features}")
    schema = contract_cmds.add_parser("schema", help="print, check or rewrite the committed JSON Schema")
    mode = schema.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 if the committed schema drifted from the models")
    mode.add_argument("--write", action="store_true", help="rewrite the committed schema from the models")
    contract_cmds.add_parser("features", help="print FEATURE_ORDER from feature_repo/feature_contract.yaml")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handlers: dict[tuple[str | None, str | None], Callable[[argparse.Namespace], int]] = {
        ("dataset", "build"): _dataset_build,
        ("dataset", "verify"): _dataset_verify,
        ("refresh", "run"): _refresh_run,
        ("refresh", "add-version"): _refresh_add_version,
        ("market", "backfill"): _market_backfill,
        ("market", "review"): _market_review,
        ("market", "resolve"): _market_resolve,
        ("market", "blocks"): _market_blocks,
        ("market", "override"): _market_override,
        ("features", "build"): _features_build,
        ("train", None): _train,
        ("promote", None): _promote,
        ("rollback", None): _rollback,
        ("rerun", None): _rerun,
        ("lineage", None): _lineage,
        ("training", "run"): _training_run,
        ("training", "submit"): _training_submit,
        ("contracts", "schema"): _contracts_schema,
        ("contracts", "features"): _contracts_features,
    }
    handler = handlers.get((args.group, getattr(args, "command", None)))
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return handler(args)
    except UsageError as exc:
        print(f"fp: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("fp: interrupted; nothing was published", file=sys.stderr)
        return 130


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


def _instance() -> dg.DagsterInstance:
    """The Dagster instance at $DAGSTER_HOME, defaulting to <project>/.dagster_home with dagster.yaml."""
    import os

    import dagster as dg

    from feature_platform.contracts.provenance import PROJECT_ROOT

    if not os.environ.get("DAGSTER_HOME"):
        home = PROJECT_ROOT / ".dagster_home"
        home.mkdir(exist_ok=True)
        config = home / "dagster.yaml"
        if not config.exists() and (PROJECT_ROOT / "dagster.yaml").exists():
            config.symlink_to(PROJECT_ROOT / "dagster.yaml")
        os.environ["DAGSTER_HOME"] = str(home)
    return dg.DagsterInstance.get()


def _refresh_add_version(args: argparse.Namespace) -> int:
    from feature_platform.contracts.paths import UnsafePathError
    from feature_platform.orchestration.partitions import ensure_partition

    try:
        added = ensure_partition(_instance(), args.version)
    except UnsafePathError as exc:
        raise UsageError(str(exc)) from None
    print(f"dataset_version {args.version} {'added' if added else 'already exists'}")
    return EXIT_OK


def _refresh_run(args: argparse.Namespace) -> int:
    import dataclasses
    from datetime import UTC, datetime

    import yaml

    from feature_platform.contracts.paths import UnsafePathError, require_safe_id
    from feature_platform.orchestration.headless import format_summary, run_refresh
    from feature_platform.orchestration.resources import PlatformPaths

    version = args.version or datetime.now(tz=UTC).strftime("%Y%m%dT%H%M%SZ")
    try:
        require_safe_id(version, "--version")
        config = yaml.safe_load(args.config.read_text()) if args.config else {}
    except (UnsafePathError, OSError, yaml.YAMLError) as exc:
        raise UsageError(str(exc)) from None
    snapshot = config.setdefault("ops", {}).setdefault("source_snapshot", {}).setdefault("config", {})
    if args.rows is not None:
        snapshot["rows"] = args.rows
    if args.seed is not None:
        snapshot["seed"] = args.seed
    if args.inbox_file is not None:
        snapshot.update(kind="file", inbox_file=str(args.inbox_file.resolve()))
    if not args.verbose:
        config.setdefault("loggers", {}).setdefault("console", {"config": {"log_level": "WARNING"}})
    outcome = run_refresh(version, instance=_instance(), run_config=config)
    if args.json:
        print(json.dumps(dataclasses.asdict(outcome), indent=2))
    else:
        print(format_summary(outcome, PlatformPaths()))
    return EXIT_OK if outcome.refresh.succeeded else EXIT_FAILED


def _review_queue() -> Any:
    from feature_platform.market.review import ReviewQueue
    from feature_platform.orchestration.resources import PlatformPaths

    return ReviewQueue(PlatformPaths().root / "review.sqlite")


def _market_backfill(args: argparse.Namespace) -> int:
    from datetime import date, timedelta

    import yaml

    from feature_platform.orchestration.headless import run_market_backfill

    try:
        first = date.fromisoformat(args.start)
        last = date.fromisoformat(args.end) if args.end else first
        config = yaml.safe_load(args.config.read_text()) if args.config else {}
    except (ValueError, OSError, yaml.YAMLError) as exc:
        raise UsageError(str(exc)) from None
    if last < first:
        raise UsageError(f"--end {last} is before --start {first}")
    if not args.verbose:
        config.setdefault("loggers", {}).setdefault("console", {"config": {"log_level": "WARNING"}})
    days = [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]
    tags = {OVERRIDE_TAG: "true"} if args.override_data_gap else {}
    ok = True
    for summary in run_market_backfill(days, instance=_instance(), run_config=config, tags=tags):
        failed = [k for k, passed in summary.checks.items() if not passed]
        rows = summary.materialized.get("market_data")
        print(f"{summary.partition}: {summary.status}, {rows if rows is not None else 0:,} rows"
              + (f"; failed checks: {', '.join(failed)}" if failed else ""))
        ok = ok and summary.succeeded and "market_data_raw:no_data_gaps" not in failed
    blocked, reasons = _review_queue().training_blocked()
    if blocked:
        print(f"training blocked by {len(reasons)} open item(s): see `fp market blocks`")
    return EXIT_OK if ok else EXIT_FAILED


def _market_review(args: argparse.Namespace) -> int:
    items = _review_queue().list(status=args.status, asset=args.asset)
    if args.json:
        print(json.dumps([{**i.__dict__, "ts": i.ts.isoformat(), "created_at": i.created_at.isoformat(),
                           "resolved_at": i.resolved_at.isoformat() if i.resolved_at else None} for i in items],
                         indent=2))
        return EXIT_OK
    print(f"{'id':>5}  {'status':<9} {'asset':<10} {'ts (UTC)':<20} {'z-score':>8}  partition")
    for i in items:
        z = i.detail.get("zscore")
        print(f"{i.id:>5}  {i.status:<9} {i.asset:<10} {i.ts:%Y-%m-%d %H:%M:%S} "
              f"{'' if z is None else f'{z:8.1f}':>8}  {i.partition}")
    print(f"{len(items)} item(s)")
    return EXIT_OK


def _market_resolve(args: argparse.Namespace) -> int:
    from feature_platform.market.review import ReviewError

    try:
        item = _review_queue().resolve(args.item_id, args.status, args.by, args.note)
    except ReviewError as exc:
        print(f"fp: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"item {item.id} ({item.asset} {item.ts:%Y-%m-%d %H:%M}) {item.status} by {item.resolver}")
    return EXIT_OK


def _market_blocks(args: argparse.Namespace) -> int:
    blocks = _review_queue().open_blocks()
    if args.json:
        print(json.dumps([{**b.__dict__, "ts": b.ts.isoformat()} for b in blocks], indent=2))
    else:
        for b in blocks:
            print(f"{b.id:>5}  {b.kind:<8}  {b.reason}")
        print("training blocked" if blocks else "training not blocked")
    return EXIT_OK


def _market_override(args: argparse.Namespace) -> int:
    from feature_platform.market.review import ReviewError

    try:
        item = _review_queue().override_block(args.block_id, args.by, args.note)
    except ReviewError as exc:
        print(f"fp: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"block {item.id} ({item.kind}, {item.asset}) overridden by {item.resolver}: {item.note}")
    return EXIT_OK


def _features_build(args: argparse.Namespace) -> int:
    from feature_platform.orchestration.headless import run_feature_build

    config: dict[str, Any] = {"ops": {"feature_build": {"config": {"feature_repo_ref": args.ref,
                                                                   "allow_dirty": args.allow_dirty}}}}
    if not args.verbose:
        config["loggers"] = {"console": {"config": {"log_level": "WARNING"}}}
    summary = run_feature_build(args.version, instance=_instance(), run_config=config)
    failed = [k for k, ok in summary.checks.items() if not ok]
    tail = f"; failed checks: {', '.join(failed)}" if failed else ""
    print(f"feature_build {args.version}: {summary.status}{tail}")
    if not summary.succeeded:
        print("  see the run's step failure in the UI, or rerun with -v", file=sys.stderr)
    return EXIT_OK if summary.succeeded else EXIT_FAILED


def _data_root() -> Path:
    from feature_platform.orchestration.resources import PlatformPaths

    return PlatformPaths().root


def _train(args: argparse.Namespace) -> int:
    from feature_platform.registry.promotion import promote
    from feature_platform.registry.tracking import log_training
    from feature_platform.training.data import TrainingRefused
    from feature_platform.training.profiles import HyperparameterError
    from feature_platform.training.train import train_model

    try:
        hyperparameters = json.loads(args.hyperparams) if args.hyperparams else None
        if hyperparameters is not None and not isinstance(hyperparameters, dict):
            raise ValueError("must be a JSON object")
    except ValueError as exc:
        raise UsageError(f"--hyperparams: {exc}") from None
    root = _data_root()
    try:
        result = train_model(args.dataset_manifest, root / "models", model_key=args.model_key,
                             hyperparameters=hyperparameters, profile=args.profile, seed=args.seed,
                             schedule=args.schedule, feature_build_path=args.feature_build)
    except TrainingRefused as exc:
        print(f"fp: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except HyperparameterError as exc:
        raise UsageError(str(exc)) from None
    logged = log_training(result.model_dir, data_root=root, feature_build_path=args.feature_build,
                          schedule=args.schedule)
    m = result.model_manifest
    out: dict[str, Any] = {"training_id": m.training_id, "model_dir": str(result.model_dir), "model": logged.model_name,
           "version": logged.version, "mlflow_run_id": logged.run_id, "metrics": m.metrics}
    code = EXIT_OK
    if args.auto_promote:
        promoted = promote(logged.model_name, logged.version, data_root=root, review_db=root / "review.sqlite")
        out["promoted"] = promoted.promoted
        out["promotion_refused"] = promoted.decision.reasons
        code = EXIT_OK if promoted.promoted else EXIT_FAILED
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"trained {m.model_id}: {logged.model_name} v{logged.version} (alias staging), run {logged.run_id}")
        print(f"  model dir: {result.model_dir}")
        print("  " + ", ".join(f"{k}={v:.4g}" for k, v in m.metrics.items() if k.startswith("test_")))
        for reason in out.get("promotion_refused", []) or []:
            print(f"  promotion refused: {reason}")
    return code


def _promote(args: argparse.Namespace) -> int:
    from feature_platform.registry.promotion import Guardrails, promote

    root = _data_root()
    result = promote(args.model_key, args.version, data_root=root, dataset_id=args.dataset_id,
                     guardrails=Guardrails(min_sharpe=args.min_sharpe, max_drawdown=args.max_drawdown),
                     review_db=root / "review.sqlite")
    for check in result.decision.checks:
        print(f"{'PASS' if check.passed else 'FAIL'} {check.name}: expected {check.expected}, actual {check.actual}")
    if not result.promoted:
        print(f"REFUSED: {args.model_key} v{args.version} not promoted; production unchanged "
              f"({len(result.decision.reasons)} failed check(s))")
        return EXIT_FAILED
    print(f"PROMOTED: {args.model_key} v{args.version} is production (previous: {result.previous_version or 'none'})")
    return EXIT_OK


def _rollback(args: argparse.Namespace) -> int:
    from feature_platform.registry.rollback import rollback

    root = _data_root()
    result = rollback(args.model_key, args.to_version, data_root=root, review_db=root / "review.sqlite")
    if result.replay is not None:
        print(f"replay: {result.replay.rows} rows, max |Δp| {result.replay.max_abs_diff:.3g}, "
              f"{'ok' if result.replay.ok else 'MISMATCH'}")
    if not result.ok:
        for reason in result.reasons:
            print(f"FAIL {reason}")
        print(f"REFUSED: production unchanged ({result.previous_version or 'none'})")
        return EXIT_FAILED
    print(f"ROLLED BACK: {args.model_key} production is v{args.to_version} (was {result.previous_version or 'none'})")
    return EXIT_OK


def _rerun(args: argparse.Namespace) -> int:
    from feature_platform.contracts.paths import UnsafePathError, require_safe_id
    from feature_platform.training.data import TrainingRefused
    from feature_platform.training.rerun import rerun_training

    try:
        require_safe_id(args.training_id, "--training-id")
    except UnsafePathError as exc:
        raise UsageError(str(exc)) from None
    root = _data_root()
    manifest = root / "models" / args.training_id / "training_manifest.yaml"
    if not manifest.exists():
        print(f"fp: error: {manifest}: no such training", file=sys.stderr)
        return EXIT_FAILED
    try:
        report = rerun_training(manifest, root / "models" / "reruns")
    except TrainingRefused as exc:
        print(f"fp: error: rerun {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(json.dumps(report.to_json_dict(), indent=2))
    else:
        print(f"dataset sha256 same: {report.dataset_digest_same}; metrics identical: {report.metrics_identical}; "
              f"ONNX bytes identical: {report.onnx_bytes_identical}")
        for difference in report.differences:
            print(f"  differs: {difference}")
    return EXIT_OK if report.reproduced else EXIT_FAILED


def _lineage(args: argparse.Namespace) -> int:
    from feature_platform.registry.lineage import lineage

    alias = args.alias or (None if args.version else "production")
    report = lineage(args.model_key, version=args.version, alias=alias, data_root=_data_root())
    print(report.render())
    return EXIT_OK if report.ok else EXIT_FAILED


def _payload(text: str) -> dict[str, Any]:
    try:
        raw = Path(text[1:]).read_text() if text.startswith("@") else text
        payload = json.loads(raw)
    except (OSError, ValueError) as exc:
        raise UsageError(f"--payload: {exc}") from None
    if not isinstance(payload, dict) or "dataset_version" not in payload:
        raise UsageError("--payload must be a JSON object with at least dataset_version")
    return payload


def _training_run(args: argparse.Namespace) -> int:
    from feature_platform.orchestration.headless import run_training
    from feature_platform.orchestration.training_assets import training_run_config

    payload = _payload(args.payload)
    try:
        version, config = training_run_config(payload)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if not args.verbose:
        config["loggers"] = {"console": {"config": {"log_level": "WARNING"}}}
    summary = run_training(version, instance=_instance(), run_config=config)
    for name, ok in summary.checks.items():
        print(f"  {'PASS' if ok else 'FAIL'}  {name}")
    print(f"training_job {version}: {summary.status}; materialized: {', '.join(summary.materialized)}")
    return EXIT_OK if summary.succeeded else EXIT_FAILED


def _training_submit(args: argparse.Namespace) -> int:
    from feature_platform.orchestration.submit import submit_training

    payload = _payload(args.payload)
    try:
        run_id, status = submit_training(args.url, payload, wait=not args.no_wait, timeout=args.timeout)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    except RuntimeError as exc:
        print(f"fp: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"run {run_id}: {status}")
    failed = status in ("FAILURE", "CANCELED") or (not args.no_wait and status != "SUCCESS")
    return EXIT_FAILED if failed else EXIT_OK


def _contracts_schema(args: argparse.Namespace) -> int:
    from feature_platform.contracts.manifest import SCHEMA_PATH, json_schema_text
    from feature_platform.contracts.model_manifest import MODEL_SCHEMA_PATH, model_json_schema_text

    schemas = [(SCHEMA_PATH, json_schema_text()), (MODEL_SCHEMA_PATH, model_json_schema_text())]
    if not args.write and not args.check:
        sys.stdout.write(schemas[0][1])
        return EXIT_OK
    drifted = False
    for path, text in schemas:
        if args.write:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
        elif (path.read_text(encoding="utf-8") if path.exists() else "") != text:
            print(f"{path}: drifted from the models; run `fp contracts schema --write`", file=sys.stderr)
            drifted = True
        else:
            print(f"{path}: matches the models")
    return EXIT_FAILED if drifted else EXIT_OK


def _contracts_features(args: argparse.Namespace) -> int:
    from feature_platform.contracts.feature_contract import load_feature_contract

    contract = load_feature_contract()
    for feature in contract.features:
        print(f"{feature.name}\t{feature.type}{'' if feature.nullable else ' not null'}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
