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


class _Under:
    """A fixed path under the data root, as a class attribute of ``DataRoot``."""

    def __init__(self, *parts: str) -> None:
        self.parts = parts

    def __get__(self, layout: DataRoot, owner: type[DataRoot] | None = None) -> Path:
        return layout.root.joinpath(*self.parts)


@dataclass(frozen=True)
class DataRoot:
    """The layout of one data root: ``sources/``, ``datasets/``, ``reports/``, the SQLite files, features, models."""

    root: Path
    dataset_name: str = DEFAULT_DATASET_NAME

    sources = _Under(SOURCES_DIR)
    datasets = _Under("datasets")
    inbox = _Under("inbox")
    metrics_dir = _Under("metrics")
    logs_dir = _Under("logs")
    outbox = _Under("outbox")
    object_store = _Under("store")  # the local object store: published datasets and archives
    catalog_db = _Under(CATALOG_DB_NAME)
    review_db = _Under(REVIEW_DB_NAME)  # the market data review queue, also the audit trail of promotions
    warehouse_db = _Under("warehouse", "warehouse.duckdb")
    market_curated = _Under("market", "curated")
    features = _Under(FEATURES_DIR)
    training_sets = _Under(TRAINING_SETS_DIR)
    models = _Under(MODELS_DIR)
    model_reruns = _Under(MODELS_DIR, "reruns")

    @classmethod
    def from_env(cls, *, resolve: bool = True, dataset_name: str = DEFAULT_DATASET_NAME) -> DataRoot:
        """``$FP_DATA_ROOT``, else ``./data`` (relative to the working directory); resolved unless told not to."""
        root = Path(os.environ.get(DATA_ROOT_ENV) or DEFAULT_DATA_ROOT)
        return cls(root.resolve() if resolve else root, dataset_name)

    def dataset_id(self, version: str) -> str:
        return require_safe_id(f"{self.dataset_name}-{require_safe_id(version, 'dataset_version')}")

    def source_dir(self, version: str) -> Path:
        return self.sources / version

    def dataset_dir(self, version: str) -> Path:
        return self.datasets / self.dataset_id(version)

    def reports(self, version: str) -> Path:
        return self.root / "reports" / require_safe_id(version, "dataset_version")

    def quality_report(self, version: str) -> Path:
        return self.reports(version) / QUALITY_REPORT_NAME

    def tensor_reports(self, version: str, what: str = "tensor_dataset_version") -> Path:
        return self.root / "reports" / "tensor" / require_safe_id(version, what)

    def market_raw(self, day: str) -> Path:
        return self.root / "market" / "raw" / f"{day}.parquet"

    def feature_build(self, version: str) -> Path:
        return feature_build_path(self.features, version)

    def feature_inputs(self, version: str) -> Path:
        return self.features / "inputs" / version
