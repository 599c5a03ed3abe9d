"""What every command shares: exit codes, usage errors, argument types, the Dagster instance."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from feature_platform.contracts.paths import id_problem

if TYPE_CHECKING:
    import dagster as dg

    from feature_platform.contracts.data_root import DataRoot
    from feature_platform.orchestration.run_report import RunSummary

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
T = TypeVar("T")
OVERRIDE_TAG = "fp/override-data-gap"  # also in orchestration.market_assets; the CLI avoids importing Dagster


class UsageError(Exception):
    """Bad arguments: reported on one line, exit code 2."""


class CheckFailed(Exception):
    """A check, gate or refusal that failed: reported on one line, exit code 1."""


ExceptionKinds = type[Exception] | tuple[type[Exception], ...]


@contextmanager
def domain_errors(usage: ExceptionKinds = (), failed: ExceptionKinds = ()) -> Iterator[None]:
    """The domain's errors as the CLI's, each on one line: ``usage`` kinds exit 2, ``failed`` kinds exit 1. For kinds
    whose meaning depends on the command (a ``ValueError``, a refusal); kinds that always mean bad input are listed
    once, in ``cli.errors.USAGE_ERRORS``, and need no wrapper."""
    try:
        yield
    except usage as exc:
        raise UsageError(str(exc)) from None
    except failed as exc:
        raise CheckFailed(str(exc)) from None


JSON_HELP = "print the result as one JSON document on stdout (exit codes unchanged)"


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help=JSON_HELP)


def add_run_flags(parser: argparse.ArgumentParser) -> None:
    """The flags of a command that runs a Dagster job in process: -v for Dagster's event log, --json."""
    parser.add_argument("-v", "--verbose", action="store_true", help="show Dagster's event log while running")
    add_json_flag(parser)


def print_json(document: Any) -> None:
    """Exactly one strict JSON document on stdout (NaN/Infinity are refused, not written)."""
    print(json.dumps(document, indent=2, allow_nan=False))


def report_build(args: argparse.Namespace, summary: dict[str, Any], headline: str, details: list[str]) -> int:
    """A dataset built and verified: ``summary`` as JSON with --json, else ``headline``, where it is, its digest,
    the format's ``details`` and the checks that passed."""
    if args.json:
        print_json(summary)
    else:
        print("\n".join([headline, f"  path:            {summary['path']}",
                         f"  manifest digest: {summary['manifest_digest']}", *details,
                         f"  verified:        {summary['checks_passed']} checks passed"]))
    return EXIT_OK


SAFE_ID_HINT = "letters, digits, '.', '_', '-', starting with a letter or digit, at most 128 characters"


def safe_id(what: str) -> Callable[[str], str]:
    """Argument type: a non-empty safe id (it becomes a directory name or a partition key)."""

    def parse(text: str) -> str:
        problem = id_problem(text, what)
        if problem is not None:
            raise argparse.ArgumentTypeError(f"{problem}; expected {SAFE_ID_HINT}")
        return text

    return parse


def input_file(text: str) -> Path:
    """Argument type: a path that exists and is a regular file (not a directory, FIFO or device)."""
    path = Path(text)
    if not text:
        raise argparse.ArgumentTypeError("expected a file path, got ''")
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{text}: no such file; expected an existing file")
    if not path.is_file():
        kind = "a directory" if path.is_dir() else "not a regular file"
        raise argparse.ArgumentTypeError(f"{text}: {kind}; expected a regular file")
    return path


def iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None


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


def finite_float(text: str) -> float:
    """Argument type: a finite number ('nan' and 'inf' parse as floats but compare as no threshold should)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def group_help(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """A command group given without its subcommand prints the group's own help (exit 2)."""

    def show(_: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return EXIT_USAGE

    return show


class Commands:
    """Where commands are registered, each with the function that runs it; a group of commands given alone
    prints its own help (exit 2)."""

    def __init__(self, registry: argparse._SubParsersAction[Any]) -> None:
        self._registry = registry

    def add(self, name: str, handler: Callable[[argparse.Namespace], int], **kwargs: Any) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = self._registry.add_parser(name, **kwargs)
        parser.set_defaults(handler=handler)
        return parser

    def group(self, name: str, metavar: str, dest: str = "command", **kwargs: Any) -> Commands:
        parser: argparse.ArgumentParser = self._registry.add_parser(name, **kwargs)
        parser.set_defaults(handler=group_help(parser))
        return Commands(parser.add_subparsers(dest=dest, metavar=metavar))


positive_int = int_at_least(1, "positive")
non_negative_int = int_at_least(0, "non-negative")
model_version = int_at_least(1, "positive")  # a registered model version: 1, 2, …
model_key = safe_id("model_key")


DAGSTER_PG_URL_ENV = "DAGSTER_PG_URL"
DAGSTER_PG_SCHEME = "postgresql+psycopg2"


def check_dagster_pg_url(value: str | None) -> None:
    """``DAGSTER_PG_URL`` (deploy/dagster.postgres.yaml), when set, must name the psycopg2 driver.

    dagster-postgres binds parameters of ``NOTIFY`` client-side, which only psycopg2 does; SQLAlchemy 2.1
    picks psycopg 3 for a bare ``postgresql://`` URL, and the first event a run stores then fails. The URL
    holds a password, so the message quotes only its scheme.
    """
    if value is None:
        return
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  # raises ValueError for a port that is not a number
    except ValueError:
        got: str | None = "an unparsable URL"
    else:
        got = (None if parts.scheme == DAGSTER_PG_SCHEME and parts.hostname and parts.path.strip("/") else
               f"scheme {parts.scheme!r}" if parts.scheme != DAGSTER_PG_SCHEME and parts.scheme.startswith("postgres")
               else "not a PostgreSQL URL" if parts.scheme != DAGSTER_PG_SCHEME
               else "no host" if not parts.hostname else "no database")
    if got is not None:
        raise UsageError(f"{DAGSTER_PG_URL_ENV}: expected {DAGSTER_PG_SCHEME}://USER:PASSWORD@HOST:PORT/DATABASE "
                         f"(dagster-postgres needs the psycopg2 driver), got {got}")


def dagster_instance() -> dg.DagsterInstance:
    """The Dagster instance at $DAGSTER_HOME, defaulting to <project>/.dagster_home with dagster.yaml."""
    import dagster as dg

    from feature_platform.contracts.provenance import PROJECT_ROOT

    check_dagster_pg_url(os.environ.get(DAGSTER_PG_URL_ENV))
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


def layout() -> DataRoot:
    """The data root's layout (``$FP_DATA_ROOT``, default ``./data``); plain Python, no Dagster."""
    from feature_platform.contracts.data_root import DataRoot

    return DataRoot.from_env()


def data_root() -> Path:
    return layout().root


def parse_payload(text: str) -> dict[str, Any]:
    """A training payload given inline or as @file.json: bounded read, strict JSON (no duplicate keys)."""
    from feature_platform.contracts.safe_read import InputError, loads_json, read_input_bytes

    source = f"--payload {text}" if text.startswith("@") else "--payload"
    with domain_errors(usage=InputError):
        raw: bytes | str = read_input_bytes(text[1:], what=source) if text.startswith("@") else text
        payload = loads_json(raw, source)
    if not isinstance(payload, dict):
        raise UsageError(f"{source}: expected a JSON object with at least dataset_version, "
                         f"got {type(payload).__name__}")
    if "dataset_version" not in payload:
        raise UsageError(f"{source}: field dataset_version: expected a dataset_version, got nothing")
    return payload


def load_run_config(path: Path | None, option: str = "--config") -> dict[str, Any]:
    """A Dagster run config YAML (launchpad format): a mapping, or nothing for an empty file (bounded read)."""
    from feature_platform.contracts.safe_read import InputError, read_mapping

    if path is None:
        return {}
    try:
        return read_mapping(path, what=f"{option} {path}")
    except InputError as exc:
        raise UsageError(f"{exc} (Dagster run config: ops, resources, loggers)") from None


def yaml_problem(exc: BaseException) -> str:
    """A YAML parse error on one line: where and what."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return where + " ".join(str(problem).split())


def quiet_console(config: dict[str, Any], verbose: bool) -> dict[str, Any]:
    """An in-process run shows Dagster's event log only with -v; otherwise its console logger is silent (unless
    the run config sets it) and the CLI reports failures itself, one line each."""
    loggers = config.setdefault("loggers", {})
    if not verbose and isinstance(loggers, dict):  # anything else: Dagster's config check names it
        loggers.setdefault("console", {"config": {"log_level": "CRITICAL"}})
    return config


def config_section(config: dict[str, Any], keys: tuple[str, ...], source: str) -> dict[str, Any]:
    """``config[k1][k2]…``, created when absent; a non-mapping on the way is a usage error naming the field."""
    section = config
    for depth, key in enumerate(keys):
        if section.get(key) is None:  # absent, or an empty YAML key
            section[key] = {}
        section = section[key]
        if not isinstance(section, dict):
            raise UsageError(f"{source}: field {'.'.join(keys[: depth + 1])}: expected a mapping, "
                             f"got {type(section).__name__}")
    return section


def run_in_process(args: argparse.Namespace, label: str, run: Callable[..., T], partition: Any,
                   config: dict[str, Any], **kwargs: Any) -> T:
    """``run(partition)`` of a Dagster job on the project's instance, under a spinner; its event log only with -v."""
    from feature_platform.cli import progress

    with progress.spinner(args, label):
        return run(partition, instance=dagster_instance(), run_config=quiet_console(config, args.verbose), **kwargs)


def report_run(args: argparse.Namespace, summary: RunSummary, lines: list[str]) -> int:
    """A finished in-process run: its summary as JSON with --json, else ``lines``; exit 0, or its failures and 1."""
    if args.json:
        print_json(summary.to_json_dict())
    else:
        print("\n".join(lines))
    return EXIT_OK if summary.succeeded else report_run_failure(summary)


MAX_FAILURE_LINES = 3


def report_run_failure(summary: RunSummary) -> int:
    """A failed in-process run on stderr: the failing checks and steps with their one-line reasons, then exit 1."""
    from feature_platform.orchestration.run_report import failure_lines

    lines = failure_lines(summary)
    where = f"{summary.job_name} {summary.partition or ''}".strip()
    for line in lines[:MAX_FAILURE_LINES]:
        print(f"fp: error: {where}: {line}", file=sys.stderr)
    if len(lines) > MAX_FAILURE_LINES:
        print(f"fp: error: {where}: {len(lines) - MAX_FAILURE_LINES} more failure(s); rerun with -v or see the UI",
              file=sys.stderr)
    return EXIT_FAILED
