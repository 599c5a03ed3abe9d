"""Object keys: one validation rule shared by every store, so a key that is safe on S3 is safe on disk.

A key is a '/'-separated relative path: no leading '/', no empty, '.' or '..' component, no
backslash, no NUL or control characters, at most 1024 UTF-8 bytes (the S3 limit).
"""

from __future__ import annotations

MAX_KEY_BYTES = 1024
HASH_CHUNK = 8 * 1024 * 1024


class ObjectStoreError(RuntimeError):
    """An object store operation failed."""


class ObjectNotFoundError(ObjectStoreError, LookupError):
    """The key names no object."""


class StorageUnavailableError(ObjectStoreError):
    """The store could not be reached or asked to slow down (connection, timeout, 5xx): worth a retry later."""


def key_problem(key: object) -> str | None:
    """Why ``key`` is not a valid object key, or None when it is."""
    if not isinstance(key, str) or not key:
        return "object key must be a non-empty string"
    if any(ord(c) < 32 or ord(c) == 127 for c in key):
        return f"object key {key!r} contains NUL or control characters"
    if len(key.encode("utf-8", errors="replace")) > MAX_KEY_BYTES:
        return f"object key is longer than {MAX_KEY_BYTES} UTF-8 bytes"
    if "\\" in key:
        return f"object key {key!r} contains a backslash"
    if key.startswith("/"):
        return f"object key {key!r} is absolute"
    if any(part in ("", ".", "..") for part in key.split("/")):
        return f"object key {key!r} is not normalised (empty, '.' or '..' component)"
    return None


def validate_key(key: object) -> str:
    """``key`` unchanged when valid; a one-line ``ValueError`` otherwise."""
    problem = key_problem(key)
    if problem is not None:
        raise ValueError(problem)
    assert isinstance(key, str)
    return key


def validate_prefix(prefix: object) -> str:
    """A listing prefix: '' (everything) or a valid key, optionally ending in '/'."""
    if prefix == "":
        return ""
    if not isinstance(prefix, str):
        raise ValueError("object prefix must be a string")
    validate_key(prefix[:-1] if prefix.endswith("/") else prefix)
    return prefix


def join_key(*parts: str) -> str:
    """Join key parts with '/' and validate the result (so no part can smuggle in '..' or a '/')."""
    return validate_key("/".join(parts))
