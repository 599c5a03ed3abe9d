"""The feature contract (``feature_repo/feature_contract.yaml``): names, types and order.

Builder, verifier, the Feast repository and training all read it through this module, so
``FEATURE_ORDER`` is defined exactly once.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from feature_platform.contracts.canonical import digest
from feature_platform.contracts.safe_read import InputError, read_yaml

CONTRACT_ENV = "FP_FEATURE_CONTRACT"
DEFAULT_CONTRACT_PATH = Path(__file__).resolve().parents[2] / "feature_repo" / "feature_contract.yaml"

# Type names the contract may use (Feast-like spellings) and the Arrow type each stands for.
ARROW_TYPES: dict[str, pa.DataType] = {
    "bool": pa.bool_(),
    "int8": pa.int8(),
    "int16": pa.int16(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "string": pa.string(),
    "date32": pa.date32(),
    "timestamp[us, tz=UTC]": pa.timestamp("us", tz="UTC"),
}


class ContractError(ValueError):
    """The feature contract file is missing or malformed."""


class ContractColumn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    name: str = Field(min_length=1, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    type: str
    nullable: bool = False
    description: str = ""

    @model_validator(mode="after")
    def _known_type(self) -> ContractColumn:
        if self.type not in ARROW_TYPES:
            raise ValueError(f"type {self.type!r} is not one of {sorted(ARROW_TYPES)}")
        return self

    @property
    def arrow_type(self) -> pa.DataType:
        return ARROW_TYPES[self.type]

    def arrow_field(self) -> pa.Field:
        return pa.field(self.name, self.arrow_type, nullable=self.nullable)


class LabelColumn(ContractColumn):
    classes: dict[int, str] = Field(default_factory=dict)


class FeatureContract(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    contract_version: int = Field(ge=1)
    entity: ContractColumn
    timestamp: ContractColumn
    label: LabelColumn | None = None
    # a YAML list becomes the tuple (strict mode alone would accept only a tuple); items stay strict
    features: tuple[ContractColumn, ...] = Field(min_length=1, strict=False)

    @model_validator(mode="after")
    def _unique_names(self) -> FeatureContract:
        names = [c.name for c in self.columns]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"column names must be unique, repeated: {dupes}")
        return self

    @property
    def feature_order(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    @property
    def columns(self) -> tuple[ContractColumn, ...]:
        """Every column of a dataset built on this contract, in file order."""
        label = (self.label,) if self.label is not None else ()
        return (self.entity, self.timestamp, *self.features, *label)

    def arrow_schema(self) -> pa.Schema:
        return pa.schema([c.arrow_field() for c in self.columns])

    def digest(self) -> str:
        return digest(self.model_dump(mode="json"))


def contract_path() -> Path:
    return Path(os.environ.get(CONTRACT_ENV, DEFAULT_CONTRACT_PATH))


def parse_contract(raw: Any, source: str = "feature_contract.yaml") -> FeatureContract:
    try:
        return FeatureContract.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "(root)"
        raise ContractError(f"{source}: field {field}: {err['msg']}") from None


@cache
def _load(path: Path) -> FeatureContract:
    try:
        raw = read_yaml(path)
    except InputError as exc:
        raise ContractError(str(exc)) from None
    return parse_contract(raw, str(path))


def load_feature_contract(path: Path | None = None) -> FeatureContract:
    """The contract at ``path``, ``$FP_FEATURE_CONTRACT`` or ``feature_repo/feature_contract.yaml``."""
    return _load(Path(os.path.abspath(path or contract_path())))


FEATURE_ORDER: tuple[str, ...] = load_feature_contract().feature_order
