"""A definition as a ``TableSource``: the DuckDB query streamed as Arrow batches into the foundation's builder,
so definition-driven datasets get the same manifest, verification and atomic publish as every other dataset.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import JsonValue

from feature_platform.contracts.canonical import digest
from feature_platform.contracts.feature_contract import (
    ARROW_TYPES,
    ContractColumn,
    FeatureContract,
    LabelColumn,
)
from feature_platform.contracts.manifest import (
    AnySplits,
    DatasetManifest,
    FarmFingerprintSplits,
    RngSeeds,
    TimeCutoffSplits,
)
from feature_platform.contracts.provenance import utc_now, utc_timestamp
from feature_platform.datasets.definitions.model import (
    SPLIT_NAMES,
    ColumnSpec,
    DatasetDefinition,
    DefinitionError,
    find_definition,
)
from feature_platform.datasets.definitions.sql import (
    BUCKETS,
    bucket_of,
    cutoff_date,
    eval_threshold,
    register_udfs,
    render_query,
)
from feature_platform.datasets.definitions.validation import require_valid

if TYPE_CHECKING:
    import duckdb

    from feature_platform.datasets.build import BuildResult, Progress

KIND = "definition"
DEFAULT_BATCH_ROWS = 131_072
_CONTRACT_NAME = {str(t): name for name, t in ARROW_TYPES.items()}
_TS = pa.timestamp("us", tz="UTC")


def _target_type(t: pa.DataType) -> pa.DataType | None:
    """The contract type a warehouse column is stored as, or None when the contract has none for it."""
    if pa.types.is_timestamp(t):
        return _TS
    if pa.types.is_decimal(t) or pa.types.is_float16(t):
        return pa.float64() if pa.types.is_decimal(t) else pa.float32()
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_unsigned_integer(t):
        return {8: pa.int16(), 16: pa.int32(), 32: pa.int64()}.get(t.bit_width)
    if pa.types.is_date(t):
        return pa.date32()
    return t if str(t) in _CONTRACT_NAME else None


def definition_contract(defn: DatasetDefinition, schema: pa.Schema) -> FeatureContract:
    """The feature contract the definition's roles imply: entity, timestamp, features in order, label."""

    def column(spec: ColumnSpec, *, required: bool, cls: type[ContractColumn] = ContractColumn) -> ContractColumn:
        name = spec.output_name
        type_name = _CONTRACT_NAME.get(str(schema.field(name).type))
        if type_name is None:
            raise DefinitionError(f"{defn.where}: field columns ({name}): expected a type the feature contract "
                                  f"supports ({', '.join(ARROW_TYPES)}); got {schema.field(name).type}")
        return cls(name=name, type=type_name, nullable=not required, description=f"{spec.table}.{spec.column}")

    label = column(defn.label, required=False, cls=LabelColumn) if defn.label else None
    assert label is None or isinstance(label, LabelColumn)
    return FeatureContract(
        contract_version=1,
        entity=column(defn.entity, required=True),
        timestamp=column(defn.timestamp, required=True),
        label=label,
        features=tuple(column(c, required=False) for c in defn.features),
    )


class DefinitionSource:
    """The definition's DuckDB query, with columns cast to contract types and ``as_of`` pinning 'today'."""

    kind = KIND

    def __init__(self, defn: DatasetDefinition, conn: duckdb.DuckDBPyConnection, *, as_of: date,
                 batch_rows: int = DEFAULT_BATCH_ROWS) -> None:
        self.defn = defn
        self.conn = conn
        self.as_of = as_of
        self.batch_rows = batch_rows
        self.sql = render_query(defn, dialect="duckdb", as_of=as_of)
        register_udfs(conn)
        raw = conn.sql(f"SELECT * FROM (\n{self.sql}\n) AS q LIMIT 0").to_arrow_table().schema
        required = {defn.entity.output_name, defn.timestamp.output_name}
        fields = []
        for f in raw:
            target = _target_type(f.type)
            if target is None:
                spec = next(i for i, c in enumerate(defn.columns) if c.output_name == f.name)
                raise DefinitionError(f"{defn.where}: field columns[{spec}].column: expected a type the feature "
                                      f"contract supports ({', '.join(ARROW_TYPES)}); got {f.type}")
            fields.append(pa.field(f.name, target, nullable=f.name not in required))
        self._schema = pa.schema(fields)
        self.rows = 0

    @property
    def schema(self) -> pa.Schema:
        return self._schema

    @property
    def expected_rows(self) -> int | None:
        return None

    @property
    def rng_seeds(self) -> RngSeeds | None:
        return None

    def parameters(self) -> dict[str, JsonValue]:
        return {
            "definition": self.defn.name,
            "definition_file": self.defn.source_file.name if self.defn.source_file else None,
            "definition_sha256": self.defn.digest(),
            "as_of": self.as_of.isoformat(),
            "dialect": "duckdb",
            "row_order": "ORDER BY ALL",
            "query_sha256": hashlib.sha256(self.sql.encode()).hexdigest(),
            "split": self.defn.split.model_dump(mode="json", exclude_none=True),
        }

    def source_hash(self) -> str:
        """Definition, query and a content fingerprint of every input table."""
        import duckdb

        return digest({
            "definition": self.defn.model_dump(mode="json", exclude={"status"}),
            "sql": self.sql,
            "tables": table_fingerprints(self.defn, self.conn),
            "duckdb": duckdb.__version__,  # DuckDB's hash() may change between versions
        })

    def batches(self) -> Iterator[pa.RecordBatch]:
        # Sorted by every column so that the same rows give the same bytes (DuckDB's output order is not stable).
        ordered = f"SELECT * FROM (\n{self.sql}\n) AS q ORDER BY ALL"
        reader = self.conn.sql(ordered).to_arrow_reader(self.batch_rows)
        self.rows = 0
        for batch in reader:
            if batch.num_rows == 0:
                continue
            arrays = []
            for target, column in zip(self._schema, batch.columns, strict=True):
                if not target.nullable and column.null_count:
                    raise DefinitionError(f"{self.defn.where}: column {target.name}: expected no nulls; got "
                                          f"{column.null_count}")
                arrays.append(column if column.type == target.type else pc.cast(column, target.type))
            self.rows += batch.num_rows
            yield pa.RecordBatch.from_arrays(arrays, schema=self._schema)
        if self.rows == 0:
            raise DefinitionError(f"{self.defn.where}: field filters: query returned 0 rows (expected at least one; "
                                  f"as of {self.as_of}); nothing written")


def table_fingerprints(defn: DatasetDefinition, conn: duckdb.DuckDBPyConnection) -> dict[str, JsonValue]:
    """Parquet tables: sha256 of the file; warehouse tables: row count and the sum of DuckDB's row hashes."""
    from feature_platform.contracts.canonical import sha256_file
    from feature_platform.warehouse.connection import RAW_SCHEMA, quote_identifier

    out: dict[str, JsonValue] = {}
    for t in defn.tables:
        path = defn.parquet_path(t)
        if path is not None:
            out[t.name] = {"parquet_sha256": sha256_file(path)}
            continue
        count, total = conn.execute(
            "SELECT COUNT(*), CAST(SUM(CAST(hash(t) AS HUGEINT)) AS VARCHAR) "
            f"FROM {quote_identifier(RAW_SCHEMA)}.{quote_identifier(t.name)} AS t"
        ).fetchall()[0]
        out[t.name] = {"rows": int(count), "row_hash_sum": total or "0"}
    return out


@dataclass(frozen=True)
class RandomSplitter:
    """Counts rows per split with the SQL's FARM_FINGERPRINT bucket rule (``sql.split_of``)."""

    key: str
    salt: str
    eval_fraction: float

    @property
    def names(self) -> tuple[str, ...]:
        return SPLIT_NAMES

    def count(self, batch: pa.RecordBatch) -> np.ndarray:
        counts = pc.value_counts(batch.column(self.key))
        keys = counts.field("values").to_pylist()
        per_key = counts.field("counts").to_numpy()
        threshold = eval_threshold(self.eval_fraction)
        codes = np.fromiter((1 if bucket_of(self.salt, k) < threshold else 0 for k in keys), np.int64, len(keys))
        return np.bincount(codes, weights=per_key, minlength=2).astype(np.int64)

    def manifest_splits(self, rows: dict[str, int]) -> AnySplits:
        return FarmFingerprintSplits(
            algorithm="farm_fingerprint", key=self.key, salt=self.salt, buckets=BUCKETS,
            threshold=eval_threshold(self.eval_fraction),
            fractions={"train": 1.0 - self.eval_fraction, "eval": self.eval_fraction}, rows=rows,
        )


@dataclass(frozen=True)
class TimeSplitter:
    """Eval iff the timestamp is at or after ``cutoff`` (UTC midnight), as the SQL's time split."""

    column: str
    cutoff: datetime
    eval_days: int

    @property
    def names(self) -> tuple[str, ...]:
        return SPLIT_NAMES

    def count(self, batch: pa.RecordBatch) -> np.ndarray:
        is_eval = pc.greater_equal(batch.column(self.column), pa.scalar(self.cutoff, _TS))
        n_eval = int(pc.sum(pc.cast(is_eval, pa.int64())).as_py() or 0)
        return np.array([batch.num_rows - n_eval, n_eval], dtype=np.int64)

    def manifest_splits(self, rows: dict[str, int]) -> AnySplits:
        return TimeCutoffSplits(algorithm="time_cutoff", column=self.column, cutoff=utc_timestamp(self.cutoff),
                                eval_days=self.eval_days, rows=rows)


def splitter_for(defn: DatasetDefinition, as_of: date) -> RandomSplitter | TimeSplitter:
    s = defn.split
    if s.strategy == "random":
        assert s.eval_fraction is not None
        return RandomSplitter(key=defn.split_key, salt=s.salt, eval_fraction=s.eval_fraction)
    assert s.eval_days is not None
    cutoff = datetime.combine(cutoff_date(defn, as_of), time(0), tzinfo=UTC)
    return TimeSplitter(column=defn.timestamp.output_name, cutoff=cutoff, eval_days=s.eval_days)


def dataset_id_for(defn: DatasetDefinition, dataset_version: str) -> str:
    from feature_platform.contracts.paths import require_safe_id

    return require_safe_id(f"{defn.name}-{require_safe_id(dataset_version, 'dataset_version')}", "dataset_id")


def build_definition_dataset(
    defn: DatasetDefinition,
    out_dir: Path | str,
    *,
    dataset_version: str,
    warehouse: Path | str | None = None,
    force: bool = False,
    as_of: date | None = None,
    progress: Progress | None = None,
) -> BuildResult:
    """Validate against the warehouse, then build ``<out_dir>/<name>-<version>`` with the foundation's builder
    (verify + atomic publish). Any failure, an empty result included, leaves nothing behind."""
    from feature_platform.datasets.build import build_dataset
    from feature_platform.datasets.definitions.sql import open_warehouse

    dataset_id = dataset_id_for(defn, dataset_version)
    conn = open_warehouse([defn], Path(warehouse) if warehouse is not None else None)
    try:
        require_valid(defn, conn)
        day = as_of or utc_now().date()
        source = DefinitionSource(defn, conn, as_of=day)
        return build_dataset(source, out_dir, dataset_id, dataset_version=dataset_version, force=force,
                             contract=definition_contract(defn, source.schema), splitter=splitter_for(defn, day),
                             progress=progress)
    finally:
        conn.close()


def recorded_contract(manifest: DatasetManifest, directory: Path | None = None) -> FeatureContract:
    """For verify: the contract of the definition a dataset was built from, found by the name recorded in its
    manifest; a missing or changed definition raises DefinitionError naming it. Types come from the manifest
    (the schema check already ties them to the file); names, roles and order come from the definition."""
    params = manifest.source.parameters
    name, recorded = params.get("definition"), params.get("definition_sha256")
    if not isinstance(name, str) or not isinstance(recorded, str):
        raise DefinitionError("manifest.json: field source.parameters: expected definition and definition_sha256; "
                              "got neither")
    defn = find_definition(name, directory)
    if defn.digest() != recorded:
        raise DefinitionError(f"{defn.where}: definition {name} changed since the dataset was built: sha256 "
                              f"{defn.digest()}, the manifest records {recorded}")
    types = {c.name: c.type for c in manifest.columns}
    missing = [c.output_name for c in defn.output_columns if c.output_name not in types]
    if missing:
        raise DefinitionError(f"{defn.where}: columns {missing} of definition {name} are not in the manifest schema")
    schema = pa.schema([pa.field(c.output_name, _arrow_type(types[c.output_name])) for c in defn.output_columns])
    return definition_contract(defn, schema)


def _arrow_type(type_text: str) -> pa.DataType:
    for t in ARROW_TYPES.values():
        if str(t) == type_text:
            return t
    return pa.null()  # definition_contract reports it as unsupported
