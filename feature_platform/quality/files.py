"""Writing quality files: atomically (a reader sees the old file or the new one, never half of
either) and as JSON that diffs well (objects one key a line, lists of numbers on one line).
"""

from __future__ import annotations

import json
from typing import Any

from feature_platform.storage.files import write_atomic

__all__ = ["json_text", "write_atomic"]


def json_text(value: Any, indent: int = 2) -> str:
    """Indented JSON, NaN/Infinity refused, with lists of scalars kept on one line."""
    return _render(value, indent, 0) + "\n"


def _render(value: Any, indent: int, depth: int) -> str:
    pad, inner = " " * (indent * depth), " " * (indent * (depth + 1))
    if isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(str(k), ensure_ascii=False)}: {_render(v, indent, depth + 1)}"
                 for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        return "[\n" + ",\n".join(inner + _render(v, indent, depth + 1) for v in value) + "\n" + pad + "]"
    return json.dumps(value, ensure_ascii=False, allow_nan=False)
