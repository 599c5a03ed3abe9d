"""Hostile manifests: mutated fields, column roles bound to the contract, unbounded reads, and the pydantic
models agreeing with the committed JSON Schemas (hypothesis mutations plus a hand list).

Agreement: the standard Draft 2020-12 validator never accepts what a model refuses on type, shape or
pattern grounds, and ``strict_validator`` (the schema with JSON's own meaning of integer and ``$``)
gives exactly the model's verdict, except where the model applies a rule a schema cannot state:
cross-field consistency and real calendar dates, which pydantic reports as ``value_error``.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from pydantic import BaseModel, ValidationError

from feature_platform.contracts.manifest import (
    DatasetManifest,
    ManifestError,
    json_schema,
    load_manifest,
    parse_manifest,
)
from feature_platform.contracts.model_manifest import ModelManifest, model_json_schema
from feature_platform.contracts.schema_check import strict_validator
from feature_platform.contracts.tensor_manifest import TensorDatasetManifest, tensor_json_schema
from feature_platform.datasets.build import BuildResult
from feature_platform.datasets.tensor_build import TensorBuildResult, build_tensor_dataset
from feature_platform.datasets.tensor_verify import verify_tensor_dataset
from feature_platform.datasets.verify import VerifyReport, verify_dataset
from feature_platform.training.data import TrainingRefused, load_splits
from tests import tamper
from tests.conftest import CliResult

SHA = "ab" * 32


def one_line(text: str) -> str:
    assert "Traceback" not in text, text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


@pytest.fixture(scope="module")
def tensor_built(tmp_path_factory: pytest.TempPathFactory) -> TensorBuildResult:
    return build_tensor_dataset(tmp_path_factory.mktemp("hostile_tm"), "tm_ds", samples=30, seed=4, T=8, H=3,
                                chunk_samples=15, executor="inline", dataset_version="v1",
                                created_at="2026-01-02T03:04:05Z", notes="hostile")


def model_manifest_raw() -> dict[str, Any]:
    artifact = {"path": "model.onnx", "sha256": SHA, "bytes": 10}
    return {"spec_version": "1", "model_id": "m-1", "model_key": "market_regime", "training_id": "t1",
            "created_at": "2026-01-02T03:04:05.123456Z", "algorithm": "sklearn.HistGradientBoostingClassifier",
            "dataset_id": "ds", "dataset_version": "v1", "dataset_manifest_digest": SHA,
            "dataset_manifest_path": "/data/ds/manifest.json", "feature_order": ["ret_1m"], "label_column": "label",
            "label_classes": [0, 1, 2],
            "onnx": {**artifact, "opset": 17, "parity_tolerance": 1e-4, "parity_max_abs_diff": 0.0},
            "reference": {**artifact, "path": "reference.parquet", "rows": 5},
            "hyperparameters": {"max_iter": 5}, "hyperparameters_sha256": SHA, "hyperparam_profile": None,
            "seed": 0, "code_git_sha": "unknown", "feature_build": None, "market_snapshot": None,
            "metrics": {"test_sharpe": 1.5}, "mlflow_run_id": None}


def _model_verdict(model: type[BaseModel], raw: Any) -> list[dict[str, Any]]:
    """[] when the model accepts ``raw``, else its errors."""
    try:
        if model is DatasetManifest:
            parse_manifest(raw)  # the production entry point (by alias only)
            return []
        model.model_validate(raw)
        return []
    except ManifestError:
        try:
            DatasetManifest.model_validate(raw, by_alias=True, by_name=False)
        except ValidationError as exc:
            return list(exc.errors())
        raise AssertionError("parse_manifest refused what the model accepts") from None
    except ValidationError as exc:
        return list(exc.errors())


# ------------------------------------------------------------------------------------------ mutations

HOSTILE: list[Any] = ["5000", 5000.0, 5000.5, True, False, None, "", "false", "true", [], {}, -1, 0, 1, 2**70,
                      "x" * 300, "2026-13-45T99:99:99Z", "2026-02-30T00:00:00Z", SHA + "\n", SHA.upper(), "../x",
                      "v1\n", 1.0, [None], {"": None}, "schema", "columns"]
RENAMES = ["columns", "schema", "format", "Row_Count", "", "extra"]


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            out += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            out += _paths(child, (*prefix, i))
    return out


def _parent(doc: Any, path: tuple[Any, ...]) -> Any:
    for step in path[:-1]:
        doc = doc[step]
    return doc


def mutate(doc: dict[str, Any], path: tuple[Any, ...], op: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    if not path:
        return {**doc, "surprise": value} if op == "add" else doc
    parent, key = _parent(doc, path), path[-1]
    if op == "replace":
        parent[key] = value
    elif op == "delete":
        del parent[key]
    elif op == "add" and isinstance(parent[key], dict):
        parent[key]["surprise"] = value
    elif op == "add" and isinstance(parent[key], list):
        parent[key].append(value)
    elif op == "rename" and isinstance(parent, dict):
        new = RENAMES[hash(str(value)) % len(RENAMES)]
        if new not in parent:
            parent[new] = parent.pop(key)
    elif op == "wrap":
        parent[key] = [parent[key]]
    return doc


@st.composite
def mutations(draw: st.DrawFn, doc: dict[str, Any]) -> dict[str, Any]:
    paths = _paths(doc)
    for _ in range(draw(st.integers(1, 2))):
        path = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(["replace", "replace", "replace", "delete", "add", "rename", "wrap"]))
        value = draw(st.sampled_from(HOSTILE) | st.integers() | st.text(max_size=12)
                     | st.floats(allow_nan=False, allow_infinity=False))
        doc = mutate(doc, path, op, value)
        paths = _paths(doc)
    return doc


def assert_agree(model: type[BaseModel], schema: dict[str, Any], raw: Any, tally: dict[str, int]) -> None:
    errors = _model_verdict(model, raw)
    standard = Draft202012Validator(schema).is_valid(raw)
    strict = strict_validator(schema).is_valid(raw)
    if not standard:
        assert errors, f"the committed schema refuses but {model.__name__} accepts: {json.dumps(raw)[:500]}"
    if not strict:
        assert errors, f"the strict schema refuses but {model.__name__} accepts: {json.dumps(raw)[:500]}"
    if strict and errors:  # only rules a schema cannot state
        assert {e["type"] for e in errors} == {"value_error"}, errors
        tally["semantic"] += 1
    tally["accepted" if not errors else "refused"] += 1


HYPOTHESIS = settings(max_examples=150, deadline=None, derandomize=True,
                      suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                             HealthCheck.data_too_large])


def test_dataset_manifest_model_agrees_with_its_schema_on_mutations(golden: BuildResult) -> None:
    base = json.loads(golden.manifest_path.read_text())
    schema, tally = json_schema(), {"accepted": 0, "refused": 0, "semantic": 0}
    assert_agree(DatasetManifest, schema, base, tally)
    assert tally["accepted"] == 1

    @HYPOTHESIS
    @given(mutations(base))
    def check(raw: dict[str, Any]) -> None:
        assert_agree(DatasetManifest, schema, raw, tally)

    check()
    assert tally["refused"] > 50  # the mutations did bite


def test_tensor_manifest_model_agrees_with_its_schema_on_mutations(tensor_built: TensorBuildResult) -> None:
    base = tensor_built.manifest.to_json_dict()
    schema, tally = tensor_json_schema(), {"accepted": 0, "refused": 0, "semantic": 0}
    assert_agree(TensorDatasetManifest, schema, base, tally)

    @HYPOTHESIS
    @given(mutations(base))
    def check(raw: dict[str, Any]) -> None:
        assert_agree(TensorDatasetManifest, schema, raw, tally)

    check()
    assert tally["refused"] > 50


def test_model_manifest_model_agrees_with_its_schema_on_mutations() -> None:
    base = model_manifest_raw()
    schema, tally = model_json_schema(), {"accepted": 0, "refused": 0, "semantic": 0}
    assert_agree(ModelManifest, schema, base, tally)
    assert tally["accepted"] == 1

    @HYPOTHESIS
    @given(mutations(base))
    def check(raw: dict[str, Any]) -> None:
        assert_agree(ModelManifest, schema, raw, tally)

    check()
    assert tally["refused"] > 50


# (field path, hostile value, the model's error names this field, does the strict schema refuse it too)
HAND: list[tuple[str, Any, bool]] = [
    ("row_count", "5000", True), ("row_count", 5000.0, True), ("row_count", True, True), ("row_count", -1, True),
    ("row_count", None, True), ("spec_version", 1, True), ("spec_version", "2", True),
    ("schema.0.nullable", "false", True), ("schema.0.nullable", 0, True), ("files.0.bytes", 1.0, True),
    ("files.0.rows", "12", True), ("files.0.sha256", SHA.upper(), True), ("files.0.sha256", SHA + "\n", True),
    ("files.0.format", "csv", True), ("label_column", 5, True), ("entity_column", None, True),
    ("created_at", "2026-13-45T99:99:99Z", True), ("created_at", "2026-01-01T00:00:00", True),
    ("created_at", "2026-01-01 00:00:00Z", True), ("created_at", "2026-02-30T00:00:00Z", False),
    ("created_at", "2025-02-29T12:00:00Z", False), ("dataset_id", "../x", True), ("dataset_id", "x\n", True),
    ("git_hash", "HEAD", True), ("limits.max_bytes", 2**40, True), ("limits.max_bytes", 0, True),
    ("limits.max_bytes", "1", True), ("rng_seeds.global_seed", -1, True), ("rng_seeds.batch_rows", 1.5, True),
    ("splits.algorithm", "random", True), ("splits.salt", 7, True), ("splits.fractions.train", "0.8", True),
    ("splits.rows.train", 1.0, True), ("source.kind", "Synthetic", True), ("files", [], True),
    ("feature_order", "ret_1m", True), ("schema.0.name", "label", False),
]


def _set_path(raw: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node: Any = raw
    for step in parents:
        node = node[int(step)] if isinstance(node, list) else node[step]
    node[int(last) if isinstance(node, list) else last] = value


@pytest.mark.parametrize(("field", "value", "schema_refuses"), HAND, ids=[f"{f}={v!r}" for f, v, _ in HAND])
def test_hand_mutations_are_refused_on_one_line_naming_the_field(golden: BuildResult, field: str, value: Any,
                                                                   schema_refuses: bool) -> None:
    raw = json.loads(golden.manifest_path.read_text())
    _set_path(raw, field, value)
    with pytest.raises(ManifestError) as info:
        parse_manifest(raw, "ds/manifest.json")
    message = one_line(str(info.value))
    assert message.startswith("ds/manifest.json: field "), message
    if schema_refuses:  # a type/shape/pattern error names the field itself (a split's fields after its variant)
        named = message.replace("field splits.entity_hash.", "field splits.")
        assert named.startswith(f"ds/manifest.json: field {field}"), message
    assert strict_validator(json_schema()).is_valid(raw) is not schema_refuses
    # the standard validator's two known loosenesses: an integral float is an integer, `$` before a final newline
    loose = (isinstance(value, float) and value.is_integer()) or (isinstance(value, str) and value.endswith("\n"))
    assert Draft202012Validator(json_schema()).is_valid(raw) is (not schema_refuses or loose)


def test_the_python_field_name_is_not_an_alias_for_the_manifest_field(golden: BuildResult) -> None:
    raw = json.loads(golden.manifest_path.read_text())
    raw["columns"] = raw.pop("schema")
    with pytest.raises(ManifestError, match="field schema: Field required"):
        parse_manifest(raw)
    assert not strict_validator(json_schema()).is_valid(raw)


def test_lossless_compression_is_the_boolean_true_not_one(tensor_built: TensorBuildResult) -> None:
    raw = tensor_built.manifest.to_json_dict()
    for value in (1, 1.0, "true"):
        raw["compression"] = {"lossless": value}
        assert _model_verdict(TensorDatasetManifest, raw)
        assert not strict_validator(tensor_json_schema()).is_valid(raw)
        assert not Draft202012Validator(tensor_json_schema()).is_valid(raw)


# ----------------------------------------------------------------------------------------- column roles

ROLE_CASES: list[tuple[str, Any]] = [
    ("label_column", "ret_1m"), ("label_column", None), ("label_column", "entity_id"),
    ("entity_column", "event_timestamp"), ("entity_column", "label"), ("entity_column", "ret_5m"),
    ("timestamp_column", "entity_id"), ("timestamp_column", "label"), ("timestamp_column", "vol_1h"),
]


def _roles_failed(report: VerifyReport) -> dict[str, Any]:
    return {c.target: c.actual for c in report.failures if c.name == "column_roles"}


@pytest.mark.parametrize(("role", "value"), ROLE_CASES, ids=[f"{r}={v}" for r, v in ROLE_CASES])
def test_verify_binds_each_column_role_to_the_contract(dataset: Path, role: str, value: Any) -> None:
    tamper.set_field(role, value)(dataset)
    report = verify_dataset(dataset / "manifest.json", dataset.parent)
    assert not report.ok
    assert {c.name for c in report.failures} == {"column_roles"}
    assert _roles_failed(report) == {role: value}
    line = next(c.line() for c in report.failures)
    assert line.startswith(f"FAIL column_roles[{role}]: expected ") and "\n" not in line


def test_all_roles_pass_on_an_intact_dataset(dataset: Path) -> None:
    report = verify_dataset(dataset / "manifest.json", dataset.parent)
    roles = {c.target: (c.passed, c.actual) for c in report.checks if c.name == "column_roles"}
    assert roles == {"entity_column": (True, "entity_id"), "timestamp_column": (True, "event_timestamp"),
                     "label_column": (True, "label")}


def test_training_refuses_a_dataset_whose_label_role_points_elsewhere(dataset: Path) -> None:
    tamper.set_field("label_column", "ret_1m")(dataset)
    with pytest.raises(TrainingRefused) as info:
        load_splits(dataset / "manifest.json", dataset.parent)
    assert "column_roles[label_column]: expected 'label', got 'ret_1m'" in str(info.value)


def test_verify_cli_names_the_role(dataset: Path, cli: Callable[..., CliResult]) -> None:
    tamper.set_field("entity_column", "label")(dataset)
    code, out, err = cli("dataset", "verify", "--path", dataset / "manifest.json", "--base-dir", dataset.parent)
    assert code == 1 and "Traceback" not in out + err
    assert "FAIL column_roles[entity_column]: expected 'entity_id', actual 'label'" in out
    assert "failed: column_roles at entity_column" in out


# -------------------------------------------------------------------------------------- unbounded reads


def _replace_manifest(dataset: Path, how: str) -> Path:
    path = dataset / "manifest.json"
    text = path.read_text()
    path.unlink()
    if how == "dev_zero":
        path.symlink_to("/dev/zero")
    elif how == "fifo":
        os.mkfifo(path)
    elif how == "deep":
        path.write_text("[" * 200_000)
    elif how == "duplicate_key":
        path.write_text(text.replace('"row_count":', '"row_count": 1, "row_count":', 1))
    elif how == "nan":
        path.write_text(text.replace('"row_count": ', '"row_count": NaN, "x": ', 1))
    elif how == "huge":
        with open(path, "wb") as f:
            f.truncate(16 * 1024 * 1024 + 1)
    elif how == "directory":
        path.mkdir()
    return path


READ_CASES = [("dev_zero", "manifest_exists"), ("fifo", "manifest_exists"), ("huge", "manifest_exists"),
              ("directory", "manifest_exists"), ("deep", "manifest_parses"), ("duplicate_key", "manifest_parses"),
              ("nan", "manifest_parses")]


@pytest.mark.parametrize(("how", "check"), READ_CASES, ids=[h for h, _ in READ_CASES])
def test_verify_fails_closed_on_unreadable_manifests(dataset: Path, how: str, check: str) -> None:
    path = _replace_manifest(dataset, how)
    report = verify_dataset(path, dataset.parent)
    assert {c.name for c in report.failures} == {check}
    assert all(c.name != "verify_completed" for c in report.checks)
    tensor = verify_tensor_dataset(path, dataset.parent)
    assert check in {c.name for c in tensor.failures}
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    assert one_line(str(info.value)).startswith(f"{path}: ")


@pytest.mark.parametrize("how", ["fifo", "dev_zero"])
def test_dataset_commands_do_not_hang_on_a_fifo_or_device_manifest(dataset: Path, how: str) -> None:
    """`fp dataset verify` and `fp dataset report` as real processes; the timeout only guards the suite."""
    path = _replace_manifest(dataset, how)
    for command in (["verify", "--path", str(path)], ["report", "--path", str(path), "--out", str(dataset.parent)]):
        done = subprocess.run([sys.executable, "-m", "feature_platform.cli", "dataset", *command],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 1, done.stderr
        assert "Traceback" not in done.stdout + done.stderr
        assert "manifest_exists" in done.stdout + done.stderr
