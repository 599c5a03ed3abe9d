"""Hostile payloads and configs: wrong types, bad dates, duplicate keys, unbounded and blocking reads.

Every case must end in ONE line that names the input (and the field, where there is one); none may
hang, exhaust memory or print a traceback. Case lists are module-level so the counts are easy to read.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from feature_platform.contracts.feature_contract import ContractError, load_feature_contract
from feature_platform.contracts.manifest import ManifestError
from feature_platform.contracts.model_manifest import load_training_manifest
from feature_platform.contracts.safe_read import (
    MAX_INPUT_BYTES,
    InputError,
    loads_json,
    loads_yaml,
    read_json,
    read_mapping,
    read_yaml,
)
from feature_platform.datasets.definitions.model import DefinitionError, load_definition
from feature_platform.orchestration.training_assets import training_run_config
from feature_platform.quality.thresholds import ThresholdsError, load_thresholds
from feature_platform.training.payload import PayloadError, parse_training_payload
from tests.conftest import CliResult

DEEP_JSON = "[" * 200_000
DEEP_YAML_FLOW = "[" * 200_000
DEEP_YAML_BLOCK = "".join("  " * i + "k:\n" for i in range(400)) + "  " * 400 + "v\n"
ALIAS_BOMB = "\n".join(
    ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    + [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]" for i in range(8)]
) + "\n"


def one_line(text: str) -> str:
    """The single line of ``text``; fails on a traceback or on more than one line."""
    assert "Traceback" not in text, text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


# --------------------------------------------------------------------------------------- bounded reads


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "payload.fifo"
    os.mkfifo(path)
    return path


@pytest.fixture
def zero_link(tmp_path: Path) -> Path:
    link = tmp_path / "manifest.json"
    link.symlink_to("/dev/zero")
    return link


@pytest.fixture
def oversized(tmp_path: Path) -> Path:
    path = tmp_path / "big.json"
    with open(path, "wb") as f:  # sparse: 16 MiB + 1 of size without writing it
        f.truncate(MAX_INPUT_BYTES + 1)
    return path


@pytest.mark.parametrize("reader", [read_json, read_yaml, read_mapping])
def test_reader_refuses_devices_fifos_directories_and_oversized_files(
        reader: Callable[..., Any], fifo: Path, zero_link: Path, oversized: Path, tmp_path: Path) -> None:
    cases = [(Path("/dev/zero"), "a character device"), (zero_link, "a character device"), (fifo, "a FIFO"),
             (tmp_path, "a directory"), (oversized, f"at most {MAX_INPUT_BYTES} bytes"),
             (tmp_path / "absent.json", "cannot read")]
    for path, expected in cases:
        with pytest.raises(InputError) as info:
            reader(path)
        message = one_line(str(info.value))
        assert message.startswith(f"{path}: ") and expected in message, message


def test_reader_refuses_a_symlink_when_asked_not_to_follow(tmp_path: Path) -> None:
    real = tmp_path / "real.json"
    real.write_text('{"a": 1}')
    (tmp_path / "link.json").symlink_to(real)
    assert read_json(tmp_path / "link.json") == {"a": 1}
    with pytest.raises(InputError, match=r"link\.json: expected a regular file, got a symbolic link"):
        read_json(tmp_path / "link.json", nofollow=True)


JSON_CASES = [
    (DEEP_JSON, "nesting at most"),
    ("[" * 150 + "]" * 150, "nesting at most"),
    ('{"a": 1, "a": 2}', "duplicate key 'a'"),
    ('{"x": {"seed": 1, "seed": 2}}', "duplicate key 'seed'"),
    ('{"row_count": NaN}', "NaN"),
    ('{"row_count": -Infinity}', "Infinity"),
    ('{"a": 1', "not valid JSON"),
    (b"\xff\xfe{}", "expected UTF-8"),
]


@pytest.mark.parametrize(("text", "expected"), JSON_CASES, ids=range(len(JSON_CASES)))
def test_json_text_is_parsed_strictly(text: str | bytes, expected: str) -> None:
    with pytest.raises(InputError) as info:
        loads_json(text, "input.json")
    message = one_line(str(info.value))
    assert message.startswith("input.json: ") and expected in message


YAML_CASES = [
    (DEEP_YAML_FLOW, "nesting deeper than"),
    (DEEP_YAML_BLOCK, "nesting deeper than"),
    (ALIAS_BOMB, "aliases"),
    ("base: &b {rows: 1}\nother: *b\n", "aliases"),
    ("rows: 1\nrows: 2\n", "duplicate key 'rows'"),
    ("ops:\n  a: {x: 1, x: 2}\n", "duplicate key 'x'"),
    ("a: [1, 2\n", "not valid YAML"),
    ("!!python/object/apply:os.system ['true']\n", "not valid YAML"),
]


@pytest.mark.parametrize(("text", "expected"), YAML_CASES, ids=range(len(YAML_CASES)))
def test_yaml_text_is_parsed_strictly(text: str, expected: str) -> None:
    with pytest.raises(InputError) as info:
        loads_yaml(text, "config.yaml")
    message = one_line(str(info.value))
    assert message.startswith("config.yaml: ") and expected in message


def test_strict_readers_still_read_ordinary_documents(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("a: {x: [1, 2, {y: 3}]}\nb: 2026-01-01\n")
    assert read_mapping(path)["a"] == {"x": [1, 2, {"y": 3}]}
    assert loads_json('{"a": [1, {"b": null}]}', "x") == {"a": [1, {"b": None}]}
    (tmp_path / "empty.yaml").write_text("")
    assert read_mapping(tmp_path / "empty.yaml") == {}
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(InputError, match=r"list\.yaml: expected a mapping at the top level, got a list"):
        read_mapping(tmp_path / "list.yaml")


def test_config_loaders_of_each_area_go_through_the_bounded_reader(tmp_path: Path, zero_link: Path) -> None:
    """Feature contract, quality thresholds, dataset definitions and training manifests: one line each."""
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(ALIAS_BOMB)
    loaders: list[tuple[Callable[[Path], Any], type[Exception]]] = [
        (load_feature_contract, ContractError), (load_thresholds, ThresholdsError),
        (load_definition, DefinitionError), (load_training_manifest, ManifestError)]
    for load, error in loaders:
        for path, expected in ((zero_link, "a character device"), (bomb, "aliases")):
            with pytest.raises(error) as info:
                load(path)
            message = one_line(str(info.value))
            assert str(path) in message and expected in message, message


# ------------------------------------------------------------------------------------------- payloads

GOOD = {"dataset_version": "v1", "model_key": "market_regime", "hyperparam_profile": "fast", "seed": 3,
        "schedule": "adhoc", "run_coingecko_fetch": False, "auto_promote": False, "hyperparams": {"max_iter": 5}}

WRONG_TYPES: list[tuple[str, Any]] = [
    ("auto_promote", "false"), ("auto_promote", "true"), ("auto_promote", "False"), ("auto_promote", 0),
    ("auto_promote", 1), ("auto_promote", None), ("auto_promote", []),
    ("run_coingecko_fetch", "no"), ("run_coingecko_fetch", 0), ("run_coingecko_fetch", "false"),
    ("seed", "5000"), ("seed", 5000.0), ("seed", True), ("seed", -1), ("seed", None), ("seed", 1.5),
    ("schedule", "ADHOC"), ("schedule", 1), ("schedule", None),
    ("hyperparams", "max_iter=5"), ("hyperparams", [1, 2]), ("hyperparams", None),
    ("hyperparam_profile", 5), ("feature_repo_ref", ["main"]),
    ("dataset_version", ""), ("dataset_version", 5), ("dataset_version", "../v1"), ("dataset_version", None),
    ("dataset_version", "v1\n"), ("dataset_version", "v1/../../etc"),
    ("model_key", "../prod"), ("model_key", ""), ("model_key", 7),
]


@pytest.mark.parametrize(("field", "value"), WRONG_TYPES, ids=[f"{f}={v!r}" for f, v in WRONG_TYPES])
def test_payload_field_of_the_wrong_type_is_refused_naming_the_field(field: str, value: Any) -> None:
    with pytest.raises(PayloadError) as info:
        training_run_config({**GOOD, field: value})
    message = one_line(str(info.value))
    assert message.startswith(f"payload: field {field}:"), message


def test_payload_booleans_keep_their_meaning() -> None:
    for flag in (False, True):
        version, config = training_run_config({**GOOD, "auto_promote": flag, "run_coingecko_fetch": flag})
        assert version == "v1"
        assert config["ops"]["promotion"]["config"]["auto_promote"] is flag
        assert config["ops"]["trained_model"]["config"]["run_coingecko_fetch"] is flag
        assert config["ops"]["trained_model"]["config"]["seed"] == 3
    _, config = training_run_config({"dataset_version": "v1"})
    assert config["ops"]["promotion"]["config"]["auto_promote"] is False


def test_payload_shape_errors_are_one_line() -> None:
    for raw, expected in [([], "expected a JSON object"), ("v1", "expected a JSON object"),
                          ({"dataset_version": "v1", "epochs": 3}, "unknown payload field(s) ['epochs']"),
                          ({"model_key": "m"}, "field dataset_version: Field required")]:
        with pytest.raises(PayloadError) as info:
            parse_training_payload(raw)
        assert expected in one_line(str(info.value))


def test_training_payload_on_the_command_line(cli: Callable[..., CliResult], tmp_path: Path, fifo: Path,
                                              zero_link: Path, oversized: Path) -> None:
    """`fp training run --payload`: every hostile payload is a usage error (exit 2) on one line, before any run."""
    dup = tmp_path / "dup.json"
    dup.write_text('{"dataset_version": "v1", "auto_promote": false, "auto_promote": true}')
    cases = [
        ("@/dev/zero", "/dev/zero: expected a regular file, got a character device"),
        (f"@{zero_link}", f"{zero_link}: expected a regular file, got a character device"),
        (f"@{fifo}", f"{fifo}: expected a regular file, got a FIFO"),
        (f"@{oversized}", f"expected at most {MAX_INPUT_BYTES} bytes"),
        (f"@{tmp_path / 'absent.json'}", "absent.json: cannot read"),
        (f"@{dup}", "duplicate key 'auto_promote'"),
        (DEEP_JSON, "--payload: expected nesting at most"),
        ('{"dataset_version": "v1", "dataset_version": "v2"}', "--payload: not valid JSON: duplicate key"),
        ('{"dataset_version": "v1", "auto_promote": "false"}', "field auto_promote: Input should be a valid boolean"),
        ('{"dataset_version": "v1", "seed": "5000"}', "field seed: Input should be a valid integer"),
        ('{"dataset_version": "v1", "seed": 5000.0}', "field seed: Input should be a valid integer"),
        ('{"dataset_version": "v1", "seed": true}', "field seed: Input should be a valid integer"),
        ('{"dataset_version": "v1", "seed": NaN}', "NaN"),
        ('{"dataset_version": ""}', "field dataset_version:"),
        ("[1, 2]", "expected a JSON object"),
    ]
    for payload, expected in cases:
        code, out, err = cli("training", "run", "--payload", payload)
        assert code == 2, (payload, err)
        line = one_line(err)
        assert line.startswith("fp: error: ") and expected in line, (payload, line)
        assert out == ""


def test_hyperparams_on_the_command_line_refuse_duplicate_keys(cli: Callable[..., CliResult],
                                                               tmp_path: Path) -> None:
    code, _, err = cli("train", "--dataset-manifest", tmp_path / "m.json",
                       "--hyperparams", '{"max_iter": 5, "max_iter": 50}')
    assert code == 2 and "--hyperparams: not valid JSON: duplicate key 'max_iter'" in one_line(err)


# ---------------------------------------------------------------------------------------- run configs


def test_run_config_files_on_the_command_line(cli: Callable[..., CliResult], tmp_path: Path, fifo: Path) -> None:
    """`fp refresh run --config` and `fp market backfill --config`: bounded, strict, one line, exit 2."""
    files = {"bomb.yaml": ALIAS_BOMB, "deep.yaml": DEEP_YAML_FLOW, "list.yaml": "- ops\n- loggers\n",
             "dup.yaml": "ops: {}\nops: {}\n"}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    cases = [(Path("/dev/zero"), "a character device"), (fifo, "a FIFO"), (tmp_path, "a directory"),
             (tmp_path / "bomb.yaml", "aliases"), (tmp_path / "deep.yaml", "nesting deeper than"),
             (tmp_path / "list.yaml", "expected a mapping at the top level, got a list"),
             (tmp_path / "dup.yaml", "duplicate key 'ops'")]
    commands = [("refresh", "run", "--version", "v1"), ("market", "backfill", "--start", "2024-01-01")]
    for command in commands:
        for path, expected in cases:
            code, _, err = cli(*command, "--config", path)
            assert code == 2, (command, path, err)
            line = one_line(err)
            # the option's type refuses a non-regular file before any read; the reader names the rest
            assert f"{path}: " in line and "--config" in line, line
            assert expected in line or "expected a regular file" in line, line


@pytest.mark.parametrize(("field", "value"), [("rows", "5000"), ("rows", 5000.0), ("rows", True), ("seed", "3"),
                                              ("seed", 3.0), ("batch_rows", False)])
def test_dagster_run_config_is_typed_strictly(field: str, value: Any, tmp_path: Path) -> None:
    """What a run config file holds goes to Dagster's config system, which refuses these too."""
    import dagster as dg

    from feature_platform.definitions import build_defs

    job = build_defs().resolve_job_def("refresh_job")
    config = {"ops": {"source_snapshot": {"config": {field: value}}}}
    with pytest.raises(dg.DagsterInvalidConfigError, match=field):
        dg.validate_run_config(job, config)


# -------------------------------------------------------------------------------------- bad dates

BAD_DATES = ["2026-13-45T99:99:99Z", "2026-02-30T00:00:00Z", "2026-00-10T00:00:00Z", "2026-04-31T12:00:00.5Z",
             "2026-01-01T24:00:00Z", "2026-01-01T23:60:00Z", "2026-01-01T23:59:60Z", "2026-01-01T00:00:00",
             "2026-01-01T00:00:00+00:00", "2026-1-01T00:00:00Z", "２０２６-01-01T00:00:00Z", "2026-01-01T00:00:00Z\n",
             "2025-02-29T00:00:00Z"]


@pytest.mark.parametrize("value", BAD_DATES)
def test_impossible_timestamps_are_refused_in_training_manifests(value: str, tmp_path: Path) -> None:
    path = tmp_path / "training_manifest.yaml"
    path.write_text(json.dumps(_training_manifest(created_at=value)))
    with pytest.raises(ManifestError) as info:
        load_training_manifest(path)
    assert one_line(str(info.value)).startswith(f"{path}: field created_at:")


def test_a_real_timestamp_and_a_leap_day_pass(tmp_path: Path) -> None:
    path = tmp_path / "training_manifest.yaml"
    for value in ("2024-02-29T23:59:59.999999Z", "2026-12-31T00:00:00Z"):
        path.write_text(json.dumps(_training_manifest(created_at=value)))
        assert load_training_manifest(path).created_at == value


def _training_manifest(**override: Any) -> dict[str, Any]:
    sha = "0" * 64
    return {"spec_version": "1", "training_id": "t1", "model_key": "m", "created_at": "2026-01-01T00:00:00Z",
            "dataset_manifest_path": "/d/manifest.json", "dataset_manifest_digest": sha, "dataset_version": "v1",
            "feature_repo_ref": None, "feature_build_sha256": None, "hyperparameters": {},
            "hyperparameters_sha256": sha, "hyperparam_profile": None, "seed": 0, "schedule": "adhoc",
            "code_git_sha": "unknown", "config_sha256": {}, "library_versions": {}, "image_digests": {},
            "market_snapshot": None, **override}


# ------------------------------------------------------------------------------------- real processes


@pytest.mark.parametrize("which", ["fifo", "dev_zero_link"])
def test_the_cli_process_neither_hangs_nor_reads_forever(which: str, tmp_path: Path, fifo: Path,
                                                         zero_link: Path) -> None:
    """A FIFO with no writer and a symlink to /dev/zero, through the real `fp` process (no traceback).

    The timeout only keeps a regression from hanging the suite; the process answers at once."""
    target = fifo if which == "fifo" else zero_link
    done = subprocess.run([sys.executable, "-m", "feature_platform.cli", "training", "run", "--payload",
                           f"@{target}"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert f"{target}: expected a regular file" in one_line(done.stderr)


# ------------------------------------------------------------------------------------ config values

THRESHOLD_CASES: list[tuple[str, str]] = [
    ("min_rows: '5000'\n", "min_rows"), ("min_rows: 5000.0\n", "min_rows"), ("min_rows: true\n", "min_rows"),
    ("max_psi: '0.2'\n", "max_psi"), ("max_ks: null\n", "max_ks"), ("min_non_null_rate: 1.5\n", "min_non_null_rate"),
    ("feature_overrides: {ret_1m: {max_ks: 'high'}}\n", "feature_overrides.ret_1m.max_ks"),
    ("max_psi: .inf\n", "max_psi"), ("surprise: 1\n", "surprise"),
]


@pytest.mark.parametrize(("text", "field"), THRESHOLD_CASES, ids=[f for _, f in THRESHOLD_CASES])
def test_quality_thresholds_are_typed_strictly(text: str, field: str, tmp_path: Path) -> None:
    path = tmp_path / "thresholds.yaml"
    path.write_text(text)
    with pytest.raises(ThresholdsError) as info:
        load_thresholds(path)
    assert one_line(str(info.value)).startswith(f"{path}: field {field}:")


@pytest.mark.parametrize(("key", "value"), [("max_iter", "50"), ("max_iter", 50.0), ("max_iter", True),
                                            ("learning_rate", "0.1"), ("learning_rate", False)])
def test_hyperparameter_overrides_are_typed_strictly(key: str, value: Any) -> None:
    from feature_platform.training.profiles import HyperparameterError, resolve_hyperparameters

    with pytest.raises(HyperparameterError) as info:
        resolve_hyperparameters(None, {key: value})
    assert one_line(str(info.value)).startswith(f"hyperparameter {key} must be ")


@pytest.mark.parametrize("which", ["fifo", "dev_zero_link", "directory"])
def test_an_inbox_file_must_be_a_regular_file(which: str, tmp_path: Path, fifo: Path, zero_link: Path) -> None:
    """`--inbox-file` copies the file into a snapshot: a FIFO would block and /dev/zero would never end."""
    from feature_platform.datasets.snapshot import SnapshotError, snapshot_file

    src = {"fifo": fifo, "dev_zero_link": zero_link, "directory": tmp_path}[which]
    with pytest.raises(SnapshotError) as info:
        snapshot_file(tmp_path / "sources", "v1", src)
    assert one_line(str(info.value)).startswith(f"{src}: expected a regular file, got ")
    assert not (tmp_path / "sources" / "v1").exists()
