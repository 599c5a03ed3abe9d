# Over 400 lines: the build, its verify and its upstream verify share the join's provenance types.
"""Training sets: the dataset's label rows joined point-in-time with a feature build's offline features.

A training set is a spec v1 dataset of its own (``<dataset_id>-training``). Each label row
``(entity, timestamp, label)`` of the verified dataset gets the features of the latest feature row of
its entity at or before its timestamp, no older than the feature view's TTL (``pit.point_in_time_join``:
inclusive, ties to the newest created timestamp). Two provenance columns record which feature row was
used: ``feature_event_timestamp`` and ``feature_created_timestamp``, so leakage is audited from the
data itself (``audit_leakage``), not from the code's promise.

``as_of`` ("as known at"): feature rows created after ``as_of`` are invisible, so rebuilding after a
late correction reproduces the same rows and the same data-file sha256. Label rows no visible feature
row matches are left out and counted (``unmatched_label_rows``); training never sees an invented value.

Sharded (``shards`` > 1): label and feature rows are hash-partitioned by entity (``features.shards``), each
shard is joined by the same join on its own task (inline, process or Ray) and written as its own data file;
stable-sorted by (timestamp, entity), the shards hold exactly the unsharded set's rows. Without an object
store the workers write into the staged directory (one machine, or a disk they share with the driver);
with one, everything they read and write goes through it.

The manifest's ``source`` records the dataset digest, the ``feature_build.json`` sha256, every joined
view with its TTL and the join parameters; the lineage walk follows them back to the source.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, JsonValue, ValidationError

from feature_platform.contracts.canonical import digest, sha256_file
from feature_platform.contracts.data_root import FEATURE_BUILD_NAME, DataRoot
from feature_platform.contracts.feature_contract import FeatureContract, load_feature_contract
from feature_platform.contracts.manifest import (
    MANIFEST_NAME,
    SPEC_VERSION,
    Column,
    DataFile,
    DatasetManifest,
    Limits,
    RngSeeds,
    Source,
    Splits,
    data_file_paths,
    load_manifest,
)
from feature_platform.contracts.paths import UnsafePathError, resolve_inside
from feature_platform.contracts.provenance import git_hash, parse_utc_timestamp, utc_now, utc_timestamp
from feature_platform.contracts.safe_read import read_json
from feature_platform.datasets.build import (
    DEFAULT_MAX_BYTES,
    BuildResult,
    build_config,
    seal,
)
from feature_platform.datasets.executors import EXECUTORS, run_tasks
from feature_platform.datasets.parquet_writer import write_parquet
from feature_platform.datasets.sharding import data_file_name
from feature_platform.datasets.splits import SplitSpec
from feature_platform.datasets.verify import VerifyReport, verify_dataset
from feature_platform.features.build import (
    DATASET_VIEW,
    FeatureBuild,
    FeatureBuildError,
    FeatureViewRef,
    read_feature_build,
)
from feature_platform.features.pit import point_in_time_join
from feature_platform.features.shards import (
    PARTITION_RULE,
    PartitionInput,
    Scratch,
    StoreSpec,
    open_store,
    partition,
    read_pieces,
    require_shards,
    scratch_space,
    uniform_batches,
)
from feature_platform.storage.object_keys import join_key
from feature_platform.storage.publish import publish_dir, staging_dir

SOURCE_KIND = "training_set"
FEATURE_EVENT_TS = "feature_event_timestamp"
FEATURE_CREATED_TS = "feature_created_timestamp"
_TS = pa.timestamp("us", tz="UTC")
PROVENANCE_FIELDS = (pa.field(FEATURE_EVENT_TS, _TS, nullable=False), pa.field(FEATURE_CREATED_TS, _TS))
JOIN_SEMANTICS = ("as-of: latest feature row with event_timestamp <= label timestamp (inclusive) and "
                  "label timestamp - event_timestamp <= ttl (inclusive); ties to the newest created timestamp, "
                  "then the later row; rows created after as_of invisible")
BATCH_ROWS = 131_072
SHARD_STEM = "part"


class TrainingSetRefused(RuntimeError):
    """An input did not verify (or cannot be joined); nothing was written."""


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class DatasetRef(_Frozen):
    dataset_id: str
    dataset_version: str
    manifest_digest: str
    manifest_path: str


class JoinedBuild(_Frozen):
    path: str
    sha256: str
    feast_repo_sha: str
    feature_service: str


class JoinedView(FeatureViewRef):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    sha256: str


class JoinParameters(_Frozen):
    semantics: str
    join_keys: list[str]
    label_timestamp: str
    feature_timestamp: str
    created_timestamp: str | None
    ttl_seconds: int | None
    as_of: str | None


class Partition(_Frozen):
    """How a sharded training set split its rows into data files (one file per shard)."""

    rule: str
    key: str
    shards: int


class TrainingSetParameters(_Frozen):
    """``source.parameters`` of a training set manifest: what it was joined from, and how."""

    dataset: DatasetRef
    feature_build: JoinedBuild
    feature_views: list[JoinedView]
    join: JoinParameters
    label_rows: int
    unmatched_label_rows: int
    partition: Partition | None = None  # absent for an unsharded set


def training_set_parameters(manifest: DatasetManifest) -> TrainingSetParameters | None:
    """The join record of a training set manifest; None for any other dataset. Raises ValueError if malformed."""
    if manifest.source.kind != SOURCE_KIND:
        return None
    try:
        return TrainingSetParameters.model_validate(manifest.source.parameters)
    except ValidationError as exc:
        raise ValueError(f"training set {manifest.dataset_id}: source.parameters: {str(exc).splitlines()[0]}; "
                         f"{exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}") from None


def training_set_id(dataset_id: str) -> str:
    return f"{dataset_id}-training"


def parse_as_of(text: str | None) -> datetime | None:
    """``as_of`` from a UTC ISO 8601 timestamp with a trailing Z (strictly: a real date and time)."""
    return None if text is None else parse_utc_timestamp(text, "as_of")


def _refuse_unverified(report: VerifyReport, what: str) -> None:
    if not report.ok:
        raise TrainingSetRefused(f"{what} failed verification: " + "; ".join(c.line() for c in report.failures))


def verified_feature_build(path: Path, dataset: DatasetManifest) -> tuple[FeatureBuild, str]:
    """The feature build, its sha256, after its offline outputs re-hash and it names this dataset's bytes."""
    try:
        build = read_feature_build(path)
    except FeatureBuildError as exc:
        raise TrainingSetRefused(str(exc)) from None
    out_dir = Path(path).parent.parent.parent  # <out_dir>/offline/<version>/feature_build.json
    if build.dataset_version != dataset.dataset_version:
        raise TrainingSetRefused(f"{path}: built for dataset_version {build.dataset_version!r}, "
                                 f"not {dataset.dataset_version!r}")
    if [f.sha256 for f in dataset.files] != build.dataset_files():
        raise TrainingSetRefused(f"{path}: built from dataset files {build.dataset_files()}, the dataset's files are "
                                 f"{[f.sha256 for f in dataset.files]}")
    try:
        view = build.view(DATASET_VIEW)
        recorded = build.output(view.path)
        actual = sha256_file(resolve_inside(out_dir, view.path))
    except (FeatureBuildError, UnsafePathError, OSError) as exc:
        raise TrainingSetRefused(f"{path}: {exc}") from None
    if actual != recorded.sha256:
        raise TrainingSetRefused(f"{out_dir / view.path}: sha256 {actual}, the feature build recorded "
                                 f"{recorded.sha256}")
    return build, sha256_file(Path(path))


@dataclass
class _JoinedSource:
    """The joined table as a builder source (kind ``training_set``)."""

    table: pa.Table
    params: dict[str, JsonValue]
    kind: str = SOURCE_KIND

    @property
    def schema(self) -> pa.Schema:
        return self.table.schema

    @property
    def expected_rows(self) -> int:
        return int(self.table.num_rows)

    @property
    def rng_seeds(self) -> RngSeeds | None:
        return None

    def parameters(self) -> dict[str, JsonValue]:
        return self.params

    def source_hash(self) -> str:
        return digest(self.params)

    def batches(self) -> Iterator[pa.RecordBatch]:
        yield from self.table.to_batches(max_chunksize=BATCH_ROWS)


def join_features(labels: pa.Table, features: pa.Table, *, entity: str, timestamp: str, created: str | None,
                  ttl: timedelta | None, feature_names: list[str], as_of: datetime | None) -> pa.Table:
    """``labels`` with ``feature_names`` and the two provenance columns, as of each label's timestamp."""
    if as_of is not None:
        if created is None:
            raise TrainingSetRefused("as_of needs feature rows with a created timestamp; the view records none")
        features = features.filter(pc.less_equal(features.column(created), pa.scalar(as_of, _TS)))
    features = features.append_column(FEATURE_EVENT_TS, features.column(timestamp).cast(_TS))
    features = features.append_column(
        FEATURE_CREATED_TS,
        features.column(created).cast(_TS) if created else pa.nulls(features.num_rows, _TS))
    return point_in_time_join(labels, features, join_keys=[entity], entity_ts_col=timestamp,
                              feature_ts_col=timestamp, created_ts_col=created, ttl=ttl,
                              feature_names=[*feature_names, FEATURE_EVENT_TS, FEATURE_CREATED_TS])


def joined_rows(labels: pa.Table, features: pa.Table, schema: pa.Schema, *, entity: str, timestamp: str,
                created: str | None, ttl: timedelta | None, feature_names: list[str],
                as_of: datetime | None) -> pa.Table:
    """The matched rows of ``join_features``, in ``schema`` (label rows no visible feature row matches are left
    out). The one join a training set runs, whether on one machine or per shard."""
    joined = join_features(labels, features, entity=entity, timestamp=timestamp, created=created, ttl=ttl,
                           feature_names=feature_names, as_of=as_of)
    event = joined.column(FEATURE_EVENT_TS)
    matched = joined if event.null_count == 0 else joined.filter(pc.is_valid(event))
    return matched.select(schema.names).cast(schema)


@dataclass(frozen=True)
class _ShardJob:
    """Join shard ``shard`` of ``shards`` and write its data file; picklable for processes and Ray."""

    shard: int
    shards: int
    scratch: Scratch
    label_keys: tuple[str, ...]
    feature_keys: tuple[str, ...]
    label_schema: pa.Schema
    feature_schema: pa.Schema
    schema: pa.Schema
    entity: str
    timestamp: str
    created: str | None
    ttl_seconds: int | None
    feature_names: tuple[str, ...]
    as_of: datetime | None
    split_fractions: dict[str, float]
    split_salt: str
    file_name: str
    out_dir: str | None  # the staged dataset directory (no object store)
    out_store: StoreSpec | None = None
    out_key: str | None = None


@dataclass(frozen=True)
class _ShardResult:
    file_name: str
    bytes: int
    rows: int
    sha256: str
    split_rows: list[int]
    label_rows: int
    out_key: str | None


def shard_file_name(shard: int, shards: int) -> str:
    """The data file of shard ``shard``: ``data.parquet`` for an unsharded set (its bytes as ever), else
    ``part-00003-of-00008.parquet`` (the names sharded training sets have always had)."""
    return data_file_name(shard, shards, SHARD_STEM)


def _join_shard(job: _ShardJob) -> _ShardResult:
    """One shard: read only its pieces, run the join, write (and hash) its data file."""
    labels = read_pieces(job.scratch, job.label_keys, job.label_schema.names, lambda: job.label_schema)
    features = read_pieces(job.scratch, job.feature_keys, job.feature_schema.names, lambda: job.feature_schema)
    ttl = None if job.ttl_seconds is None else timedelta(seconds=job.ttl_seconds)
    table = joined_rows(labels, features, job.schema, entity=job.entity, timestamp=job.timestamp,
                        created=job.created, ttl=ttl, feature_names=list(job.feature_names), as_of=job.as_of)
    label_rows = labels.num_rows
    del labels, features
    # one shard keeps the table's own batches, so an unsharded set has the bytes it always had
    batches = table.to_batches(max_chunksize=BATCH_ROWS) if job.shards == 1 else uniform_batches(table, BATCH_ROWS)
    spec = SplitSpec(dict(job.split_fractions), job.split_salt)
    split_rows = np.zeros(len(spec.names), dtype=np.int64)

    def count(batch: pa.RecordBatch) -> None:
        split_rows[:] += spec.count(batch.column(job.entity))

    with contextlib.ExitStack() as stack:
        if job.out_store is None:
            assert job.out_dir is not None
            path = Path(job.out_dir) / job.file_name
        else:
            path = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fp-shard-out-"))) / job.file_name
        written = write_parquet(path, job.schema, batches, count)
        if job.out_store is not None:
            assert job.out_key is not None
            open_store(job.out_store).put_file(path, job.out_key)
    return _ShardResult(job.file_name, written.bytes, written.rows, written.sha256,
                        [int(n) for n in split_rows], label_rows, job.out_key)


def _land(staged: Path, store: StoreSpec | None, result: _ShardResult) -> _ShardResult:
    """Driver side, as each shard's result arrives: a shard in the object store is fetched into the staged
    directory and its sha256 checked against the worker's before anything else happens."""
    if store is None or result.out_key is None:
        return result
    local = staged / result.file_name
    open_store(store).download_file(result.out_key, local)
    actual = sha256_file(local)
    if actual != result.sha256:
        raise TrainingSetRefused(f"{result.out_key}: the object store holds sha256 {actual}, the worker wrote "
                                 f"{result.sha256}")
    return result


def store_prefix(manifest_path: Path) -> str:
    """The object store prefix of a training set: ``training_sets/<dataset_id>/<inputs key>/<set id>``."""
    directory = Path(manifest_path).parent
    return join_key("training_sets", directory.parent.parent.name, directory.parent.name, directory.name)


def build_training_set(
    dataset_manifest_path: Path,
    feature_build_path: Path,
    out_dir: Path,
    *,
    as_of: datetime | None = None,
    contract: FeatureContract | None = None,
    shards: int = 1,
    executor: str = "inline",
    workers: int | None = None,
    ray_address: str | None = None,
    store: StoreSpec | None = None,
) -> BuildResult:
    """Verify the dataset and the feature build, join, and build the training set dataset (module docstring).

    Training sets are immutable: ``out_dir/<dataset_id>/<inputs key>/<dataset_id>-training/``, the key a digest
    of the dataset digest, the feature build sha256 and ``as_of`` (and the shard count when above 1). Building
    the same inputs again reuses the existing set when it still verifies (a model trained on it keeps its
    training set); ``current.json`` in ``out_dir/<dataset_id>/`` points at the latest one built
    (``current_training_set``).

    ``shards`` > 1 hash-partitions label and feature rows by entity (``features.shards``) and joins each shard
    on its own task (``executor``: inline, process or ray), one data file per shard. Sorted by (timestamp,
    entity) with a stable sort, the shards' rows are cell for cell the unsharded set's rows sorted the same
    way: rows that tie on both share an entity, hence a shard, where they keep the dataset's order. With
    ``store``, inputs and pieces move through that object store and workers put their data files there;
    the driver fetches each one, checks its sha256, and uploads the manifest beside them.
    """
    shards = require_shards(shards)
    if executor not in EXECUTORS:
        raise ValueError(f"executor {executor!r}: expected one of {', '.join(EXECUTORS)}")
    contract = contract or load_feature_contract()
    if contract.label is None:
        raise TrainingSetRefused("the feature contract declares no label column")
    report = verify_dataset(Path(dataset_manifest_path), contract=contract)
    _refuse_unverified(report, f"dataset {dataset_manifest_path}")
    dataset = load_manifest(Path(dataset_manifest_path))
    if not isinstance(dataset.splits, Splits):
        raise TrainingSetRefused(f"split algorithm {dataset.splits.algorithm!r} is not supported for training "
                                 "sets (entity_hash only)")
    build, build_sha = verified_feature_build(Path(feature_build_path), dataset)
    view = build.view(DATASET_VIEW)
    out_root = Path(feature_build_path).parent.parent.parent
    entity, ts, label = contract.entity.name, contract.timestamp.name, contract.label.name
    order = list(contract.feature_order)
    if view.join_keys != [entity] or view.timestamp_field != ts or view.features != order:
        raise TrainingSetRefused(f"feature view {view.name}: joins on {view.join_keys} at {view.timestamp_field} "
                                 f"with {len(view.features)} features; the contract needs [{entity!r}] at {ts!r} "
                                 f"with {order}")
    created = view.created_timestamp_column
    if as_of is not None and created is None:
        raise TrainingSetRefused("as_of needs feature rows with a created timestamp; the view records none")

    inputs: dict[str, JsonValue] = {"dataset": dataset.digest(), "feature_build": build_sha,
                                    "as_of": None if as_of is None else utc_timestamp(as_of)}
    key = digest({**inputs, "shards": shards} if shards > 1 else inputs)[:16]
    target_root = Path(out_dir) / dataset.dataset_id / key
    set_id = training_set_id(dataset.dataset_id)
    existing = target_root / set_id / MANIFEST_NAME
    if existing.is_file():
        reused = verify_training_input(existing, contract=contract)
        if reused.ok:
            manifest = load_manifest(existing)
            _point_current(Path(out_dir), dataset.dataset_id, existing, manifest.digest())
            return BuildResult(existing.parent, manifest, manifest.digest(), reused, 0.0)

    started = time.perf_counter()
    label_files = data_file_paths(dataset_manifest_path, dataset)
    feature_file = resolve_inside(out_root, view.path)
    label_cols = (entity, ts, label)
    feature_cols = (entity, ts, *order, *([created] if created else []))
    label_schema = _columns_schema(label_files[0], label_cols)
    feature_schema = _columns_schema(feature_file, feature_cols)
    schema = pa.schema([*contract.arrow_schema(), *PROVENANCE_FIELDS])
    target = target_root / set_id
    spec = SplitSpec(dict(dataset.splits.fractions), dataset.splits.salt)
    out_prefix = store_prefix(target / MANIFEST_NAME)
    with staging_dir(target) as staged, scratch_space(target_root, store, "training-set") as scratch:
        label_keys, feature_keys = _shard_inputs(scratch, label_files, feature_file, label_cols, feature_cols,
                                                 entity, shards, executor, workers, ray_address)
        jobs = [_ShardJob(shard=s, shards=shards, scratch=scratch if shards > 1 or store else _DIRECT,
                          label_keys=tuple(label_keys[s]), feature_keys=tuple(feature_keys[s]),
                          label_schema=label_schema, feature_schema=feature_schema, schema=schema, entity=entity,
                          timestamp=ts, created=created, ttl_seconds=view.ttl_seconds, feature_names=tuple(order),
                          as_of=as_of, split_fractions=dict(spec.fractions), split_salt=spec.salt,
                          file_name=shard_file_name(s, shards), out_dir=None if store else str(staged),
                          out_store=store, out_key=join_key(out_prefix, shard_file_name(s, shards)) if store else None)
                for s in range(shards)]
        results = run_tasks(_join_shard, jobs, executor=executor,  # type: ignore[arg-type]
                            workers=workers, ray_address=ray_address,
                            on_result=lambda _, result: _land(staged, store, result))
        label_rows = sum(r.label_rows for r in results)
        rows = sum(r.rows for r in results)
        if rows == 0:
            raise TrainingSetRefused(f"no label row of {dataset.dataset_id} has a feature row"
                                     + (f" visible as of {utc_timestamp(as_of)}" if as_of else ""))
        params = TrainingSetParameters(
            dataset=DatasetRef(dataset_id=dataset.dataset_id, dataset_version=dataset.dataset_version,
                               manifest_digest=dataset.digest(),
                               manifest_path=str(Path(dataset_manifest_path).resolve())),
            feature_build=JoinedBuild(path=str(Path(feature_build_path).resolve()), sha256=build_sha,
                                      feast_repo_sha=build.feast_repo_sha, feature_service=build.feature_service),
            feature_views=[JoinedView(**view.model_dump(), sha256=build.output(view.path).sha256)],
            join=JoinParameters(semantics=JOIN_SEMANTICS, join_keys=[entity], label_timestamp=ts,
                                feature_timestamp=view.timestamp_field, created_timestamp=created,
                                ttl_seconds=view.ttl_seconds, as_of=None if as_of is None else utc_timestamp(as_of)),
            label_rows=label_rows, unmatched_label_rows=label_rows - rows,
            partition=None if shards == 1 else Partition(rule=PARTITION_RULE, key=entity, shards=shards),
        ).model_dump(mode="json", exclude_none=False)
        if params.get("partition") is None:
            params.pop("partition", None)  # an unsharded set's record is what it always was
        manifest = _manifest(contract, schema, set_id, dataset.dataset_version, params, spec, results)
        built = seal(staged, target, manifest, contract, {r.file_name: r.sha256 for r in results})
        # force only replaces a set that exists but no longer verifies (the reuse above took every good one)
        publish_dir(staged, target, replace=True)
    if store is not None:
        open_store(store).put_file(target / MANIFEST_NAME, join_key(out_prefix, MANIFEST_NAME))
    _point_current(Path(out_dir), dataset.dataset_id, target / MANIFEST_NAME, manifest.digest())
    return BuildResult(target, manifest, manifest.digest(), built, time.perf_counter() - started)


# Unsharded and without an object store, the join reads the input files where they are.
_DIRECT = Scratch("/")


def _columns_schema(path: Path, columns: tuple[str, ...]) -> pa.Schema:
    try:
        schema = pq.read_schema(path)
        return pa.schema([schema.field(c) for c in columns])
    except (OSError, KeyError, pa.ArrowInvalid) as exc:
        raise TrainingSetRefused(f"{path}: cannot read columns {list(columns)}: {exc}") from None


def _shard_inputs(scratch: Scratch, label_files: list[Path], feature_file: Path, label_cols: tuple[str, ...],
                  feature_cols: tuple[str, ...], entity: str, shards: int, executor: str, workers: int | None,
                  ray_address: str | None) -> tuple[list[list[str]], list[list[str]]]:
    """Per shard, the keys its join reads: the input files themselves when unsharded, else its pieces."""
    labels: list[str] = [str(p) for p in label_files]
    features: list[str] = [str(feature_file)]
    if scratch.store is not None:  # no shared disk: the inputs go to the store once, workers fetch them
        store = open_store(scratch.store)
        labels = [f"input/labels-{i:05d}.parquet" for i in range(len(label_files))]
        features = ["input/features-00000.parquet"]
        for local, rel in zip([*label_files, feature_file], [*labels, *features], strict=True):
            store.put_file(local, join_key(scratch.root, rel))
    if shards == 1:
        return [labels], [features]
    pieces = partition(scratch, [
        PartitionInput("labels", tuple(labels), label_cols, tuple(label_files)),
        PartitionInput("features", tuple(features), feature_cols, (feature_file,)),
    ], entity, shards, executor=executor, workers=workers, ray_address=ray_address)  # type: ignore[arg-type]
    return pieces["labels"], pieces["features"]


def _manifest(contract: FeatureContract, schema: pa.Schema, set_id: str, version: str,
              params: dict[str, JsonValue], spec: SplitSpec, results: list[_ShardResult]) -> DatasetManifest:
    """The spec v1 manifest over the shards' data files, with the configuration ``build_dataset`` records."""
    source = Source(kind=SOURCE_KIND, parameters=params, source_hash=digest(params))
    rows = np.sum([r.split_rows for r in results], axis=0)
    split_info = Splits(algorithm="entity_hash", key=contract.entity.name, salt=spec.salt,
                        fractions=dict(spec.fractions),
                        rows={n: int(c) for n, c in zip(spec.names, rows, strict=True)})
    limits = Limits(max_bytes=DEFAULT_MAX_BYTES)
    config = build_config(source, {"algorithm": split_info.algorithm, "key": split_info.key, "salt": spec.salt,
                                   "fractions": split_info.fractions}, limits, schema, contract)
    return DatasetManifest(
        spec_version=SPEC_VERSION, dataset_id=set_id, dataset_version=version,
        created_at=utc_timestamp(utc_now()), git_hash=git_hash(), config_hash=digest(config), source=source,
        files=[DataFile(path=r.file_name, format="parquet", bytes=r.bytes, rows=r.rows, sha256=r.sha256)
               for r in results],
        columns=[Column(name=f.name, type=str(f.type), nullable=f.nullable) for f in schema],
        feature_order=list(contract.feature_order), entity_column=contract.entity.name,
        timestamp_column=contract.timestamp.name, label_column=contract.label.name if contract.label else None,
        row_count=sum(r.rows for r in results), splits=split_info, rng_seeds=None, limits=limits)


CURRENT_NAME = "current.json"


def _point_current(out_dir: Path, dataset_id: str, manifest_path: Path, manifest_digest: str) -> None:
    from feature_platform.storage.files import write_atomic

    pointer = {"manifest_path": manifest_path.relative_to(out_dir / dataset_id).as_posix(),
               "manifest_digest": manifest_digest}
    write_atomic(out_dir / dataset_id / CURRENT_NAME, json.dumps(pointer, sort_keys=True).encode())


def current_training_set(out_dir: Path, dataset_id: str) -> tuple[Path, str]:
    """(manifest path, manifest digest) of the latest training set built for ``dataset_id``."""
    pointer = Path(out_dir) / dataset_id / CURRENT_NAME
    try:
        raw = read_json(pointer)
        return resolve_inside(pointer.parent, str(raw["manifest_path"])), str(raw["manifest_digest"])
    except (ValueError, KeyError, TypeError, UnsafePathError) as exc:
        raise TrainingSetRefused(f"{pointer}: no training set recorded for {dataset_id} "
                                 f"({type(exc).__name__}); build the training_set asset first") from None


def audit_leakage(training_manifest_path: Path) -> VerifyReport:
    """Prove from the rows that no feature used is from the label's future, too old, or created after ``as_of``.

    Reads the label timestamp and the two provenance columns of every row; each rule is one named check
    whose ``actual`` counts the offending rows (0 passes).
    """
    report = VerifyReport(manifest_path=str(training_manifest_path))
    manifest = load_manifest(Path(training_manifest_path))
    try:
        params = training_set_parameters(manifest)
    except ValueError as exc:
        report.add("join_parameters", False, "recorded", "malformed", MANIFEST_NAME, detail=str(exc))
        return report
    if params is None:
        report.add("training_set_source", False, SOURCE_KIND, manifest.source.kind, MANIFEST_NAME)
        return report
    ts = manifest.timestamp_column
    table = pa.concat_tables([
        pq.read_table(resolve_inside(Path(training_manifest_path).parent, f.path),
                      columns=[ts, FEATURE_EVENT_TS, FEATURE_CREATED_TS]) for f in manifest.files])
    label_ts = table.column(ts).cast(_TS)
    event_ts = table.column(FEATURE_EVENT_TS).cast(_TS)
    report.add("feature_row_recorded", True if table.num_rows == 0 else event_ts.null_count == 0, 0,
               event_ts.null_count, FEATURE_EVENT_TS)
    future = pc.sum(pc.cast(pc.greater(event_ts, label_ts), pa.int64())).as_py() or 0
    report.add("no_feature_after_label", future == 0, 0, future, FEATURE_EVENT_TS,
               detail="rows whose feature event timestamp is after the label's timestamp")
    ttl = params.join.ttl_seconds
    if ttl is not None:
        age = pc.subtract(label_ts, event_ts)
        stale = pc.sum(pc.cast(pc.greater(age, pa.scalar(timedelta(seconds=ttl), pa.duration("us"))),
                               pa.int64())).as_py() or 0
        report.add("feature_within_ttl", stale == 0, 0, stale, FEATURE_EVENT_TS,
                   detail=f"rows whose feature is older than the view's ttl ({ttl} s)")
    as_of_text = params.join.as_of
    if as_of_text is not None:
        as_of = parse_utc_timestamp(as_of_text, "as_of")
        created = table.column(FEATURE_CREATED_TS).cast(_TS)
        late = pc.sum(pc.cast(pc.fill_null(pc.greater(created, pa.scalar(as_of, _TS)), True),
                              pa.int64())).as_py() or 0
        report.add("no_feature_created_after_as_of", late == 0, 0, late, FEATURE_CREATED_TS,
                   detail=f"rows whose feature row was created after as_of {as_of_text} (or has no created time)")
    return report


def verify_upstream(manifest: DatasetManifest, report: VerifyReport) -> None:
    """For a training set: the dataset and the feature build it was joined from still verify, unchanged.

    Adds ``upstream_dataset`` and ``upstream_feature_build`` checks to ``report``; nothing for other datasets.
    """
    try:
        params = training_set_parameters(manifest)
    except ValueError as exc:
        report.add("upstream_dataset", False, "a recorded join", "malformed", MANIFEST_NAME, detail=str(exc))
        return
    if params is None:
        return
    ref = params.dataset
    upstream = verify_dataset(Path(ref.manifest_path), expected_digest=ref.manifest_digest)
    report.add("upstream_dataset", upstream.ok, f"{ref.dataset_id} {ref.manifest_digest} verifies",
               "PASS" if upstream.ok else "FAIL: " + "; ".join(c.line() for c in upstream.failures[:3]),
               ref.manifest_path)
    if not upstream.ok:
        return
    dataset = load_manifest(Path(ref.manifest_path))
    try:
        build, sha = verified_feature_build(Path(params.feature_build.path), dataset)
        views = {v.name: build.output(v.path).sha256 for v in build.feature_views}
    except (TrainingSetRefused, FeatureBuildError) as exc:
        report.add("upstream_feature_build", False, params.feature_build.sha256, "unverifiable",
                   params.feature_build.path, detail=str(exc))
        return
    joined = {v.name: v.sha256 for v in params.feature_views}
    ok = sha == params.feature_build.sha256 and all(views.get(n) == h for n, h in joined.items())
    report.add("upstream_feature_build", ok, {FEATURE_BUILD_NAME: params.feature_build.sha256, **joined},
               {FEATURE_BUILD_NAME: sha, **{n: views.get(n, "missing") for n in joined}}, params.feature_build.path)


def verify_training_input(manifest_path: Path, base_dir: Path | None = None, *, expected_digest: str | None = None,
                          contract: FeatureContract | None = None) -> VerifyReport:
    """``verify_dataset``, and for a training set also everything it was joined from (``verify_upstream``)."""
    report = verify_dataset(Path(manifest_path), base_dir, expected_digest=expected_digest, contract=contract)
    if report.ok:
        manifest = load_manifest(Path(manifest_path))
        verify_upstream(manifest, report)
    return report


def training_sets_dir(root: Path) -> Path:
    """Where training sets live under a data root."""
    return DataRoot(Path(root)).training_sets


