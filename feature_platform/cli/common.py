"""What every command shares: exit codes, usage errors, argument types, the Dagster instance."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import dagster as dg

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
OVERRIDE_TAG = "fp/override-data-gap"  # also in orchestration.market_assets; the CLI avoids importing Dagster


class UsageError(Exception):
    """Bad arguments: reported on one line, exit code 2."""


def int_at_least(minimum: int, what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text.replace("_", ""))
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a {what} integer, got {text!r}")
        return value

    return parse


def group_help(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """A command group given without its subcommand prints the group's own help (exit 2)."""

    def show(_: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return EXIT_USAGE

    return show


positive_int = int_at_least(1, "positive")
non_negative_int = int_at_least(0, "non-negative")


def dagster_instance() -> dg.DagsterInstance:
    """The Dagster instance at $DAGSTER_HOME, defaulting to <project>/.dagster_home with dagster.yaml."""
    import dagster as dg

    from feature_platform.contracts.provenance import PROJECT_ROOT

    if not os.environ.get("DAGSTER_HOME"):
        home = PROJECT_ROOT / ".dagster_home"
        home.mkdir(exist_ok=True)
        config = home / "dagster.yaml"
        if not config.exists() and (PROJECT_ROOT / "dagster.yaml").exists():
            config.symlink_to(PROJECT_ROOT / "dagster.yaml")
        os.environ["DAGSTER_HOME"] = str(home)
    elif not os.path.isdir(os.environ["DAGSTER_HOME"]):
        raise UsageError(f"DAGSTER_HOME={os.environ['DAGSTER_HOME']}: expected an existing directory (the Dagster "
                         "instance); create it, or unset DAGSTER_HOME to use <project>/.dagster_home")
    return dg.DagsterInstance.get()


def data_root() -> Path:
    from feature_platform.orchestration.resources import PlatformPaths

    return PlatformPaths().root


def parse_payload(text: str) -> dict[str, Any]:
    """A training payload given inline or as @file.json: bounded read, strict JSON (no duplicate keys)."""
    from feature_platform.contracts.safe_read import InputError, loads_json, read_input_bytes

    try:
        if text.startswith("@"):
            payload = loads_json(read_input_bytes(text[1:], what=f"--payload {text}"), f"--payload {text}")
        else:
            payload = loads_json(text, "--payload")
    except InputError as exc:
        raise UsageError(str(exc)) from None
    if not isinstance(payload, dict) or "dataset_version" not in payload:
        raise UsageError("--payload must be a JSON object with at least dataset_version")
    return payload
