"""The tensor dataset asset on an ephemeral Dagster instance: materialize, blocking checks, tamper."""


import json
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from feature_platform.datasets.tensor_verify import verify_tensor_dataset
from feature_platform.orchestration.resources import PlatformPaths
from feature_platform.orchestration.tensor_assets import (
    TENSOR_DATASET_VERSION,
    tensor_dataset,
    tensor_manifest_path,
    tensor_sanity_report,
)
from tests.conftest import offline_defs

TINY = {"ops": {"tensor_dataset": {"config": {"samples": 40, "T": 16, "H": 6, "chunk_samples": 10,
                                              "executor": "inline"}},
                "tensor_sanity_report": {"config": {"max_samples": 20}}}}
BUILD_ONLY = {"ops": {"tensor_dataset": TINY["ops"]["tensor_dataset"]}}
CHECKS = {"sha256_matches", "merkle_root_matches", "schema_valid", "values_finite", "size_within_limit"}

tensor_build_only_job = dg.define_asset_job("tensor_build_only_job", selection=dg.AssetSelection.assets(
    tensor_dataset).without_checks())
tensor_tamper_job = dg.define_asset_job(
    "tensor_tamper_job",
    selection=dg.AssetSelection.checks_for_assets(tensor_dataset) | dg.AssetSelection.assets(tensor_sanity_report),
)


@pytest.fixture(scope="module")
def defs(root: Path, paths: PlatformPaths) -> dg.Definitions:
    defs: dg.Definitions = offline_defs(root, paths, tensor_build_only_job, tensor_tamper_job)
    return defs


def _evaluations(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    return {e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data
            for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}


def _materialized(instance: dg.DagsterInstance, asset: str, partition: str) -> bool:
    return bool(instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition]), limit=1).records)


def _run(defs: dg.Definitions, instance: dg.DagsterInstance, job: str, version: str,
         run_config: dict[str, Any] | None = None) -> dg.ExecuteInProcessResult:
    if not instance.has_dynamic_partition(TENSOR_DATASET_VERSION, version):
        instance.add_dynamic_partitions(TENSOR_DATASET_VERSION, [version])
    return defs.resolve_job_def(job).execute_in_process(instance=instance, partition_key=version,
                                                        run_config=run_config or {}, raise_on_error=False)


def test_assets_checks_and_job_are_registered(defs: dg.Definitions) -> None:
    repo = defs.get_repository_def()
    for asset in ("tensor_dataset", "tensor_sanity_report"):
        node = repo.asset_graph.get(dg.AssetKey(asset))
        assert node.group_name == "tensor_datasets"
        assert isinstance(node.partitions_def, dg.DynamicPartitionsDefinition)
        assert node.partitions_def.name == TENSOR_DATASET_VERSION
    checks = {c.name: c.blocking for a in defs.asset_checks or [] for c in a.check_specs
              if c.asset_key == dg.AssetKey("tensor_dataset")}
    assert checks == dict.fromkeys(CHECKS, True)
    job = defs.resolve_job_def("tensor_dataset_job")
    assert {n.name for n in job.graph.node_defs} >= {"tensor_dataset", "tensor_sanity_report"}


def test_materialize_a_partition_checks_pass_report_follows(defs: dg.Definitions, instance: dg.DagsterInstance,
                                                            paths: PlatformPaths) -> None:
    result = _run(defs, instance, "tensor_dataset_job", "t1", TINY)
    assert result.success
    evaluations = _evaluations(result)
    assert set(evaluations) == CHECKS and all(e.passed for e in evaluations.values())
    manifest_path = tensor_manifest_path(paths, "t1")
    report = verify_tensor_dataset(manifest_path)
    assert report.ok
    (mat,) = result.asset_materializations_for_node("tensor_dataset")
    meta = mat.metadata
    manifest = json.loads(manifest_path.read_text())
    assert meta["manifest_digest"].value == report.manifest_digest
    assert meta["merkle_root"].value == manifest["merkle_root"]
    assert meta["dagster/row_count"].value == 40
    assert meta["compression_ratio"].value == {n: round(a["compression_ratio"], 4)
                                               for n, a in manifest["arrays"].items()}
    assert mat.tags is not None and mat.tags[TENSOR_DATASET_VERSION] == "t1"
    assert evaluations["values_finite"].metadata["manifest_digest"].value == report.manifest_digest
    (child,) = result.asset_materializations_for_node("tensor_sanity_report")
    assert child.metadata["samples_read"].value == 20
    assert "data:image/png;base64," in str(child.metadata["irf_grid"].value)


def test_default_seed_follows_the_partition_key(defs: dg.Definitions, instance: dg.DagsterInstance,
                                                 paths: PlatformPaths) -> None:
    roots: dict[str, set[str]] = {}
    for version in ("s1", "s2", "s1"):
        assert _run(defs, instance, "tensor_build_only_job", version, BUILD_ONLY).success
        manifest = json.loads(tensor_manifest_path(paths, version).read_text())
        roots.setdefault(version, set()).add(manifest["merkle_root"])
    assert len(roots["s1"]) == 1  # re-running a partition rebuilds the same bytes
    assert roots["s1"] != roots["s2"]


def test_tampered_chunk_fails_the_blocking_check_and_stops_the_report(defs: dg.Definitions,
                                                                       instance: dg.DagsterInstance,
                                                                       paths: PlatformPaths) -> None:
    assert _run(defs, instance, "tensor_build_only_job", "bad", BUILD_ONLY).success
    chunk = tensor_manifest_path(paths, "bad").parent / "data.zarr" / "irfs" / "c" / "1" / "0" / "0" / "0"
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    chunk.write_bytes(bytes(raw))
    result = _run(defs, instance, "tensor_tamper_job", "bad")
    assert not result.success
    evaluations = _evaluations(result)
    assert evaluations["sha256_matches"].passed is False
    assert evaluations["schema_valid"].passed is True
    failed = evaluations["sha256_matches"].metadata["failed"].value
    assert [f["target"] for f in failed if f["name"] == "file_sha256"] == ["data.zarr/irfs/c/1/0/0/0"]
    assert not _materialized(instance, "tensor_sanity_report", "bad")
