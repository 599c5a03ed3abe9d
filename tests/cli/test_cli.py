from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from feature_platform.contracts.feature_contract import FEATURE_ORDER
from feature_platform.datasets.verify import verify_dataset
from tests.conftest import CliResult

COMMANDS = [[], ["dataset"], ["dataset", "build"], ["dataset", "verify"], ["contracts"], ["contracts", "schema"],
            ["contracts", "features"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "fp")
def test_every_command_has_help(cli: Callable[..., CliResult], command: list[str]) -> None:
    code, out, _ = cli(*command, "--help")
    assert code == 0 and out.startswith("usage: fp")


def test_build_then_verify(cli: Callable[..., CliResult], tmp_path: Path) -> None:
    code, out, err = cli("dataset", "build", "--out-dir", tmp_path, "--dataset-id", "demo_ds", "--source",
                         "synthetic", "--rows", "2500", "--seed", "42", "--batch-rows", "1000", "-v")
    assert code == 0, err
    assert "built demo_ds (2,500 rows" in out and "manifest digest:" in out
    assert "wrote 2,500/2,500 rows (100.0%)" in err
    code, out, _ = cli("dataset", "verify", "--path", tmp_path / "demo_ds" / "manifest.json", "--base-dir", tmp_path,
                       "-v")
    assert code == 0
    assert out.count("PASS ") == 24 and "FAIL" not in out


def test_build_json_and_verify_json(cli: Callable[..., CliResult], tmp_path: Path) -> None:
    code, out, _ = cli("dataset", "build", "--out-dir", tmp_path, "--dataset-id", "j", "--source", "synthetic",
                       "--rows", "500", "--json", "--split-fractions", "train=0.5,test=0.5", "--split-salt", "s1")
    assert code == 0
    built = json.loads(out)
    assert built["rows"] == 500 and set(built["splits"]) == {"train", "test"}
    code, out, _ = cli("dataset", "verify", "--path", built["manifest"], "--json",
                       "--expect-digest", built["manifest_digest"])
    report = json.loads(out)
    assert code == 0 and report["ok"] is True and report["manifest_digest"] == built["manifest_digest"]
    code, out, _ = cli("dataset", "verify", "--path", built["manifest"], "--json", "--expect-digest", "0" * 64)
    assert code == 1 and json.loads(out)["ok"] is False


def test_existing_dataset_needs_force(cli: Callable[..., CliResult], tmp_path: Path) -> None:
    args = ["dataset", "build", "--out-dir", tmp_path, "--dataset-id", "x", "--source", "synthetic", "--rows", "300"]
    assert cli(*args)[0] == 0
    before = (tmp_path / "x" / "manifest.json").read_bytes()
    code, _, err = cli(*args, "--seed", "5")
    assert code == 1 and "already exists" in err and "--force" in err
    assert (tmp_path / "x" / "manifest.json").read_bytes() == before
    assert cli(*args, "--seed", "5", "--force")[0] == 0
    assert (tmp_path / "x" / "manifest.json").read_bytes() != before


def test_build_that_fails_verification_exits_one_and_leaves_nothing(cli: Callable[..., CliResult],
                                                                     tmp_path: Path) -> None:
    code, _, err = cli("dataset", "build", "--out-dir", tmp_path, "--dataset-id", "tiny_limit", "--source",
                       "synthetic", "--rows", "300", "--max-bytes", "100", "-v")
    assert code == 1 and "FAIL size_limit" in err and "nothing published" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args", [
    ["dataset", "build", "--dataset-id", "x", "--source", "synthetic"],  # no --out-dir
    ["dataset", "build", "--out-dir", "o", "--dataset-id", "x", "--source", "nope"],
    ["dataset", "build", "--out-dir", "o", "--dataset-id", "x", "--source", "synthetic", "--rows", "-5"],
    ["dataset", "build", "--out-dir", "o", "--dataset-id", "x", "--source", "synthetic", "--rows", "ten"],
    ["dataset", "build", "--out-dir", "o", "--dataset-id", "x", "--source", "synthetic", "--split-fractions", "a=2"],
    ["dataset", "build", "--out-dir", "o", "--dataset-id", "x", "--source", "synthetic", "--dataset-version", "a/b"],
    ["dataset", "verify"],
    ["dataset", "verify", "--path", "m.json", "--max-bytes", "0"],
    ["dataset", "frobnicate"],
    [],
])
def test_usage_errors_exit_two(cli: Callable[..., CliResult], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               args: list[str]) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(*args)
    assert code == 2 and err
    assert list(tmp_path.iterdir()) == []


def test_missing_manifest_is_a_verification_failure(cli: Callable[..., CliResult], tmp_path: Path) -> None:
    code, out, _ = cli("dataset", "verify", "--path", tmp_path / "absent" / "manifest.json")
    assert code == 1 and "FAIL manifest_exists" in out


def test_contracts_commands(cli: Callable[..., CliResult]) -> None:
    code, out, _ = cli("contracts", "features")
    assert code == 0 and [line.split("\t")[0] for line in out.splitlines()] == list(FEATURE_ORDER)
    code, out, _ = cli("contracts", "schema")
    assert code == 0 and json.loads(out)["title"].startswith("feature_platform dataset manifest")
    code, out, _ = cli("contracts", "schema", "--check")
    assert code == 0 and "matches" in out


def test_module_entry_point_and_console_script(tmp_path: Path) -> None:
    """`python -m feature_platform.cli` and the installed `fp` are the same program."""
    run = subprocess.run([sys.executable, "-m", "feature_platform.cli", "dataset", "build", "--out-dir", tmp_path,
                          "--dataset-id", "m", "--source", "synthetic", "--rows", "200", "--seed", "3"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    fp = shutil.which("fp", path=str(Path(sys.executable).parent))
    assert fp is not None
    run = subprocess.run([fp, "dataset", "verify", "--path", tmp_path / "m" / "manifest.json", "--base-dir",
                          tmp_path], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.startswith("OK: m:")
    run = subprocess.run([fp, "dataset", "verify"], capture_output=True, text=True)
    assert run.returncode == 2
    assert verify_dataset(tmp_path / "m" / "manifest.json").ok


@pytest.mark.parametrize("group", ["dataset", "refresh", "market", "features", "training", "contracts"])
def test_a_group_without_subcommand_shows_its_own_help(cli: Callable[..., CliResult], group: str) -> None:
    code, _, err = cli(group)
    assert code == 2 and err.startswith(f"usage: fp {group} ")
