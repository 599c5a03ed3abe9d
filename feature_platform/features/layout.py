"""Where feature builds live under the data root, and the stable paths the Feast repository reads.

Every build keeps its own immutable, hashed files under ``<features>/offline/<version>/`` and
``<features>/feast/<version>/``. The latest build is also published to ``<features>/latest/``: the
paths ``feature_repo/definitions.py`` (sources) and ``feature_repo/feature_store.yaml`` (registry,
online store) name, so Feast's own CLI and ``FeatureStore(repo_path="feature_repo")`` work unchanged.
This module imports nothing heavy: the Feast repository's definitions import it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from feature_platform.contracts.data_root import DATA_ROOT_ENV, FEATURES_DIR, DataRoot

__all__ = ["DATASET_VIEW", "DATA_ROOT_ENV", "FEATURES_DIR", "LATEST_DIR", "MARKET_VIEW", "LatestPaths",
           "default_data_root", "features_dir", "latest_paths"]

LATEST_DIR = "latest"
DATASET_VIEW = "dataset_features"
MARKET_VIEW = "market_ohlcv"


def default_data_root(project: Path) -> Path:
    """``$FP_DATA_ROOT`` (relative to the working directory), else ``<project>/data``; resolved."""
    return Path(os.environ.get(DATA_ROOT_ENV) or Path(project) / "data").resolve()


def features_dir(data_root: Path) -> Path:
    """The feature builds' output directory under a data root."""
    return DataRoot(Path(data_root)).features


@dataclass(frozen=True)
class LatestPaths:
    """The published latest build under ``<features>/latest/``."""

    dir: Path

    @property
    def dataset(self) -> Path:
        return self.dir / f"{DATASET_VIEW}.parquet"

    @property
    def market(self) -> Path:
        return self.dir / f"{MARKET_VIEW}.parquet"

    @property
    def registry(self) -> Path:
        return self.dir / "registry.db"

    @property
    def online_store(self) -> Path:
        return self.dir / "online_store.db"

    @property
    def store_config(self) -> Path:
        """A ``feature_store.yaml`` with absolute paths, for data roots the repo's relative paths miss."""
        return self.dir / "feature_store.yaml"

    @property
    def marker(self) -> Path:
        """``published.json``: which build is published, written last."""
        return self.dir / "published.json"


def latest_paths(features: Path) -> LatestPaths:
    """The published paths under a feature builds' directory (``<data_root>/features``)."""
    return LatestPaths(Path(features) / LATEST_DIR)
