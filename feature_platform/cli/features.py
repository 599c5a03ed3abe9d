"""`fp features build`: Feast feature builds."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from feature_platform.cli.common import add_run_flags, report_run, run_in_process, safe_id

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
    add_run_flags(fbuild)


def _features_build(args: argparse.Namespace) -> int:
    from feature_platform.orchestration.headless import run_feature_build

    config: dict[str, Any] = {"ops": {"feature_build": {"config": {"feature_repo_ref": args.ref,
                                                                   "allow_dirty": args.allow_dirty}}}}
    summary = run_in_process(args, f"feature_build {args.version}", run_feature_build, args.version, config)
    failed = [k for k, ok in summary.checks.items() if not ok]
    tail = f"; failed checks: {', '.join(failed)}" if failed else ""
    return report_run(args, summary, [f"feature_build {args.version}: {summary.status}{tail}"])
