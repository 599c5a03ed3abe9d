"""The object store interface every publish step talks to: a local directory or an S3 bucket.

Domain code depends on this Protocol only, so the same publish logic runs against the embedded
default and against S3 (the Dagster layer passes a client from ``dagster_aws.s3.S3Resource``).
Keys follow one rule on every store (``object_keys.validate_key``); a bad key is a ``ValueError``
before anything is touched.
"""

from __future__ import annotations

import builtins
from pathlib import Path
from typing import Protocol, runtime_checkable

from feature_platform.storage.local_store import LocalObjectStore
from feature_platform.storage.object_keys import (
    HASH_CHUNK,
    ObjectNotFoundError,
    ObjectStoreError,
    join_key,
    validate_key,
    validate_prefix,
)
from feature_platform.storage.s3_store import S3ObjectStore, S3StoreConfig, s3_store_from_env

__all__ = [
    "HASH_CHUNK",
    "LocalObjectStore",
    "ObjectNotFoundError",
    "ObjectStore",
    "ObjectStoreError",
    "S3ObjectStore",
    "S3StoreConfig",
    "join_key",
    "s3_store_from_env",
    "validate_key",
    "validate_prefix",
]


@runtime_checkable
class ObjectStore(Protocol):
    """Flat key → bytes storage with streamed hashing; missing keys raise ``ObjectNotFoundError``."""

    def put_file(self, local: Path, key: str) -> None: ...

    def put_bytes(self, data: bytes, key: str) -> None: ...

    def get_bytes(self, key: str) -> bytes: ...

    def sha256(self, key: str) -> str:
        """Hex sha256 of the stored bytes, read in ``HASH_CHUNK`` blocks (bounded memory)."""
        ...

    def size(self, key: str) -> int: ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str = "") -> builtins.list[str]:
        """Keys starting with ``prefix`` (plain string prefix, as on S3), sorted."""
        ...

    def delete(self, key: str) -> None:
        """Remove ``key``; a missing key is not an error."""
        ...

    def delete_prefix(self, prefix: str) -> int:
        """Remove every key starting with ``prefix``; returns how many were removed."""
        ...

    def url(self, key: str) -> str:
        """``file://…`` or ``s3://bucket/…`` naming ``key`` for people and catalogs."""
        ...

    def download_file(self, key: str, local: Path) -> None: ...
