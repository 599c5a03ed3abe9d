"""Dataset definitions in Dagster: one partitioned asset per ACTIVE definition, ``["definitions", <name>]``.

Each asset builds its spec v1 dataset from the definition's DuckDB query with the foundation's builder
(``build_definition_dataset``), so it passes through the same verification and atomic publish; its
blocking checks are the shared ``integrity_checks`` fed by the same ``verify_dataset`` as
``fp dataset verify`` (which checks the file against the definition it was built from).

Partitions are their own dynamic set, ``definition_version``: a definition-driven dataset is versioned by
whoever builds it, not by the nightly market refresh, so adding a version must not add (or show as missing)
a partition on every asset of the refresh graph. One set for all definitions: one version key builds every
active definition in one run of ``definition_datasets_job``.
"""


import re
import warnings
from collections.abc import Callable
from pathlib import Path

import dagster as dg
from pydantic import Field

from feature_platform.contracts.manifest import MANIFEST_NAME
from feature_platform.datasets.definitions.model import DatasetDefinition, DefinitionError, load_definition
from feature_platform.datasets.verify import VerifyReport
from feature_platform.orchestration.checks import integrity_checks, published_copy_check
from feature_platform.orchestration.metadata import location
from feature_platform.orchestration.resources import CatalogResource, ObjectStoreResource, PlatformPaths
from feature_platform.orchestration.story import STORE_TAG, platform_asset

GROUP = "dataset_definitions"
DEFINITION_VERSION = "definition_version"
definition_versions = dg.DynamicPartitionsDefinition(name=DEFINITION_VERSION)

CHECK_DESCRIPTIONS = {
    "sha256_matches": "Every file exists inside the dataset directory and matches its manifest sha256 and size.",
    "feature_order_matches": "The definition it was built from is unchanged; manifest and parquet footer follow "
                             "its column roles and order.",
    "schema_valid": "Manifest matches spec v1; footer columns, types, nullability and row counts match it.",
    "size_within_limit": "The dataset directory is within its size limit.",
}


class DefinitionBuildConfig(dg.Config):
    warehouse: str | None = Field(None, description="DuckDB warehouse file (default: $FP_WAREHOUSE or the data "
                                                    "root's warehouse/warehouse.duckdb)")
    as_of: str | None = Field(None, description="pin 'today' (YYYY-MM-DD) for rolling ranges and time splits; "
                                                "default: today, UTC")


def _dagster_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def definition_asset_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["definitions", _dagster_name(name)])


def published_asset_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["definitions", f"{_dagster_name(name)}_published"])


def _sql_md(sql: str) -> dg.MetadataValue:
    return dg.MetadataValue.md(f"```sql\n{sql}```")


def _definition_bytes(defn: DatasetDefinition) -> bytes:
    """What the build depends on in the definition: its file as committed (else the parsed model)."""
    if defn.source_file is not None and defn.source_file.is_file():
        return defn.source_file.read_bytes()
    return defn.model_dump_json().encode()


def definition_dataset_asset(defn: DatasetDefinition) -> dg.AssetsDefinition:
    """The asset that builds ``defn`` (re-read from its file at run time, so the build uses what is committed)."""
    name = defn.name
    source_file = defn.source_file

    @platform_asset(
        group=GROUP, stage="build", key=definition_asset_key(name), partitions_def=definition_versions,
        kinds={"duckdb", "parquet"},
        description=f"{defn.description or name} (definition file: {source_file.name if source_file else name})",
        tags={"fp/definition": _dagster_name(name)},
        modules=["feature_platform.datasets.definitions.source", "feature_platform.datasets.definitions.sql",
                 "feature_platform.datasets.build"],
        extra=[_definition_bytes(defn)],
    )
    def _build(context: dg.AssetExecutionContext, config: DefinitionBuildConfig,
               paths: PlatformPaths) -> dg.MaterializeResult:
        from datetime import date

        from feature_platform.datasets.build import BuildError
        from feature_platform.datasets.definitions.source import build_definition_dataset
        from feature_platform.warehouse.connection import WarehouseError

        version = context.partition_key
        try:
            current = load_definition(source_file) if source_file else defn
            if current.status != "active":
                raise DefinitionError(f"{current.where}: field status: expected active (this asset exists for an "
                                      f"active definition; reload the code location); got {current.status!r}")
            as_of = date.fromisoformat(config.as_of) if config.as_of else None
            result = build_definition_dataset(current, paths.datasets, dataset_version=version,
                                              warehouse=Path(config.warehouse) if config.warehouse else None,
                                              force=True, as_of=as_of)
        except (DefinitionError, WarehouseError, BuildError, ValueError) as exc:
            raise dg.Failure(f"definition {name}: {exc}", allow_retries=False) from None
        m = result.manifest
        params = m.source.parameters
        return dg.MaterializeResult(
            metadata={
                "definition": name,
                "definition_sha256": str(params.get("definition_sha256")),
                "dataset_id": m.dataset_id,
                "dataset_version": m.dataset_version,
                "manifest_digest": result.digest,
                "source_hash": m.source.source_hash,
                "dagster/row_count": m.row_count,
                "rows_per_second": round(m.row_count / max(result.seconds, 1e-9)),
                "sha256": dg.MetadataValue.json({f.path: f.sha256 for f in m.files}),
                "splits": dg.MetadataValue.json({"algorithm": m.splits.algorithm, **m.splits.rows}),
                "as_of": str(params.get("as_of")),
                "sql": _sql_md(_rendered_sql(current, str(params.get("as_of")))),
                "path": dg.MetadataValue.path(str(result.manifest_path)),
                "dagster/column_schema": dg.TableSchema(columns=[
                    dg.TableColumn(c.name, c.type, constraints=dg.TableColumnConstraints(nullable=c.nullable))
                    for c in m.columns]),
                "duration_s": round(result.seconds, 3),
            },
            data_version=dg.DataVersion(result.digest),
            tags={"dataset_version": version},
        )

    return _build


def _rendered_sql(defn: DatasetDefinition, as_of: str) -> str:
    from datetime import date

    from feature_platform.datasets.definitions.sql import render_query

    return render_query(defn, dialect="duckdb", as_of=date.fromisoformat(as_of))


def definition_published_asset(defn: DatasetDefinition, built: dg.AssetsDefinition) -> dg.AssetsDefinition:
    """The refresh graph's publish path for a definition's dataset: object store + catalog (under the
    definition's name), re-verified locally before upload and at the destination before the switch."""

    @platform_asset(group=GROUP, stage="publish", key=published_asset_key(defn.name),
                    partitions_def=definition_versions, deps=[built], kinds={"sqlite"},
                    tags={"fp/definition": _dagster_name(defn.name), STORE_TAG: "true"},
                    modules=["feature_platform.storage.dataset_publish"],
                    description=f"{defn.name}: copy in object storage, recorded in the catalog as {defn.name!r}")
    def _publish(context: dg.AssetExecutionContext, paths: PlatformPaths, object_store: ObjectStoreResource,
                 catalog: CatalogResource) -> dg.MaterializeResult:
        from feature_platform.contracts.manifest import load_manifest
        from feature_platform.storage.dataset_publish import DatasetPublishError, publish_dataset_version

        version = context.partition_key
        dataset_dir = _dataset_dir(defn, version, paths)
        manifest = load_manifest(dataset_dir / MANIFEST_NAME)
        try:
            published = publish_dataset_version(dataset_dir, manifest, object_store.open(), catalog.open(),
                                                name=defn.name)
        except DatasetPublishError as exc:
            raise dg.Failure(f"definition {defn.name}: {exc}") from None
        return dg.MaterializeResult(
            metadata={"location": location(published.location), "prefix": published.prefix,
                      "manifest_digest": published.manifest_digest, "dataset_version": version,
                      "previous_version": published.previous_version or "none",
                      "dagster/row_count": manifest.row_count},
            data_version=dg.DataVersion(published.manifest_digest),
        )

    return _publish


def _locator(defn: DatasetDefinition) -> Callable[[str, PlatformPaths], tuple[Path, str]]:
    """Where a partition's dataset lives locally, and the catalog name it is published under."""
    return lambda version, paths: (_dataset_dir(defn, version, paths), defn.name)


def _dataset_dir(defn: DatasetDefinition, version: str, paths: PlatformPaths) -> Path:
    from feature_platform.datasets.definitions.source import dataset_id_for

    return paths.datasets / dataset_id_for(defn, version)


def definition_checks(asset: dg.AssetsDefinition, defn: DatasetDefinition) -> dg.AssetChecksDefinition:
    def verify(context: dg.AssetCheckExecutionContext, paths: PlatformPaths) -> VerifyReport:
        from feature_platform.datasets.verify import verify_dataset

        version = context.op_execution_context.partition_key
        return verify_dataset(_dataset_dir(defn, version, paths) / MANIFEST_NAME, paths.datasets)

    return integrity_checks(asset, name=f"{_dagster_name(defn.name)}_integrity", descriptions=CHECK_DESCRIPTIONS,
                            verify=verify)


def definition_assets(directory: Path | None = None) -> tuple[list[dg.AssetsDefinition],
                                                              list[dg.AssetChecksDefinition]]:
    """Assets (build, then publish) and blocking checks for every active definition in ``directory``.

    A file that does not load is left out with a warning naming it (the code location still loads, and
    ``fp definitions list`` shows the error); drafts get no asset until ``fp definitions activate``.
    """
    from feature_platform.datasets.definitions.model import definitions_dir

    directory = directory or definitions_dir()
    assets: list[dg.AssetsDefinition] = []
    checks: list[dg.AssetChecksDefinition] = []
    if not directory.is_dir():
        return assets, checks
    seen: set[str] = set()
    for path in sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file()):
        try:
            defn = load_definition(path)
        except DefinitionError as exc:
            warnings.warn(f"dataset definition skipped: {exc}", stacklevel=2)
            continue
        if defn.status != "active" or _dagster_name(defn.name) in seen:
            continue
        seen.add(_dagster_name(defn.name))
        asset = definition_dataset_asset(defn)
        published = definition_published_asset(defn, asset)
        assets += [asset, published]
        checks += [definition_checks(asset, defn),
                   published_copy_check(published, name="published_copy_verifies", located=_locator(defn))]
    return assets, checks


def definitions_job(name: str = "definition_datasets_job") -> "dg.UnresolvedAssetJobDefinition":
    """Every active definition's dataset (and its blocking checks) for one ``definition_version``."""
    return dg.define_asset_job(name, selection=dg.AssetSelection.groups(GROUP),
                               description="Build the spec v1 dataset of every active dataset definition.")


DEFINITION_ASSETS, DEFINITION_CHECKS = definition_assets()
definition_datasets_job = definitions_job()
# A job over an empty group would not resolve: no active definition, no job.
DEFINITION_JOBS = [definition_datasets_job] if DEFINITION_ASSETS else []
