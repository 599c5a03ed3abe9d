# Over 400 lines: the 22 dataset endpoints of one router, each a thin call into the definitions package.
"""Dataset-definition endpoints: definitions (list, create, check-name, get, update, delete, clone, activate),
the warehouse (tables, schema, stats, samples, detect-joins, suggest-columns), analysis (analyze, preview,
summary, compare) and the generated SQL (query, split queries, TFX queries, validate-query).

Every route is a thin layer over the domain functions ``fp definitions`` and ``fp warehouse`` call; the
rules live there. ``{dataset_id}`` is a definition's name. ``{model_id}`` keeps the replaced system's path
shape: definitions are shared by every model of the deployment, so it only has to be a safe id.

The same routes are built twice by ``build_router``: under ``/api`` behind bearer-token scopes for API
clients, and under ``/ui/api`` behind the wizard's session cookie (see ``pages``).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field

from feature_platform.api.body import json_object
from feature_platform.api.errors import ApiError, error_responses
from feature_platform.api.schemas import inline_schema
from feature_platform.contracts.paths import SAFE_ID_PATTERN, UnsafePathError
from feature_platform.datasets.definitions.model import (
    ActiveDefinitionError,
    DatasetDefinition,
    DefinitionError,
    NameTakenError,
    UnknownDefinitionError,
    check_json_types,
    definition_summary,
    definitions_dir,
    find_definition,
    list_entries,
)
from feature_platform.warehouse.connection import WarehouseError

if TYPE_CHECKING:
    import duckdb

READ, WRITE = "datasets:read", "datasets:write"
ScopeDependency = Callable[[Any], Callable[..., Any]]
DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"
# one process writes definition files at a time, so a name check and the write that follows it agree
_WRITE_LOCK = threading.Lock()


@dataclass(frozen=True)
class DatasetsConfig:
    """Where definitions and the warehouse live; ``None`` means the environment's default (as the CLI)."""

    definitions_dir: Path | None = None
    warehouse: Path | None = None

    @property
    def directory(self) -> Path:
        return self.definitions_dir or definitions_dir()


def datasets_config(request: Request) -> DatasetsConfig:
    config = getattr(request.app.state, "datasets_config", None)
    return config if isinstance(config, DatasetsConfig) else DatasetsConfig()


# --- request and response models -------------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DefinitionEntry(BaseModel):
    file: str | None
    name: str | None
    status: str = Field(description="draft, active, or invalid (the file does not load; see error)")
    description: str | None = None
    tables: list[str] = Field(default_factory=list)
    columns: int | None = None
    split: str | None = None
    sha256: str | None = Field(None, description="identity of the definition's content (status excluded)")
    error: str | None = None


class DefinitionList(BaseModel):
    definitions: list[DefinitionEntry]
    total: int
    page: int
    page_size: int


class DefinitionDetail(BaseModel):
    summary: DefinitionEntry
    definition: DatasetDefinition


class NameRequest(_Body):
    name: str


class NameCheck(BaseModel):
    name: str
    available: bool
    taken_by: str | None = Field(None, description="the file or definition already using the name")


class CloneRequest(_Body):
    new_name: str = Field(description="name of the copy (also its file name)")
    description: str | None = None


class ActivateResult(BaseModel):
    name: str
    status: Literal["active"]
    changed: bool


class DeleteResult(BaseModel):
    name: str
    deleted: bool


class AsOfRequest(_Body):
    as_of: str | None = Field(None, pattern=DATE_PATTERN, description="pin 'today', YYYY-MM-DD")


class TablesRequest(_Body):
    tables: list[str] = Field(default_factory=list, max_length=50)


class CompareRequest(_Body):
    names: list[str] = Field(description="2 to 5 definition names")
    as_of: str | None = Field(None, pattern=DATE_PATTERN)


class TableInfoModel(BaseModel):
    name: str
    row_count: int
    size_bytes: int
    column_count: int


class ColumnInfoModel(BaseModel):
    name: str
    type: str
    nullable: bool
    suggested_role: str | None
    join_key: bool


class ColumnStatsModel(BaseModel):
    name: str
    type: str
    count: int
    nulls: int
    cardinality: int
    uniqueness: float
    min: Any
    max: Any
    mean: float | None
    stddev: float | None
    range_days: float | None


class ValueCountModel(BaseModel):
    value: Any
    count: int


class JoinSuggestionModel(BaseModel):
    left_table: str
    left_column: str
    right_table: str
    right_column: str
    confidence: float
    level: str
    reason: str


class QueryText(BaseModel):
    name: str
    dialect: str
    split: str | None
    as_of: str | None
    sql: str


class SplitQueries(BaseModel):
    name: str
    dialect: str
    as_of: str | None
    train: str
    eval: str


class QueryValidation(BaseModel):
    name: str
    ok: bool
    problems: list[str]
    join_suggestions: list[JoinSuggestionModel]
    estimated_rows_scanned: int | None
    estimated_rows_out: int | None


# --- errors ---------------------------------------------------------------------------------------------

_FIELD = re.compile(r"field (\S+?): (?:.*?\b)?expect(?:s|ed) (.+?)(?:; got .*)?$")


def problem(status: int, message: str, *, field: str | None = None, expected: str | None = None) -> ApiError:
    """An ApiError whose field and expected value are read from a domain one-liner (``...: field F: expected E;
    got G``) unless given."""
    match = _FIELD.search(message)
    if match:
        field = field or match.group(1).strip()
        expected = expected or match.group(2).strip()
    return ApiError(status, message, field=field, expected=expected)


@contextmanager
def domain_errors(id_field: str = "dataset_id") -> Iterator[None]:
    """Map the domain's exceptions to answers: unknown definition/table/column 404, name taken or active 409,
    anything else the domain refuses 422."""
    from feature_platform.warehouse.introspect import UnknownColumnError, UnknownTableError

    try:
        yield
    except UnknownDefinitionError as exc:
        raise problem(404, str(exc), field=id_field, expected="the name of an existing definition") from None
    except UnknownTableError as exc:
        raise problem(404, str(exc), field="table", expected="a table of raw_data") from None
    except UnknownColumnError as exc:
        raise problem(404, str(exc), field="column", expected="a column of the table") from None
    except (NameTakenError, ActiveDefinitionError) as exc:
        raise problem(409, str(exc), field="name" if isinstance(exc, NameTakenError) else "status",
                      expected="an unused name" if isinstance(exc, NameTakenError) else "a draft") from None
    except UnsafePathError as exc:
        raise problem(422, str(exc), field="new_name", expected=f"a value matching {SAFE_ID_PATTERN}") from None
    except (DefinitionError, WarehouseError) as exc:
        raise problem(422, str(exc)) from None


@contextmanager
def _opened(open_: Callable[[], duckdb.DuckDBPyConnection]) -> Iterator[duckdb.DuckDBPyConnection]:
    """A warehouse connection; a missing or unopenable warehouse is the service's problem (503)."""
    try:
        conn = open_()
    except WarehouseError as exc:
        raise ApiError(503, str(exc), field=None, expected="a seeded warehouse ($FP_WAREHOUSE)") from None
    try:
        yield conn
    finally:
        conn.close()


def warehouse(config: DatasetsConfig) -> Any:
    from feature_platform.warehouse.connection import connect

    return _opened(lambda: connect(config.warehouse))


def sandbox(config: DatasetsConfig, defns: Sequence[DatasetDefinition]) -> Any:
    from feature_platform.datasets.definitions.sql import open_warehouse

    return _opened(lambda: open_warehouse(defns, config.warehouse))


def load(config: DatasetsConfig, name: str, id_field: str = "dataset_id") -> DatasetDefinition:
    with domain_errors(id_field):
        return find_definition(name, config.directory)


def parse_as_of(value: str | None, field: str = "as_of") -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ApiError(422, f"field {field}: expected a date YYYY-MM-DD; got {value!r}", field=field,
                       expected="a date YYYY-MM-DD") from None


def _entry(defn: DatasetDefinition) -> DefinitionEntry:
    return DefinitionEntry(**definition_summary(defn))


# --- the routes -----------------------------------------------------------------------------------------

Config = Annotated[DatasetsConfig, Depends(datasets_config)]
ModelId = Annotated[str, PathParam(pattern=SAFE_ID_PATTERN, description="kept for path compatibility; any safe id")]
DatasetId = Annotated[str, PathParam(pattern=SAFE_ID_PATTERN, description="a definition's name")]
AsOf = Annotated[str | None, Query(pattern=DATE_PATTERN, description="pin 'today', YYYY-MM-DD (default CURRENT_DATE)")]
# a definition body: read by the platform's strict JSON reader (no duplicate keys, NaN or deep nesting), then
# checked by the definition model itself, so errors name the field as `fp definitions validate` does
DefinitionBody = Annotated[dict[str, Any], Depends(json_object)]
DEFINITION_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": inline_schema(DatasetDefinition)}}}}
Dialect = Annotated[Literal["duckdb", "bigquery", "postgres"], Query(description="SQL dialect")]


def build_router(scope: ScopeDependency, prefix: str = "/api", tags: Sequence[str] = ("datasets",),
                 include_in_schema: bool = True) -> APIRouter:
    """The 22 dataset endpoints under ``prefix``; ``scope(name)`` gives the dependency that admits a caller."""
    router = APIRouter(prefix=prefix, tags=list(tags), include_in_schema=include_in_schema)
    read = [Depends(scope(READ))]
    write = [Depends(scope(WRITE))]
    common = error_responses(401, 403, 404, 422)
    writes = error_responses(401, 403, 404, 409, 422)

    # ---- definitions

    @router.get("/models/{model_id}/datasets/", dependencies=read, responses=common, response_model=DefinitionList)
    def list_datasets(*,
        model_id: ModelId,
        status: Annotated[Literal["draft", "active", "invalid"] | None, Query()] = None,
        search: Annotated[str | None, Query(max_length=200, description="substring of name or description")] = None,
        page: Annotated[int, Query(ge=1)] = 1,
        page_size: Annotated[int, Query(ge=1, le=500)] = 50,
        config: Config,
    ) -> DefinitionList:
        with domain_errors():
            entries = [DefinitionEntry(**e) for e in list_entries(config.directory)]
        if status is not None:
            entries = [e for e in entries if e.status == status]
        if search:
            needle = search.lower()
            entries = [e for e in entries if needle in (e.name or e.file or "").lower()
                       or needle in (e.description or "").lower()]
        start = (page - 1) * page_size
        return DefinitionList(definitions=entries[start:start + page_size], total=len(entries), page=page,
                              page_size=page_size)

    @router.post("/models/{model_id}/datasets/create/", dependencies=write, responses=writes, status_code=201,
                 response_model=DefinitionDetail, openapi_extra=DEFINITION_BODY)
    def create_dataset(*, body: DefinitionBody, model_id: ModelId, config: Config) -> DefinitionDetail:
        from feature_platform.datasets.definitions.workflow import create_definition

        with domain_errors():
            check_json_types(body)
        with _WRITE_LOCK, sandbox(config, []) as conn, domain_errors():
            defn = create_definition(body, conn, config.directory)
        return DefinitionDetail(summary=_entry(defn), definition=defn)

    @router.post("/models/{model_id}/datasets/check-name/", dependencies=read, responses=common,
                 response_model=NameCheck)
    def check_name(*, body: NameRequest, model_id: ModelId,
                   config: Config) -> NameCheck:
        from feature_platform.datasets.definitions.workflow import name_taken_by

        with domain_errors():
            where = name_taken_by(body.name, config.directory)
        return NameCheck(name=body.name, available=where is None, taken_by=Path(where).name if where else None)

    @router.get("/datasets/{dataset_id}/", dependencies=read, responses=common, response_model=DefinitionDetail)
    def get_dataset(*, dataset_id: DatasetId, config: Config) -> DefinitionDetail:
        defn = load(config, dataset_id)
        return DefinitionDetail(summary=_entry(defn), definition=defn)

    @router.post("/datasets/{dataset_id}/update/", dependencies=write, responses=writes,
                 response_model=DefinitionDetail, openapi_extra=DEFINITION_BODY)
    def update_dataset(*, body: DefinitionBody, dataset_id: DatasetId, config: Config) -> DefinitionDetail:
        from feature_platform.datasets.definitions.workflow import update_definition

        with domain_errors():
            check_json_types(body)
        with _WRITE_LOCK:
            current = load(config, dataset_id)
            with sandbox(config, []) as conn, domain_errors():
                defn = update_definition(current, body, conn)
        return DefinitionDetail(summary=_entry(defn), definition=defn)

    @router.post("/datasets/{dataset_id}/delete/", dependencies=write, responses=writes, response_model=DeleteResult)
    def delete_dataset(*, dataset_id: DatasetId, config: Config) -> DeleteResult:
        from feature_platform.datasets.definitions.workflow import delete_definition

        with _WRITE_LOCK:
            defn = load(config, dataset_id)
            with domain_errors():
                delete_definition(defn)
        return DeleteResult(name=dataset_id, deleted=True)

    @router.post("/datasets/{dataset_id}/clone/", dependencies=write, responses=writes, status_code=201,
                 response_model=DefinitionDetail)
    def clone_dataset(*, body: CloneRequest, dataset_id: DatasetId,
                      config: Config) -> DefinitionDetail:
        from feature_platform.datasets.definitions.model import load_definition
        from feature_platform.datasets.definitions.workflow import clone_definition

        with _WRITE_LOCK:
            defn = load(config, dataset_id)
            with domain_errors():
                target = clone_definition(defn, body.new_name, config.directory, body.description)
                clone = load_definition(target)
        return DefinitionDetail(summary=_entry(clone), definition=clone)

    @router.post("/datasets/{dataset_id}/activate/", dependencies=write, responses=writes,
                 response_model=ActivateResult)
    def activate_dataset(*, dataset_id: DatasetId,
                         config: Config) -> ActivateResult:
        from feature_platform.datasets.definitions.workflow import activate_definition

        with _WRITE_LOCK:
            defn = load(config, dataset_id)
            with sandbox(config, [defn]) as conn, domain_errors():
                changed = activate_definition(defn, conn)
        return ActivateResult(name=defn.name, status="active", changed=changed)

    # ---- warehouse

    @router.get("/models/{model_id}/bq-tables/", dependencies=read, responses=common,
                response_model=list[TableInfoModel])
    def tables(*, model_id: ModelId, config: Config) -> list[TableInfoModel]:
        from feature_platform.warehouse.introspect import list_tables

        with warehouse(config) as conn, domain_errors("table"):
            return [TableInfoModel(**t.to_json_dict()) for t in list_tables(conn)]

    @router.get("/models/{model_id}/bq-tables/{table}/schema/", dependencies=read, responses=common,
                response_model=list[ColumnInfoModel])
    def schema(*, table: str, model_id: ModelId,
               config: Config) -> list[ColumnInfoModel]:
        from feature_platform.warehouse.introspect import table_schema

        with warehouse(config) as conn, domain_errors("table"):
            return [ColumnInfoModel(**c.to_json_dict()) for c in table_schema(conn, table)]

    @router.get("/models/{model_id}/bq-tables/{table}/stats/", dependencies=read, responses=common,
                response_model=list[ColumnStatsModel])
    def stats(*, table: str, model_id: ModelId,
              columns: Annotated[list[str] | None, Query(description="repeat the parameter; default all")] = None,
              config: Config) -> list[ColumnStatsModel]:
        from feature_platform.warehouse.introspect import column_stats

        with warehouse(config) as conn, domain_errors("table"):
            return [ColumnStatsModel(**s.to_json_dict()) for s in column_stats(conn, table, columns)]

    @router.get("/models/{model_id}/bq-tables/{table}/columns/{column}/samples/", dependencies=read,
                responses=common, response_model=list[ValueCountModel])
    def samples(*, table: str, column: str, model_id: ModelId, limit: Annotated[int, Query(ge=1, le=1000)] = 10,
                config: Config) -> list[ValueCountModel]:
        from feature_platform.warehouse.introspect import sample_values

        with warehouse(config) as conn, domain_errors("table"):
            return [ValueCountModel(**v.to_json_dict()) for v in sample_values(conn, table, column, limit)]

    @router.post("/models/{model_id}/detect-joins/", dependencies=read, responses=common,
                 response_model=list[JoinSuggestionModel])
    def detect_joins(*, body: TablesRequest, model_id: ModelId,
                     config: Config) -> list[JoinSuggestionModel]:
        from feature_platform.warehouse.introspect import detect_joins as detect
        from feature_platform.warehouse.introspect import joinable_tables

        with warehouse(config) as conn, domain_errors("tables"):
            found = detect(conn, joinable_tables(conn, body.tables))
        return [JoinSuggestionModel(**j.to_json_dict()) for j in found]

    @router.post("/models/{model_id}/suggest-columns/", dependencies=read, responses=common,
                 response_model=dict[str, list[str]])
    def suggest_columns(*, body: TablesRequest, model_id: ModelId,
                        config: Config) -> dict[str, list[str]]:
        from feature_platform.warehouse.introspect import joinable_tables
        from feature_platform.warehouse.introspect import suggest_columns as suggest

        with warehouse(config) as conn, domain_errors("tables"):
            return suggest(conn, joinable_tables(conn, body.tables))

    # ---- analysis

    @router.post("/datasets/{dataset_id}/analyze/", dependencies=read, responses=common,
                 response_model=dict[str, Any])
    def analyze(*, body: AsOfRequest | None = None, dataset_id: DatasetId,
                config: Config) -> dict[str, Any]:
        from feature_platform.datasets.definitions.analysis import analyze_definition

        as_of = parse_as_of(body.as_of if body else None)
        defn = load(config, dataset_id)
        with sandbox(config, [defn]) as conn, domain_errors():
            return analyze_definition(defn, conn, as_of=as_of).to_json_dict()

    @router.get("/datasets/{dataset_id}/preview/", dependencies=read, responses=common,
                response_model=dict[str, Any])
    def preview(*, dataset_id: DatasetId, limit: Annotated[int, Query(ge=1, le=1000)] = 20, as_of: AsOf = None,
                config: Config) -> dict[str, Any]:
        from feature_platform.datasets.definitions.analysis import preview_definition

        pinned = parse_as_of(as_of)
        defn = load(config, dataset_id)
        with sandbox(config, [defn]) as conn, domain_errors():
            return preview_definition(defn, conn, limit, as_of=pinned).to_json_dict()

    @router.get("/datasets/{dataset_id}/summary/", dependencies=read, responses=common,
                response_model=DefinitionEntry)
    def summary(*, dataset_id: DatasetId, config: Config) -> DefinitionEntry:
        return _entry(load(config, dataset_id))

    @router.post("/models/{model_id}/datasets/compare/", dependencies=read, responses=common,
                 response_model=dict[str, Any])
    def compare(*, body: CompareRequest, model_id: ModelId,
                config: Config) -> dict[str, Any]:
        from feature_platform.datasets.definitions.analysis import compare_definitions, require_compare_count

        with domain_errors("names"):
            require_compare_count(body.names)  # before reading any file or the warehouse
        as_of = parse_as_of(body.as_of)
        defns = [load(config, name, "names") for name in body.names]
        with sandbox(config, defns) as conn, domain_errors("names"):
            return compare_definitions(defns, conn, as_of=as_of).to_json_dict()

    # ---- generated SQL

    @router.get("/datasets/{dataset_id}/query/", dependencies=read, responses=common, response_model=QueryText)
    def query(*, dataset_id: DatasetId, split: Annotated[Literal["train", "eval"] | None, Query()] = None,
              dialect: Dialect = "bigquery", as_of: AsOf = None,
              config: Config) -> QueryText:
        from feature_platform.datasets.definitions.sql import render_query

        pinned = parse_as_of(as_of)
        defn = load(config, dataset_id)
        with domain_errors():
            sql = render_query(defn, split=split, dialect=dialect, as_of=pinned)
        return QueryText(name=defn.name, dialect=dialect, split=split, as_of=as_of, sql=sql)

    @router.get("/datasets/{dataset_id}/query/split/", dependencies=read, responses=common,
                response_model=SplitQueries)
    def split_queries(*, dataset_id: DatasetId,
                      dialect: Dialect = "bigquery",
                      as_of: AsOf = None, config: Config) -> SplitQueries:
        from feature_platform.datasets.definitions.sql import render_query

        pinned = parse_as_of(as_of)
        defn = load(config, dataset_id)
        with domain_errors():
            train, eval_ = (render_query(defn, split=s, dialect=dialect, as_of=pinned) for s in ("train", "eval"))
        return SplitQueries(name=defn.name, dialect=dialect, as_of=as_of, train=train, eval=eval_)

    @router.get("/datasets/{dataset_id}/query/tfx/", dependencies=read, responses=common,
                response_model=dict[str, Any])
    def tfx_queries(*, dataset_id: DatasetId, config: Config) -> dict[str, Any]:
        from feature_platform.datasets.definitions.sql import tfx_query_config

        defn = load(config, dataset_id)
        with domain_errors():
            return tfx_query_config(defn)

    @router.post("/datasets/{dataset_id}/validate-query/", dependencies=read, responses=common,
                 response_model=QueryValidation)
    def validate_query(*, dataset_id: DatasetId,
                       config: Config) -> QueryValidation:
        from feature_platform.datasets.definitions.sql import render_query
        from feature_platform.datasets.definitions.validation import join_suggestions, validate_against
        from feature_platform.warehouse.introspect import dry_run

        defn = load(config, dataset_id)
        with sandbox(config, [defn]) as conn, domain_errors():
            problems = validate_against(defn, conn)
            run = dry_run(conn, render_query(defn, dialect="duckdb")) if not problems else None
            suggestions = join_suggestions(defn, conn) if not problems else []
        if run is not None and not run.ok:
            problems = [f"{defn.where}: field (query): expected a query DuckDB can plan; got {run.error}"]
        return QueryValidation(
            name=defn.name, ok=not problems, problems=problems,
            join_suggestions=[JoinSuggestionModel(**j.to_json_dict()) for j in suggestions],
            estimated_rows_scanned=run.estimated_rows_scanned if run else None,
            estimated_rows_out=run.estimated_rows_out if run else None)

    return router


def _bearer_router() -> APIRouter:
    from feature_platform.api.auth import require_scope

    return build_router(require_scope)


router = _bearer_router()
