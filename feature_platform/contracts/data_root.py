"""Every path and file name under the data root, in one place (docs/ARCHITECTURE.md §1).

``DataRoot`` is plain Python: the CLI and the domain packages use it directly, and the Dagster
``PlatformPaths`` resource only wraps it, so a command that runs no Dagster job loads no Dagster.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from feature_platform.contracts.paths import require_safe_id

DATA_ROOT_ENV = "FP_DATA_ROOT"
DEFAULT_DATA_ROOT = "data"
DEFAULT_DATASET_NAME = "market_regime"

REVIEW_DB_NAME = "review.sqlite"
CATALOG_DB_NAME = "catalog.sqlite"
QUALITY_REPORT_NAME = "quality_report.json"
FEATURE_BUILD_NAME = "feature_build.json"
FEATURES_DIR = "features"
TRAINING_SETS_DIR = "training_sets"
MODELS_DIR = "models"
SOURCES_DIR = "sources"


def feature_build_path(features_dir: Path, dataset_version: str) -> Path:
    """``<features>/offline/<version>/feature_build.json``: the record of one feature build."""
    return Path(features_dir) / "offline" / dataset_version / FEATURE_BUILD_NAME


@dataclass(frozen=True)
class DataRoot:
    """The layout of one data root: ``sources/``, ``datasets/``, ``reports/``, the SQLite files, features, models."""

    root: Path
    dataset_name: str = DEFAULT_DATASET_NAME

    @classmethod
    def from_env(cls, *, resolve: bool = True, dataset_name: str = DEFAULT_DATASET_NAME) -> DataRoot:
        """``$FP_DATA_ROOT``, else ``./data`` (relative to the working directory); resolved unless told not to."""
        root = Path(os.environ.get(DATA_ROOT_ENV) or DEFAULT_DATA_ROOT)
        return cls(root.resolve() if resolve else root, dataset_name)

    def dataset_id(self, version: str) -> str:
        return require_safe_id(f"{self.dataset_name}-{require_safe_id(version, 'dataset_version')}")

    @property
    def sources(self) -> Path:
        return self.root / SOURCES_DIR

    def source_dir(self, version: str) -> Path:
        return self.sources / version

    @property
    def datasets(self) -> Path:
        return self.root / "datasets"

    def dataset_dir(self, version: str) -> Path:
        return self.datasets / self.dataset_id(version)

    def reports(self, version: str) -> Path:
        return self.root / "reports" / require_safe_id(version, "dataset_version")

    def quality_report(self, version: str) -> Path:
        return self.reports(version) / QUALITY_REPORT_NAME

    def tensor_reports(self, version: str, what: str = "tensor_dataset_version") -> Path:
        return self.root / "reports" / "tensor" / require_safe_id(version, what)

    @property
    def inbox(self) -> Path:
        return self.root / "inbox"

    @property
    def metrics_dir(self) -> Path:
        return self.root / "metrics"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def outbox(self) -> Path:
        return self.root / "outbox"

    @property
    def object_store(self) -> Path:
        """The local object store's directory (published datasets and archives)."""
        return self.root / "store"

    @property
    def catalog_db(self) -> Path:
        return self.root / CATALOG_DB_NAME

    @property
    def review_db(self) -> Path:
        """The market data review queue (SQLite), also the audit trail of promotions and rollbacks."""
        return self.root / REVIEW_DB_NAME

    @property
    def warehouse_db(self) -> Path:
        return self.root / "warehouse" / "warehouse.duckdb"

    def market_raw(self, day: str) -> Path:
        return self.root / "market" / "raw" / f"{day}.parquet"

    @property
    def market_curated(self) -> Path:
        return self.root / "market" / "curated"

    @property
    def features(self) -> Path:
        return self.root / FEATURES_DIR

    def feature_build(self, version: str) -> Path:
        return feature_build_path(self.features, version)

    def feature_inputs(self, version: str) -> Path:
        return self.features / "inputs" / version

    @property
    def training_sets(self) -> Path:
        return self.root / TRAINING_SETS_DIR

    @property
    def models(self) -> Path:
        return self.root / MODELS_DIR

    @property
    def model_reruns(self) -> Path:
        return self.models / "reruns"
