from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from feature_platform.contracts.feature_contract import FEATURE_ORDER, load_feature_contract
from feature_platform.datasets.build import build_dataset
from feature_platform.datasets.synthetic import SyntheticMarketSource, derive_seed
from feature_platform.datasets.verify import sha256_file
from tests.conftest import small_source


def _data_sha(tmp_path: Path, name: str, seed: int) -> str:
    result = build_dataset(small_source(seed), tmp_path, name, dataset_version="v1")
    return sha256_file(result.path / "data.parquet")


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    first = _data_sha(tmp_path, "a", 11)
    assert _data_sha(tmp_path, "b", 11) == first
    assert _data_sha(tmp_path, "c", 12) != first


def test_any_batch_regenerates_alone() -> None:
    source = small_source()
    streamed = list(source.batches())
    assert len(streamed) == source.batch_count == 5
    for index in (0, 3, 4):
        assert small_source().batch(index).equals(streamed[index])
    assert sum(b.num_rows for b in streamed) == source.rows
    with pytest.raises(IndexError):
        source.batch(5)


def test_seed_derivation_is_stable_and_distinct() -> None:
    assert derive_seed(42, 0) == derive_seed(42, 0)
    assert len({derive_seed(42, i) for i in range(1000)}) == 1000
    assert derive_seed(42, 1) != derive_seed(43, 1)


def test_batches_follow_the_contract_schema() -> None:
    batch = small_source().batch(0)
    assert batch.schema.equals(load_feature_contract().arrow_schema())
    assert batch.schema.names[2:-1] == list(FEATURE_ORDER)


@pytest.fixture(scope="module")
def table() -> pa.Table:
    return pa.Table.from_batches(SyntheticMarketSource(60_000, 3, batch_rows=20_000, entities=300).batches())


def test_values_are_plausible(table: pa.Table) -> None:
    ids = table.column("entity_id").to_numpy()
    assert ids.min() >= 1 and ids.max() <= 300
    assert len(np.unique(ids)) > 250
    ts = table.column("event_timestamp").cast(pa.int64()).to_numpy()
    assert np.all(np.diff(ts) >= 0)
    for name in ("rsi_14", "rsi_50", "stoch_k", "stoch_d"):
        column = table.column(name)
        assert pc.min(column).as_py() >= 0 and pc.max(column).as_py() <= 100
    for name in ("vol_1h", "vol_1d", "hl_range_1d", "spread_bps"):
        assert pc.min(table.column(name)).as_py() > 0
    labels = np.bincount(table.column("label").to_numpy(), minlength=3) / table.num_rows
    assert np.allclose(labels, [0.25, 0.45, 0.30], atol=0.02)
    ret = table.column("ret_1d").to_numpy()
    kurtosis = np.mean((ret - ret.mean()) ** 4) / ret.var() ** 2
    assert kurtosis > 3.5  # heavier tails than a normal distribution


def test_features_carry_signal_about_the_label(table: pa.Table) -> None:
    label = table.column("label").to_numpy().astype(float)
    for name in ("ret_1d", "rsi_50", "sma_ratio_50", "stoch_k"):
        assert np.corrcoef(table.column(name).to_numpy(), label)[0, 1] > 0.1, name
    assert np.corrcoef(table.column("vol_1d").to_numpy(), label)[0, 1] < -0.1
    assert np.corrcoef(table.column("vol_1d").to_numpy(), table.column("hl_range_1d").to_numpy())[0, 1] > 0.8


def test_nulls_only_where_the_contract_allows(table: pa.Table) -> None:
    contract = load_feature_contract()
    for feature in contract.features:
        nulls = table.column(feature.name).null_count
        if feature.nullable:
            assert 0.002 < nulls / table.num_rows < 0.03, feature.name
        else:
            assert nulls == 0, feature.name


@pytest.mark.parametrize("kwargs", [{"rows": 0, "seed": 1}, {"rows": 10, "seed": -1},
                                    {"rows": 10, "seed": 1, "batch_rows": 0},
                                    {"rows": 10, "seed": 1, "null_rate": 1.5}])
def test_bad_parameters_are_refused(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        SyntheticMarketSource(**kwargs)
