"""Definition assets in Dagster: one partitioned asset per active definition, built and verified in process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from feature_platform.orchestration.definition_assets import (
    DEFINITION_ASSETS,
    DEFINITION_VERSION,
    GROUP,
    definition_asset_key,
    definition_assets,
    definitions_job,
    published_asset_key,
)
from feature_platform.orchestration.partitions import ensure_partition
from tests.datasets.test_definitions_model import BASE, changed, write

REPO = Path(__file__).resolve().parents[2]
RUN_CONFIG_AS_OF = "2026-05-31"


def _run(directory: Path, instance: Any, paths: Any, warehouse: Path, version: str) -> dg.ExecuteInProcessResult:
    from feature_platform.definitions import resources

    assets, checks = definition_assets(directory)
    job = definitions_job("test_definitions_job")
    defs = dg.Definitions(assets=assets, asset_checks=checks, jobs=[job], resources=resources(paths=paths))
    ensure_partition(instance, version, DEFINITION_VERSION)
    config = {"ops": {a.node_def.name: {"config": {"warehouse": str(warehouse), "as_of": RUN_CONFIG_AS_OF}}
                      for a in assets if not a.key.path[-1].endswith("_published")}}
    return defs.resolve_job_def("test_definitions_job").execute_in_process(
        instance=instance, partition_key=version, run_config=config, raise_on_error=False)


def test_committed_active_definitions_are_assets() -> None:
    keys = {a.key for a in DEFINITION_ASSETS}
    assert definition_asset_key("purchases_90d") in keys
    assert definition_asset_key("fixed_window_by_product") not in keys  # a draft
    assert all(a.group_names_by_key[a.key] == GROUP for a in DEFINITION_ASSETS)


def test_materialize_partition_and_checks_pass(tmp_path: Path, instance: Any, paths: Any, warehouse: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    directory = tmp_path / "defs"
    directory.mkdir()
    monkeypatch.setenv("FP_DEFINITIONS_DIR", str(directory))
    write(directory, changed(status="active"))
    write(directory, changed(name="draft_def"), "draft_def.yaml")
    result = _run(directory, instance, paths, warehouse, "dv1")
    assert result.success
    key = definition_asset_key("demo_def")
    mats = [e.materialization for e in result.get_asset_materialization_events()]
    assert [m.asset_key for m in mats] == [key, published_asset_key("demo_def")]
    meta = mats[0].metadata
    assert meta["dagster/row_count"].value > 0
    assert "top_products AS (" in meta["sql"].value and meta["sql"].value.startswith("```sql")
    assert Path(meta["path"].value).is_file()
    evals = result.get_asset_check_evaluations()
    assert {e.check_name for e in evals} == {"sha256_matches", "feature_order_matches", "schema_valid",
                                              "size_within_limit", "published_copy_verifies"}
    assert all(e.passed for e in evals)
    assert (paths.datasets / "demo_def-dv1" / "manifest.json").is_file()
    # The publish path of the refresh graph: a catalog entry under the definition's name, same digest.
    from feature_platform.storage.catalog import Catalog

    entry = Catalog(paths.root / "catalog.sqlite").get("demo_def", "dv1")
    assert entry is not None and entry.manifest_digest == meta["manifest_digest"].value
    assert mats[1].metadata["manifest_digest"].value == meta["manifest_digest"].value


def test_bad_definition_fails_clearly_and_writes_nothing(tmp_path: Path, instance: Any, paths: Any,
                                                         warehouse: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = tmp_path / "defs"
    directory.mkdir()
    monkeypatch.setenv("FP_DEFINITIONS_DIR", str(directory))
    write(directory, changed(name="bad_def", status="active",
                             columns=[*BASE["columns"], {"table": "users", "column": "shoe_size"}]), "bad_def.yaml")
    (directory / "broken.yaml").write_text("name: broken\nstatus: [\n")
    with pytest.warns(UserWarning, match=r"broken\.yaml: not valid YAML"):
        assets, _ = definition_assets(directory)
    assert [a.key for a in assets] == [definition_asset_key("bad_def"), published_asset_key("bad_def")]
    (directory / "broken.yaml").unlink()
    result = _run(directory, instance, paths, warehouse, "dv-bad")
    assert not result.success
    assert not result.get_asset_materialization_events()
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = str(failure.step_failure_data.error.message) if failure.step_failure_data.error else ""
    assert "bad_def.yaml: field columns[7].column: expected a column of users" in message
    assert not (paths.datasets / "bad_def-dv-bad").exists()
    from feature_platform.storage.catalog import Catalog

    assert Catalog(paths.root / "catalog.sqlite").get("bad_def", "dv-bad") is None  # nothing published either
