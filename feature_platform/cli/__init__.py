"""``fp``: the command line. Every command calls the same domain functions as the Dagster assets.

Exit codes: 0 success, 1 verification or gate failure (or refusal to overwrite), 2 usage error. Every failure is
one line on stderr naming the input, the field and what was expected; tracebacks only with ``-v``.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

from feature_platform.cli import api, attest, contracts, dataset, features, market, models, refresh
from feature_platform.cli import definitions as definitions_cli
from feature_platform.cli import warehouse as warehouse_cli
from feature_platform.cli.common import EXIT_OK, EXIT_USAGE, Commands
from feature_platform.cli.errors import describe

VERBOSE_HELP = "show tracebacks, progress and Dagster's event log"


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: the command, the argument and what was expected (exit 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="fp",
        description="feature_platform: verifiable datasets, features and models.",
        epilog="Exit codes: 0 success, 1 verification or gate failure, 2 usage error.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", dest="global_verbose", help=VERBOSE_HELP)
    groups = Commands(parser.add_subparsers(dest="group", metavar="COMMAND"))
    for module in (dataset, definitions_cli, warehouse_cli, refresh, market, features, models, attest, contracts, api):
        module.register(groups)
    _verbose_everywhere(parser)
    return parser


def _verbose_everywhere(parser: argparse.ArgumentParser) -> None:
    """Every command accepts -v/--verbose (`fp CMD … -v` as well as `fp -v CMD …`)."""
    groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for action in groups:
        for sub in set(action.choices.values()):
            _verbose_everywhere(sub)
    if not groups and "-v" not in parser._option_string_actions:
        parser.add_argument("-v", "--verbose", action="store_true", help=VERBOSE_HELP)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.verbose = bool(getattr(args, "verbose", False) or args.global_verbose)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    if not args.verbose:
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # no INFO chatter (e.g. creating its tables)
    try:
        return int(handler(args))
    except KeyboardInterrupt:
        print("fp: interrupted; nothing was published", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `fp … | head`: the reader left; point stdout at /dev/null so the interpreter's final flush is quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:  # noqa: BLE001  (the one error boundary: one line, an exit code, -v for the traceback)
        code, line = describe(exc)
        if args.verbose:
            traceback.print_exc()
        print(f"fp: error: {line}", file=sys.stderr)
        return code
