"""Tensor manifest (spec v1, format zarr): committed schema, validation, dispatch, Merkle root, config hash."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from feature_platform.contracts.manifest import DatasetManifest, ManifestError
from feature_platform.contracts.tensor_manifest import (
    TENSOR_SCHEMA_PATH,
    TensorDatasetManifest,
    merkle_root,
    parse_any_manifest,
    parse_tensor_manifest,
    tensor_json_schema,
    tensor_json_schema_text,
)
from feature_platform.datasets.build import BuildResult
from feature_platform.datasets.tensor_build import TensorBuildResult, build_tensor_dataset
from feature_platform.datasets.tensor_splits import TensorSplitSpec


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> TensorBuildResult:
    return build_tensor_dataset(tmp_path_factory.mktemp("tm"), "tm_ds", samples=50, seed=4, T=16, H=5,
                                chunk_samples=20, executor="inline", dataset_version="v1",
                                created_at="2026-01-02T03:04:05Z", notes="unit test")


@pytest.fixture
def raw(built: TensorBuildResult) -> dict[str, Any]:
    return copy.deepcopy(built.manifest.to_json_dict())


def test_committed_tensor_schema_matches_models() -> None:
    """Fails when someone edits the models without `fp contracts schema --write` (or vice versa)."""
    assert TENSOR_SCHEMA_PATH.read_text(encoding="utf-8") == tensor_json_schema_text()


def test_schema_is_draft_2020_12_and_lists_every_seed_field() -> None:
    schema = json.loads(TENSOR_SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert set(schema["required"]) >= {"spec_version", "format", "dataset_id", "dataset_version", "version",
                                       "created_at", "git_hash", "config_hash", "source", "simulators", "T", "H",
                                       "n_samples", "arrays", "metadata_files", "merkle_root", "splits", "rng_seeds",
                                       "compression", "limits", "notes"}
    defs = schema["$defs"]
    assert set(defs["SimulatorInfo"]["required"]) >= {"parameters", "shocks", "observables", "version"}
    assert set(defs["VariableInfo"]["required"]) >= {"name", "units", "lower", "upper"}
    assert set(defs["ChunkFile"]["required"]) == {"path", "start", "stop", "bytes", "sha256"}
    assert defs["ChunkFile"]["properties"]["sha256"]["pattern"] == "^[0-9a-f]{64}$"
    assert schema["properties"]["git_hash"]["pattern"] == "^([0-9a-f]{40}|unknown)$"
    assert "pattern" in schema["properties"]["version"]
    assert set(defs["TensorRngSeeds"]["required"]) == {"global_seed", "derivation"}


def test_real_manifest_is_valid_for_schema_and_model(built: TensorBuildResult, raw: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator(tensor_json_schema()).validate(raw)
    again = parse_tensor_manifest(json.loads(built.manifest_path.read_text()))
    assert again.digest() == built.digest == hashlib.sha256(again.canonical_bytes()).hexdigest()
    assert again.merkle_root == again.computed_merkle_root()
    assert raw["simulators"]["var"]["parameters"][0].keys() >= {"name", "units", "lower", "upper"}
    assert raw["rng_seeds"]["global_seed"] == 4 and "spawn_key" in raw["rng_seeds"]["derivation"]
    assert raw["notes"] == "unit test" and raw["T"] == 16 and raw["H"] == 5


def _set(raw: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node: Any = raw
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    if value is _DELETE:
        del node[last]
    else:
        node[int(last) if isinstance(node, list) else last] = value


_DELETE = object()
INVALID: dict[str, tuple[str, Any, str]] = {
    "bad git hash": ("git_hash", "abc123", "git_hash"),
    "bad version": ("version", "1.0", "version"),
    "missing T": ("T", _DELETE, "T"),
    "bad chunk sha256": ("arrays.theta.chunks.0.sha256", "A" * 64, "arrays.theta.chunks.0.sha256"),
    "wrong format": ("format", "parquet", "format"),
    "chunk gap": ("arrays.theta.chunks.1.start", 21, "arrays.theta"),
    "traversal path": ("arrays.theta.chunks.0.path", "data.zarr/../x", "arrays.theta.chunks.0.path"),
    "wrong ratio": ("arrays.irfs.compression_ratio", 9.0, "arrays.irfs"),
    "negative count": ("arrays.irfs.nan_count", -1, "arrays.irfs.nan_count"),
    "split counts": ("splits.counts.train", 0, "(root)"),
    "unknown field": ("extra", 1, "extra"),
    "bad keepbits": ("compression", {"lossy": "bitround", "keepbits": 40, "max_relative_error": 0.5}, "compression"),
}


@pytest.mark.parametrize("case", list(INVALID))
def test_invalid_manifests_are_rejected(raw: dict[str, Any], case: str) -> None:
    path, value, field = INVALID[case]
    _set(raw, path, value)
    with pytest.raises(ManifestError) as info:
        parse_tensor_manifest(raw, "x/manifest.json")
    message = str(info.value)
    assert message.startswith(f"x/manifest.json: field {field}") and "\n" not in message


@pytest.mark.parametrize("case", ["bad git hash", "bad version", "missing T", "bad chunk sha256", "wrong format",
                                  "unknown field", "bad keepbits"])
def test_json_schema_rejects_what_the_model_rejects(raw: dict[str, Any], case: str) -> None:
    path, value, _ = INVALID[case]
    _set(raw, path, value)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(tensor_json_schema()).validate(raw)


def test_parse_any_manifest_dispatches_on_format(golden: BuildResult, raw: dict[str, Any]) -> None:
    parquet = json.loads(golden.manifest_path.read_text())
    assert isinstance(parse_any_manifest(parquet), DatasetManifest)
    assert isinstance(parse_any_manifest(raw), TensorDatasetManifest)
    with pytest.raises(ManifestError, match="field format: expected 'zarr' or absent"):
        parse_any_manifest({**raw, "format": "hdf5"}, "m.json")


def _leaf(path: str, sha: str) -> bytes:
    return hashlib.sha256(b"\x00" + path.encode() + b"\x00" + bytes.fromhex(sha)).digest()


def test_merkle_root_definition() -> None:
    a, b, c = ("a", "11" * 32), ("b", "22" * 32), ("c", "33" * 32)
    la, lb, lc = _leaf(*a), _leaf(*b), _leaf(*c)
    node = hashlib.sha256(b"\x01" + la + lb).digest()
    assert merkle_root([a]) == la.hex()
    assert merkle_root([b, a]) == node.hex()  # leaves sorted by path
    assert merkle_root([c, a, b]) == hashlib.sha256(b"\x01" + node + lc).hexdigest()  # odd node promoted
    assert merkle_root([a, b, c]) != merkle_root([a, b, c, ("d", c[1])])
    assert merkle_root([("a", b[1]), ("b", a[1])]) != merkle_root([a, b])  # paths are bound to their hashes
    with pytest.raises(ValueError):
        merkle_root([])
    with pytest.raises(ValueError):
        merkle_root([a, a])


def _config_hash(tmp: Path, name: str, **overrides: Any) -> str:
    args: dict[str, Any] = {"samples": 30, "seed": 4, "T": 16, "H": 5, "chunk_samples": 20, "executor": "inline"}
    args.update(overrides)
    return build_tensor_dataset(tmp, name, **args).manifest.config_hash


def test_config_hash_is_deterministic_and_unique(built: TensorBuildResult, tmp_path: Path) -> None:
    base = _config_hash(tmp_path, "a")
    assert _config_hash(tmp_path, "b") == base  # same config, another id, another time
    variants = {
        "seed": _config_hash(tmp_path, "c", seed=5),
        "samples": _config_hash(tmp_path, "d", samples=31),
        "T": _config_hash(tmp_path, "e", T=17),
        "chunk": _config_hash(tmp_path, "f", chunk_samples=10),
        "simulator": _config_hash(tmp_path, "g", simulator="regime_switching"),
        "splits": _config_hash(tmp_path, "h", splits=TensorSplitSpec.extrapolation_slice("rho")),
        "bitround": _config_hash(tmp_path, "i", bitround_keepbits=10),
    }
    assert base not in variants.values() and len(set(variants.values())) == len(variants)
