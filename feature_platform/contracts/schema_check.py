"""The committed JSON Schemas as a validator with the contract's meaning of ``integer`` and ``pattern``.

Two places where Python's ``jsonschema`` reads a schema more loosely than the contract means it:
``integer`` admits ``5000.0`` (JSON Schema counts a float with no fraction as an integer), and
``pattern`` runs Python's ``re.search``, whose ``$`` also matches before a final newline (a JSON
Schema regex is ECMA-262, where ``$`` is the end of the input). ``strict_validator`` fixes both, so
it and the pydantic models give the same verdict on types, shapes and patterns; the models add the
rules a schema cannot state (cross-field consistency, real calendar dates).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache
from typing import Any

import jsonschema
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError


def _is_integer(_checker: Any, instance: object) -> bool:
    return isinstance(instance, int) and not isinstance(instance, bool)


@cache
def _ecma(pattern: str) -> re.Pattern[str]:
    """``$`` at the very end of the pattern means end of input, as in ECMA-262."""
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


def _pattern(validator: Any, pattern: str, instance: object, _schema: Any) -> Iterator[ValidationError]:
    if isinstance(instance, str) and not _ecma(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


StrictDraft202012Validator = jsonschema.validators.extend(
    Draft202012Validator,
    validators={"pattern": _pattern},
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_integer),
)


def strict_validator(schema: dict[str, Any]) -> Any:
    """A Draft 2020-12 validator for ``schema`` (checked first) with strict integers and ECMA ``$``."""
    Draft202012Validator.check_schema(schema)
    return StrictDraft202012Validator(schema)
