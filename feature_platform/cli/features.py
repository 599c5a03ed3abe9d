"""`fp features build`: Feast feature builds."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from feature_platform.cli import progress
from feature_platform.cli.common import (
    EXIT_OK,
    add_json_flag,
    dagster_instance,
    print_json,
    quiet_console,
    report_run_failure,
    safe_id,
)

if TYPE_CHECKING:
    from feature_platform.cli.common import Commands


def register(groups: Commands) -> None:
    feature_cmds = groups.group("features", "{build}", help="Feast feature builds")
    fbuild = feature_cmds.add(
        "build", _features_build,
        help="pin feature_repo to its git sha, apply and materialize a published dataset_version",
        description="Runs the feature_build asset (and its blocking contract-drift check) headless; writes "
        "<data_root>/features/offline/<version>/feature_build.json. Refuses uncommitted feature_repo changes.")
    fbuild.add_argument("--version", required=True, type=safe_id("dataset_version"),
                        help="a published dataset_version")
    fbuild.add_argument("--ref", default=None, help="git ref feature_repo must be at")
    fbuild.add_argument("--allow-dirty", action="store_true", help="accept uncommitted feature_repo changes")
    fbuild.add_argument("-v", "--verbose", action="store_true", help="show Dagster's event log while running")
    add_json_flag(fbuild)


def _features_build(args: argparse.Namespace) -> int:
    from feature_platform.orchestration.headless import run_feature_build

    config: dict[str, Any] = {"ops": {"feature_build": {"config": {"feature_repo_ref": args.ref,
                                                                   "allow_dirty": args.allow_dirty}}}}
    with progress.spinner(args, f"feature_build {args.version}"):
        summary = run_feature_build(args.version, instance=dagster_instance(),
                                    run_config=quiet_console(config, args.verbose))
    if args.json:
        print_json(summary.to_json_dict())
        return EXIT_OK if summary.succeeded else report_run_failure(summary)
    failed = [k for k, ok in summary.checks.items() if not ok]
    tail = f"; failed checks: {', '.join(failed)}" if failed else ""
    print(f"feature_build {args.version}: {summary.status}{tail}")
    return EXIT_OK if summary.succeeded else report_run_failure(summary)
