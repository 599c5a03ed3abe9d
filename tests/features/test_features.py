"""Feature builds (Feast repo pinned by git sha), contract drift, and point-in-time joins."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feature_platform.contracts.feature_contract import FEATURE_ORDER, load_feature_contract
from feature_platform.datasets.build import BuildResult
from feature_platform.features.build import (
    FeatureBuild,
    FeatureBuildError,
    FeatureDriftError,
    build_features,
    check_drift,
    feature_build_path,
    sha256_file,
    store_config,
)
from feature_platform.features.drift import contract_drift, feature_view_fields
from feature_platform.features.pit import PointInTimeError, point_in_time_join
from tests.conftest import committed_feast_repo, git

PROJECT = Path(__file__).resolve().parents[2]
FEATURE_REPO = PROJECT / "feature_repo"
TS = pa.timestamp("us", tz="UTC")
T0 = datetime(2024, 1, 1, tzinfo=UTC)

# ---------------------------------------------------------------------------------------------- drift


def _contract_fields() -> list[tuple[str, str]]:
    return [(c.name, c.type) for c in load_feature_contract().features]


def test_feature_view_generated_from_contract_has_no_drift() -> None:
    fields = feature_view_fields(FEATURE_REPO, "dataset_features")
    assert [n for n, _ in fields] == list(FEATURE_ORDER)
    assert fields == _contract_fields()
    report = check_drift(FEATURE_REPO)
    assert report.ok and report.diff_text == ""


def test_drift_missing_feature() -> None:
    fields = [f for f in _contract_fields() if f[0] != "rsi_14"]
    r = contract_drift(load_feature_contract(), fields, view_name="feast:dataset_features")
    assert not r.ok and r.missing == ("rsi_14",) and not (r.extra or r.retyped or r.reordered)
    assert "missing: rsi_14" in r.diff_text and "-rsi_14: float32" in r.diff_text
    assert "+++ feast:dataset_features" in r.diff_text


def test_drift_extra_feature() -> None:
    r = contract_drift(load_feature_contract(), [*_contract_fields(), ("surprise", "float64")])
    assert not r.ok and r.extra == ("surprise",) and not (r.missing or r.retyped or r.reordered)
    assert "+surprise: float64" in r.diff_text


def test_drift_retyped_feature() -> None:
    fields = [(n, "float64" if n == "macd" else t) for n, t in _contract_fields()]
    r = contract_drift(load_feature_contract(), fields)
    assert not r.ok and r.retyped == (("macd", "float32", "float64"),)
    assert "retyped: macd: contract float32, feast float64" in r.diff_text
    assert "-macd: float32" in r.diff_text and "+macd: float64" in r.diff_text


def test_drift_reordered_feature() -> None:
    fields = _contract_fields()
    fields.insert(0, fields.pop(fields.index(("corr_btc_1d", "float32"))))
    r = contract_drift(load_feature_contract(), fields)
    assert not r.ok and r.reordered == ("corr_btc_1d",) and not (r.missing or r.extra or r.retyped)
    assert "reordered: corr_btc_1d" in r.diff_text


# ---------------------------------------------------------------------------------------------- build


@pytest.fixture
def feast_repo(tmp_path: Path) -> Path:
    """A copy of feature_repo/ committed into a fresh git repository (the real tree may be dirty)."""
    return committed_feast_repo(tmp_path / "repo")


def _market(path: Path) -> Path:
    ts = [T0 + timedelta(hours=h) for h in range(48)]
    rows = [(a, t, 100.0 + i) for a in ("BTC", "ETH") for i, t in enumerate(ts)]
    table = pa.table({
        "asset": [r[0] for r in rows], "ts": pa.array([r[1] for r in rows], TS),
        "open": [r[2] for r in rows], "high": [r[2] + 1 for r in rows], "low": [r[2] - 1 for r in rows],
        "close": [r[2] + 0.5 for r in rows], "volume": [10.0 * r[2] for r in rows],
    })
    pq.write_table(table, path)
    return path


def test_build_features_end_to_end(feast_repo: Path, golden: BuildResult, tmp_path: Path) -> None:
    dataset = golden.path / "data.parquet"
    market = _market(tmp_path / "ohlcv.parquet")
    out = tmp_path / "features"
    sha = git(feast_repo.parent, "rev-parse", "HEAD")
    build = build_features(feast_repo, dataset, "v1", out, market, git_ref="HEAD")

    assert build.feast_repo_sha == sha and not build.feast_repo_dirty
    assert build.feast_repo_tree_sha == git(feast_repo.parent, "rev-parse", "HEAD:feature_repo")
    assert build.dataset_version == "v1" and build.feature_service == "training_v1"
    assert build.materialized_at.endswith("Z")
    recorded = FeatureBuild.model_validate_json(feature_build_path(out, "v1").read_text())
    assert recorded == build
    raw = json.loads(feature_build_path(out, "v1").read_text())
    assert {"feast_repo_sha", "feast_repo_tree_sha", "dataset_version", "materialized_at", "row_counts",
            "outputs", "feast_version"} <= set(raw)
    for f in build.outputs:
        assert sha256_file(out / f.path) == f.sha256 and (out / f.path).stat().st_size == f.bytes
    assert {f.path for f in build.outputs} >= {
        "offline/v1/dataset_features.parquet", "offline/v1/market_ohlcv.parquet",
        "feast/v1/online_store.db", "feast/v1/registry.db",
    }
    assert build.dataset_sha256 == sha256_file(dataset) and build.market_sha256 == sha256_file(market)

    offline = pq.read_table(out / "offline/v1/dataset_features.parquet")
    assert offline.column_names == ["entity_id", "event_timestamp", *FEATURE_ORDER, "created"]
    assert build.row_counts["dataset_features"] == offline.num_rows == golden.manifest.row_count
    assert build.row_counts["market_ohlcv"] == 96 and build.row_counts["online:market_ohlcv"] == 2
    assert build.row_counts["online:dataset_features"] == len(pc.unique(offline.column("entity_id")))

    # The online store serves the latest row of an entity.
    import feast

    store = feast.FeatureStore(config=store_config(feast_repo, out / "feast/v1/registry.db",
                                                   out / "feast/v1/online_store.db"))
    rows = offline.to_pylist()
    entity = rows[-1]["entity_id"]
    latest = max((r for r in rows if r["entity_id"] == entity), key=lambda r: r["event_timestamp"])
    online = store.get_online_features(
        features=["dataset_features:ret_1m", "dataset_features:rsi_14"], entity_rows=[{"entity_id": entity}]
    ).to_dict()
    assert online["ret_1m"][0] == pytest.approx(latest["ret_1m"])
    assert online["rsi_14"][0] == pytest.approx(latest["rsi_14"])
    btc = store.get_online_features(features=["market_ohlcv:close"], entity_rows=[{"asset": "BTC"}]).to_dict()
    assert btc["close"] == [147.5]


def test_build_refuses_dirty_repo_and_unpinned_ref(feast_repo: Path, golden: BuildResult, tmp_path: Path) -> None:
    dataset = golden.path / "data.parquet"
    first = git(feast_repo.parent, "rev-parse", "HEAD")
    (feast_repo / "notes.md").write_text("work in progress\n")
    with pytest.raises(FeatureBuildError, match="uncommitted changes"):
        build_features(feast_repo, dataset, "v1", tmp_path / "out", None)
    git(feast_repo.parent, "add", "-A")
    git(feast_repo.parent, "commit", "-q", "-m", "notes")
    with pytest.raises(FeatureBuildError, match="resolves to " + first):
        build_features(feast_repo, dataset, "v1", tmp_path / "out", None, git_ref=first)
    assert not (tmp_path / "out").exists()


def test_build_blocks_on_contract_drift(feast_repo: Path, golden: BuildResult, tmp_path: Path) -> None:
    defs = feast_repo / "definitions.py"
    defs.write_text(defs.read_text().replace(
        "*contract_fields(contract)]", "*contract_fields(contract)[1:], Field(name='extra_f', dtype=Float32)]"
    ))
    with pytest.raises(FeatureDriftError) as err:
        build_features(feast_repo, golden.path / "data.parquet", "v1", tmp_path / "out", None, allow_dirty=True)
    assert err.value.report.missing == ("ret_1m",) and err.value.report.extra == ("extra_f",)
    assert "-ret_1m: float32" in str(err.value) and "+extra_f: float32" in str(err.value)
    assert not (tmp_path / "out").exists()


def test_build_blocks_when_pinned_repo_contract_differs(
    feast_repo: Path, golden: BuildResult, tmp_path: Path
) -> None:
    contract = feast_repo / "feature_contract.yaml"
    text = contract.read_text()
    swapped = text.replace("{name: ret_1m,", "{name: TMP,").replace("{name: ret_5m,", "{name: ret_1m,")
    contract.write_text(swapped.replace("{name: TMP,", "{name: ret_5m,"))
    git(feast_repo.parent, "commit", "-q", "-am", "reorder")
    with pytest.raises(FeatureDriftError) as err:
        build_features(feast_repo, golden.path / "data.parquet", "v1", tmp_path / "out", None)
    assert err.value.report.reordered == ("ret_5m",)
    assert "reordered: ret_5m" in str(err.value)


# ---------------------------------------------------------------------------------------------- PIT


def _t(seconds: int | None) -> datetime | None:
    return None if seconds is None else T0 + timedelta(seconds=seconds)


def _features(keys: Sequence[Any], ts: Sequence[int], values: Sequence[float | None],
              created: Sequence[int | None] | None = None) -> pa.Table:
    cols: dict[str, Any] = {"k": list(keys), "ts": pa.array([_t(s) for s in ts], TS),
                            "x": pa.array(values, pa.float32())}
    if created is not None:
        cols["created"] = pa.array([_t(s) for s in created], TS)
    return pa.table(cols)


def _entities(keys: Sequence[Any], ts: Sequence[int | None]) -> pa.Table:
    return pa.table({"k": list(keys), "ts": pa.array([_t(s) for s in ts], TS)})


def _join(ent: pa.Table, feat: pa.Table, ttl: timedelta | None = None, created: bool = False,
          keys: Sequence[str] = ("k",)) -> list[float | None]:
    out = point_in_time_join(ent, feat, join_keys=keys, entity_ts_col="ts", feature_ts_col="ts",
                             created_ts_col="created" if created else None, ttl=ttl, feature_names=["x"])
    assert out.column_names == [*ent.column_names, "x"] and out.num_rows == ent.num_rows
    assert out.select(ent.column_names).equals(ent)
    values: list[float | None] = out.column("x").to_pylist()
    return values


def test_pit_exact_timestamp_is_inclusive_and_future_never_leaks() -> None:
    feat = _features([1, 1, 1], [10, 20, 30], [1.0, 2.0, 3.0])
    assert _join(_entities([1, 1, 1, 1], [9, 10, 19, 20]), feat) == [None, 1.0, 1.0, 2.0]


def test_pit_ttl_boundary() -> None:
    feat = _features([1], [100], [7.0])
    ent = _entities([1, 1, 1], [100, 110, 111])
    assert _join(ent, feat, ttl=timedelta(seconds=10)) == [7.0, 7.0, None]
    assert _join(ent, feat, ttl=timedelta(0)) == [7.0, None, None]
    assert _join(ent, feat, ttl=None) == [7.0, 7.0, 7.0]


def test_pit_ties_on_event_time_go_to_newest_created() -> None:
    feat = _features([1, 1, 1, 2, 2], [10, 10, 10, 10, 10], [1.0, 2.0, 3.0, 4.0, 5.0], created=[5, 9, 7, 3, None])
    assert _join(_entities([1, 2], [10, 15]), feat, created=True) == [2.0, 4.0]


def test_pit_duplicate_entity_rows_all_returned_in_order() -> None:
    feat = _features([1, 2], [0, 0], [1.0, 2.0])
    assert _join(_entities([2, 1, 2, 2, 1], [5, 5, 5, 5, 5]), feat) == [2.0, 1.0, 2.0, 2.0, 1.0]


def test_pit_unmatched_rows_get_nulls_never_dropped() -> None:
    feat = _features([1], [10], [1.0])
    ent = pa.table({"k": pa.array([3, None, 1, 1], pa.int64()), "ts": pa.array([_t(20), _t(20), None, _t(5)], TS)})
    assert _join(ent, feat) == [None, None, None, None]


def test_pit_multiple_join_keys_and_other_entity_columns() -> None:
    feat = pa.table({"k": [1, 1, 2], "venue": ["a", "b", "a"], "ts": pa.array([_t(0), _t(5), _t(1)], TS),
                     "x": pa.array([1.0, 2.0, 3.0], pa.float32())})
    ent = pa.table({"k": [1, 1, 2, 2], "venue": ["b", "a", "a", "b"], "ts": pa.array([_t(9)] * 4, TS),
                    "label": pa.array([0, 1, 2, 0], pa.int8())})
    assert _join(ent, feat, keys=("k", "venue")) == [2.0, 1.0, 3.0, None]


def test_pit_naive_entity_timestamps_count_as_utc_and_bad_input_is_refused() -> None:
    feat = _features([1], [10], [1.0])
    ent = pa.table({"k": [1, 1], "ts": pa.array([datetime(2024, 1, 1, 0, 0, 9), datetime(2024, 1, 1, 0, 0, 10)],
                                                pa.timestamp("ns"))})
    assert _join(ent, feat) == [None, 1.0]
    with pytest.raises(PointInTimeError, match="clash"):
        point_in_time_join(feat, feat, join_keys=["k"], entity_ts_col="ts", feature_ts_col="ts", ttl=None,
                           feature_names=["x"])
    with pytest.raises(PointInTimeError, match="feature table has no column 'x'"):
        _join(ent, feat.rename_columns(["k", "ts", "y"]))


@pytest.mark.parametrize("key", ['k"; DROP TABLE feat; --', 'a "quoted" key', "select", "ts2"])
def test_pit_join_keys_are_identifiers_whatever_their_text(key: str) -> None:
    """Keys reach DuckDB as quoted identifiers (sqlglot), never as SQL text: a hostile name is just a name."""
    feat = _features([1, 2], [10, 10], [1.0, 2.0]).rename_columns([key, "ts", "x"])
    ent = _entities([2, 1, 3], [11, 12, 13]).rename_columns([key, "ts"])
    assert _join(ent, feat, keys=[key]) == [2.0, 1.0, None]


def test_pit_join_keys_may_not_take_the_joins_own_column_names() -> None:
    feat = _features([1], [10], [1.0]).rename_columns(["__fp_fidx", "ts", "x"])
    with pytest.raises(PointInTimeError, match=r"join keys \['__fp_fidx'\] are names the join uses"):
        _join(_entities([1], [11]).rename_columns(["__fp_fidx", "ts"]), feat, keys=["__fp_fidx"])


def _brute_force(ent: list[tuple[int | None, int | None]], feat: list[tuple[int, int, int | None, float]],
                 ttl: int | None) -> list[float | None]:
    out: list[float | None] = []
    for key, ts in ent:
        cands = [(fts, created is not None, created or 0, i, x) for i, (k, fts, created, x) in enumerate(feat)
                 if key is not None and ts is not None and k == key and fts <= ts and (ttl is None or ts - fts <= ttl)]
        out.append(max(cands)[4] if cands else None)
    return out


@settings(max_examples=150, deadline=None)
@given(
    feat=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 20), st.one_of(st.none(), st.integers(0, 4)),
                            st.integers(-100, 100).map(float)), max_size=25),
    ent=st.lists(st.tuples(st.one_of(st.none(), st.integers(0, 4)), st.one_of(st.none(), st.integers(0, 25))),
                 max_size=25),
    ttl=st.one_of(st.none(), st.integers(0, 8)),
)
def test_pit_matches_brute_force(feat: list[tuple[int, int, int | None, float]],
                                 ent: list[tuple[int | None, int | None]], ttl: int | None) -> None:
    features = pa.table({
        "k": pa.array([f[0] for f in feat], pa.int64()), "ts": pa.array([_t(f[1]) for f in feat], TS),
        "created": pa.array([_t(f[2]) for f in feat], TS), "x": pa.array([f[3] for f in feat], pa.float32()),
    })
    entities = pa.table({"k": pa.array([e[0] for e in ent], pa.int64()), "ts": pa.array([_t(e[1]) for e in ent], TS)})
    got = _join(entities, features, ttl=None if ttl is None else timedelta(seconds=ttl), created=True)
    assert got == _brute_force(ent, feat, ttl)


def test_feast_usage_is_off() -> None:
    assert "usage: false" in (FEATURE_REPO / "feature_store.yaml").read_text()
    assert os.environ.get("FEAST_USAGE", "False") == "False"
