"""Dataset manifest spec v1: the authority for a dataset directory (docs/ARCHITECTURE.md §3).

The committed JSON Schema ``schemas/dataset_manifest.v1.schema.json`` is generated from these
models (``fp contracts schema --write``); a test fails when the two drift apart.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Final, Literal, NamedTuple

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue, ValidationError, model_validator

from feature_platform.contracts.canonical import canonical_json, digest
from feature_platform.contracts.paths import SAFE_ID_PATTERN, UnsafePathError, resolve_inside
from feature_platform.contracts.safe_read import InputError, read_json

SPEC_VERSION: Final = "1"
MANIFEST_NAME = "manifest.json"
# Files other tools read beside a manifest, derived from it (never listed in it): Croissant metadata and the
# signed in-toto attestation. Verification allows them and nothing else unlisted.
CROISSANT_NAME: Final = "croissant.json"
ATTESTATION_NAME: Final = "attestation.intoto.jsonl"
SIDECAR_NAMES: Final = frozenset({CROISSANT_NAME, ATTESTATION_NAME})
SCHEMA_PATH = Path(__file__).parent / "schemas" / "dataset_manifest.v1.schema.json"
SCHEMA_ID = "https://feature-platform.dev/schemas/dataset_manifest.v1.schema.json"
# Spec-level ceiling: a manifest may ask for less, never more.
SPEC_MAX_BYTES = 16 * 1024**3

Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="lowercase hex sha256")]
SafeId = Annotated[str, Field(pattern=SAFE_ID_PATTERN, description="safe identifier")]
GitHash = Annotated[str, Field(pattern=r"^([0-9a-f]{40}|unknown)$")]
UTC_TIMESTAMP_PATTERN = (
    r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?Z$"
)


def _real_instant(value: str) -> str:
    """The pattern bounds each field; the calendar decides the rest (no 30 February)."""
    datetime.strptime(value[:19], "%Y-%m-%dT%H:%M:%S")
    return value


UtcTimestamp = Annotated[
    str,
    Field(pattern=UTC_TIMESTAMP_PATTERN, description="UTC, ISO 8601 with a trailing Z"),
    AfterValidator(_real_instant),
]


class ManifestError(ValueError):
    """A manifest that cannot be read or does not match spec v1."""


class _Strict(BaseModel):
    """Strict types: a string is not a boolean or a number, a float or a boolean is not an integer."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, strict=True)


class CanonicalManifest(_Strict):
    """A manifest whose identity is the sha256 of its canonical JSON (docs/ARCHITECTURE.md §7)."""

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)

    def digest(self) -> str:
        """The dataset's identity: sha256 of the manifest's canonical JSON."""
        return digest(self.to_json_dict())

    def canonical_bytes(self) -> bytes:
        return canonical_json(self.to_json_dict())

    def dumps(self) -> str:
        """Human-readable form for ``manifest.json``; parsing it gives back the same digest."""
        return json.dumps(self.to_json_dict(), sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


class Source(_Strict):
    """Where the rows came from; ``source_hash`` identifies the exact input bytes or generator."""

    kind: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    parameters: dict[str, JsonValue]
    source_hash: Sha256Hex


class DataFile(_Strict):
    path: str = Field(min_length=1, description="relative POSIX path inside the dataset directory")
    format: Literal["parquet"]
    bytes: int = Field(ge=0)
    rows: int = Field(ge=0)
    sha256: Sha256Hex


class Column(_Strict):
    name: str = Field(min_length=1)
    type: str = Field(min_length=1, description="Arrow type as pyarrow prints it")
    nullable: bool


class Splits(_Strict):
    """A deterministic split: a row's split is a function of ``key`` and ``salt`` only."""

    algorithm: Literal["entity_hash"]
    key: str = Field(min_length=1, description="column whose value is hashed")
    salt: str
    fractions: dict[str, float]
    rows: dict[str, Annotated[int, Field(ge=0)]]

    @model_validator(mode="after")
    def _consistent(self) -> Splits:
        if set(self.fractions) != set(self.rows):
            raise ValueError("fractions and rows must name the same splits")
        if any(not (0.0 <= f <= 1.0) for f in self.fractions.values()):
            raise ValueError("every fraction must lie in [0, 1]")
        if not math.isclose(sum(self.fractions.values()), 1.0, abs_tol=1e-9):
            raise ValueError("fractions must sum to 1")
        return self


class FarmFingerprintSplits(_Strict):
    """A declarative definition's random split, the same predicate as its BigQuery SQL: a row is eval iff
    ``ABS(MOD(FARM_FINGERPRINT(CONCAT(salt, CAST(key AS STRING))), buckets)) < threshold``."""

    algorithm: Literal["farm_fingerprint"]
    key: str = Field(min_length=1, description="column whose text is hashed")
    salt: str
    buckets: int = Field(gt=0)
    threshold: int = Field(ge=0, description="buckets [0, threshold) are eval")
    fractions: dict[str, float] = Field(description="configured share per split (eval_fraction and the rest)")
    rows: dict[str, Annotated[int, Field(ge=0)]]

    @model_validator(mode="after")
    def _consistent(self) -> FarmFingerprintSplits:
        if set(self.rows) != {"train", "eval"} or set(self.fractions) != {"train", "eval"}:
            raise ValueError("a farm_fingerprint split has exactly the splits train and eval")
        if self.threshold > self.buckets:
            raise ValueError("threshold cannot exceed buckets")
        return self


class TimeCutoffSplits(_Strict):
    """A declarative definition's time split: a row is eval iff ``column >= cutoff`` (the last ``eval_days``)."""

    algorithm: Literal["time_cutoff"]
    column: str = Field(min_length=1, description="timestamp column compared with cutoff")
    cutoff: UtcTimestamp
    eval_days: int = Field(gt=0)
    rows: dict[str, Annotated[int, Field(ge=0)]]

    @model_validator(mode="after")
    def _consistent(self) -> TimeCutoffSplits:
        if set(self.rows) != {"train", "eval"}:
            raise ValueError("a time_cutoff split has exactly the splits train and eval")
        return self


# ``entity_hash`` manifests keep their exact canonical JSON (and digest): the union only adds alternatives.
AnySplits = Annotated[Splits | FarmFingerprintSplits | TimeCutoffSplits, Field(discriminator="algorithm")]


class RngSeeds(_Strict):
    global_seed: int = Field(ge=0)
    derivation: str = Field(min_length=1, description="how each batch seed derives from global_seed")
    batch_rows: int = Field(gt=0)
    batch_count: int = Field(ge=0)


class Limits(_Strict):
    max_bytes: int = Field(gt=0, le=SPEC_MAX_BYTES)


JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def schema_config(title: str, schema_id: str) -> ConfigDict:
    """The JSON Schema header of a published manifest model: its title, the dialect and its ``$id``."""
    return ConfigDict(title=title, json_schema_extra={"$schema": JSON_SCHEMA_DIALECT, "$id": schema_id})


def schema_text(schema: dict[str, Any]) -> str:
    """A JSON Schema as committed: sorted keys, two-space indent, a final newline."""
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


class DatasetManifest(CanonicalManifest):
    model_config = schema_config("feature_platform dataset manifest, spec v1", SCHEMA_ID)

    spec_version: Literal["1"]
    dataset_id: SafeId
    dataset_version: SafeId
    created_at: UtcTimestamp
    git_hash: GitHash
    config_hash: Sha256Hex = Field(description="sha256 of the canonical build configuration")
    source: Source
    files: list[DataFile] = Field(min_length=1)
    columns: list[Column] = Field(alias="schema", min_length=1)
    feature_order: list[str] = Field(min_length=1)
    entity_column: str
    timestamp_column: str
    label_column: str | None
    row_count: int = Field(ge=0)
    splits: AnySplits
    rng_seeds: RngSeeds | None
    limits: Limits

    @model_validator(mode="after")
    def _columns_known(self) -> DatasetManifest:
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise ValueError("schema column names must be unique")
        roles = [self.entity_column, self.timestamp_column, *self.feature_order]
        roles += [self.label_column] if self.label_column else []
        missing = [n for n in roles if n not in names]
        if missing:
            raise ValueError(f"columns {missing} are named by the manifest but absent from schema")
        if len({p.path for p in self.files}) != len(self.files):
            raise ValueError("file paths must be unique")
        return self



class FieldError(NamedTuple):
    """The first error of a validation: the field's dotted path, pydantic's message, and both on one line."""

    field: str
    message: str
    line: str


def first_field_error(exc: ValidationError, root: str = "(root)") -> FieldError:
    """``field F: MESSAGE (got VALUE)`` for the first error; ``root`` names the document itself."""
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"]]
    if err["type"] in ("union_tag_invalid", "union_tag_not_found"):  # name the tag field, e.g. splits.algorithm
        loc.append(str(err.get("ctx", {}).get("discriminator", "")).strip("'"))
    field = ".".join(loc) or root
    got = err.get("input")
    got_text = "" if isinstance(got, (dict, list)) else f" (got {got!r})"
    return FieldError(field, str(err["msg"]), f"field {field}: {err['msg']}{got_text}")


def validation_message(exc: ValidationError, source: str) -> str:
    """One line naming the file, the field and what was expected."""
    more = len(exc.errors()) - 1
    tail = f"; {more} more error(s)" if more > 0 else ""
    return f"{source}: {first_field_error(exc).line}{tail}"


def parse_manifest(raw: Any, source: str = MANIFEST_NAME) -> DatasetManifest:
    try:
        # by alias only: ``columns`` is the Python name, the manifest's field is ``schema`` (as in the JSON Schema)
        return DatasetManifest.model_validate(raw, by_alias=True, by_name=False)
    except ValidationError as exc:
        raise ManifestError(validation_message(exc, source)) from None


def load_manifest(path: Path | str) -> DatasetManifest:
    """The dataset manifest file at ``path``: a bounded, strict read; ``ManifestError`` (one line) otherwise."""
    try:
        raw = read_json(path)
    except InputError as exc:
        raise ManifestError(str(exc)) from None
    return parse_manifest(raw, str(path))


def data_file_paths(manifest_path: Path | str, manifest: DatasetManifest) -> list[Path]:
    """The manifest's data files, in its order, each resolved inside the manifest's directory (symlinks
    followed); ``ManifestError`` (one line naming the manifest and the file) for a path that leaves it."""
    dataset_dir = Path(manifest_path).parent
    found: list[Path] = []
    for index, entry in enumerate(manifest.files):
        try:
            found.append(resolve_inside(dataset_dir, entry.path))
        except UnsafePathError as exc:
            raise ManifestError(f"{manifest_path}: field files.{index}.path: {exc} "
                                f"(expected a file inside {dataset_dir})") from None
    return found


def json_schema() -> dict[str, Any]:
    return DatasetManifest.model_json_schema(by_alias=True, mode="validation")


def json_schema_text() -> str:
    return schema_text(json_schema())
