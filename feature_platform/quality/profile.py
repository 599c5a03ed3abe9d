"""Dataset profile: the statistics the quality gate judges, and the distribution summary a later
dataset version is compared with (a baseline is a stored profile).

Counting work (rows, entities, UTC day buckets, label classes, duplicate keys, approximate distinct
values) is DuckDB SQL over ``read_parquet``; per-feature moments and distributions stream over
``ParquetFile.iter_batches`` (``distributions.py``). Memory is bounded by one record batch plus a
fixed-size sample per feature, never by the dataset. Counts, not shares, are stored: they are
exact and make a profile byte-reproducible for the same file.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from feature_platform.contracts.feature_contract import FeatureContract, load_feature_contract
from feature_platform.contracts.manifest import DatasetManifest
from feature_platform.quality.distributions import edges, scan_counts, scan_moments

DEFAULT_BINS = 10
DEFAULT_QUANTILES = 100
DEFAULT_SAMPLE_SIZE = 32_768
MAX_LISTED_GAPS = 50
DAY_US = 86_400_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FLOAT_TYPES = frozenset({"halffloat", "float", "double"})  # how pyarrow prints float16/32/64

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
    parquet_path: Path,
    manifest: DatasetManifest,
    *,
    bins: int = DEFAULT_BINS,
    quantiles: int = DEFAULT_QUANTILES,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    contract: FeatureContract | None = None,
) -> DatasetProfile:
    """Profile the dataset file ``parquet_path`` described by ``manifest``."""
    profile, _ = profile_against(parquet_path, manifest, None, bins=bins, quantiles=quantiles,
                                 sample_size=sample_size, contract=contract)
    return profile


def profile_against(
    parquet_path: Path,
    manifest: DatasetManifest,
    reference: DatasetProfile | None,
    *,
    bins: int = DEFAULT_BINS,
    quantiles: int = DEFAULT_QUANTILES,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    contract: FeatureContract | None = None,
) -> tuple[DatasetProfile, dict[str, ReferenceCounts]]:
    """The profile, plus each numeric feature counted at ``reference``'s edges in the same pass."""
    if bins < 2 or quantiles < 2 or sample_size < quantiles:
        raise ValueError(f"need bins >= 2, quantiles >= 2 and sample_size >= quantiles, got "
                         f"{bins}, {quantiles}, {sample_size}")
    contract = contract or load_feature_contract()
    with pq.ParquetFile(parquet_path) as pf:
        schema = pf.schema_arrow
        _require_columns(schema, manifest, parquet_path)
        kinds = {name: _kind(schema.field(name).type) for name in manifest.feature_order}
        numeric = [n for n in manifest.feature_order if kinds[n] == "numeric"]
        try:
            with duckdb.connect() as con:
                sql = _SqlCounts(con, str(parquet_path), schema)
                rows = sql.rows()
                entity = sql.entity(manifest.entity_column)
                time = sql.time(manifest.timestamp_column)
                label = sql.label(manifest.label_column, _declared_classes(contract, manifest.label_column))
                duplicates = sql.duplicates([manifest.entity_column, manifest.timestamp_column], rows)
                non_null, distinct = sql.features(manifest.feature_order)
        except duckdb.Error as exc:
            raise ProfileError(f"{parquet_path}: {str(exc).splitlines()[0]}") from None
        moments = scan_moments(pf, numeric, sample_size)
        own = {name: edges(acc, bins, quantiles) for name, acc in moments.items()}
        ref = _reference_edges(reference, numeric)
        cuts = scan_counts(pf, {n: [*own[n], *ref.get(n, ([], []))] for n in numeric})

    declared_nullable = {c.name: c.nullable for c in manifest.columns}
    features: dict[str, FeatureProfile] = {}
    for name in manifest.feature_order:
        valid = moments[name].valid if name in moments else non_null[name]
        rate = valid / rows if rows else 0.0
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
            null_rate=1.0 - rate, approx_distinct=distinct[name],
            distinct_ratio=min(1.0, distinct[name] / valid) if valid else None, **stats,
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


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


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

    def entity(self, column: str) -> EntityProfile:
        c = _q(column)
        counts = self._numpy(f"SELECT count(*) AS n FROM {{src}} WHERE {c} IS NOT NULL GROUP BY {c}")["n"]
        (nulls,) = self._one(f"SELECT count(*) FILTER (WHERE {c} IS NULL) FROM {{src}}")
        total = int(counts.sum())
        return EntityProfile(
            column=column, distinct=int(counts.size), entropy=_normalised_entropy(counts, int(counts.size)),
            top_share=float(counts.max()) / total if total else 0.0, null_count=int(nulls),
        )

    def time(self, column: str) -> TimeProfile:
        c = _q(column)
        lo, hi, nulls = self._one(
            f"SELECT min(epoch_us({c})), max(epoch_us({c})), count(*) FILTER (WHERE {c} IS NULL) FROM {{src}}"
        )
        if lo is None or hi is None:
            return TimeProfile(column=column, first=None, last=None, day_buckets=0, covered_days=0, coverage=0.0,
                               uncovered=[], uncovered_ranges=0, null_count=int(nulls))
        days = np.sort(self._numpy(
            f"SELECT DISTINCT CAST(floor(epoch_us({c}) / {DAY_US}.0) AS BIGINT) AS d FROM {{src}} "
            f"WHERE {c} IS NOT NULL"
        )["d"].astype(np.int64))
        buckets = int(days[-1] - days[0] + 1)
        gaps = np.flatnonzero(np.diff(days) > 1)
        uncovered = [
            DayRange(first=_day(int(days[i]) + 1), last=_day(int(days[i + 1]) - 1),
                     days=int(days[i + 1] - days[i] - 1))
            for i in gaps[:MAX_LISTED_GAPS]
        ]
        return TimeProfile(
            column=column, first=_instant(int(lo)), last=_instant(int(hi)),
            day_buckets=buckets, covered_days=int(days.size), coverage=days.size / buckets,
            uncovered=uncovered, uncovered_ranges=int(gaps.size), null_count=int(nulls),
        )

    def label(self, column: str | None, declared: dict[str, str]) -> LabelProfile | None:
        if column is None:
            return None
        c = _q(column)
        rows = self._con.execute(
            f"SELECT {c} AS v, count(*) AS n FROM read_parquet(?) WHERE {c} IS NOT NULL GROUP BY {c}", [self._path]
        ).fetchall()
        (nulls,) = self._one(f"SELECT count(*) FILTER (WHERE {c} IS NULL) FROM {{src}}")
        counts = {str(v): int(n) for v, n in sorted(rows, key=lambda r: (str(type(r[0])), r[0]))}
        missing = [k for k in declared if k not in counts]
        classes = len(set(declared) | set(counts))  # undeclared values count too, so entropy stays <= 1
        return LabelProfile(
            column=column, declared_classes=declared, counts=counts, null_count=int(nulls),
            missing_classes=missing, undeclared_classes=[k for k in counts if declared and k not in declared],
            class_coverage=(len(declared) - len(missing)) / len(declared) if declared else None,
            entropy=_normalised_entropy(np.array(list(counts.values()), dtype=np.int64), classes),
        )

    def duplicates(self, key: list[str], rows: int) -> DuplicateProfile:
        cols = ", ".join(_q(k) for k in key)
        (distinct,) = self._one(f"SELECT count(*) FROM (SELECT 1 FROM {{src}} GROUP BY {cols})")
        dup = rows - int(distinct)
        return DuplicateProfile(key=key, distinct_keys=int(distinct), duplicate_rows=dup,
                                rate=dup / rows if rows else 0.0)

    def features(self, names: Sequence[str]) -> tuple[dict[str, int], dict[str, int]]:
        """Per column: values that are neither null nor non-finite, and their approximate distinct count."""
        parts = []
        for name in names:
            c = _q(name)
            keep = f" FILTER (WHERE isfinite({c}))" if pa.types.is_floating(self._schema.field(name).type) else ""
            parts.append(f"count({c}){keep}, approx_count_distinct({c}){keep}")
        values = self._one(f"SELECT {', '.join(parts)} FROM {{src}}")
        ints = [int(v) for v in values]
        return ({n: ints[2 * i] for i, n in enumerate(names)}, {n: ints[2 * i + 1] for i, n in enumerate(names)})


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
