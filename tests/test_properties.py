"""Property-based tests: verify never crashes, whatever the manifest holds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feature_platform.contracts.manifest import DatasetManifest
from feature_platform.datasets.build import BuildResult
from feature_platform.datasets.verify import verify_dataset

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _verify_raw(tmp_path: Path, golden: BuildResult, raw: Any) -> None:
    dataset = tmp_path / "datasets" / "golden_ds"
    if dataset.exists():
        shutil.rmtree(dataset)
    shutil.copytree(golden.path, dataset)
    (dataset / "manifest.json").write_text(json.dumps(raw))
    report = verify_dataset(dataset / "manifest.json", dataset.parent)
    assert "verify_completed" not in {c.name for c in report.checks}, report.failures
    assert report.checks and isinstance(report.ok, bool)
    json.dumps(report.to_json_dict())  # the report itself is always serialisable


@SETTINGS
@given(raw=json_values)
def test_arbitrary_json_never_crashes_verify(tmp_path: Path, golden: BuildResult, raw: Any) -> None:
    _verify_raw(tmp_path, golden, raw)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


@SETTINGS
@given(data=st.data())
def test_mutated_manifest_never_crashes_verify(tmp_path: Path, golden: BuildResult, data: st.DataObject) -> None:
    raw = json.loads(golden.manifest_path.read_text())
    path = data.draw(st.sampled_from(_paths(raw)))
    node = raw
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = data.draw(json_values)
    _verify_raw(tmp_path, golden, raw)


@SETTINGS
@given(data=st.data())
def test_manifest_digest_is_stable_under_reserialisation(golden: BuildResult, data: st.DataObject) -> None:
    raw = json.loads(golden.manifest_path.read_text())
    raw["source"]["parameters"]["note"] = data.draw(json_values)
    manifest = DatasetManifest.model_validate(raw)
    again = DatasetManifest.model_validate_json(manifest.dumps())
    assert again.digest() == manifest.digest()
    assert DatasetManifest.model_validate_json(manifest.canonical_bytes()).digest() == manifest.digest()
