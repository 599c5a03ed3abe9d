"""Identifier and path safety: ids become directory names, manifest paths become file opens."""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

# Letters, digits, '.', '_' and '-'; starts with a letter or digit (so never '.' or '..');
# at most 128 characters. No separators, no NUL or control characters, never absolute.
SAFE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_SAFE_ID = re.compile(SAFE_ID_PATTERN)
MAX_RELATIVE_PATH = 1024


class UnsafePathError(ValueError):
    """An id or path that could leave the directory it names."""


def id_problem(value: object, what: str = "dataset_id") -> str | None:
    """Why ``value`` is not a safe id, or None when it is."""
    if not isinstance(value, str):
        return f"{what} must be a string, got {type(value).__name__}"
    if _SAFE_ID.fullmatch(value):
        return None
    if value == "":
        return f"{what} is empty"
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return f"{what} {value!r} contains NUL or control characters"
    if "/" in value or "\\" in value:
        return f"{what} {value!r} contains a path separator"
    if value.startswith(".") and set(value) <= {"."}:
        return f"{what} {value!r} is a relative directory reference"
    if len(value) > 128:
        return f"{what} is {len(value)} characters long (at most 128)"
    return f"{what} {value!r} does not match {SAFE_ID_PATTERN}"


def require_safe_id(value: object, what: str = "dataset_id") -> str:
    problem = id_problem(value, what)
    if problem is not None:
        raise UnsafePathError(problem)
    assert isinstance(value, str)
    return value


def relative_path_problem(value: object) -> str | None:
    """Why ``value`` is not a clean relative POSIX path inside a directory, or None."""
    if not isinstance(value, str) or not value:
        return "path must be a non-empty string"
    if len(value) > MAX_RELATIVE_PATH:
        return f"path is longer than {MAX_RELATIVE_PATH} characters"
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return f"path {value!r} contains NUL or control characters"
    if "\\" in value:
        return f"path {value!r} contains a backslash"
    if value.startswith("/"):
        return f"path {value!r} is absolute"
    parts = value.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return f"path {value!r} is not normalised (empty, '.' or '..' component)"
    return None


def resolve_inside(root: Path, relative: str) -> Path:
    """``root/relative`` after checking it stays inside ``root`` once symlinks are resolved."""
    problem = relative_path_problem(relative)
    if problem is not None:
        raise UnsafePathError(problem)
    real_root = Path(os.path.realpath(root))
    candidate = root / PurePosixPath(relative)
    real = Path(os.path.realpath(candidate))
    if real != real_root and real_root not in real.parents:
        raise UnsafePathError(f"path {relative!r} resolves to {real}, outside {real_root}")
    return candidate
