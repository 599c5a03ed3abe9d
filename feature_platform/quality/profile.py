# Over 400 lines: the profile's map, its exact reduce and the report the gate reads are one computation.
"""Dataset profile: the statistics the quality gate judges, and the distribution summary a later
dataset version is compared with (a baseline is a stored profile).

Counting work (rows, entities, UTC day buckets, label classes, duplicate keys) is DuckDB SQL over
``read_parquet``; per-feature moments, distinct-value sketches and distributions stream over
``ParquetFile.iter_batches`` (``distributions.py``). Each data file is profiled alone (map, on any
executor; inside it, column groups in threads) and the results are reduced exactly in file order, so a
sharded dataset gets one profile whatever the worker and thread count. Memory is bounded by one record
batch per thread plus a fixed-size sample and sketch per feature, never by the dataset: files are opened
without pyarrow's pre-buffering (which caches every column chunk it reads) and DuckDB's grouping spills past
a fixed memory limit.
Counts, not shares, are stored: they are exact and make a profile byte-reproducible for the same
files.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from feature_platform.contracts.feature_contract import FeatureContract, load_feature_contract
from feature_platform.contracts.manifest import DatasetManifest
from feature_platform.datasets.executors import Executor, TaskError, run_tasks, task_session, threads_per_task
from feature_platform.quality.distributions import (
    Cuts,
    FileScan,
    Moments,
    edges,
    merge_cuts,
    merge_scans,
    scan_counts,
    scan_moments,
)
from feature_platform.quality.sketch import HyperLogLog
from feature_platform.warehouse.connection import quote_identifier as _q

DEFAULT_BINS = 10
DEFAULT_QUANTILES = 100
DEFAULT_SAMPLE_SIZE = 32_768
MAX_LISTED_GAPS = 50
DUCKDB_MEMORY_LIMIT = "64MB"
DAY_US = 86_400_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FLOAT_TYPES = frozenset({"halffloat", "float", "double"})  # how pyarrow prints float16/32/64

T = TypeVar("T")
R = TypeVar("R")
FeatureKind = Literal["numeric", "text", "other"]
EdgePair = tuple[list[float], list[float]]


class ProfileError(ValueError):
    """The parquet file cannot be profiled against its manifest."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetIdentity(_Model):
    """Which dataset version a profile describes."""

    dataset_id: str
    dataset_version: str
    manifest_digest: str
    source_kind: str
    source_hash: str
    file_sha256: list[str]


class EntityProfile(_Model):
    column: str
    distinct: int
    entropy: float = Field(description="Shannon entropy of rows per entity / ln(distinct entities), in [0, 1]")
    top_share: float = Field(description="share of rows held by the most frequent entity")
    null_count: int


class DayRange(_Model):
    first: str
    last: str
    days: int


class TimeProfile(_Model):
    column: str
    first: str | None
    last: str | None
    day_buckets: int = Field(description="UTC days from the first to the last timestamp, inclusive")
    covered_days: int
    coverage: float
    uncovered: list[DayRange] = Field(description=f"gaps without rows, at most the first {MAX_LISTED_GAPS}")
    uncovered_ranges: int
    null_count: int


class LabelProfile(_Model):
    column: str
    declared_classes: dict[str, str]
    counts: dict[str, int]
    null_count: int
    missing_classes: list[str]
    undeclared_classes: list[str]
    class_coverage: float | None = Field(description="declared classes present / declared; None if none declared")
    entropy: float = Field(description="Shannon entropy of classes / ln(number of classes), in [0, 1]")


class DuplicateProfile(_Model):
    key: list[str]
    distinct_keys: int
    duplicate_rows: int = Field(description="rows repeating a key, beyond its first row")
    rate: float


class FeatureProfile(_Model):
    """One feature. ``valid`` counts values that are neither null nor NaN/±inf."""

    name: str
    type: str
    kind: FeatureKind
    declared_nullable: bool
    rows: int
    valid: int
    non_null_rate: float
    null_rate: float = Field(description="1 - non_null_rate")
    approx_distinct: int
    distinct_ratio: float | None
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None
    quantile_edges: list[float] = Field(default_factory=list, description="quantiles+1 points, min to max")
    cdf_counts: list[int] = Field(default_factory=list, description="values <= each quantile edge")
    bin_edges: list[float] = Field(default_factory=list, description="interior PSI bin edges (right-closed)")
    bin_counts: list[int] = Field(default_factory=list, description="values per PSI bin")


class ReferenceCounts(_Model):
    """A candidate feature counted at a reference profile's edges (input to drift)."""

    valid: int
    bin_counts: list[int]
    cdf_counts: list[int]


class DatasetProfile(_Model):
    profile_version: Literal[1] = 1
    dataset: DatasetIdentity
    rows: int
    bins: int
    quantiles: int
    sample_size: int
    entity: EntityProfile
    time: TimeProfile
    label: LabelProfile | None
    duplicates: DuplicateProfile
    features: dict[str, FeatureProfile] = Field(description="by name, in feature order")
    text_columns: list[str]

    def feature(self, name: str) -> FeatureProfile | None:
        return self.features.get(name)


def profile_dataset(
    parquet_path: Path | Sequence[Path],
    manifest: DatasetManifest,
    *,
    bins: int = DEFAULT_BINS,
    quantiles: int = DEFAULT_QUANTILES,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    contract: FeatureContract | None = None,
    executor: Executor = "inline",
    workers: int | None = None,
) -> DatasetProfile:
    """Profile the dataset's data file(s) ``parquet_path`` described by ``manifest``."""
    profile, _ = profile_against(parquet_path, manifest, None, bins=bins, quantiles=quantiles,
                                 sample_size=sample_size, contract=contract, executor=executor, workers=workers)
    return profile


@dataclass(frozen=True)
class _FileTask:
    """First pass over one file; picklable for processes and Ray."""

    path: str
    index: int
    entity: str
    timestamp: str
    label: str | None
    numeric: list[str]
    other: list[str]
    sample_size: int
    threads: int


@dataclass
class _FileCounts:
    """What DuckDB counts in one file."""

    rows: int
    entity_values: np.ndarray
    entity_counts: np.ndarray
    entity_nulls: int
    time_lo: int | None
    time_hi: int | None
    time_nulls: int
    days: np.ndarray
    label_counts: list[tuple[Any, int]]
    label_nulls: int
    distinct_keys: int


@dataclass
class _FilePartial:
    counts: _FileCounts
    scan: FileScan


@dataclass(frozen=True)
class _CountTask:
    path: str
    edge_sets: dict[str, list[list[float]]]
    threads: int


def _map_file(task: _FileTask) -> _FilePartial:
    """Counts (DuckDB) and moments, sample and sketches (one streamed pass) of one data file.

    With ``task.threads`` > 1 the counting queries and groups of feature columns run in threads at once (DuckDB,
    pyarrow and numpy's loops release the GIL). A feature's numbers depend only on its own column and the
    row keys, so they are the same for any number of threads, bit for bit.
    """
    path = Path(task.path)
    with pq.ParquetFile(path, pre_buffer=False) as pf:
        schema = pf.schema_arrow
    wanted = [task.entity, task.timestamp, *task.numeric, *task.other] + ([task.label] if task.label else [])
    missing = [n for n in wanted if n not in schema.names]
    if missing:
        raise ProfileError(f"{path}: columns named by the manifest are missing from the file: {missing}")
    groups = _column_groups([*task.numeric, *task.other], task.threads)
    numeric = set(task.numeric)

    def scan(columns: list[str]) -> FileScan:
        with pq.ParquetFile(path, pre_buffer=False) as pf:
            return scan_moments(pf, [c for c in columns if c in numeric], task.sample_size, file_index=task.index,
                                other=[c for c in columns if c not in numeric])

    if task.threads == 1:
        counts, scans = _sql_counts(task, schema), [scan(g) for g in groups]
    else:
        with ThreadPoolExecutor(max_workers=len(groups) + 1, thread_name_prefix="fp-profile") as pool:
            counted = pool.submit(_sql_counts, task, schema)
            scans = list(pool.map(scan, groups))
            counts = counted.result()
    return _FilePartial(counts, merge_scans(scans))


def _sql_counts(task: _FileTask, schema: pa.Schema) -> _FileCounts:
    try:
        with tempfile.TemporaryDirectory(prefix="fp-profile-") as spill, duckdb.connect() as con:
            _bounded(con, spill)
            sql = _SqlCounts(con, task.path, schema)
            rows = sql.rows()
            values, counts, entity_nulls = sql.entity_counts(task.entity)
            lo, hi, time_nulls, days = sql.time_parts(task.timestamp)
            label_counts, label_nulls = sql.label_counts(task.label)
            distinct_keys = sql.distinct_keys([task.entity, task.timestamp])
    except duckdb.Error as exc:
        raise ProfileError(f"{task.path}: {str(exc).splitlines()[0]}") from None
    return _FileCounts(rows=rows, entity_values=values, entity_counts=counts, entity_nulls=entity_nulls,
                       time_lo=lo, time_hi=hi, time_nulls=time_nulls, days=days, label_counts=label_counts,
                       label_nulls=label_nulls, distinct_keys=distinct_keys)


def _column_groups(columns: list[str], threads: int) -> list[list[str]]:
    """``columns`` dealt round-robin into ``threads`` groups (fewer if there are fewer columns; one if none)."""
    n = max(1, min(threads, len(columns)))
    return [columns[i::n] for i in range(n)]


def _bounded(con: duckdb.DuckDBPyConnection, spill: str) -> None:
    """Keep DuckDB's memory flat whatever the file size: grouping a large file's keys spills to ``spill``."""
    con.execute(f"SET memory_limit = '{DUCKDB_MEMORY_LIMIT}'")
    con.execute("SET temp_directory = ?", [spill])
    con.execute("SET preserve_insertion_order = false")


def _count_file(task: _CountTask) -> dict[str, Cuts]:
    """The counting pass over one file, groups of features in threads (the same counts for any number)."""
    def count(names: list[str]) -> dict[str, Cuts]:
        with pq.ParquetFile(task.path, pre_buffer=False) as pf:
            return scan_counts(pf, {n: task.edge_sets[n] for n in names})

    groups = _column_groups(sorted(task.edge_sets), task.threads)
    if len(groups) == 1:
        return count(groups[0])
    with ThreadPoolExecutor(max_workers=len(groups), thread_name_prefix="fp-profile") as pool:
        return {name: cuts for part in pool.map(count, groups) for name, cuts in part.items()}


def _run(fn: Callable[[T], R], tasks: list[T], executor: Executor, workers: int | None) -> list[R]:
    """Map over the files; a worker's ProfileError comes back as itself (one line), not wrapped."""
    try:
        return run_tasks(fn, tasks, executor=executor, workers=workers)
    except TaskError as exc:
        cause = exc.__cause__
        while cause is not None and not isinstance(cause, ProfileError):
            cause = getattr(cause, "cause", None) or cause.__cause__
        if isinstance(cause, ProfileError):
            raise ProfileError(str(cause)) from None
        raise


def profile_against(
    parquet_path: Path | Sequence[Path],
    manifest: DatasetManifest,
    reference: DatasetProfile | None,
    *,
    bins: int = DEFAULT_BINS,
    quantiles: int = DEFAULT_QUANTILES,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    contract: FeatureContract | None = None,
    executor: Executor = "inline",
    workers: int | None = None,
) -> tuple[DatasetProfile, dict[str, ReferenceCounts]]:
    """The profile, plus each numeric feature counted at ``reference``'s edges in the same pass.

    Map and reduce: each file is profiled alone (``executor``/``workers`` decide where) and the partial
    results are combined exactly in file order, so the profile is the same for any executor and workers.
    """
    if bins < 2 or quantiles < 2 or sample_size < quantiles:
        raise ValueError(f"need bins >= 2, quantiles >= 2 and sample_size >= quantiles, got "
                         f"{bins}, {quantiles}, {sample_size}")
    paths = [Path(parquet_path)] if isinstance(parquet_path, (str, Path)) else [Path(p) for p in parquet_path]
    if not paths:
        raise ValueError("profile needs at least one data file")
    contract = contract or load_feature_contract()
    with pq.ParquetFile(paths[0]) as pf:
        schema = pf.schema_arrow
    _require_columns(schema, manifest, paths[0])
    kinds = {name: _kind(schema.field(name).type) for name in manifest.feature_order}
    numeric = [n for n in manifest.feature_order if kinds[n] == "numeric"]
    other = [n for n in manifest.feature_order if kinds[n] != "numeric"]
    threads = threads_per_task(executor, workers, len(paths))
    tasks = [_FileTask(str(p), i, manifest.entity_column, manifest.timestamp_column, manifest.label_column, numeric,
                       other, sample_size, threads) for i, p in enumerate(paths)]
    with task_session(executor, workers):  # both passes on one set of workers
        parts = _run(_map_file, tasks, executor, workers)
        return _reduce(paths, manifest, contract, reference, parts, schema, kinds, numeric, bins, quantiles,
                       sample_size, executor, workers, threads)


def _reduce(paths: list[Path], manifest: DatasetManifest, contract: FeatureContract,
            reference: DatasetProfile | None, parts: list[_FilePartial], schema: pa.Schema,
            kinds: dict[str, FeatureKind], numeric: list[str], bins: int, quantiles: int, sample_size: int,
            executor: Executor, workers: int | None, threads: int) -> tuple[DatasetProfile, dict[str, ReferenceCounts]]:
    """Combine the files' first passes in file order, cut the edges, map the counting pass, sum it."""
    counted = [p.counts for p in parts]
    rows = sum(c.rows for c in counted)
    entity, disjoint = _reduce_entity(manifest.entity_column, counted)
    time = _reduce_time(manifest.timestamp_column, counted)
    label = _reduce_label(manifest.label_column, _declared_classes(contract, manifest.label_column), counted)
    key = [manifest.entity_column, manifest.timestamp_column]
    # When every (entity, timestamp) key lives in one file, the files' distinct keys add up.
    distinct_keys = sum(c.distinct_keys for c in counted) if disjoint else _distinct_keys_all(paths, key)
    dup = rows - distinct_keys
    duplicates = DuplicateProfile(key=key, distinct_keys=distinct_keys, duplicate_rows=dup,
                                  rate=dup / rows if rows else 0.0)
    moments = {n: Moments(sample_size) for n in numeric}
    sketches = {n: HyperLogLog() for n in manifest.feature_order}
    valid_counts = dict.fromkeys(manifest.feature_order, 0)
    for p in parts:
        for n in numeric:
            moments[n].merge(p.scan.moments[n])
        for n in manifest.feature_order:
            sketches[n].merge(p.scan.sketches[n])
            valid_counts[n] += p.scan.valid[n]

    own = {name: edges(acc, bins, quantiles) for name, acc in moments.items()}
    ref = _reference_edges(reference, numeric)
    edge_sets = {n: [*own[n], *ref.get(n, ([], []))] for n in numeric}
    cuts = merge_cuts(_run(_count_file, [_CountTask(str(p), edge_sets, threads) for p in paths], executor, workers))

    declared_nullable = {c.name: c.nullable for c in manifest.columns}
    features: dict[str, FeatureProfile] = {}
    for name in manifest.feature_order:
        valid = valid_counts[name]
        rate = valid / rows if rows else 0.0
        distinct = sketches[name].estimate()
        stats: dict[str, Any] = {}
        if name in moments and valid:
            acc, (q_edges, b_edges) = moments[name], own[name]
            stats = {
                "mean": _finite(acc.mean), "std": _finite(math.sqrt(acc.m2 / acc.valid)), "min": acc.lo,
                "max": acc.hi, "quantile_edges": q_edges, "cdf_counts": cuts[name].at_or_below(q_edges).tolist(),
                "bin_edges": b_edges, "bin_counts": cuts[name].per_bin(b_edges).tolist(),
            }
        features[name] = FeatureProfile(
            name=name, type=str(schema.field(name).type), kind=kinds[name],
            declared_nullable=declared_nullable[name], rows=rows, valid=valid, non_null_rate=rate,
            null_rate=1.0 - rate, approx_distinct=distinct,
            distinct_ratio=min(1.0, distinct / valid) if valid else None, **stats,
        )

    profile = DatasetProfile(
        dataset=DatasetIdentity(
            dataset_id=manifest.dataset_id, dataset_version=manifest.dataset_version,
            manifest_digest=manifest.digest(), source_kind=manifest.source.kind,
            source_hash=manifest.source.source_hash, file_sha256=[f.sha256 for f in manifest.files],
        ),
        rows=rows, bins=bins, quantiles=quantiles, sample_size=sample_size, entity=entity, time=time,
        label=label, duplicates=duplicates, features=features,
        text_columns=[f.name for f in schema if _kind(f.type) == "text"],
    )
    references = {
        name: ReferenceCounts(valid=moments[name].valid, bin_counts=cuts[name].per_bin(b).tolist(),
                              cdf_counts=cuts[name].at_or_below(q).tolist())
        for name, (b, q) in ref.items()
    }
    return profile, references


def _reduce_entity(column: str, parts: list[_FileCounts]) -> tuple[EntityProfile, bool]:
    """The entity profile of all files, and whether no entity value (nor null) appears in two files."""
    values = np.concatenate([p.entity_values for p in parts])
    per_file = np.concatenate([p.entity_counts for p in parts]).astype(np.int64)
    if values.size:
        uniq, inverse = np.unique(values, return_inverse=True)
        counts = np.bincount(inverse.reshape(-1), weights=per_file, minlength=uniq.size).astype(np.int64)
    else:
        counts = np.zeros(0, dtype=np.int64)
    disjoint = counts.size == values.size and sum(p.entity_nulls > 0 for p in parts) <= 1
    total = int(counts.sum())
    nulls = sum(p.entity_nulls for p in parts)
    return EntityProfile(
        column=column, distinct=int(counts.size), entropy=_normalised_entropy(counts, int(counts.size)),
        top_share=float(counts.max()) / total if total else 0.0, null_count=int(nulls),
    ), disjoint


def _reduce_time(column: str, parts: list[_FileCounts]) -> TimeProfile:
    nulls = sum(p.time_nulls for p in parts)
    los = [p.time_lo for p in parts if p.time_lo is not None]
    his = [p.time_hi for p in parts if p.time_hi is not None]
    if not los or not his:
        return TimeProfile(column=column, first=None, last=None, day_buckets=0, covered_days=0, coverage=0.0,
                           uncovered=[], uncovered_ranges=0, null_count=int(nulls))
    days = np.unique(np.concatenate([p.days for p in parts]))
    buckets = int(days[-1] - days[0] + 1)
    gaps = np.flatnonzero(np.diff(days) > 1)
    uncovered = [
        DayRange(first=_day(int(days[i]) + 1), last=_day(int(days[i + 1]) - 1),
                 days=int(days[i + 1] - days[i] - 1))
        for i in gaps[:MAX_LISTED_GAPS]
    ]
    return TimeProfile(
        column=column, first=_instant(min(los)), last=_instant(max(his)),
        day_buckets=buckets, covered_days=int(days.size), coverage=days.size / buckets,
        uncovered=uncovered, uncovered_ranges=int(gaps.size), null_count=int(nulls),
    )


def _reduce_label(column: str | None, declared: dict[str, str], parts: list[_FileCounts]) -> LabelProfile | None:
    if column is None:
        return None
    merged: dict[Any, int] = {}
    for p in parts:
        for value, n in p.label_counts:
            merged[value] = merged.get(value, 0) + n
    nulls = sum(p.label_nulls for p in parts)
    counts = {str(v): int(n) for v, n in sorted(merged.items(), key=lambda r: (str(type(r[0])), r[0]))}
    missing = [k for k in declared if k not in counts]
    classes = len(set(declared) | set(counts))  # undeclared values count too, so entropy stays <= 1
    return LabelProfile(
        column=column, declared_classes=declared, counts=counts, null_count=int(nulls),
        missing_classes=missing, undeclared_classes=[k for k in counts if declared and k not in declared],
        class_coverage=(len(declared) - len(missing)) / len(declared) if declared else None,
        entropy=_normalised_entropy(np.array(list(counts.values()), dtype=np.int64), classes),
    )


def _distinct_keys_all(paths: list[Path], key: list[str]) -> int:
    """Distinct keys over all files at once: needed when one entity's rows are spread over several files."""
    cols = ", ".join(_q(k) for k in key)
    try:
        with tempfile.TemporaryDirectory(prefix="fp-profile-") as spill, duckdb.connect() as con:
            _bounded(con, spill)
            row = con.execute(f"SELECT count(*) FROM (SELECT 1 FROM read_parquet(?) GROUP BY {cols})",
                              [[str(p) for p in paths]]).fetchone()
    except duckdb.Error as exc:
        raise ProfileError(f"{paths[0].parent}: {str(exc).splitlines()[0]}") from None
    assert row is not None
    return int(row[0])


def _reference_edges(reference: DatasetProfile | None, numeric: list[str]) -> dict[str, EdgePair]:
    """(bin edges, quantile edges) of each numeric feature the reference has a distribution for."""
    found: dict[str, EdgePair] = {}
    for name in numeric:
        f = reference.feature(name) if reference is not None else None
        if f is not None and f.kind == "numeric" and f.valid > 0:
            found[name] = (f.bin_edges, f.quantile_edges)
    return found


def _kind(arrow_type: pa.DataType) -> FeatureKind:
    if pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type) or pa.types.is_boolean(arrow_type):
        return "numeric"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "text"
    return "other"


def _require_columns(schema: pa.Schema, manifest: DatasetManifest, path: Path) -> None:
    wanted = [manifest.entity_column, manifest.timestamp_column, *manifest.feature_order]
    wanted += [manifest.label_column] if manifest.label_column else []
    missing = [n for n in wanted if n not in schema.names]
    if missing:
        raise ProfileError(f"{path}: columns named by the manifest are missing from the file: {missing}")


def _declared_classes(contract: FeatureContract, label_column: str | None) -> dict[str, str]:
    label = contract.label
    if label is None or label_column is None or label.name != label_column:
        return {}
    return {str(k): v for k, v in label.classes.items()}


def _normalised_entropy(counts: np.ndarray, classes: int) -> float:
    """Shannon entropy of ``counts`` divided by ln(classes); 0 when fewer than two classes."""
    total = int(counts.sum())
    if classes < 2 or total == 0:
        return 0.0
    p = np.sort(counts[counts > 0]).astype(np.float64) / total  # sorted: a fixed summation order
    return float(min(1.0, max(0.0, -np.sum(p * np.log(p)) / math.log(classes))))


def _day(day: int) -> str:
    return (EPOCH + timedelta(days=day)).date().isoformat()


def _instant(us: int) -> str:
    return (EPOCH + timedelta(microseconds=us)).isoformat().replace("+00:00", "Z")


class _SqlCounts:
    """The counting queries, one DuckDB scan each over only the columns it needs."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: str, schema: pa.Schema) -> None:
        self._con, self._path, self._schema = con, path, schema

    def _one(self, sql: str) -> tuple[Any, ...]:
        row = self._con.execute(sql.replace("{src}", "read_parquet(?)"), [self._path]).fetchone()
        assert row is not None
        return tuple(row)

    def _numpy(self, sql: str) -> dict[str, np.ndarray]:
        result = self._con.execute(sql.replace("{src}", "read_parquet(?)"), [self._path]).fetchnumpy()
        return {k: np.asarray(v) for k, v in result.items()}

    def rows(self) -> int:
        return int(self._one("SELECT count(*) FROM {src}")[0])

    def entity_counts(self, column: str) -> tuple[np.ndarray, np.ndarray, int]:
        """(distinct non-null values, rows per value, null rows)."""
        c = _q(column)
        found = self._numpy(f"SELECT {c} AS v, count(*) AS n FROM {{src}} WHERE {c} IS NOT NULL GROUP BY {c}")
        (nulls,) = self._one(f"SELECT count(*) FILTER (WHERE {c} IS NULL) FROM {{src}}")
        return found["v"], found["n"].astype(np.int64), int(nulls)

    def time_parts(self, column: str) -> tuple[int | None, int | None, int, np.ndarray]:
        """(first and last instant in epoch microseconds, null rows, distinct UTC day numbers)."""
        c = _q(column)
        lo, hi, nulls = self._one(
            f"SELECT min(epoch_us({c})), max(epoch_us({c})), count(*) FILTER (WHERE {c} IS NULL) FROM {{src}}"
        )
        if lo is None or hi is None:
            return None, None, int(nulls), np.zeros(0, dtype=np.int64)
        days = self._numpy(
            f"SELECT DISTINCT CAST(floor(epoch_us({c}) / {DAY_US}.0) AS BIGINT) AS d FROM {{src}} "
            f"WHERE {c} IS NOT NULL"
        )["d"].astype(np.int64)
        return int(lo), int(hi), int(nulls), days

    def label_counts(self, column: str | None) -> tuple[list[tuple[Any, int]], int]:
        if column is None:
            return [], 0
        c = _q(column)
        rows = self._con.execute(
            f"SELECT {c} AS v, count(*) AS n FROM read_parquet(?) WHERE {c} IS NOT NULL GROUP BY {c}", [self._path]
        ).fetchall()
        (nulls,) = self._one(f"SELECT count(*) FILTER (WHERE {c} IS NULL) FROM {{src}}")
        return [(v, int(n)) for v, n in rows], int(nulls)

    def distinct_keys(self, key: list[str]) -> int:
        cols = ", ".join(_q(k) for k in key)
        (distinct,) = self._one(f"SELECT count(*) FROM (SELECT 1 FROM {{src}} GROUP BY {cols})")
        return int(distinct)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
