"""OpenLineage: the platform's records as OpenLineage datasets and run events, for Marquez or any consumer.

Pure mapping, no Dagster here: a dataset manifest, a source snapshot, a feature build, a training set or a
model manifest becomes a ``LineageDataset`` (namespace from where it is stored, name its identity, version
its digest, fields and types from the manifest or the feature contract); ``run_event`` builds the
OpenLineage ``RunEvent`` with the schema, dataset-version and data-quality-assertions facets. The
transport is the ``openlineage-python`` client's own configuration (``openlineage.yml``,
``OPENLINEAGE_CONFIG``, ``OPENLINEAGE_URL``, ``OPENLINEAGE__TRANSPORT__*``); without any, ``lineage_client``
returns None and nothing is built or sent.

Identity rule: a local artifact at ``path`` under the data root is namespace ``file://<data root>``, name
``path`` relative to it (``datasets/<dataset_id>``, ``features/offline/<version>``, ``models/<training_id>``);
an S3 object is namespace ``s3://<bucket>``, name its key. The version is the digest the next step records
about its input (manifest digest, source hash, sha256 of ``feature_build.json``, model manifest digest), so
the outputs of one job are the inputs of the next, matched by namespace, name and version.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import unquote, urlsplit

from feature_platform.contracts.feature_contract import FeatureContract
from feature_platform.contracts.manifest import DatasetManifest
from feature_platform.contracts.model_manifest import ModelManifest
from feature_platform.contracts.tensor_manifest import TensorDatasetManifest

if TYPE_CHECKING:
    from openlineage.client import OpenLineageClient
    from openlineage.client.event_v2 import RunEvent

    from feature_platform.features.build import FeatureBuild

EventType = Literal["START", "COMPLETE", "FAIL", "ABORT"]
DEFAULT_NAMESPACE = "feature_platform"
NAMESPACE_ENV = "OPENLINEAGE_NAMESPACE"  # the job namespace, as OpenLineage's other integrations name it
# uuid5 namespace of the platform's OpenLineage run ids: the same Dagster run and asset give the same id
RUN_ID_NAMESPACE = uuid.UUID("5d1e2c9a-3f5b-4e43-9a59-0c6f3f9f6b21")


def producer() -> str:
    """The ``producer`` URI of every event and facet: this package and its version."""
    try:
        own = version("feature_platform")
    except PackageNotFoundError:  # running from a source tree that is not installed
        from feature_platform import __version__ as own
    return f"urn:feature_platform:{own}"


def job_namespace() -> str:
    return os.environ.get(NAMESPACE_ENV) or DEFAULT_NAMESPACE


@dataclass(frozen=True)
class LineageDataset:
    """One version of a dataset as OpenLineage names it; ``fields`` are (name, type) in file order."""

    namespace: str
    name: str
    version: str
    fields: tuple[tuple[str, str], ...] = ()

    @property
    def key(self) -> tuple[str, str, str]:
        return self.namespace, self.name, self.version


@dataclass(frozen=True)
class Assertion:
    """One asset check's result on a dataset (OpenLineage ``dataQualityAssertions`` item)."""

    name: str
    passed: bool
    severity: str = "error"
    description: str | None = None
    expected: str | None = None
    actual: str | None = None


@dataclass(frozen=True)
class CheckedDataset:
    """An input read by a check step, with the results of the checks on it."""

    dataset: LineageDataset
    assertions: tuple[Assertion, ...] = field(default=())


def local_location(path: Path, data_root: Path) -> tuple[str, str]:
    """(namespace, name) of a local artifact: under the data root, ``file://<root>`` and the relative path;
    elsewhere, ``file://<parent>`` and the last path component."""
    path, root = Path(os.path.abspath(path)), Path(os.path.abspath(data_root))
    if path.is_relative_to(root) and path != root:
        return f"file://{root.as_posix()}", path.relative_to(root).as_posix()
    return f"file://{path.parent.as_posix()}", path.name


def store_location(url: str, data_root: Path) -> tuple[str, str]:
    """(namespace, name) of an object-store location URL: ``s3://bucket`` and the key, or a local path."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        return local_location(Path(unquote(parts.path)), data_root)
    if parts.scheme in ("s3", "gs", "abfss") and parts.netloc:
        return f"{parts.scheme}://{parts.netloc}", unquote(parts.path).strip("/")
    raise ValueError(f"store location {url!r}: expected a file://, s3://, gs:// or abfss:// URL")


def manifest_fields(manifest: DatasetManifest | TensorDatasetManifest) -> tuple[tuple[str, str], ...]:
    """Columns and Arrow types of a tabular dataset; arrays, dtype and shape of a tensor dataset."""
    if isinstance(manifest, TensorDatasetManifest):
        return tuple((name, f"{a.dtype}[{','.join(map(str, a.shape))}]") for name, a in manifest.arrays.items())
    return tuple((c.name, c.type) for c in manifest.columns)


def dataset_of_manifest(manifest_path: Path, manifest: DatasetManifest | TensorDatasetManifest,
                        data_root: Path) -> LineageDataset:
    """A spec v1 dataset, training set or tensor dataset: its directory, the manifest digest, its fields."""
    namespace, name = local_location(Path(manifest_path).parent, data_root)
    return LineageDataset(namespace, name, manifest.digest(), manifest_fields(manifest))


def source_of_manifest(manifest: DatasetManifest, data_root: Path) -> LineageDataset | None:
    """The source snapshot a dataset was built from (``<root>/sources/<dataset_version>``, its source hash);
    None for a training set, whose inputs are a dataset and a feature build."""
    from feature_platform.features.training_set import SOURCE_KIND as TRAINING_SET_KIND

    if manifest.source.kind == TRAINING_SET_KIND:
        return None
    return source_dataset(Path(data_root) / "sources" / manifest.dataset_version, manifest.source.source_hash,
                          data_root)


def source_dataset(snapshot_dir: Path, source_hash: str, data_root: Path,
                   fields: Sequence[tuple[str, str]] = ()) -> LineageDataset:
    namespace, name = local_location(snapshot_dir, data_root)
    return LineageDataset(namespace, name, source_hash, tuple(fields))


def feature_build_dataset(build_path: Path, build_sha256: str, data_root: Path,
                          contract: FeatureContract | None = None,
                          build: FeatureBuild | None = None) -> LineageDataset:
    """A feature build: its ``feature_build.json`` directory, the file's sha256 (what a training set records),
    and the feature contract's columns when the build was made under that same contract."""
    namespace, name = local_location(Path(build_path).parent, data_root)
    fields: tuple[tuple[str, str], ...] = ()
    if contract is not None and build is not None and build.feature_contract_sha256 == contract.digest():
        fields = tuple((c.name, c.type) for c in (contract.entity, contract.timestamp, *contract.features))
    return LineageDataset(namespace, name, build_sha256, fields)


def training_set_inputs(manifest: DatasetManifest, data_root: Path) -> list[LineageDataset]:
    """What a training set was joined from, as its manifest records it: the dataset and the feature build."""
    from feature_platform.features.training_set import training_set_parameters

    params = training_set_parameters(manifest)
    if params is None:
        return []
    ds_namespace, ds_name = local_location(Path(params.dataset.manifest_path).parent, data_root)
    fb_namespace, fb_name = local_location(Path(params.feature_build.path).parent, data_root)
    return [LineageDataset(ds_namespace, ds_name, params.dataset.manifest_digest),
            LineageDataset(fb_namespace, fb_name, params.feature_build.sha256)]


def model_dataset(model_dir: Path, manifest: ModelManifest, data_root: Path,
                  training_set: DatasetManifest | None = None) -> LineageDataset:
    """A trained model: its directory, the model manifest digest, its input features (types from the training
    set it names, when that manifest is given and has the recorded digest)."""
    namespace, name = local_location(model_dir, data_root)
    types: dict[str, str] = {}
    if training_set is not None and training_set.digest() == manifest.dataset_manifest_digest:
        types = {c.name: c.type for c in training_set.columns}
    fields = tuple((f, types[f]) for f in manifest.feature_order if f in types)
    return LineageDataset(namespace, name, manifest.digest(), fields)


def model_input(manifest: ModelManifest, data_root: Path) -> LineageDataset:
    """The training set a model was trained on, as its manifest records it."""
    namespace, name = local_location(Path(manifest.dataset_manifest_path).parent, data_root)
    return LineageDataset(namespace, name, manifest.dataset_manifest_digest)


def lineage_run_id(parent_run_id: str, key: str) -> str:
    """A stable OpenLineage run id for one job (``key``) inside one orchestrator run."""
    return str(uuid.uuid5(RUN_ID_NAMESPACE, f"{parent_run_id}\x00{key}"))


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=UTC).isoformat()


def _dataset_facets(ds: LineageDataset) -> dict[str, object]:
    from openlineage.client.facet_v2 import dataset_version_dataset, schema_dataset

    facets: dict[str, object] = {
        "version": dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=ds.version, producer=producer()),
    }
    if ds.fields:
        facets["schema"] = schema_dataset.SchemaDatasetFacet(
            fields=[schema_dataset.SchemaDatasetFacetFields(name=n, type=t, ordinal_position=i)
                    for i, (n, t) in enumerate(ds.fields, start=1)],
            producer=producer())
    return facets


def _assertions_facet(assertions: Sequence[Assertion]) -> object:
    from openlineage.client.facet_v2 import data_quality_assertions_dataset as dq

    return dq.DataQualityAssertionsDatasetFacet(assertions=[
        dq.Assertion(assertion=a.name, success=a.passed, severity=a.severity, name=a.name,
                     description=a.description, expected=a.expected, actual=a.actual, params=None)
        for a in assertions], producer=producer())


@dataclass(frozen=True)
class RunContext:
    """Who ran the job: the orchestrator's run (the parent), its job name and the partition, if any."""

    parent_run_id: str
    parent_job: str
    engine: str = "dagster"
    engine_version: str = ""
    partition: str | None = None
    tags: tuple[tuple[str, str], ...] = ()


def run_event(event_type: EventType, *, job_name: str, run_id: str, event_time: float, context: RunContext,
              inputs: Sequence[LineageDataset | CheckedDataset] = (), outputs: Sequence[LineageDataset] = (),
              error: str | None = None, stack_trace: str | None = None, job_type: str = "ASSET") -> RunEvent:
    """One OpenLineage run event of a platform job run, with the parent run facet pointing at the orchestrator
    run; a checked input carries its assertions in ``inputFacets.dataQualityAssertions``."""
    from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
    from openlineage.client.facet_v2 import (
        error_message_run,
        job_type_job,
        parent_run,
        processing_engine_run,
        tags_run,
    )

    namespace, made_by = job_namespace(), producer()
    run_facets: dict[str, object] = {
        "parent": parent_run.ParentRunFacet(
            run=parent_run.Run(runId=context.parent_run_id),
            job=parent_run.Job(namespace=namespace, name=context.parent_job),
            root=parent_run.Root(run=parent_run.RootRun(runId=context.parent_run_id),
                                 job=parent_run.RootJob(namespace=namespace, name=context.parent_job)),
            producer=made_by),
        "processing_engine": processing_engine_run.ProcessingEngineRunFacet(
            version=context.engine_version or "unknown", name=context.engine,
            openlineageAdapterVersion=_client_version(), producer=made_by),
    }
    tags = [*((("partition", context.partition),) if context.partition else ()), *context.tags]
    if tags:
        run_facets["tags"] = tags_run.TagsRunFacet(
            tags=[tags_run.TagsRunFacetFields(key=k, value=v, source=context.engine.upper()) for k, v in tags],
            producer=made_by)
    if error is not None:
        run_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
            message=error, programmingLanguage="python", stackTrace=stack_trace, producer=made_by)
    job_facets: dict[str, object] = {
        "jobType": job_type_job.JobTypeJobFacet(processingType="BATCH", integration=context.engine.upper(),
                                                jobType=job_type, producer=made_by),
    }
    ol_inputs = []
    for item in inputs:
        ds = item.dataset if isinstance(item, CheckedDataset) else item
        input_facets = {"dataQualityAssertions": _assertions_facet(item.assertions)} \
            if isinstance(item, CheckedDataset) and item.assertions else {}
        ol_inputs.append(InputDataset(namespace=ds.namespace, name=ds.name, facets=_dataset_facets(ds),  # type: ignore[arg-type]
                                      inputFacets=input_facets))  # type: ignore[arg-type]
    ol_outputs = [OutputDataset(namespace=ds.namespace, name=ds.name, facets=_dataset_facets(ds))  # type: ignore[arg-type]
                  for ds in outputs]
    return RunEvent(eventType=getattr(RunState, event_type), eventTime=_iso(event_time),
                    run=Run(runId=run_id, facets=run_facets),  # type: ignore[arg-type]
                    job=Job(namespace=namespace, name=job_name, facets=job_facets),  # type: ignore[arg-type]
                    inputs=ol_inputs, outputs=ol_outputs, producer=made_by)


def _client_version() -> str:
    try:
        return version("openlineage-python")
    except PackageNotFoundError:
        return "unknown"


def lineage_configured() -> bool:
    """Whether the OpenLineage client has a transport configured: ``OPENLINEAGE_URL``, ``OPENLINEAGE__*``
    variables or an ``openlineage.yml`` (``OPENLINEAGE_CONFIG``, the working directory, ``~/.openlineage``);
    ``OPENLINEAGE_DISABLED=true`` turns it off. Without configuration the platform emits nothing (the client
    itself would fall back to printing events on the console)."""
    if os.environ.get("OPENLINEAGE_DISABLED", "").strip().lower() == "true":
        return False
    if os.environ.get("OPENLINEAGE_URL") or any(k.startswith("OPENLINEAGE__") for k in os.environ):
        return True
    return config_file() is not None


def config_file() -> Path | None:
    """The ``openlineage.yml`` the client would read, found the way it looks (``OPENLINEAGE_CONFIG``, the working
    directory, ``~/.openlineage/``) without importing it, so an unconfigured process pays nothing for it."""
    candidates = [os.environ.get("OPENLINEAGE_CONFIG"), os.path.join(os.getcwd(), "openlineage.yml"),
                  os.path.join(os.path.expanduser("~/.openlineage"), "openlineage.yml")]
    for candidate in candidates:
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.R_OK):
            return Path(candidate)
    return None


def lineage_client() -> OpenLineageClient | None:
    """The client with its own configuration, or None when OpenLineage is not configured (emit nothing)."""
    if not lineage_configured():
        return None
    from openlineage.client import OpenLineageClient

    return OpenLineageClient()
