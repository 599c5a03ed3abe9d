"""The Feast repository as a plain Feast user sees it after a feature build: Feast's own CLI
(``feast plan/apply/materialize``) and ``FeatureStore(repo_path="feature_repo")``, with no variables set."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from feature_platform.contracts.feature_contract import FEATURE_ORDER
from feature_platform.contracts.provenance import parse_utc_timestamp
from feature_platform.datasets.build import BuildResult
from feature_platform.features.build import (
    FeatureBuild,
    FeatureBuildError,
    build_features,
    publish_latest,
    read_published,
    sha256_file,
)
from feature_platform.features.drift import load_repo_definitions
from feature_platform.features.layout import LatestPaths, features_dir, latest_paths
from tests.conftest import committed_feast_repo, git

PROJECT = Path(__file__).resolve().parents[2]
FEAST = Path(sys.executable).with_name("feast")
TS = pa.timestamp("us", tz="UTC")
T0 = datetime(2024, 1, 1, tzinfo=UTC)
CREATED = datetime(2024, 6, 1, tzinfo=UTC)
ENTITY = "entity_id"


def feast_cli(root: Path, *args: str, **env: str) -> str:
    """Feast's own CLI from the project directory ``root``, as a user runs it: no FP_* variables unless given."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FP_")}
    proc = subprocess.run(
        [str(FEAST), "-c", "feature_repo", *args], cwd=root, capture_output=True, text=True, timeout=300,
        env={**clean, "PYTHONPATH": str(PROJECT), "FEAST_USAGE": "False", **env},
    )
    assert proc.returncode == 0, f"feast {' '.join(args)}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def market_table(path: Path, base: float) -> Path:
    ts = [T0 + timedelta(hours=h) for h in range(24)]
    rows = [(a, t, base + i + k) for k, a in enumerate(("BTC", "ETH")) for i, t in enumerate(ts)]
    pq.write_table(pa.table({
        "asset": [r[0] for r in rows], "ts": pa.array([r[1] for r in rows], TS),
        "open": [r[2] for r in rows], "high": [r[2] + 1 for r in rows], "low": [r[2] - 1 for r in rows],
        "close": [r[2] + 0.5 for r in rows], "volume": [10.0 * r[2] for r in rows],
    }), path)
    return path


def latest_rows(offline: Path) -> dict[int, dict[str, Any]]:
    """The row Feast must serve per entity: the newest event timestamp, ties to the newest created."""
    best: dict[int, dict[str, Any]] = {}
    for row in pq.read_table(offline).to_pylist():
        key = row[ENTITY]
        if key not in best or (row["event_timestamp"], row["created"]) > (best[key]["event_timestamp"],
                                                                           best[key]["created"]):
            best[key] = row
    return best


def online_rows(store: Any, entities: list[int]) -> dict[str, list[Any]]:
    service = store.get_feature_service("training_v1")
    result: dict[str, list[Any]] = store.get_online_features(
        features=service, entity_rows=[{ENTITY: e} for e in entities]).to_dict()
    return result


def assert_serves(store: Any, expected: dict[int, dict[str, Any]]) -> None:
    entities = sorted(expected)
    online = online_rows(store, entities)
    assert online[ENTITY] == entities
    for name in FEATURE_ORDER:
        assert online[name] == [expected[e][name] for e in entities], name


def assert_untouched(out: Path, build: FeatureBuild) -> None:
    """A build's hashed per-version files are never written by publishing or by Feast's CLI."""
    for f in build.outputs:
        assert sha256_file(out / f.path) == f.sha256, f.path


def assert_plan_keeps(plan: str, latest: LatestPaths) -> None:
    """``feast plan`` creates and deletes nothing and its sources are the published files. (Feast 0.67 lists
    every materialized view as "Updated": it compares the registry's materialization intervals with the
    repo's objects, which have none.)"""
    assert not re.search(r"^(Created|Deleted) (project|entity|feature view|feature service|data source)", plan,
                         re.MULTILINE), plan
    assert set(re.findall(r'uri: "([^"]+)"', plan)) <= {str(latest.dataset), str(latest.market)}, plan
    assert "No changes to infrastructure" in plan or "Created sqlite table" in plan, plan


def online_row_count(latest: LatestPaths, view: str) -> int:
    with sqlite3.connect(latest.online_store) as conn:
        return int(conn.execute(f'SELECT count(*) FROM "feature_platform_{view}"').fetchone()[0])


# ------------------------------------------------------------------------------------------- layout


def test_repo_config_and_definitions_name_the_published_paths(monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    from feast.repo_config import load_repo_config

    repo = PROJECT / "feature_repo"
    latest = latest_paths(features_dir(PROJECT / "data"))
    config = load_repo_config(repo, repo / "feature_store.yaml")
    assert (repo / config.registry.path).resolve() == latest.registry.resolve()
    assert (repo / config.online_store.path).resolve() == latest.online_store.resolve()

    monkeypatch.delenv("FP_DATA_ROOT", raising=False)
    defs = load_repo_definitions(repo)
    assert defs.dataset_source.path == str(latest.dataset.resolve())
    assert defs.market_source.path == str(latest.market.resolve())
    assert defs.dataset_source.created_timestamp_column == "created"
    monkeypatch.setenv("FP_DATA_ROOT", str(tmp_path / "elsewhere"))
    moved = load_repo_definitions(repo)
    assert moved.dataset_source.path == str(latest_paths(features_dir(tmp_path / "elsewhere")).dataset)


# ------------------------------------------------------------------------------------------- as a Feast user


def test_feast_cli_and_feature_store_after_build(golden: BuildResult, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The project layout (feature_repo/ beside data/), nothing set: what `fp features build` leaves a user."""
    import feast

    monkeypatch.delenv("FP_DATA_ROOT", raising=False)
    root = tmp_path / "project"
    repo = committed_feast_repo(root)
    out = features_dir(root / "data")
    market = market_table(tmp_path / "ohlcv.parquet", 100.0)
    build = build_features(repo, golden.path / "data.parquet", "v1", out, market, git_ref="HEAD",
                           created_at=CREATED)
    latest = latest_paths(out)
    expected = latest_rows(out / build.view("dataset_features").path)
    assert len(expected) == build.row_counts["online:dataset_features"]
    published = read_published(out)
    assert published.dataset_version == "v1" and published.materialization_end == build.materialization_end
    assert published.feature_build_sha256 == sha256_file(out / published.feature_build)
    assert sorted(p.name for p in latest.dir.iterdir()) == [
        "dataset_features.parquet", "feature_store.yaml", "market_ohlcv.parquet", "online_store.db",
        "published.json", "registry.db"]
    # The published registry names the stable paths only: no staging path, no infrastructure record to tear down.
    assert b".tmp" not in latest.registry.read_bytes()

    # Straight after the build: FeatureStore(repo_path="feature_repo") from the project directory.
    monkeypatch.chdir(root)
    assert_serves(feast.FeatureStore(repo_path="feature_repo"), expected)

    # Feast's CLI agrees with what the build registered: the repo's objects read the published files.
    assert_plan_keeps(feast_cli(root, "plan"), latest)
    feast_cli(root, "apply")
    assert online_row_count(latest, "dataset_features") == len(expected) * len(FEATURE_ORDER)
    applied = feast.FeatureStore(repo_path="feature_repo").get_feature_view("dataset_features")
    assert applied.batch_source.path == str(latest.dataset)
    assert [(s.isoformat(), e.isoformat()) for s, e in applied.materialization_intervals] == [
        (parse_utc_timestamp(published.materialization_start).isoformat(),
         parse_utc_timestamp(published.materialization_end).isoformat())]

    # An emptied online store is reloaded by `feast materialize` over the published interval.
    with sqlite3.connect(latest.online_store) as conn:
        conn.execute('DELETE FROM "feature_platform_dataset_features"')
        conn.execute('DELETE FROM "feature_platform_market_ohlcv"')
    assert online_rows(feast.FeatureStore(repo_path="feature_repo"), [min(expected)])["ret_1m"] == [None]
    feast_cli(root, "materialize", published.materialization_start, published.materialization_end)
    store = feast.FeatureStore(repo_path="feature_repo")
    assert_serves(store, expected)
    btc = store.get_online_features(features=["market_ohlcv:close"], entity_rows=[{"asset": "BTC"}]).to_dict()
    assert btc["close"] == [100.0 + 23 + 0.5]

    # Nothing Feast wrote lands in the repository, so the next build's clean-repo check still passes.
    assert git(root, "status", "--porcelain", "--untracked-files=all") == ""
    assert_untouched(out, build)


def test_rebuild_republishes_and_another_data_root(golden: BuildResult, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """FP_DATA_ROOT away from the project: the build's absolute feature_store.yaml serves the newest build."""
    import feast

    shared = tmp_path / "shared"
    monkeypatch.setenv("FP_DATA_ROOT", str(shared))
    root = tmp_path / "project"
    repo = committed_feast_repo(root)
    out = features_dir(shared)
    latest = latest_paths(out)
    first = build_features(repo, golden.path / "data.parquet", "v1", out, market_table(tmp_path / "m.parquet", 5.0),
                           created_at=CREATED)
    table = pq.read_table(golden.path / "data.parquet")
    shifted = table.set_column(table.column_names.index("ret_1m"), "ret_1m",
                               pc.add(table.column("ret_1m"), pa.scalar(1.0, pa.float32())))
    pq.write_table(shifted, tmp_path / "v2.parquet")
    second = build_features(repo, tmp_path / "v2.parquet", "v2", out, None, created_at=CREATED + timedelta(days=1))
    expected = latest_rows(out / second.view("dataset_features").path)
    assert read_published(out).dataset_version == "v2"

    store = feast.FeatureStore(repo_path=str(repo), fs_yaml_file=latest.store_config)
    assert_serves(store, expected)
    assert all(v >= 0.5 for v in online_rows(store, sorted(expected))["ret_1m"])  # v2's shifted values
    # v2 had no market bars: the market view reads an empty table, never v1's stale bars.
    assert pq.read_table(latest.market).num_rows == 0
    btc = store.get_online_features(features=["market_ohlcv:close"], entity_rows=[{"asset": "BTC"}]).to_dict()
    assert btc["close"] == [None]
    assert_untouched(out, first)
    assert_untouched(out, second)

    assert_plan_keeps(feast_cli(root, "-f", str(latest.store_config), "plan", FP_DATA_ROOT=str(shared)), latest)

    # A publish that fails part-way (v1's online store is gone) leaves the served build whole.
    before = {p: sha256_file(p) for p in (latest.dataset, latest.registry, latest.online_store, latest.marker)}
    (out / first.output("feast/v1/online_store.db").path).unlink()
    defs = load_repo_definitions(repo)
    with pytest.raises(FeatureBuildError, match=r"latest: could not publish build 'v1'"):
        publish_latest(repo, out, first, defs.make_objects, T0, T0 + timedelta(days=1))
    assert {p: sha256_file(p) for p in before} == before and read_published(out).dataset_version == "v2"
    assert sorted(p.name for p in out.iterdir()) == ["feast", "latest", "offline"]  # no staging left behind


def test_published_marker_parsed_strictly(tmp_path: Path) -> None:
    latest = latest_paths(tmp_path)
    latest.dir.mkdir(parents=True)
    with pytest.raises(FeatureBuildError, match=r"published\.json: not a readable published feature build"):
        read_published(tmp_path)
    good = {"spec_version": "1", "dataset_version": "v1", "feature_build": "offline/v1/feature_build.json",
            "feature_build_sha256": "0" * 64, "materialization_start": "2024-01-01T00:00:00.000000Z",
            "materialization_end": "2024-01-02T00:00:00.000000Z", "published_at": "2024-01-02T00:00:00.000000Z"}
    for bad in ({**good, "feature_build_sha256": "0" * 32}, {**good, "extra": 1}, {**good, "spec_version": 1}):
        latest.marker.write_text(json.dumps(bad))
        with pytest.raises(FeatureBuildError, match=re.escape(str(latest.marker))):
            read_published(tmp_path)
    latest.marker.write_text(json.dumps(good))
    assert read_published(tmp_path).dataset_version == "v1"
