# Over 400 lines: the definition model, its strict loader and its file lifecycle are one contract.
"""Dataset definitions: reviewed YAML files that say which warehouse rows become a spec v1 dataset.

The typed model checks everything that needs no warehouse (ids, roles, joins forming a tree, filters that
need a role); ``validate_against`` checks the rest against the real warehouse schema. Every problem is
one line naming the file, the field and the expected value.
"""

from __future__ import annotations

import os
import re
from datetime import date
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from feature_platform.contracts.canonical import digest
from feature_platform.contracts.paths import SAFE_ID_PATTERN
from feature_platform.contracts.provenance import PROJECT_ROOT
from feature_platform.contracts.safe_read import InputError, read_yaml

DEFINITIONS_ENV = "FP_DEFINITIONS_DIR"
# Every table, column and alias name: a plain ASCII identifier. The SQL quotes names through sqlglot's AST
# and checks them against the warehouse schema; this is the first line, refusing anything else at load.
IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
Role = Literal["user_id", "product_id", "timestamp", "revenue", "label", "feature"]
ROLES: tuple[str, ...] = ("user_id", "product_id", "timestamp", "revenue", "label", "feature")
# Roles a definition may name at most once (user_id and timestamp exactly once).
SINGLE_ROLES = ("user_id", "product_id", "timestamp", "revenue", "label")
SPLIT_NAMES = ("train", "eval")


class DefinitionError(ValueError):
    """A definition that cannot be loaded, validated or built; the message is one line."""


class UnknownDefinitionError(DefinitionError):
    """No definition has the asked-for name."""


class NameTakenError(DefinitionError):
    """A new definition's name (or its file) is already used; nothing was written."""


class ActiveDefinitionError(DefinitionError):
    """An active definition cannot be changed or deleted (built datasets cite its content); clone it instead."""


def definitions_dir() -> Path:
    """``$FP_DEFINITIONS_DIR`` or ``<project root>/definitions``."""
    return Path(os.environ.get(DEFINITIONS_ENV) or PROJECT_ROOT / "definitions")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TableRef(_Strict):
    """A warehouse table ``raw_data.<name>``, or a Parquet file (``path``, relative to the definition file)."""

    name: str = Field(pattern=IDENTIFIER)
    path: str | None = None


class Join(_Strict):
    left_table: str = Field(pattern=IDENTIFIER)
    left_column: str = Field(pattern=IDENTIFIER)
    right_table: str = Field(pattern=IDENTIFIER)
    right_column: str = Field(pattern=IDENTIFIER)
    type: Literal["inner", "left"] = "inner"


class ColumnSpec(_Strict):
    table: str = Field(pattern=IDENTIFIER)
    column: str = Field(pattern=IDENTIFIER)
    alias: str | None = Field(None, pattern=IDENTIFIER)
    role: Role = "feature"

    @property
    def output_name(self) -> str:
        return self.alias or self.column


class DateRange(_Strict):
    """Rolling (``last_days``, up to and including today/as-of) or fixed (``start``..``end``, both inclusive)."""

    last_days: int | None = Field(None, gt=0)
    start: date | None = None
    end: date | None = None

    @property
    def rolling(self) -> bool:
        return self.last_days is not None


class Filters(_Strict):
    date_range: DateRange | None = None
    top_products_percent: float | None = Field(None, gt=0, le=100)
    min_transactions_per_user: int | None = Field(None, ge=1)


class Split(_Strict):
    """``time``: the last ``eval_days`` days go to eval. ``random``: FARM_FINGERPRINT(salt || key) buckets."""

    strategy: Literal["time", "random"]
    eval_days: int | None = Field(None, gt=0)
    eval_fraction: float | None = Field(None, gt=0, lt=1)
    salt: str = ""
    key: str | None = Field(None, pattern=IDENTIFIER)


class DatasetDefinition(_Strict):
    name: str = Field(pattern=SAFE_ID_PATTERN)
    description: str = ""
    status: Literal["draft", "active"] = "draft"
    tables: list[TableRef] = Field(min_length=1)
    joins: list[Join] = Field(default_factory=list)
    columns: list[ColumnSpec] = Field(min_length=1)
    filters: Filters = Field(default_factory=Filters)
    split: Split

    _source_file: Path | None = PrivateAttr(default=None)

    @property
    def source_file(self) -> Path | None:
        return self._source_file

    @property
    def where(self) -> str:
        """How messages name this definition: its file, else its name."""
        return str(self._source_file) if self._source_file else f"definition {self.name}"

    def role_column(self, role: str) -> ColumnSpec | None:
        return next((c for c in self.columns if c.role == role), None)

    @property
    def entity(self) -> ColumnSpec:
        col = self.role_column("user_id")
        assert col is not None  # guaranteed by load-time validation
        return col

    @property
    def timestamp(self) -> ColumnSpec:
        col = self.role_column("timestamp")
        assert col is not None
        return col

    @property
    def label(self) -> ColumnSpec | None:
        return self.role_column("label")

    @property
    def features(self) -> list[ColumnSpec]:
        """Every column that is not entity, timestamp or label, in listed order: the feature order."""
        return [c for c in self.columns if c.role not in ("user_id", "timestamp", "label")]

    @property
    def output_columns(self) -> list[ColumnSpec]:
        """Columns in dataset order: entity, timestamp, features, label."""
        label = [self.label] if self.label else []
        return [self.entity, self.timestamp, *self.features, *label]

    @property
    def split_key(self) -> str:
        return self.split.key or self.entity.output_name

    def table(self, name: str) -> TableRef:
        return next(t for t in self.tables if t.name == name)

    def parquet_path(self, table: TableRef) -> Path | None:
        if table.path is None:
            return None
        path = Path(table.path)
        if not path.is_absolute() and self._source_file is not None:
            path = self._source_file.parent / path
        return path

    def join_order(self) -> list[Join]:
        """Joins in listed order (each attaches a new right table to what is already joined)."""
        return list(self.joins)

    def to_yaml_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)

    def digest(self) -> str:
        """Identity of the definition's content; ``status`` is workflow, so activating keeps the identity."""
        return digest(self.model_dump(mode="json", exclude={"status"}))


def load_definition(path: Path | str) -> DatasetDefinition:
    path = Path(path)
    try:
        raw = read_yaml(path)
    except InputError as exc:
        raise DefinitionError(f"cannot read definition: {exc}") from None
    return parse_definition(raw, path)


def parse_definition(raw: Any, path: Path | None = None) -> DatasetDefinition:
    where = str(path) if path else "definition"
    if not isinstance(raw, dict):
        raise DefinitionError(f"{where}: expected a YAML mapping at the top level; got {type(raw).__name__}")
    try:
        defn = DatasetDefinition.model_validate(raw)
    except ValidationError as exc:
        raise DefinitionError(_pydantic_line(exc, where)) from None
    defn._source_file = path
    problems = static_problems(defn)
    if problems:
        raise DefinitionError(problems[0])
    return defn


def check_json_types(raw: Any, where: str = "request body") -> None:
    """A definition that arrived as JSON (an API body), checked in pydantic's strict JSON mode first: a string
    is not a number, a number is not a string or a boolean (YAML files keep the model's own coercions)."""
    import json

    try:
        DatasetDefinition.model_validate_json(json.dumps(raw), strict=True)
    except ValidationError as exc:
        raise DefinitionError(_pydantic_line(exc, where)) from None


def load_definitions(directory: Path | str | None = None) -> list[DatasetDefinition]:
    """Every ``*.yaml``/``*.yml`` in ``directory``, sorted by name; the first bad file raises."""
    directory = Path(directory) if directory is not None else definitions_dir()
    if not directory.is_dir():
        raise DefinitionError(f"{directory}: definitions directory does not exist")
    files = sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    defns = [load_definition(p) for p in files]
    seen: dict[str, DatasetDefinition] = {}
    for d in defns:
        if d.name in seen:
            raise DefinitionError(f"{d.where}: field name: expected a name no other definition uses; "
                                  f"got {d.name!r}, also in {seen[d.name].where}")
        seen[d.name] = d
    return sorted(defns, key=lambda d: d.name)


def find_definition(name: str, directory: Path | str | None = None) -> DatasetDefinition:
    defns = load_definitions(directory)
    for d in defns:
        if d.name == name:
            return d
    known = ", ".join(d.name for d in defns) or "none"
    where = directory if directory is not None else definitions_dir()
    raise UnknownDefinitionError(f"{where}: no definition named {name!r} (known: {known})")


def split_text(defn: DatasetDefinition) -> str:
    """The split in a few words, as listings show it."""
    s = defn.split
    if s.strategy == "time":
        return f"time: last {s.eval_days} days eval"
    return f"random: {s.eval_fraction:g} eval by {defn.split_key}"


def definition_summary(defn: DatasetDefinition) -> dict[str, Any]:
    """What a listing shows of one definition (no warehouse needed)."""
    file = defn.source_file.name if defn.source_file else None
    return {"file": file, "name": defn.name, "status": defn.status, "description": defn.description,
            "tables": [t.name for t in defn.tables], "columns": len(defn.columns), "split": split_text(defn),
            "sha256": defn.digest()}


def list_entries(directory: Path | str | None = None) -> list[dict[str, Any]]:
    """One summary per ``*.yaml``/``*.yml`` file in ``directory`` (by file name); a file that does not load is
    listed with ``status: invalid`` and its one-line error instead of stopping the listing."""
    directory = Path(directory) if directory is not None else definitions_dir()
    if not directory.is_dir():
        raise DefinitionError(f"{directory}: definitions directory does not exist")
    entries: list[dict[str, Any]] = []
    for path in sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file()):
        try:
            entries.append(definition_summary(load_definition(path)))
        except DefinitionError as exc:
            entries.append({"file": path.name, "name": None, "status": "invalid", "error": str(exc)})
    return entries


def _pydantic_line(exc: ValidationError, where: str) -> str:
    err = exc.errors()[0]
    field = _field_path(err["loc"])
    got = err.get("input")
    if err["type"] == "literal_error":
        expected = "one of " + re.sub(r"'([^']*)'", r"\1", err["ctx"]["expected"]).replace(" or ", ", ")
    elif err["type"] == "extra_forbidden":
        expected = "no such field"
    elif err["type"] == "missing":
        return f"{where}: field {field}: expected a value; got nothing (field is required)"
    elif err["type"] == "string_pattern_mismatch":
        expected = f"a value matching {err['ctx']['pattern']}"
    else:
        expected = err["msg"][0].lower() + err["msg"][1:]
        expected = expected.removeprefix("input should be ").removeprefix("value error, ")
    return f"{where}: field {field}: expected {expected}; got {got!r}"


def _field_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(root)"


def identifier_fields(defn: DatasetDefinition) -> list[tuple[str, str]]:
    """Every (field, name) of a definition that becomes an SQL identifier: tables, join and listed columns,
    output names and the split key."""
    out = [(f"tables[{i}].name", t.name) for i, t in enumerate(defn.tables)]
    for i, j in enumerate(defn.joins):
        out += [(f"joins[{i}].{side}", getattr(j, side))
                for side in ("left_table", "left_column", "right_table", "right_column")]
    for i, c in enumerate(defn.columns):
        out += [(f"columns[{i}].table", c.table), (f"columns[{i}].column", c.column),
                (f"columns[{i}].alias", c.output_name)]
    if defn.split.key is not None:
        out.append(("split.key", defn.split.key))
    return out


def require_plain_identifiers(defn: DatasetDefinition) -> None:
    """Refuse any name that is not a plain identifier, whatever built the model (the field patterns do this
    at load; this holds for models made in code too). The definition's own name (in the SQL's header
    comment) must be a safe id."""
    if not isinstance(defn.name, str) or not re.fullmatch(SAFE_ID_PATTERN, defn.name):
        raise DefinitionError(f"{defn.where}: field name: expected a value matching {SAFE_ID_PATTERN}; "
                              f"got {defn.name!r}")
    for field, name in identifier_fields(defn):
        if not isinstance(name, str) or not re.fullmatch(IDENTIFIER, name):
            raise DefinitionError(f"{defn.where}: field {field}: expected a plain column or table name matching "
                                  f"{IDENTIFIER}; got {name!r}")


def static_problems(defn: DatasetDefinition) -> list[str]:
    """Problems a definition has on its own (no warehouse needed), one line each."""
    w = defn.where
    out: list[str] = []
    names = [t.name for t in defn.tables]
    for i, t in enumerate(defn.tables):
        if names.index(t.name) != i:
            out.append(f"{w}: field tables[{i}].name: expected a table listed once; got {t.name!r} again")
    known = ", ".join(names)
    joined = {names[0]}
    for i, j in enumerate(defn.joins):
        for side in ("left_table", "right_table"):
            value = getattr(j, side)
            if value not in names:
                out.append(f"{w}: field joins[{i}].{side}: expected one of the listed tables ({known}); got {value!r}")
        if out:
            continue
        if j.left_table not in joined:
            out.append(f"{w}: field joins[{i}].left_table: expected a table already joined "
                       f"({', '.join(sorted(joined))}); got {j.left_table!r}")
        elif j.right_table in joined:
            out.append(f"{w}: field joins[{i}].right_table: join cycle: expected a table not yet joined; "
                       f"got {j.right_table!r}, already joined via {', '.join(sorted(joined))}")
        joined.add(j.right_table)
    if not out:
        for i, t in enumerate(defn.tables):
            if t.name not in joined:
                out.append(f"{w}: field tables[{i}]: expected every table after the first to be joined; "
                           f"got {t.name!r} with no join")
    outputs: dict[str, int] = {}
    for i, c in enumerate(defn.columns):
        if c.table not in names:
            out.append(f"{w}: field columns[{i}].table: expected one of the listed tables ({known}); got {c.table!r}")
        if not re.fullmatch(IDENTIFIER, c.output_name):
            out.append(f"{w}: field columns[{i}].alias: expected an identifier ({IDENTIFIER}) for column "
                       f"{c.column!r}; got {c.output_name!r}")
        if c.output_name in outputs:
            out.append(f"{w}: field columns[{i}].alias: expected a unique output name; got {c.output_name!r}, "
                       f"also columns[{outputs[c.output_name]}]")
        outputs.setdefault(c.output_name, i)
    for role in SINGLE_ROLES:
        idx = [i for i, c in enumerate(defn.columns) if c.role == role]
        if len(idx) > 1:
            out.append(f"{w}: field columns[{idx[1]}].role: expected at most one {role} column; got {len(idx)} "
                       f"(columns {idx})")
        if not idx and role in ("user_id", "timestamp"):
            out.append(f"{w}: field columns: expected exactly one column with role {role}; got none")
    if not any(c.role not in ("user_id", "timestamp", "label") for c in defn.columns):
        out.append(f"{w}: field columns: expected at least one column with role feature, product_id or revenue; "
                   f"got none")
    f = defn.filters
    if f.date_range is not None:
        r = f.date_range
        if r.rolling and (r.start or r.end):
            out.append(f"{w}: field filters.date_range: expected either last_days or start/end; got both")
        elif not r.rolling and (r.start is None or r.end is None):
            out.append(f"{w}: field filters.date_range: expected last_days, or both start and end; got "
                       f"{r.model_dump(mode='json', exclude_none=True)}")
        elif r.start and r.end and r.start > r.end:
            out.append(f"{w}: field filters.date_range.end: expected a date on or after start {r.start}; got {r.end}")
    if f.top_products_percent is not None:
        for role in ("product_id", "revenue"):
            if defn.role_column(role) is None:
                out.append(f"{w}: field filters.top_products_percent: expected a column with role {role} "
                           f"(top products rank by revenue per product); got none")
    s = defn.split
    if s.strategy == "time":
        if s.eval_days is None:
            out.append(f"{w}: field split.eval_days: expected a positive number of days for a time split; got None")
        if s.eval_fraction is not None or s.key is not None or s.salt:
            out.append(f"{w}: field split: expected only eval_days for a time split; got "
                       f"{s.model_dump(exclude_none=True, exclude_defaults=True)}")
    else:
        if s.eval_fraction is None:
            out.append(f"{w}: field split.eval_fraction: expected a fraction in (0, 1) for a random split; got None")
        if s.eval_days is not None:
            out.append(f"{w}: field split.eval_days: expected no eval_days for a random split; got {s.eval_days}")
        if s.key is not None and s.key not in outputs:
            out.append(f"{w}: field split.key: expected one of the output columns ({', '.join(outputs)}); "
                       f"got {s.key!r}")
    return out
