# Over 400 lines: the steps of one feature build share the pinned revision and the build record.
"""Feature build for one dataset version: pin the Feast repo, check contract drift, write the offline
features, apply and materialize to the online store, and record it all in ``feature_build.json``.

The recorded Feast repo sha is what makes a training set reproducible, so a build refuses a repo
with uncommitted changes (unless told otherwise) and a ``git_ref`` that does not resolve to HEAD.
Every build gets its own registry and online store under ``out_dir``, so builds never race; the
latest build is then published to the stable paths the Feast repository names (``features.layout``).
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, model_validator

from feature_platform.contracts.canonical import digest, sha256_file
from feature_platform.contracts.data_root import FEATURE_BUILD_NAME, feature_build_path
from feature_platform.contracts.feature_contract import FeatureContract, load_feature_contract
from feature_platform.contracts.paths import require_safe_id
from feature_platform.contracts.provenance import utc_now, utc_timestamp
from feature_platform.contracts.safe_read import read_mapping
from feature_platform.features.drift import DriftReport, contract_drift, feature_view_fields, load_repo_definitions
from feature_platform.features.layout import DATASET_VIEW as DATASET_VIEW
from feature_platform.features.layout import MARKET_VIEW as MARKET_VIEW
from feature_platform.features.layout import LatestPaths, latest_paths
from feature_platform.storage.files import write_atomic
from feature_platform.storage.syscalls import copy_into

STORE_CONFIG = "feature_store.yaml"
MARKET_COLUMNS = ("asset", "ts", "open", "high", "low", "close", "volume")
# When a feature row became known to the platform (Feast's created timestamp): the dataset's created_at.
# A training set built "as of" a time sees only rows created by then (features/training_set.py).
CREATED_COLUMN = "created"
_SHA256 = r"^[0-9a-f]{64}$"


class FeatureBuildError(RuntimeError):
    """The features could not be built; the message says why."""


class FeatureDriftError(FeatureBuildError):
    """The Feast feature view no longer matches ``feature_contract.yaml``."""

    def __init__(self, report: DriftReport) -> None:
        super().__init__(report.diff_text)
        self.report = report


class RepoRevision(BaseModel):
    model_config = ConfigDict(frozen=True)

    commit: str = Field(pattern=r"^[0-9a-f]{40}$")
    tree: str = Field(pattern=r"^[0-9a-f]{40}$", description="git tree sha of the Feast repo directory")
    dirty: bool
    ref: str | None = None


class OutputFile(BaseModel):
    model_config = ConfigDict(frozen=True)

    path: str = Field(description="POSIX path relative to out_dir")
    bytes: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class FeatureViewRef(BaseModel):
    """A Feast feature view as this build applied it: what a point-in-time join needs to honour it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    ttl_seconds: int | None = Field(description="maximum feature age at join time; null = unlimited")
    join_keys: list[str]
    timestamp_field: str
    created_timestamp_column: str | None
    features: list[str]
    path: str = Field(description="offline parquet, POSIX path relative to out_dir")


class FeatureBuild(BaseModel):
    """The content of ``feature_build.json``."""

    model_config = ConfigDict(frozen=True)

    spec_version: Literal["1"] = "1"
    dataset_version: str
    feast_repo_sha: str
    feast_repo_tree_sha: str
    feast_repo_dirty: bool
    feast_repo_ref: str | None
    feast_version: str
    project: str
    feature_contract_sha256: str
    feature_service: str
    dataset_sha256: str = Field(description="sha256 of the dataset's data file; of several, dataset_digest of theirs")
    dataset_file_sha256s: list[Annotated[str, Field(pattern=_SHA256)]] = Field(
        default_factory=list, description="sha256 of each data file, in manifest order (absent before sharding)")
    market_sha256: str | None
    materialized_at: str
    materialization_start: str
    materialization_end: str
    row_counts: dict[str, int]
    outputs: list[OutputFile]
    feature_views: list[FeatureViewRef] = Field(default_factory=list)

    @model_validator(mode="after")
    def _dataset_files_agree(self) -> FeatureBuild:
        if self.dataset_file_sha256s and dataset_digest(self.dataset_file_sha256s) != self.dataset_sha256:
            raise ValueError("dataset_sha256 must be the dataset_digest of dataset_file_sha256s")
        return self

    def dataset_files(self) -> list[str]:
        """sha256 of each data file the features were built from, in manifest order."""
        return list(self.dataset_file_sha256s) or [self.dataset_sha256]

    def output(self, path: str) -> OutputFile:
        found = [o for o in self.outputs if o.path == path]
        if not found:
            raise FeatureBuildError(f"feature build lists no output {path!r}")
        return found[0]

    def view(self, name: str) -> FeatureViewRef:
        found = [v for v in self.feature_views if v.name == name]
        if not found:
            raise FeatureBuildError(f"feature build records no feature view {name!r} (built before views were "
                                    "recorded? rebuild the features)")
        return found[0]


def dataset_digest(file_sha256s: Sequence[str]) -> str:
    """One sha256 for a dataset's data files: the file's own for one file (as before sharding), else the
    sha256 of the canonical JSON list of the files' sha256s in manifest order."""
    return file_sha256s[0] if len(file_sha256s) == 1 else digest(list(file_sha256s))


def _git(repo: Path, *args: str) -> str:
    try:
        proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        raise FeatureBuildError(f"git {' '.join(args)} failed in {repo}: {exc}") from None
    if proc.returncode != 0:
        raise FeatureBuildError(f"git {' '.join(args)} failed in {repo}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def repo_revision(repo_path: Path, *, git_ref: str | None = None, allow_dirty: bool = False) -> RepoRevision:
    """HEAD and the Feast repo directory's tree sha; refuses uncommitted changes and unpinned refs."""
    repo_path = Path(repo_path).resolve()
    top = Path(_git(repo_path, "rev-parse", "--show-toplevel")).resolve()
    rel = repo_path.relative_to(top).as_posix()
    commit = _git(top, "rev-parse", "HEAD")
    tree = _git(top, "rev-parse", f"HEAD:{rel}" if rel != "." else "HEAD^{tree}")
    status = _git(top, "status", "--porcelain", "--untracked-files=all", "--", rel)
    dirty = bool(status)
    if dirty and not allow_dirty:
        raise FeatureBuildError(
            f"Feast repo {repo_path} has uncommitted changes; commit them or pass allow_dirty=True:\n{status}"
        )
    if git_ref is not None:
        pinned = _git(top, "rev-parse", "--verify", f"{git_ref}^{{commit}}")
        if pinned != commit:
            raise FeatureBuildError(
                f"Feast repo is at {commit}, but git_ref {git_ref!r} resolves to {pinned}; check out the ref first"
            )
    return RepoRevision(commit=commit, tree=tree, dirty=dirty, ref=git_ref)


def _write_table(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def store_config(repo_path: Path, registry: Path, online: Path) -> Any:
    """The repo's ``feature_store.yaml`` with this build's registry and online store paths."""
    from feast import RepoConfig

    raw = read_mapping(repo_path / STORE_CONFIG)
    raw["registry"] = str(registry)
    raw["online_store"] = {**raw.get("online_store", {}), "type": "sqlite", "path": str(online)}
    return RepoConfig(repo_path=repo_path, **raw)


def check_drift(
    repo_path: Path, contract: FeatureContract | None = None, objects: list[Any] | None = None
) -> DriftReport:
    """Drift of the repo's ``dataset_features`` view against the contract."""
    contract = contract or load_feature_contract()
    fields = feature_view_fields(repo_path, DATASET_VIEW, objects)
    return contract_drift(contract, fields, view_name=f"feast:{DATASET_VIEW}")


def _typed(field: pa.Field) -> str:
    return f"{field.type}{'' if field.nullable else ' not null'}"


def _dataset_rows(files: Sequence[Path], columns: list[str], entity: str, timestamp: str) -> pa.Table:
    """``columns`` of every data file, in (timestamp, entity) order, stably.

    A sharded dataset keeps all rows of an entity in one file, each file in the rows' original order; so
    rows that tie on (timestamp, entity) share a file and keep their order, and the sorted table is the
    same, row for row, for any number of files. Rows already in that order (the synthetic builder's) stay
    put, so their features keep the bytes they had when one file was read as it was.
    """
    tables: list[pa.Table] = []
    for path in files:
        try:
            schema = pq.read_schema(path)
            absent = [c for c in columns if c not in schema.names]
            if absent:
                raise FeatureBuildError(f"{path}: dataset lacks columns {absent}")
            table = pq.read_table(path, columns=columns)
        except (OSError, pa.ArrowException) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise FeatureBuildError(f"{path}: not a readable parquet data file: {reason}") from None
        if tables and not table.schema.equals(tables[0].schema):
            first = tables[0].schema
            differ = [n for n in columns if not table.schema.field(n).equals(first.field(n))]
            raise FeatureBuildError(f"{path}: columns {differ} are {[_typed(table.schema.field(n)) for n in differ]}, "
                                    f"{files[0]} has {[_typed(first.field(n)) for n in differ]}")
        tables.append(table)
    if not tables:
        raise FeatureBuildError("no dataset data files to build features from")
    rows = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
    return rows.sort_by([(timestamp, "ascending"), (entity, "ascending")]).combine_chunks()


def build_features(
    repo_path: Path,
    dataset_parquet: Path | Sequence[Path],
    dataset_version: str,
    out_dir: Path,
    market_parquet: Path | None,
    *,
    git_ref: str | None = None,
    allow_dirty: bool = False,
    contract: FeatureContract | None = None,
    created_at: datetime | None = None,
) -> FeatureBuild:
    """Build, materialize and record the features of one dataset version (see module docstring).

    ``dataset_parquet`` is the dataset's data file, or all its data files in manifest order
    (``contracts.manifest.data_file_paths``); the offline features hold their rows in (timestamp, entity)
    order, so a dataset gives the same features, byte for byte, however many files it was written as.
    Writes ``out_dir/offline/<version>/{dataset_features,market_ohlcv}.parquet`` and
    ``feature_build.json`` beside them, and ``out_dir/feast/<version>/{registry,online_store}.db``;
    then publishes the build to ``out_dir/latest/`` (:func:`publish_latest`).
    ``created_at`` (default: now) is every dataset feature row's created timestamp: when the rows became
    known, normally the dataset manifest's ``created_at``.
    """
    os.environ["FEAST_USAGE"] = "False"
    import feast

    require_safe_id(dataset_version, "dataset_version")
    repo_path, out_dir = Path(repo_path).resolve(), Path(out_dir).resolve()
    contract = contract or load_feature_contract()
    revision = repo_revision(repo_path, git_ref=git_ref, allow_dirty=allow_dirty)

    defs = load_repo_definitions(repo_path)
    offline = out_dir / "offline" / dataset_version
    feast_dir = out_dir / "feast" / dataset_version
    dataset_out = offline / f"{DATASET_VIEW}.parquet"
    market_out = offline / f"{MARKET_VIEW}.parquet" if market_parquet is not None else None
    # The pinned repo's views come from its own committed contract; the dataset was built on `contract`.
    objects: list[Any] = defs.make_objects(dataset_out, market_out)
    report = check_drift(repo_path, contract, objects)
    if not report.ok:
        raise FeatureDriftError(report)

    data_files = [Path(dataset_parquet)] if isinstance(dataset_parquet, (str, Path)) else \
        [Path(p) for p in dataset_parquet]
    columns = [contract.entity.name, contract.timestamp.name, *contract.feature_order]
    dataset = _dataset_rows(data_files, columns, contract.entity.name, contract.timestamp.name)
    created = (created_at or utc_now()).astimezone(UTC)
    features = dataset.append_column(
        pa.field(CREATED_COLUMN, pa.timestamp("us", tz="UTC"), nullable=False),
        pa.array([created] * dataset.num_rows, pa.timestamp("us", tz="UTC")))
    offline.mkdir(parents=True, exist_ok=True)
    feast_dir.mkdir(parents=True, exist_ok=True)
    _write_table(features, dataset_out)
    row_counts = {DATASET_VIEW: features.num_rows}
    ts = features.column(contract.timestamp.name)
    starts, ends = [pc.min(ts).as_py()], [pc.max(ts).as_py()]
    if market_parquet is not None and market_out is not None:
        market = pq.read_table(market_parquet)
        absent = [c for c in MARKET_COLUMNS if c not in market.column_names]
        if absent:
            raise FeatureBuildError(f"{market_parquet}: market data lacks columns {absent}")
        market = market.select(list(MARKET_COLUMNS))
        _write_table(market, market_out)
        row_counts[MARKET_VIEW] = market.num_rows
        starts.append(pc.min(market.column("ts")).as_py())
        ends.append(pc.max(market.column("ts")).as_py())

    registry, online = feast_dir / "registry.db", feast_dir / "online_store.db"
    for stale in (registry, online):
        stale.unlink(missing_ok=True)
    config = store_config(repo_path, registry, online)
    store = feast.FeatureStore(config=config)
    store.apply(objects)
    valid = [t for t in starts if t is not None]
    if not valid:
        where = data_files[0] if len(data_files) == 1 else data_files[0].parent
        raise FeatureBuildError(f"{where}: no rows with an event timestamp")
    start: datetime = min(valid)
    end: datetime = max(t for t in ends if t is not None) + timedelta(seconds=1)
    materialized_at = utc_now()
    # Feast prints its progress, in ANSI colours, on stdout, which belongs to the CLI's result (`--json`)
    with contextlib.redirect_stdout(io.StringIO()):
        store.materialize(start_date=start, end_date=end)
    row_counts[f"online:{DATASET_VIEW}"] = len(pc.unique(features.column(contract.entity.name).drop_null()))
    if market_parquet is not None:
        row_counts[f"online:{MARKET_VIEW}"] = len(pc.unique(market.column("asset").drop_null()))

    outputs = [p for p in (dataset_out, market_out, online, registry) if p is not None]
    file_sha256s = [sha256_file(p) for p in data_files]
    build = FeatureBuild(
        dataset_version=dataset_version,
        feast_repo_sha=revision.commit,
        feast_repo_tree_sha=revision.tree,
        feast_repo_dirty=revision.dirty,
        feast_repo_ref=git_ref,
        feast_version=feast.__version__,
        project=config.project,
        feature_contract_sha256=contract.digest(),
        feature_service=defs.TRAINING_SERVICE,
        dataset_sha256=dataset_digest(file_sha256s),
        dataset_file_sha256s=file_sha256s,
        market_sha256=sha256_file(Path(market_parquet)) if market_parquet is not None else None,
        materialized_at=utc_timestamp(materialized_at),
        materialization_start=utc_timestamp(start),
        materialization_end=utc_timestamp(end),
        row_counts=row_counts,
        feature_views=[_view_ref(o, out_dir) for o in objects if isinstance(o, feast.FeatureView)],
        outputs=[
            OutputFile(path=p.relative_to(out_dir).as_posix(), bytes=p.stat().st_size, sha256=sha256_file(p))
            for p in outputs
        ],
    )
    _write_atomic(offline / FEATURE_BUILD_NAME, (build.model_dump_json(indent=2) + "\n").encode())
    publish_latest(repo_path, out_dir, build, defs.make_objects, start, end)
    return build


class PublishedFeatures(BaseModel):
    """The content of ``<out_dir>/latest/published.json``: the build the Feast repository serves."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    spec_version: Literal["1"] = "1"
    dataset_version: str
    feature_build: str = Field(description="the build's feature_build.json, POSIX path relative to out_dir")
    feature_build_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    materialization_start: str = Field(description="START for `feast materialize START END` to reload it")
    materialization_end: str = Field(description="END for `feast materialize START END`")
    published_at: str


def _stage_file(source: Path, staged: Path, *, link: bool) -> None:
    """``source`` at ``staged``: a hard link when allowed (immutable parquet), else a durable copy."""
    if link:
        try:
            os.link(source, staged)
            return
        except OSError:
            pass  # another file system, or links not allowed: copy
    with open(source, "rb", buffering=0) as fin, open(staged, "wb", buffering=0) as fout:
        copy_into(fin, fout.fileno())
        os.fsync(fout.fileno())


def _published_store_config(repo_path: Path, latest: LatestPaths) -> bytes:
    import yaml

    raw = read_mapping(repo_path / STORE_CONFIG)
    raw["registry"] = str(latest.registry)
    raw["online_store"] = {**raw.get("online_store", {}), "type": "sqlite", "path": str(latest.online_store)}
    header = (f"# Written by fp features build: {repo_path / STORE_CONFIG} with absolute paths to this\n"
              f"# directory. Use it when the data root is not the project's data/:\n"
              f"#   feast -c {repo_path} -f {latest.store_config} plan\n")
    return (header + yaml.safe_dump(raw, sort_keys=False)).encode()


def publish_latest(repo_path: Path, out_dir: Path, build: FeatureBuild, make_objects: Any,
                   start: datetime, end: datetime) -> PublishedFeatures:
    """Publish ``build`` as ``out_dir/latest/``, where the Feast repository's sources and registry point.

    The offline parquet is hard-linked (or copied) from the build's immutable files; the online store is
    a copy of the build's (Feast writes to it: the hashed original stays untouched); the registry holds
    the repository's objects over the published paths and the build's materialization interval, and no
    infrastructure record, so the user's first ``feast apply`` only creates what is missing. The whole
    directory is staged beside ``latest/`` and swapped in at once: readers see one build, never a mix.
    """
    import feast

    from feature_platform.market.source import empty_ohlcv
    from feature_platform.storage.publish import publish_dir, staging_dir

    latest = latest_paths(out_dir)
    version = build.dataset_version
    feature_build = feature_build_path(out_dir, version)
    try:
        with staging_dir(latest.dir) as staging:
            staged = LatestPaths(staging)
            _stage_file(out_dir / build.view(DATASET_VIEW).path, staged.dataset, link=True)
            if any(v.name == MARKET_VIEW for v in build.feature_views):
                _stage_file(out_dir / build.view(MARKET_VIEW).path, staged.market, link=True)
            else:  # this build had no market bars: the repo's market view reads an empty table, not a stale one
                buf = io.BytesIO()
                pq.write_table(empty_ohlcv().select(list(MARKET_COLUMNS)), buf)
                write_atomic(staged.market, buf.getvalue())
            _stage_file(out_dir / build.output(f"feast/{version}/online_store.db").path, staged.online_store,
                        link=False)
            store = feast.FeatureStore(config=store_config(repo_path, staged.registry, staged.online_store))
            objects = make_objects(latest.dataset, latest.market)
            store.apply(objects)
            for view in (o for o in objects if isinstance(o, feast.FeatureView)):
                store.registry.apply_materialization(view, store.project, start, end, commit=True)
            write_atomic(staged.store_config, _published_store_config(repo_path, latest))
            published = PublishedFeatures(
                dataset_version=version, feature_build=feature_build.relative_to(out_dir).as_posix(),
                feature_build_sha256=sha256_file(feature_build), materialization_start=utc_timestamp(start),
                materialization_end=utc_timestamp(end), published_at=utc_timestamp(utc_now()),
            )
            write_atomic(staged.marker, (published.model_dump_json(indent=2) + "\n").encode())
            publish_dir(staging, latest.dir, replace=True)
    except OSError as exc:
        raise FeatureBuildError(f"{latest.dir}: could not publish build {version!r}: {exc}") from None
    return published


def read_published(out_dir: Path) -> PublishedFeatures:
    """``<out_dir>/latest/published.json``, parsed strictly; ``FeatureBuildError`` names the file."""
    from pydantic import ValidationError

    from feature_platform.contracts.safe_read import read_json

    path = latest_paths(out_dir).marker
    try:
        return PublishedFeatures.model_validate(read_json(path))
    except (ValueError, ValidationError) as exc:
        raise FeatureBuildError(f"{path}: not a readable published feature build: {str(exc).splitlines()[0]}") \
            from None


def _view_ref(view: Any, out_dir: Path) -> FeatureViewRef:
    source = view.batch_source
    return FeatureViewRef(
        name=view.name, ttl_seconds=int(view.ttl.total_seconds()) if view.ttl else None,
        join_keys=[c.name for c in view.entity_columns], timestamp_field=source.timestamp_field,
        created_timestamp_column=source.created_timestamp_column or None, features=[f.name for f in view.features],
        path=Path(source.path).resolve().relative_to(out_dir).as_posix(),
    )


def read_feature_build(path: Path) -> FeatureBuild:
    """``feature_build.json``, parsed strictly; ``FeatureBuildError`` names the file when it is not one."""
    from pydantic import ValidationError

    from feature_platform.contracts.safe_read import read_json

    try:
        return FeatureBuild.model_validate(read_json(path))
    except (ValueError, ValidationError) as exc:
        raise FeatureBuildError(f"{path}: not a readable feature build: {str(exc).splitlines()[0]}") from None


