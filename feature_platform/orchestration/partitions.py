"""The ``dataset_version`` partition set shared by every asset of the refresh graph."""

from __future__ import annotations

import dagster as dg

DATASET_VERSION = "dataset_version"
dataset_versions = dg.DynamicPartitionsDefinition(name=DATASET_VERSION)


def ensure_partition(instance: dg.DagsterInstance, version: str, partitions: str = DATASET_VERSION) -> bool:
    """Add ``version`` to the dynamic partition set ``partitions``; True when it was new."""
    from feature_platform.contracts.paths import require_safe_id

    require_safe_id(version, partitions)
    if instance.has_dynamic_partition(partitions, version):
        return False
    instance.add_dynamic_partitions(partitions, [version])
    return True
