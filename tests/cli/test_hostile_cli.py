"""Hostile input to every `fp` command group: one line naming the input and what was expected, exit 2 for bad
input and 1 for a failed check, never a Python traceback unless -v asks for one.

Most cases run in process (``main([...])`` with the file descriptors captured, so even a logger bound to the real
stderr is seen); the cases that execute Dagster jobs, and a few that prove the real entry point, run as
subprocesses against one data root and one Dagster instance built once per session.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from feature_platform.cli import main
from feature_platform.cli.errors import USAGE_ERRORS

REPO = Path(__file__).resolve().parents[2]
USAGE, FAILED = 2, 1


@dataclass(frozen=True)
class Hostile:
    """Paths every case may name: {root}, {dir}, {missing}, {list_yaml}, … in an argument are replaced."""

    root: Path
    dagster_home: Path
    files: dict[str, Path]

    def env(self) -> dict[str, str]:
        return {**os.environ, "FP_DATA_ROOT": str(self.root), "DAGSTER_HOME": str(self.dagster_home),
                "FP_WAREHOUSE": str(self.files["warehouse"]), "FP_DEFINITIONS_DIR": str(self.files["defs"]),
                "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}

    def expand(self, args: tuple[str, ...]) -> list[str]:
        expanded = []
        for arg in args:
            for name, path in self.files.items():
                arg = arg.replace("{" + name + "}", str(path))
            expanded.append(arg)
        return expanded


def run_fp(hostile: Hostile, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "feature_platform.cli", *hostile.expand(args)], env=hostile.env(),
                          capture_output=True, text=True, timeout=600, check=False)


@pytest.fixture(scope="session")
def hostile(tmp_path_factory: pytest.TempPathFactory, warehouse: Path) -> Hostile:
    """A data root, a Dagster instance knowing the dataset_version v1, and the hostile files."""
    base = tmp_path_factory.mktemp("hostile")
    root, home = base / "root", base / "dagster_home"
    root.mkdir()
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    inputs = base / "inputs"
    inputs.mkdir()
    files = {"root": root, "dir": inputs, "missing": inputs / "no_such_file.json", "warehouse": warehouse}
    for name, text in {
        "list_yaml": "- ops\n- loggers\n",
        "bad_yaml": "ops: {source_snapshot: [\n",
        "ops_list_yaml": "ops: [1, 2]\n",
        "gate_yaml": "ops:\n  quality_report:\n    config:\n      thresholds: {min_rows: 1000000}\n",
        "text_file": "this is not parquet\n",
        "list_json": "[1, 2, 3]\n",
    }.items():
        files[name] = inputs / f"{name}.{'json' if name.endswith('json') else 'txt' if name == 'text_file' else 'yaml'}"
        files[name].write_text(text)
    defs = base / "definitions"
    shutil.copytree(REPO / "definitions", defs)
    bad_defs = base / "bad_definitions"
    bad_defs.mkdir()
    (bad_defs / "listed.yaml").write_text("- name: listed\n- tables: []\n")
    files.update(defs=defs, bad_defs=bad_defs)
    hostile = Hostile(root, home, files)
    added = run_fp(hostile, "refresh", "add-version", "v1")  # a known dataset_version partition, never run
    assert added.returncode == 0, added.stderr
    return hostile


@pytest.fixture
def fp(hostile: Hostile, capfd: pytest.CaptureFixture[str],
       monkeypatch: pytest.MonkeyPatch) -> Callable[..., tuple[int, str, str]]:
    """``fp`` in process with the hostile environment; (exit code, stdout, stderr) at the file descriptor level."""
    for key, value in hostile.env().items():
        if key.startswith(("FP_", "DAGSTER_HOME")):
            monkeypatch.setenv(key, value)
    monkeypatch.delenv("MLFLOW_LOGGING_LEVEL", raising=False)  # main() sets it; restored after the test

    def run(*args: str) -> tuple[int, str, str]:
        capfd.readouterr()
        try:
            code = main(hostile.expand(args))
        except SystemExit as exc:  # argparse
            code = int(exc.code or 0)
        out, err = capfd.readouterr()
        return code, out, err

    return run


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


# (argv, exit code, text the one stderr line must contain: the input, the field or what was expected)
CASES: list[tuple[tuple[str, ...], int, str]] = [
    # no command, unknown commands
    ((), USAGE, "usage: fp"),
    (("frobnicate",), USAGE, "invalid choice: 'frobnicate'"),
    (("dataset", "frobnicate"), USAGE, "invalid choice"),
    # dataset
    (("dataset", "build", "--out-dir", "{dir}/o", "--dataset-id", "../x", "--source", "synthetic"), USAGE,
     "--dataset-id '../x' contains a path separator"),
    (("dataset", "build", "--out-dir", "{dir}/o", "--dataset-id", "a/b", "--source", "synthetic"), USAGE,
     "path separator"),
    (("dataset", "build", "--out-dir", "{dir}/o", "--dataset-id", "", "--source", "synthetic"), USAGE,
     "--dataset-id is empty"),
    (("dataset", "build", "--out-dir", "{dir}/o", "--dataset-id", "ok", "--source", "synthetic",
      "--dataset-version", ""), USAGE, "--dataset-version is empty"),
    (("dataset", "build", "--out-dir", "{dir}/o", "--dataset-id", "ok", "--source", "synthetic", "--rows", "5.0"),
     USAGE, "argument --rows: expected a positive integer, got '5.0'"),
    (("dataset", "build", "--out-dir", "{dir}/o", "--dataset-id", "ok", "--source", "synthetic", "--rows", "true"),
     USAGE, "argument --rows"),
    (("dataset", "build", "--out-dir", "{dir}/o", "--dataset-id", "ok", "--source", "synthetic",
      "--split-fractions", "train=2"), USAGE, "split fractions must lie in [0, 1]"),
    (("dataset", "build", "--out-dir", "{dir}/o", "--dataset-id", "ok", "--source", "simulator", "--format",
      "zarr"), USAGE, "--samples"),
    (("dataset", "verify", "--path", "{dir}", "--samples", "5:2"), USAGE, "argument --samples"),
    (("dataset", "report", "--path", "{missing}"), USAGE, "--out"),
    # definitions
    (("definitions", "query", "no_such_def"), USAGE, "no definition named 'no_such_def'"),
    (("definitions", "query", "anything", "--definitions-dir", "{bad_defs}"), USAGE, "listed.yaml"),
    (("definitions", "query", "purchases_90d", "--as-of", "2026-13-45"), USAGE,
     "argument --as-of: expected a date YYYY-MM-DD, got '2026-13-45'"),
    (("definitions", "list", "--definitions-dir", "{missing}"), USAGE, "definitions directory does not exist"),
    (("definitions", "build", "purchases_90d", "--version", ""), USAGE, "argument --version: dataset_version is empty"),
    (("definitions", "build", "purchases_90d", "--version", "../x"), USAGE, "path separator"),
    (("definitions", "materialize", "--version", ""), USAGE, "definition_version is empty"),
    (("definitions", "clone", "purchases_90d", "../x"), USAGE, "path separator"),
    (("definitions", "compare", "purchases_90d"), USAGE, "expected 2 to 5 definitions"),
    (("definitions", "validate", "--warehouse", "{missing}"), USAGE, "no_such_file.json"),
    # warehouse
    (("warehouse", "schema", "orders"), USAGE, "unknown table 'orders'"),
    (("warehouse", "schema", "a/b"), USAGE, "'a/b'"),
    (("warehouse", "samples", "users", "nope"), USAGE, "has no column 'nope'"),
    (("warehouse", "stats", "users", "--columns", "nope"), USAGE, "'nope'"),
    (("warehouse", "explain", "@{dir}"), USAGE, "expected a regular file, got a directory"),
    (("warehouse", "tables", "--warehouse", "{missing}"), USAGE, "does not exist"),
    (("warehouse", "seed", "--users", "0", "--path", "{dir}/w.duckdb"), USAGE, "argument --users"),
    # refresh
    (("refresh", "run", "--version", ""), USAGE, "argument --version: dataset_version is empty; expected letters"),
    (("refresh", "run", "--version", "../x"), USAGE, "dataset_version '../x' contains a path separator"),
    (("refresh", "run", "--version", "a/b"), USAGE, "path separator"),
    (("refresh", "run", "--version", "v9", "--rows", "0"), USAGE, "argument --rows"),
    (("refresh", "run", "--version", "v9", "--seed", "-1"), USAGE, "argument --seed"),
    (("refresh", "run", "--version", "v9", "--inbox-file", "{missing}"), USAGE,
     "argument --inbox-file: {missing}: no such file"),
    (("refresh", "run", "--version", "v9", "--inbox-file", "{dir}"), USAGE, "a directory; expected a regular file"),
    (("refresh", "run", "--version", "v9", "--config", "{list_yaml}"), USAGE,
     "{list_yaml}: expected a mapping at the top level, got a list (Dagster run config"),
    (("refresh", "run", "--version", "v9", "--config", "{bad_yaml}"), USAGE, "{bad_yaml}: not valid YAML"),
    (("refresh", "run", "--version", "v9", "--config", "{ops_list_yaml}"), USAGE,
     "field ops: expected a mapping, got list"),
    (("refresh", "run", "--version", "v9", "--config", "{dir}"), USAGE, "argument --config"),
    (("refresh", "add-version", ""), USAGE, "argument version: dataset_version is empty"),
    (("refresh", "add-version", "../x"), USAGE, "path separator"),
    # features
    (("features", "build", "--version", ""), USAGE, "dataset_version is empty"),
    (("features", "build", "--version", "../x"), USAGE, "path separator"),
    # market
    (("market", "backfill", "--start", "2026-13-45"), USAGE, "argument --start: expected a date YYYY-MM-DD"),
    (("market", "backfill", "--start", "2026-02-02", "--end", "2026-02-01"), USAGE, "--end 2026-02-01 is before"),
    (("market", "backfill", "--start", "2026-02-02", "--config", "{list_yaml}"), USAGE, "expected a mapping"),
    (("market", "backfill", "--start", "2026-02-02", "--config", "{missing}"), USAGE, "no such file"),
    (("market", "resolve", "0", "--status", "approved", "--by", "me"), USAGE, "argument item_id"),
    (("market", "resolve", "1", "--status", "maybe", "--by", "me"), USAGE, "argument --status"),
    (("market", "resolve", "999", "--status", "approved", "--by", "me"), FAILED, "no review item #999"),
    (("market", "override", "999", "--by", "me", "--note", "x"), FAILED, "999"),
    # train, promote, rollback, rerun, lineage
    (("train", "--dataset-manifest", "{missing}"), FAILED, "{missing}"),
    (("train", "--dataset-manifest", "{missing}", "--model-key", "../x"), USAGE,
     "argument --model-key: model_key '../x' contains a path separator"),
    (("train", "--dataset-manifest", "{missing}", "--hyperparams", "[1]"), USAGE, "--hyperparams"),
    (("train", "--dataset-manifest", "{missing}", "--feature-build", "{dir}"), USAGE, "argument --feature-build"),
    (("promote", "--model-key", "../x", "--version", "1"), USAGE, "model_key '../x' contains a path separator"),
    (("promote", "--model-key", "a/b", "--version", "1"), USAGE, "model_key 'a/b'"),
    (("promote", "--model-key", "", "--version", "1"), USAGE, "model_key is empty"),
    (("promote", "--model-key", "market_regime", "--version", ""), USAGE,
     "argument --version: expected a positive integer, got ''"),
    (("promote", "--model-key", "market_regime", "--version", "1.5"), USAGE, "got '1.5'"),
    (("promote", "--model-key", "market_regime", "--version", "0"), USAGE, "got '0'"),
    (("promote", "--model-key", "market_regime", "--version", "1", "--min-sharpe", "nan"), USAGE,
     "argument --min-sharpe: expected a finite number, got 'nan'"),
    (("rollback", "--model-key", "../x", "--to-version", "1"), USAGE, "model_key '../x'"),
    (("rollback", "--model-key", "market_regime", "--to-version", "x"), USAGE, "argument --to-version"),
    (("rerun", "--training-id", ""), USAGE, "--training-id is empty"),
    (("rerun", "--training-id", "../x"), USAGE, "path separator"),
    (("rerun", "--training-id", "nope"), FAILED, "no such training"),
    (("lineage", "--model-key", "../x"), USAGE, "model_key '../x'"),
    (("lineage", "--model-key", "market_regime", "--version", ""), USAGE, "argument --version"),
    (("lineage", "--model-key", "market_regime", "--alias", ""), USAGE, "--alias"),
    (("lineage", "--model-key", "market_regime", "--version", "1", "--alias", "production"), USAGE,
     "not allowed with argument"),
    # training payloads (refused before any run starts)
    (("training", "run", "--payload", "[1]"), USAGE, "--payload: expected a JSON object with at least "
     "dataset_version, got list"),
    (("training", "run", "--payload", '"v1"'), USAGE, "got str"),
    (("training", "run", "--payload", "{"), USAGE, "--payload: not valid JSON"),
    (("training", "run", "--payload", "{}"), USAGE, "field dataset_version"),
    (("training", "run", "--payload", '{"dataset_version": ""}'), USAGE,
     "field dataset_version: String should match pattern"),
    (("training", "run", "--payload", '{"dataset_version": 5}'), USAGE,
     "field dataset_version: Input should be a valid string (got 5)"),
    (("training", "run", "--payload", '{"dataset_version": "../x"}'), USAGE,
     "field dataset_version: String should match pattern '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$' (got '../x')"),
    (("training", "run", "--payload", '{"dataset_version": "v1", "model_key": "../x"}'), USAGE,
     "field model_key: String should match pattern '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$' (got '../x')"),
    (("training", "run", "--payload", '{"dataset_version": "v1", "bogus": 1}'), USAGE,
     "unknown payload field(s) ['bogus']"),
    (("training", "run", "--payload", "@{missing}"), USAGE, "{missing}: cannot read: No such file or directory"),
    (("training", "run", "--payload", "@{dir}"), USAGE, "expected a regular file, got a directory"),
    (("training", "run", "--payload", "@{list_json}"), USAGE, "{list_json}: expected a JSON object"),
    (("training", "submit", "--payload", "[1]"), USAGE, "expected a JSON object"),
    (("training", "submit", "--payload", '{"dataset_version": "v1"}', "--timeout", "-1"), USAGE,
     "argument --timeout"),
    # contracts
    (("contracts", "schema", "--check", "--write"), USAGE, "not allowed with argument"),
    (("contracts", "frobnicate"), USAGE, "invalid choice"),
]


@pytest.mark.parametrize(("args", "code", "needle"), CASES, ids=[" ".join(c[0]) or "fp" for c in CASES])
def test_hostile_input_gets_one_line_and_an_exit_code(fp: Callable[..., tuple[int, str, str]], hostile: Hostile,
                                                      args: tuple[str, ...], code: int, needle: str) -> None:
    got, out, err = fp(*args)
    assert "Traceback" not in out + err
    assert got == code, err
    needle = hostile.expand((needle,))[0]
    if args == ():  # `fp` alone prints its help
        assert needle in err
        return
    assert len(lines(err)) == 1, err
    assert needle in err, err


def test_every_usage_error_class_exists() -> None:
    import importlib

    for name in USAGE_ERRORS:
        module, _, attr = name.partition(":")
        cls = getattr(importlib.import_module(module), attr)
        assert issubclass(cls, Exception), name


def test_verify_of_a_directory_is_a_failed_check_on_stdout(fp: Callable[..., tuple[int, str, str]]) -> None:
    code, out, err = fp("dataset", "verify", "--path", "{dir}")
    assert code == FAILED and "FAIL manifest_exists" in out and "not a regular file" in out
    assert "Traceback" not in out + err


# Subprocesses: the real entry point, and the commands that execute Dagster jobs in process.
SUBPROCESS_CASES: list[tuple[tuple[str, ...], int, str]] = [
    (("refresh", "run", "--version", ""), USAGE, "dataset_version is empty"),
    (("promote", "--model-key", "../x", "--version", "1"), USAGE, "model_key '../x' contains a path separator"),
    # an unknown dataset_version is refused before the run starts
    (("features", "build", "--version", "nope"), USAGE,
     "dataset_version 'nope': not a partition of feature_build_job; expected one of v1"),
    (("training", "run", "--payload", '{"dataset_version": "nope"}'), USAGE,
     "dataset_version 'nope': not a partition of training_job"),
    # a wrong-typed payload field fails the run config check: one line, not Dagster's error listing
    (("training", "run", "--payload", '{"dataset_version": "v1", "hyperparams": 5}'), USAGE,
     "field hyperparams: Input should be a valid dictionary (got 5)"),
    # a failed quality gate names the check, what it expected and what it got
    (("refresh", "run", "--version", "gate", "--rows", "2000", "--config", "{gate_yaml}"), FAILED,
     "refresh_job gate: check quality_report:quality_thresholds failed: expected row_count: 1000000"),
    # a failing step names the step and its one-line reason, not the DagsterExecutionStepExecutionError chain
    (("refresh", "run", "--version", "badinbox", "--inbox-file", "{text_file}"), FAILED,
     "refresh_job badinbox: step source_snapshot failed: "),
]


@pytest.mark.parametrize(("args", "code", "needle"), SUBPROCESS_CASES, ids=[" ".join(c[0]) for c in SUBPROCESS_CASES])
def test_hostile_input_as_a_subprocess(hostile: Hostile, args: tuple[str, ...], code: int, needle: str) -> None:
    done = run_fp(hostile, *args)
    assert "Traceback" not in done.stdout + done.stderr
    assert "DagsterExecutionStepExecutionError" not in done.stderr
    assert done.returncode == code, done.stderr
    assert len(lines(done.stderr)) == 1, done.stderr
    assert hostile.expand((needle,))[0] in done.stderr, done.stderr


def test_verbose_shows_the_traceback(hostile: Hostile, fp: Callable[..., tuple[int, str, str]]) -> None:
    quiet = fp("refresh", "run", "--version", "v9", "--config", "{list_yaml}")
    loud = fp("refresh", "run", "--version", "v9", "--config", "{list_yaml}", "-v")  # -v after the command
    assert quiet[0] == loud[0] == USAGE
    assert "Traceback" not in quiet[2] and "Traceback" in loud[2] and "UsageError" in loud[2]
    assert lines(loud[2])[-1] == lines(quiet[2])[0]
    # and through Dagster, as a subprocess, with -v before the command
    done = run_fp(hostile, "-v", "training", "run", "--payload", '{"dataset_version": "nope"}')
    assert done.returncode == USAGE and "Traceback" in done.stderr and "RunInputError" in done.stderr
    assert lines(done.stderr)[-1].startswith("fp: error: dataset_version 'nope': not a partition of training_job")


def test_the_boundary_turns_any_escaping_error_into_one_line(fp: Callable[..., tuple[int, str, str]],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from feature_platform.cli import contracts

    def broken(_: object) -> int:
        raise KeyError("feature_order")

    monkeypatch.setattr(contracts, "_contracts_features", broken)
    code, out, err = fp("contracts", "features")
    assert code == FAILED and "Traceback" not in out + err
    assert lines(err) == ["fp: error: internal error: KeyError: 'feature_order' (rerun with -v for the traceback)"]
    code, _, err = fp("contracts", "features", "-v")
    assert code == FAILED and "Traceback" in err and "raise KeyError" in err


def test_describe_names_the_field_of_validation_and_yaml_errors() -> None:
    import yaml
    from pydantic import BaseModel, ValidationError

    from feature_platform.cli.errors import describe
    from feature_platform.contracts.paths import UnsafePathError

    class Payload(BaseModel):
        rows: int
        name: str

    with pytest.raises(ValidationError) as invalid:
        Payload.model_validate({"rows": "many", "name": 5})
    assert describe(invalid.value) == (USAGE, "Payload: field rows: Input should be a valid integer, unable to parse "
                                              "string as an integer (got 'many'); 1 more error(s)")
    with pytest.raises(yaml.YAMLError) as broken:
        yaml.safe_load("a: [1,\n")
    code, line = describe(broken.value)
    assert code == USAGE and line.startswith("line 2, column 1: ") and "\n" not in line
    assert describe(UnsafePathError("model_key '../x' contains a path separator")) == (
        USAGE, "model_key '../x' contains a path separator")
    assert describe(FileNotFoundError(2, "No such file or directory", "/x/y")) == (
        FAILED, "/x/y: No such file or directory")


def test_submit_to_no_webserver_is_one_line(fp: Callable[..., tuple[int, str, str]]) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code, out, err = fp("training", "submit", "--payload", '{"dataset_version": "v1"}', "--url",
                        f"http://127.0.0.1:{port}", "--timeout", "5")
    assert code == FAILED and "Traceback" not in out + err
    assert lines(err) == [f"fp: error: http://127.0.0.1:{port}: cannot reach the Dagster webserver: "
                          "[Errno 111] Connection refused"]
