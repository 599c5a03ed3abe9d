from __future__ import annotations

import json
import math
from pathlib import Path

import jsonschema
import pytest
import yaml

from feature_platform.contracts.canonical import canonical_json, digest
from feature_platform.contracts.feature_contract import (
    FEATURE_ORDER,
    ContractError,
    load_feature_contract,
)
from feature_platform.contracts.manifest import (
    SCHEMA_PATH,
    DatasetManifest,
    ManifestError,
    json_schema,
    json_schema_text,
    parse_manifest,
)
from feature_platform.datasets.build import BuildResult

REPO = Path(__file__).resolve().parents[2]


def test_canonical_json_sorts_keys_and_drops_whitespace() -> None:
    assert canonical_json({"b": 1, "a": [1, {"d": 2, "c": "é"}]}) == '{"a":[1,{"c":"é","d":2}],"b":1}'.encode()


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_canonical_json_refuses_non_finite_numbers(value: float) -> None:
    with pytest.raises(ValueError):
        canonical_json({"x": value})


def test_digest_is_independent_of_key_order() -> None:
    assert digest({"a": 1, "b": 2}) == digest({"b": 2, "a": 1})
    assert digest({"a": 1}) != digest({"a": 2})


def test_feature_order_comes_from_the_contract_file() -> None:
    raw = yaml.safe_load((REPO / "feature_repo" / "feature_contract.yaml").read_text())
    assert tuple(f["name"] for f in raw["features"]) == FEATURE_ORDER
    assert len(FEATURE_ORDER) >= 32
    assert len(set(FEATURE_ORDER)) == len(FEATURE_ORDER)


def test_contract_columns_in_file_order() -> None:
    contract = load_feature_contract()
    names = [c.name for c in contract.columns]
    assert names == ["entity_id", "event_timestamp", *FEATURE_ORDER, "label"]
    assert contract.arrow_schema().names == names


def test_contract_env_override_and_errors_name_file_and_field(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    raw = yaml.safe_load((REPO / "feature_repo" / "feature_contract.yaml").read_text())
    raw["features"][1]["type"] = "float128"
    bad = tmp_path / "bad_contract.yaml"
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(ContractError, match=r"bad_contract\.yaml: field features\.1.*float128"):
        load_feature_contract(bad)
    raw["features"][1]["type"] = "float32"
    raw["features"][2]["name"] = raw["features"][0]["name"]
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(ContractError, match="repeated"):
        load_feature_contract(bad)
    good = tmp_path / "good.yaml"
    raw["features"] = raw["features"][:3]
    raw["features"][2]["name"] = "custom"
    good.write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("FP_FEATURE_CONTRACT", str(good))
    assert load_feature_contract().feature_order == ("ret_1m", "ret_5m", "custom")


def test_missing_contract_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match=r"nope\.yaml: cannot read"):
        load_feature_contract(tmp_path / "nope.yaml")


def test_committed_json_schema_matches_models() -> None:
    """Fails when someone edits the models without `fp contracts schema --write` (or vice versa)."""
    assert SCHEMA_PATH.read_text(encoding="utf-8") == json_schema_text()


def test_json_schema_is_valid_draft_2020_12_and_lists_every_design_field() -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    required = set(schema["required"])
    for field in ["spec_version", "dataset_id", "dataset_version", "created_at", "git_hash", "config_hash",
                  "source", "files", "schema", "feature_order", "entity_column", "timestamp_column",
                  "label_column", "row_count", "splits", "rng_seeds", "limits"]:
        assert field in required
    file_fields = schema["$defs"]["DataFile"]["required"]
    assert set(file_fields) == {"path", "format", "bytes", "rows", "sha256"}
    assert schema["$defs"]["Source"]["required"] == ["kind", "parameters", "source_hash"]


def test_json_schema_and_models_agree_on_a_real_manifest(golden: BuildResult) -> None:
    raw = json.loads(golden.manifest_path.read_text())
    validator = jsonschema.Draft202012Validator(json_schema())
    validator.validate(raw)
    parse_manifest(raw)
    for field, value in [("spec_version", "2"), ("row_count", -1), ("dataset_id", "../x"),
                         ("git_hash", "xyz"), ("created_at", "2024-01-01 00:00:00"), ("config_hash", "ab")]:
        broken = {**raw, field: value}
        assert not validator.is_valid(broken), field
        with pytest.raises(ManifestError, match=field):
            parse_manifest(broken)
    extra = {**raw, "surprise": 1}
    assert not validator.is_valid(extra)
    with pytest.raises(ManifestError, match="surprise"):
        parse_manifest(extra)


def test_manifest_digest_survives_reserialisation(golden: BuildResult) -> None:
    text = golden.manifest_path.read_text()
    once = DatasetManifest.model_validate_json(text)
    twice = DatasetManifest.model_validate_json(once.dumps())
    assert once.digest() == twice.digest() == golden.digest
    assert json.loads(once.canonical_bytes()) == json.loads(text)
    assert once.dumps() == text


def test_manifest_error_is_one_line_naming_file_and_field(golden: BuildResult) -> None:
    raw = json.loads(golden.manifest_path.read_text())
    raw["files"][0]["sha256"] = "not-a-hash"
    with pytest.raises(ManifestError) as info:
        parse_manifest(raw, "x/manifest.json")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("x/manifest.json: field files.0.sha256:")
    assert "not-a-hash" in message


def test_committed_model_manifest_schema_matches_models() -> None:
    from feature_platform.contracts.model_manifest import MODEL_SCHEMA_PATH, model_json_schema_text

    assert MODEL_SCHEMA_PATH.read_text(encoding="utf-8") == model_json_schema_text()
    schema = json.loads(MODEL_SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    for field in ["model_id", "dataset_id", "dataset_manifest_digest", "feature_order", "onnx",
                  "hyperparameters", "hyperparameters_sha256", "code_git_sha", "feature_build", "metrics",
                  "mlflow_run_id"]:
        assert field in schema["required"]
