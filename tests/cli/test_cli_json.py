"""`fp … --json` prints exactly one JSON document on stdout with the usual exit code; every option and
subcommand has help text; progress never reaches a pipe."""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from feature_platform.cli import build_parser
from tests.conftest import CliResult

Cli = Callable[..., CliResult]
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # anything but tab and newline: ANSI escapes, \r spinners

# Commands that report a result; each must accept --json.
RESULT_COMMANDS = [
    ("dataset", "build"), ("dataset", "verify"), ("train",), ("promote",), ("rollback",), ("rerun",), ("lineage",),
    ("training", "run"), ("training", "submit"), ("features", "build"), ("market", "backfill"), ("market", "review"),
    ("market", "blocks"), ("market", "resolve"), ("market", "override"), ("refresh", "run"), ("refresh", "add-version"),
    ("definitions", "materialize"), ("definitions", "build"), ("definitions", "list"),
    ("definitions", "validate"), ("dataset", "export-croissant"), ("attest", "keygen"), ("attest", "sign"),
    ("attest", "verify"),
]


def _walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ("fp",)) -> Iterator[tuple[tuple[str, ...],
                                                                                                 argparse.Action]]:
    for action in parser._actions:
        yield path, action
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, (*path, name))


def _commands() -> dict[tuple[str, ...], argparse.ArgumentParser]:
    found: dict[tuple[str, ...], argparse.ArgumentParser] = {}

    def visit(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> None:
        found[path] = parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    visit(sub, (*path, name))

    visit(build_parser(), ())
    return found


def test_every_option_argument_and_subcommand_has_help() -> None:
    missing: list[str] = []
    count = 0
    for path, action in _walk(build_parser()):
        if isinstance(action, argparse._SubParsersAction):
            helped = {choice.dest: choice.help for choice in action._choices_actions}
            for name in action.choices:
                count += 1
                if not (helped.get(name) or "").strip():
                    missing.append(f"{' '.join(path)} {name}: no help")
            continue
        count += 1
        text = action.help if isinstance(action.help, str) else ""
        if action.help == argparse.SUPPRESS or not text.strip():
            missing.append(f"{' '.join(path)} {'/'.join(action.option_strings) or action.dest}: no help")
    assert count > 150  # the walk saw the whole tree, not just the top level
    assert not missing, "\n".join(missing)


@pytest.mark.parametrize("command", RESULT_COMMANDS, ids=" ".join)
def test_result_commands_accept_json(command: tuple[str, ...]) -> None:
    parser = _commands()[command]
    assert "--json" in parser._option_string_actions, f"fp {' '.join(command)} has no --json"
    assert parser._option_string_actions["--json"].help


def _one_document(out: str, err: str) -> Any:
    """stdout is exactly one JSON document (json.loads refuses trailing text) and nothing is drawn anywhere."""
    assert not CONTROL.search(out) and not CONTROL.search(err), (out, err)
    return json.loads(out)


def test_registry_commands_print_one_json_document(cli: Cli, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """promote, rollback and lineage of a model that is not registered: a JSON refusal, exit 1, nothing moved."""
    monkeypatch.setenv("FP_DATA_ROOT", str(tmp_path / "root"))
    code, out, err = cli("promote", "--model-key", "ghost", "--version", "1", "--json")
    doc = _one_document(out, err)
    assert code == 1 and doc["promoted"] is False and doc["model"] == "ghost" and doc["version"] == "1"
    assert doc["checks"][0]["name"] == "model_version" and doc["checks"][0]["passed"] is False
    assert doc["reasons"] and doc["previous_version"] is None

    code, out, err = cli("rollback", "--model-key", "ghost", "--to-version", "1", "--json")
    doc = _one_document(out, err)
    assert code == 1 and doc["rolled_back"] is False and doc["replay"] is None and doc["reasons"]

    code, out, err = cli("lineage", "--model-key", "ghost", "--json")
    doc = _one_document(out, err)
    assert code == 1 and doc["ok"] is False and doc["links"][0]["name"] == "model_version"
    assert doc["links"][0]["ok"] is False

    code, out, err = cli("lineage", "--model-key", "ghost")  # without --json: the text report, same exit code
    assert code == 1 and out.startswith("lineage ghost v?: BROKEN")


@pytest.fixture
def dagster_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("FP_DATA_ROOT", str(tmp_path / "root"))
    for name in ("FP_SLACK_WEBHOOK_URL", "FP_SMTP_HOST", "FP_PAGERDUTY_ROUTING_KEY", "FP_PUSHGATEWAY_URL"):
        monkeypatch.delenv(name, raising=False)
    return home


def test_dagster_commands_print_one_json_document(cli: Cli, dagster_home: Path, warehouse: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = cli("market", "backfill", "--start", "2026-11-23", "--json")
    doc = _one_document(out, err)
    assert code == 0 and doc["ok"] is True and [d["partition"] for d in doc["days"]] == ["2026-11-23"]
    assert doc["days"][0]["status"] == "SUCCESS" and doc["days"][0]["materialized"]["market_data"] == 3 * 1440
    code, out, err = cli("market", "review", "--json")
    assert code == 0 and _one_document(out, err) == []  # a clean day flags nothing

    # a dataset_version that exists as a partition but was never published: the run fails, the JSON says why
    code, out, err = cli("refresh", "add-version", "ghost", "--json")
    assert code == 0 and _one_document(out, err) == {"dataset_version": "ghost", "added": True}
    code, out, err = cli("refresh", "add-version", "ghost", "--json")
    assert code == 0 and _one_document(out, err) == {"dataset_version": "ghost", "added": False}
    code, out, err = cli("features", "build", "--version", "ghost", "--json")
    doc = _one_document(out, err)
    assert code == 1 and doc["status"] == "FAILURE" and doc["succeeded"] is False
    assert "feature_build" in doc["step_errors"] and "fp: error: feature_build_job ghost" in err

    code, out, err = cli("training", "run", "--payload", '{"dataset_version": "ghost"}', "--json")
    doc = _one_document(out, err)
    assert code == 1 and doc["job_name"] == "training_job" and doc["partition"] == "ghost"
    assert "training_set" in doc["step_errors"]

    monkeypatch.setenv("FP_WAREHOUSE", str(warehouse))
    code, out, err = cli("definitions", "materialize", "--version", "m1", "--as-of", "2026-05-31", "--json")
    doc = _one_document(out, err)
    assert code == 0 and doc["succeeded"] is True and doc["checks"] and all(doc["checks"].values()), err


def test_training_submit_json_and_its_failure(cli: Cli) -> None:
    """No webserver listening: one line on stderr, exit 1, and no half-written JSON on stdout."""
    code, out, err = cli("training", "submit", "--payload", '{"dataset_version": "m1"}', "--url",
                         "http://127.0.0.1:9", "--no-wait", "--json")
    assert code == 1 and out == "" and err.startswith("fp: error:") and len(err.strip().splitlines()) == 1


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_draws_only_on_a_terminal_without_json(monkeypatch: pytest.MonkeyPatch) -> None:
    from feature_platform.cli import progress

    plain = argparse.Namespace(json=False, verbose=False)
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert progress.wanted(plain)
    assert not progress.wanted(argparse.Namespace(json=True, verbose=False))
    assert not progress.wanted(argparse.Namespace(json=False, verbose=True))
    with progress.bar(plain, "building") as update:
        assert update is not None
        update(5, 10)
    assert CONTROL.search(terminal.getvalue())  # on a terminal rich draws (and erases) the bar
    with progress.bar(argparse.Namespace(json=True, verbose=False), "building") as update:
        assert update is None

    pipe = io.StringIO()  # not a terminal: nothing at all
    monkeypatch.setattr(sys, "stderr", pipe)
    assert not progress.wanted(plain)
    with progress.spinner(plain, "running"), progress.bar(plain, "building") as update:
        assert update is None
    assert pipe.getvalue() == ""


def test_long_commands_write_no_control_characters_to_a_pipe(cli: Cli, tmp_path: Path) -> None:
    code, out, err = cli("dataset", "build", "--out-dir", tmp_path, "--dataset-id", "p", "--source", "synthetic",
                         "--rows", "3000", "--batch-rows", "1000")
    assert code == 0 and "built p (3,000 rows" in out
    assert not CONTROL.search(out) and not CONTROL.search(err), err


def test_every_json_result_goes_through_the_strict_printer() -> None:
    """``print_json`` refuses NaN and infinities (not JSON); a command printing ``json.dumps`` itself would not."""
    import ast

    import feature_platform.cli as cli_package

    offenders = []
    for path in sorted(Path(cli_package.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print"
                    and any(isinstance(a, ast.Call) and isinstance(a.func, ast.Attribute) and a.func.attr == "dumps"
                            for a in ast.walk(node))):
                offenders.append(f"{path.name}:{node.lineno}")
    assert [o.split(":")[0] for o in offenders] == ["common.py"], offenders  # print_json itself
