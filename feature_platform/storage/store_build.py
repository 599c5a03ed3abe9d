"""Build a dataset straight into the object store, for a cluster without a shared disk: the map and reduce
tasks of ``datasets.build`` keep their pieces and upload their files there, and the prefix is published the way
``dataset_publish`` publishes."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

from feature_platform.contracts.feature_contract import FeatureContract
from feature_platform.contracts.manifest import DatasetManifest
from feature_platform.datasets.build import (
    DEFAULT_MAX_BYTES,
    BuildError,
    ShardResult,
    ShardTask,
    assemble_manifest,
    begin_build,
    map_reduce,
    require_contract_schema,
    write_shard,
)
from feature_platform.datasets.executors import Executor, run_tasks
from feature_platform.datasets.sharding import data_file_name
from feature_platform.datasets.shuffle import PIECES, PieceSpace, StoreFactory
from feature_platform.datasets.source import TableSource
from feature_platform.datasets.splits import SplitSpec
from feature_platform.storage.catalog import Catalog
from feature_platform.storage.dataset_publish import (
    DatasetPublishError,
    PublishedVersion,
    new_upload_prefix,
    publish_uploaded,
)


@dataclass(frozen=True)
class StoreBuildResult:
    published: PublishedVersion
    manifest: DatasetManifest
    digest: str
    seconds: float


def build_dataset_to_store(
    source: TableSource,
    store: StoreFactory,
    catalog: Catalog,
    dataset_id: str,
    *,
    dataset_version: str | None = None,
    splits: SplitSpec | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    contract: FeatureContract | None = None,
    files: int = 1,
    executor: Executor = "inline",
    workers: int | None = None,
    ray_address: str | None = None,
    name: str | None = None,
    maps: int | None = None,
) -> StoreBuildResult:
    """Build straight into the object store, for a cluster without a shared disk.

    The files are written by ``build_dataset``'s map/reduce, with every piece in the store: each map
    task writes its pieces in its own scratch space and uploads them under ``.pieces/`` of a fresh
    upload prefix of the version (``dataset_publish``'s layout); each reduce task downloads its file's
    pieces, refuses one whose sha256 is not what its map wrote, writes the file in its scratch space,
    uploads it beside them, deletes its pieces and returns key, sha256, rows and bytes (one file: a
    single task reads the source and uploads it). No worker writes to the driver's disk. The driver
    re-hashes each file as it lands and refuses a mismatch, sweeps the pieces, assembles the manifest,
    and publishes the prefix as ``dataset_publish`` does: destination checks, then ``current.json``
    and the catalog switched under the catalog lock. On any failure the upload prefix is deleted and
    nothing is published. The data files' bytes are those of ``build_dataset`` with the same source
    and ``files``.
    """
    started = time.perf_counter()
    created, version, contract = begin_build(dataset_id, dataset_version, files, maps, contract)
    splits = splits or SplitSpec()
    require_contract_schema(source.schema, contract)
    driver_store = store()
    prefix = new_upload_prefix(driver_store, catalog, name or dataset_id, version)
    names = [data_file_name(k, files) for k in range(files)]
    tasks = [ShardTask(source=source, entity=contract.entity.name, shard=k, files=files, path=names[k],
                       splits=splits, splitter=None, store=store, key=f"{prefix}/{names[k]}")
             for k in range(files)]

    def landed(index: int, result: ShardResult) -> ShardResult:
        assert result.key is not None
        size, sha = driver_store.size(result.key), driver_store.sha256(result.key)
        if (size, sha) != (result.bytes, result.sha256):
            raise BuildError(f"{driver_store.url(result.key)}: uploaded object differs from what the worker wrote: "
                             f"expected sha256 {result.sha256} ({result.bytes} bytes), got {sha} ({size} bytes)")
        return result

    try:
        if files == 1:
            results = run_tasks(write_shard, tasks, executor=executor, workers=workers, ray_address=ray_address,
                                on_result=landed)
        else:
            results = map_reduce(source, tasks, PieceSpace(store=store, prefix=f"{prefix}/{PIECES}"),
                                 executor=executor, workers=workers, ray_address=ray_address, maps=maps,
                                 on_result=landed)
        manifest = assemble_manifest(source, contract, dataset_id, version, created, splits, None, results,
                                      max_bytes, files)
    except BaseException:
        # Best effort: a prefix left behind (a late upload, an unreachable store) is an abandoned attempt that
        # dataset_publish.sweep_abandoned_uploads removes; the build's own error is the one to report.
        with contextlib.suppress(Exception):
            driver_store.delete_prefix(prefix + "/")
        raise
    try:
        published = publish_uploaded(driver_store, catalog, manifest, prefix, name=name)
    except DatasetPublishError as exc:
        raise BuildError(str(exc)) from exc
    return StoreBuildResult(published=published, manifest=manifest, digest=manifest.digest(),
                            seconds=time.perf_counter() - started)
