"""`fp market …`: backfill, review queue, training blocks."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from feature_platform.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    OVERRIDE_TAG,
    UsageError,
    add_json_flag,
    add_run_flags,
    input_file,
    iso_date,
    layout,
    load_run_config,
    positive_int,
    print_json,
    report_run_failure,
    run_in_process,
)

if TYPE_CHECKING:
    from feature_platform.cli.common import Commands


def register(groups: Commands) -> None:
    market_cmds = groups.group("market", "{backfill,review,resolve,blocks,override}",
                               help="market data backfill, anomaly review queue and training blocks")
    backfill = market_cmds.add(
        "backfill", _market_backfill,
        help="fetch, validate and upsert OHLCV for UTC days (the market_backfill_job, headless)")
    backfill.add_argument("--start", required=True, type=iso_date, help="first UTC day, YYYY-MM-DD")
    backfill.add_argument("--end", type=iso_date, default=None, help="last UTC day, inclusive (default: --start)")
    backfill.add_argument("--config", type=input_file, default=None,
                          help="Dagster run config YAML (launchpad format)")
    backfill.add_argument("--override-data-gap", action="store_true",
                          help=f"accept data gaps of these days for training (run tag {OVERRIDE_TAG}=true)")
    add_run_flags(backfill)
    review = market_cmds.add("review", _market_review, help="list the human-in-the-loop queue of flagged rows")
    review.add_argument("--status", choices=["open", "approved", "rejected", "overridden"], default=None,
                        help="only items with this status (default: all)")
    review.add_argument("--asset", default=None, help="only items for this asset, e.g. bitcoin")
    add_json_flag(review)
    resolve = market_cmds.add("resolve", _market_resolve,
                              help="approve (a real move) or reject (bad data) a flagged row")
    resolve.add_argument("item_id", type=positive_int, help="review item id (see `fp market review`)")
    resolve.add_argument("--status", required=True, choices=["approved", "rejected"],
                         help="approved: a real move; rejected: bad data")
    resolve.add_argument("--by", required=True, help="who reviewed it")
    resolve.add_argument("--note", default="", help="why (kept as the audit trail)")
    add_json_flag(resolve)
    blocks = market_cmds.add("blocks", _market_blocks,
                             help="what blocks training now (open data gaps, open anomalies)")
    add_json_flag(blocks)
    override = market_cmds.add("override", _market_override, help="accept a data gap for training after review")
    override.add_argument("block_id", type=positive_int, help="block id (see `fp market blocks`)")
    override.add_argument("--by", required=True, help="who accepts it")
    override.add_argument("--note", required=True, help="why (kept as the audit trail)")
    add_json_flag(override)


def _review_queue() -> Any:
    from feature_platform.market.review import ReviewQueue

    return ReviewQueue(layout().review_db)


def _market_backfill(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from feature_platform.orchestration.headless import run_market_backfill

    first = args.start
    last = args.end or first
    if last < first:
        raise UsageError(f"--end {last} is before --start {first}; expected a day on or after --start")
    config = load_run_config(args.config)
    days = [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]
    tags = {OVERRIDE_TAG: "true"} if args.override_data_gap else {}
    failures = []
    runs = run_in_process(args, f"market backfill {first}..{last}", run_market_backfill, days, config, tags=tags)
    for summary in runs:
        failed = [k for k, passed in summary.checks.items() if not passed]
        rows = summary.materialized.get("market_data")
        if not summary.succeeded or "market_data_raw:no_data_gaps" in failed:
            failures.append(summary)
        if args.json:
            continue
        print(f"{summary.partition}: {summary.status}, {rows if rows is not None else 0:,} rows"
              + (f"; failed checks: {', '.join(failed)}" if failed else ""))
    blocked, reasons = _review_queue().training_blocked()
    if args.json:
        print_json({"days": [s.to_json_dict() for s in runs], "ok": not failures,
                    "training_blocked": blocked, "blocked_by": reasons})
    elif blocked:
        print(f"training blocked by {len(reasons)} open item(s): see `fp market blocks`")
    for summary in failures[:1]:  # the first failed day says why; the lines above list every day
        report_run_failure(summary)
    return EXIT_FAILED if failures else EXIT_OK


def _market_review(args: argparse.Namespace) -> int:
    items = _review_queue().list(status=args.status, asset=args.asset)
    if args.json:
        print_json([_item_json(i) for i in items])
        return EXIT_OK
    print(f"{'id':>5}  {'status':<9} {'asset':<10} {'ts (UTC)':<20} {'z-score':>8}  partition")
    for i in items:
        z = i.detail.get("zscore")
        print(f"{i.id:>5}  {i.status:<9} {i.asset:<10} {i.ts:%Y-%m-%d %H:%M:%S} "
              f"{'' if z is None else f'{z:8.1f}':>8}  {i.partition}")
    print(f"{len(items)} item(s)")
    return EXIT_OK


def _item_json(item: Any) -> dict[str, Any]:
    return {**item.__dict__, "ts": item.ts.isoformat(), "created_at": item.created_at.isoformat(),
            "resolved_at": item.resolved_at.isoformat() if item.resolved_at else None}


def _review_decision(args: argparse.Namespace, decide: Callable[[Any], Any], line: Callable[[Any], str]) -> int:
    """A reviewer's decision on the queue: the item it leaves, as JSON or as ``line``; a refusal is exit 1."""
    from feature_platform.market.review import ReviewError

    try:
        item = decide(_review_queue())
    except ReviewError as exc:
        print(f"fp: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print_json(_item_json(item))
    else:
        print(line(item))
    return EXIT_OK


def _market_resolve(args: argparse.Namespace) -> int:
    return _review_decision(
        args, lambda queue: queue.resolve(args.item_id, args.status, args.by, args.note),
        lambda item: f"item {item.id} ({item.asset} {item.ts:%Y-%m-%d %H:%M}) {item.status} by {item.resolver}")


def _market_blocks(args: argparse.Namespace) -> int:
    blocks = _review_queue().open_blocks()
    if args.json:
        print_json([{**b.__dict__, "ts": b.ts.isoformat()} for b in blocks])
    else:
        for b in blocks:
            print(f"{b.id:>5}  {b.kind:<8}  {b.reason}")
        print("training blocked" if blocks else "training not blocked")
    return EXIT_OK


def _market_override(args: argparse.Namespace) -> int:
    return _review_decision(
        args, lambda queue: queue.override_block(args.block_id, args.by, args.note),
        lambda item: f"block {item.id} ({item.kind}, {item.asset}) overridden by {item.resolver}: {item.note}")
