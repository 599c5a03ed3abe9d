"""JSON Schema validation of raw API payloads, kept apart from pandera so the HTTP client imports stay light."""

from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path
from typing import Any, Literal

import jsonschema

from feature_platform.market.errors import MarketDataError

__all__ = ["SCHEMA_PATH", "PayloadKind", "market_data_schema", "validate_payload"]

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "contracts" / "schemas" / "market_data.json"
PayloadKind = Literal["ohlc", "market_chart"]
_KINDS: tuple[str, ...] = ("ohlc", "market_chart")


@cache
def market_data_schema() -> dict[str, Any]:
    """The committed schema (``contracts/schemas/market_data.json``), read once."""
    schema: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return schema


def _is_json_number(checker: Any, instance: Any) -> bool:
    """JSON has no NaN or infinity: a float that is not finite (``1e999`` parses as inf) is not a number.
    Without this NaN would pass every bound, since each comparison with NaN is false."""
    base = jsonschema.Draft202012Validator.TYPE_CHECKER
    return bool(base.is_type(instance, "number")) and not (isinstance(instance, float) and not math.isfinite(instance))


_FiniteValidator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("number", _is_json_number))


@cache
def _validator(kind: str) -> Any:
    schema = dict(market_data_schema())
    schema.pop("oneOf", None)
    schema["$ref"] = f"#/$defs/{kind}"
    jsonschema.Draft202012Validator.check_schema(schema)
    return _FiniteValidator(schema)


def _json_path(path: Any) -> str:
    out = "$"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def validate_payload(kind: PayloadKind, payload: Any) -> None:
    """Raise ``MarketDataError`` naming the first failing JSON path (in document order) if ``payload`` is invalid."""
    if kind not in _KINDS:
        raise ValueError(f"unknown payload kind {kind!r}; expected one of {', '.join(_KINDS)}")
    errors = list(_validator(kind).iter_errors(payload))
    if not errors:
        return
    first = min(errors, key=lambda e: [(0, p) if isinstance(p, int) else (1, str(p)) for p in e.absolute_path])
    message = first.message if len(first.message) <= 160 else first.message[:157] + "..."
    extra = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    raise MarketDataError(f"{kind} payload invalid at {_json_path(first.absolute_path)}: {message}{extra}")
