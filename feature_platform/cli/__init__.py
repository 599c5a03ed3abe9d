"""``fp``: the command line. Every command calls the same domain functions as the Dagster assets.

Exit codes: 0 success, 1 verification or gate failure (or refusal to overwrite), 2 usage error.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from feature_platform.cli import contracts, dataset, features, market, models, refresh
from feature_platform.cli import definitions as definitions_cli
from feature_platform.cli import warehouse as warehouse_cli
from feature_platform.cli.common import EXIT_OK, EXIT_USAGE, UsageError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fp",
        description="feature_platform: verifiable datasets, features and models.",
        epilog="Exit codes: 0 success, 1 verification or gate failure, 2 usage error.",
    )
    groups = parser.add_subparsers(dest="group", metavar="COMMAND")
    for module in (dataset, definitions_cli, warehouse_cli, refresh, market, features, models, contracts):
        module.register(groups)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(handler(args))
    except UsageError as exc:
        print(f"fp: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("fp: interrupted; nothing was published", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `fp … | head`: the reader left; point stdout at /dev/null so the interpreter's final flush is quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
