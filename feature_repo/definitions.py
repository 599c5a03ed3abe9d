"""Feast objects for feature_platform: entities, feature views and the training FeatureService.

The ``dataset_features`` schema is generated from ``feature_contract.yaml`` (names, types, order), so
the contract stays the single source of truth; ``feature_platform.features.drift`` proves it.
The module-level objects (what ``feast plan/apply/materialize`` registers) read the latest build that
``fp features build`` published under ``<data root>/features/latest/`` (data root: ``$FP_DATA_ROOT``,
default ``<project>/data``); ``build_features`` calls :func:`make_objects` with per-version paths.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

from feast import Entity, FeatureService, FeatureView, Field, FileSource
from feast.types import Bool, FeastType, Float32, Float64, Int32, Int64, String, UnixTimestamp
from feast.value_type import ValueType

from feature_platform.contracts.feature_contract import CONTRACT_ENV, FeatureContract, load_feature_contract
from feature_platform.features.layout import DATASET_VIEW, MARKET_VIEW, default_data_root, features_dir, latest_paths

os.environ.setdefault("FEAST_USAGE", "False")

REPO_DIR = Path(__file__).resolve().parent
DATA_ROOT = default_data_root(REPO_DIR.parent)
# Where `fp features build` publishes its latest build; feature_store.yaml names the same directory.
LATEST = latest_paths(features_dir(DATA_ROOT))

TRAINING_SERVICE = "training_v1"
# Dataset rows describe bars of up to a day; a row older than this says nothing about "now".
DATASET_TTL = timedelta(days=2)
MARKET_TTL = timedelta(days=1)
MARKET_FEATURES: tuple[str, ...] = ("open", "high", "low", "close", "volume")

# Contract type name -> Feast type; contract types without a Feast equivalent are rejected.
FEAST_TYPES: dict[str, FeastType] = {
    "bool": Bool,
    "int32": Int32,
    "int64": Int64,
    "float32": Float32,
    "float64": Float64,
    "string": String,
    "timestamp[us, tz=UTC]": UnixTimestamp,
}


def contract_fields(contract: FeatureContract) -> list[Field]:
    """Feast fields for the contract's features, in contract order."""
    fields = []
    for col in contract.features:
        if col.type not in FEAST_TYPES:
            raise ValueError(f"feature {col.name!r}: contract type {col.type!r} has no Feast type")
        fields.append(Field(name=col.name, dtype=FEAST_TYPES[col.type], description=col.description))
    return fields


def repo_contract() -> FeatureContract:
    """The contract committed beside these definitions (``$FP_FEATURE_CONTRACT`` overrides), so a repo
    pinned at a git sha generates its views from the contract of that same sha."""
    return load_feature_contract(Path(os.environ.get(CONTRACT_ENV) or REPO_DIR / "feature_contract.yaml"))


def make_objects(
    feature_source: str | Path, market_source: str | Path | None, contract: FeatureContract | None = None
) -> list[Any]:
    """Every Feast object of this repository, over the given parquet paths (market optional)."""
    contract = contract or repo_contract()
    entity = Entity(
        name="entity", join_keys=[contract.entity.name], value_type=ValueType.INT64,
        description=contract.entity.description,
    )
    dataset_source = FileSource(
        name="dataset_source", path=str(feature_source), timestamp_field=contract.timestamp.name,
        created_timestamp_column="created",  # when the row became known: "as of" joins honour it
    )
    dataset_view = FeatureView(
        name=DATASET_VIEW, entities=[entity], ttl=DATASET_TTL, source=dataset_source,
        schema=[Field(name=contract.entity.name, dtype=Int64), *contract_fields(contract)],
        tags={"contract_version": str(contract.contract_version), "contract_sha256": contract.digest()},
    )
    objects: list[Any] = [entity, dataset_source, dataset_view]
    views = [dataset_view]
    if market_source is not None:
        asset = Entity(name="asset", join_keys=["asset"], value_type=ValueType.STRING, description="Traded asset.")
        market_src = FileSource(name="market_source", path=str(market_source), timestamp_field="ts")
        market_view = FeatureView(
            name=MARKET_VIEW, entities=[asset], ttl=MARKET_TTL, source=market_src,
            schema=[Field(name="asset", dtype=String), *(Field(name=n, dtype=Float64) for n in MARKET_FEATURES)],
        )
        objects += [asset, market_src, market_view]
        views.append(market_view)
    # Training reads the dataset's features; market bars are keyed by another entity and joined on their own.
    objects.append(FeatureService(name=TRAINING_SERVICE, features=[dataset_view]))
    return objects


# Module-level objects for `feast plan/apply/materialize`: the published latest build.
_objects = make_objects(LATEST.dataset, LATEST.market)
entity, dataset_source, dataset_features, asset, market_source, market_ohlcv, training_v1 = _objects
