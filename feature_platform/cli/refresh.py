"""`fp refresh run|add-version`: the Dagster refresh graph, headless."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from feature_platform.cli.common import (
    EXIT_OK,
    add_json_flag,
    config_section,
    dagster_instance,
    input_file,
    load_run_config,
    non_negative_int,
    positive_int,
    print_json,
    report_run_failure,
    run_in_process,
    safe_id,
)

if TYPE_CHECKING:
    from feature_platform.cli.common import Commands


def register(groups: Commands) -> None:
    refresh_cmds = groups.group("refresh", "{run,add-version}",
                                help="the Dagster dataset refresh graph, headless")
    run = refresh_cmds.add(
        "run", _refresh_run,
        help="materialize the whole refresh graph for one dataset_version, in process",
        description="Adds the dataset_version partition to the Dagster instance ($DAGSTER_HOME, default "
        "<project>/.dagster_home), materializes source_snapshot → dataset → quality_report → "
        "published_dataset → notify_stakeholders with their blocking checks, then emits metrics, alerts on "
        "failure and archives the run, like the daemon's sensors would. The UI (`make ui`) shows the result.",
    )
    run.add_argument("--version", type=safe_id("dataset_version"), default=None,
                     help="dataset_version partition key (default: UTC now)")
    run.add_argument("--rows", type=positive_int, default=None, help="synthetic rows (default 200000)")
    run.add_argument("--seed", type=non_negative_int, default=None, help="synthetic seed (default from version)")
    run.add_argument("--inbox-file", type=input_file, default=None,
                     help="ingest this parquet file instead of synthetic")
    run.add_argument("--files", type=positive_int, default=None,
                     help="data files of the dataset, sharded by entity (default 1)")
    run.add_argument("--executor", choices=["inline", "process", "ray"], default=None,
                     help="where the dataset's files are written when --files > 1 and the quality profile's "
                     "per-file passes run (default: build ray when RAY_ADDRESS is set, else process; profile "
                     "inline, its feature columns in one thread per core)")
    run.add_argument("--workers", type=positive_int, default=None,
                     help="parallel workers for the dataset build and the quality profile (default: the usable CPUs)")
    run.add_argument("--config", type=input_file, default=None, help="Dagster run config YAML (launchpad format)")
    run.add_argument("--json", action="store_true", help="print the run summary as JSON")
    run.add_argument("-v", "--verbose", action="store_true", help="show Dagster's event log while running")
    add = refresh_cmds.add("add-version", _refresh_add_version,
                           help="add a dataset_version partition (then run it from the UI)")
    add.add_argument("version", type=safe_id("dataset_version"), help="safe id, e.g. 2026-11-25 or adhoc-1")
    add_json_flag(add)


def _refresh_add_version(args: argparse.Namespace) -> int:
    from feature_platform.orchestration.partitions import ensure_partition

    added = ensure_partition(dagster_instance(), args.version)
    if args.json:
        print_json({"dataset_version": args.version, "added": added})
    else:
        print(f"dataset_version {args.version} {'added' if added else 'already exists'}")
    return EXIT_OK


def _refresh_run(args: argparse.Namespace) -> int:
    import dataclasses
    from datetime import UTC, datetime

    from feature_platform.orchestration.headless import format_summary, run_refresh
    from feature_platform.orchestration.resources import PlatformPaths, run_paths

    # an empty --version is refused by its argument type, never replaced by the default
    version = args.version if args.version is not None else datetime.now(tz=UTC).strftime("%Y%m%dT%H%M%SZ")
    config = load_run_config(args.config)
    snapshot = config_section(config, ("ops", "source_snapshot", "config"), f"--config {args.config}")
    if args.rows is not None:
        snapshot["rows"] = args.rows
    if args.seed is not None:
        snapshot["seed"] = args.seed
    if args.inbox_file is not None:
        snapshot.update(kind="file", inbox_file=str(args.inbox_file.resolve()))
    build = {k: v for k, v in (("files", args.files), ("executor", args.executor), ("workers", args.workers))
             if v is not None}
    if build:
        config_section(config, ("ops", "dataset", "config"), f"--config {args.config}").update(build)
    profile = {k: v for k, v in (("executor", args.executor), ("workers", args.workers)) if v is not None}
    if profile:
        config_section(config, ("ops", "quality_report", "config"), f"--config {args.config}").update(profile)
    outcome = run_in_process(args, f"refresh {version}", run_refresh, version, config)
    if args.json:
        print_json(dataclasses.asdict(outcome))
    else:
        print(format_summary(outcome, run_paths(PlatformPaths(), config)))  # where this run wrote
    return EXIT_OK if outcome.refresh.succeeded else report_run_failure(outcome.refresh)
