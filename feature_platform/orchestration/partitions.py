"""The ``dataset_version`` partition set shared by every asset of the refresh graph."""

from __future__ import annotations

import dagster as dg

DATASET_VERSION = "dataset_version"
dataset_versions = dg.DynamicPartitionsDefinition(name=DATASET_VERSION)


def ensure_partition(instance: dg.DagsterInstance, version: str) -> bool:
    """Add ``version`` to the partition set; True when it was new."""
    from feature_platform.contracts.paths import require_safe_id

    require_safe_id(version, "dataset_version")
    if instance.has_dynamic_partition(DATASET_VERSION, version):
        return False
    instance.add_dynamic_partitions(DATASET_VERSION, [version])
    return True
