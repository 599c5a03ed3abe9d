"""BigQuery's ``FARM_FINGERPRINT``: FarmHash Fingerprint64 (``farmhashna::Hash64``) of the UTF-8 bytes, signed.

A random split emitted as BigQuery SQL must put every key where the local build puts it, so the local side
runs the very same function: Google's C++ farmhash through ``pyfarmhash``. Its ``fingerprint64`` returns
the 64 bits unsigned; BigQuery reads them as a two's-complement INT64.
"""

from __future__ import annotations

from collections.abc import Iterable

import farmhash as _farmhash

__all__ = ["farm_fingerprint", "farm_fingerprints", "fingerprint64", "to_signed"]

_TWO_63 = 1 << 63
_TWO_64 = 1 << 64


def fingerprint64(data: bytes) -> int:
    """FarmHash Fingerprint64 of ``data`` as an unsigned 64-bit integer."""
    if not isinstance(data, bytes):  # pyfarmhash would hash a str as its UTF-8 bytes: make callers say so
        raise TypeError(f"fingerprint64 hashes bytes; got {type(data).__name__}")
    return int(_farmhash.fingerprint64(data))


def to_signed(value: int) -> int:
    """The same 64 bits read as a two's-complement INT64."""
    return value - _TWO_64 if value >= _TWO_63 else value


def farm_fingerprint(text: str) -> int:
    """BigQuery's ``FARM_FINGERPRINT(text)``: Fingerprint64 of the UTF-8 bytes, read as a signed INT64."""
    return to_signed(fingerprint64(text.encode("utf-8")))


def farm_fingerprints(texts: Iterable[str | None]) -> list[int | None]:
    """Vectorised form for UDFs and batches: None stays None (SQL NULL in, NULL out)."""
    return [None if t is None else farm_fingerprint(t) for t in texts]
