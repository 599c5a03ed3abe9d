"""Canonical JSON: one byte string per value, so a manifest's sha256 is its identity; and file digests."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

HASH_BLOCK = 8 * 1024 * 1024


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no insignificant whitespace, UTF-8, and NaN/Infinity refused."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


class FieldsAsJson:
    """A dataclass whose JSON form is its fields, as ``dataclasses.asdict`` gives them."""

    def to_json_dict(self: DataclassInstance) -> dict[str, Any]:
        return asdict(self)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digest(value: Any) -> str:
    """sha256 of the canonical JSON of ``value``."""
    return sha256_hex(canonical_json(value))


def sha256_file(path: Path, block: int = HASH_BLOCK) -> str:
    """sha256 of a file in large blocks into one reused buffer (OpenSSL does the work)."""
    h = hashlib.sha256()
    buf = bytearray(block)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()
