"""One named pass/fail check with expected and actual, and one way to render a list of them.

Verify, quality, promotion, lineage, rerun and publish all record ``Check`` rows; ``check_lines`` is the
text form, ``Check.to_json_dict`` the JSON form and ``check_rows`` the table the Dagster metadata shows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import JsonValue

CELL_LIMIT = 80


def jsonable(value: Any) -> JsonValue:
    """``value`` as JSON: scalars as they are, sequences and mappings recursively, anything else as its text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    return str(value)


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    expected: JsonValue
    actual: JsonValue
    target: str | None = None
    detail: str = ""

    def line(self) -> str:
        """``PASS name[target]: expected 'x', actual 'y' (detail)``."""
        where = f"[{self.target}]" if self.target else ""
        status = "PASS" if self.passed else "FAIL"
        text = f"{status} {self.name}{where}: expected {self.expected!r}, actual {self.actual!r}"
        return f"{text} ({self.detail})" if self.detail else text

    def reason(self) -> str:
        """``name: expected x, actual y``: a failed check as one reason."""
        return f"{self.name}: expected {self.expected}, actual {self.actual}"

    def to_json_dict(self, keys: Sequence[str] | None = None) -> dict[str, Any]:
        """Every field, or only ``keys`` (the shape a report has always written)."""
        out = asdict(self)
        return out if keys is None else {k: out[k] for k in keys}


class CheckList:
    """Checks in the order they ran; ``ok`` only when there is at least one and none failed.

    A mixin: each report declares its own ``checks`` field where its constructor wants it.
    """

    checks: list[Check]

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def add(self, name: str, passed: bool, expected: Any, actual: Any, target: str | None = None,
            detail: str = "") -> bool:
        self.checks.append(Check(name, bool(passed), jsonable(expected), jsonable(actual), target, detail))
        return bool(passed)


def cell(value: object, limit: int = CELL_LIMIT) -> str:
    """A value on one short line for a table cell."""
    text = str(value).replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_lines(checks: Iterable[Check], *, failures_only: bool = False) -> list[str]:
    """The text form: one ``Check.line`` a check."""
    return [c.line() for c in checks if not (failures_only and c.passed)]


def check_rows(checks: Iterable[Check]) -> list[dict[str, Any]]:
    """The table form, failures first: check, target, expected, actual, result."""
    return [{"check": c.name, "target": c.target or "", "expected": cell(c.expected), "actual": cell(c.actual),
             "result": "pass" if c.passed else "FAIL"} for c in sorted(checks, key=lambda c: c.passed)]


def failure_summary(checks: Iterable[Check], what: str) -> str:
    """``name: value; name: value`` of the failed checks' ``what`` (expected or actual), else ``all pass``."""
    return "; ".join(f"{c.name}: {cell(getattr(c, what))}" for c in checks if not c.passed) or "all pass"
