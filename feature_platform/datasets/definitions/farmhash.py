"""FarmHash Fingerprint64 (``farmhashna::Hash64``) in pure Python: the hash behind BigQuery's FARM_FINGERPRINT.

A random split emitted as BigQuery SQL must put every key where the local build puts it, so the
local side needs the very same function, bit for bit (DESIGN.md §7). C's wrapping uint64 arithmetic
is reproduced by masking to 64 bits after each multiply/add; loads are little-endian as in farmhash.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from functools import lru_cache

_M = 0xFFFFFFFFFFFFFFFF
K0 = 0xC3A5C85C97CB3127
K1 = 0xB492B66FBE98F273
K2 = 0x9AE16A3B2F90404F
_KMUL = 0x9DDFEA08EB382D69  # Hash128to64
_SEED = 81

_u64 = struct.Struct("<Q").unpack_from
_u32 = struct.Struct("<I").unpack_from
_q2 = struct.Struct("<2Q").unpack_from
_q4 = struct.Struct("<4Q").unpack_from


def _rot(v: int, s: int) -> int:
    return ((v >> s) | (v << (64 - s))) & _M


def _shift_mix(v: int) -> int:
    return v ^ (v >> 47)


def _len16(u: int, v: int, mul: int) -> int:
    a = ((u ^ v) * mul) & _M
    a ^= a >> 47
    b = ((v ^ a) * mul) & _M
    b ^= b >> 47
    return (b * mul) & _M


def _len0to16(s: bytes, n: int) -> int:
    if n >= 8:
        mul = K2 + n * 2
        a = (_u64(s, 0)[0] + K2) & _M
        b = _u64(s, n - 8)[0]
        c = (_rot(b, 37) * mul + a) & _M
        d = ((_rot(a, 25) + b) * mul) & _M
        return _len16(c, d, mul)
    if n >= 4:
        mul = K2 + n * 2
        a = _u32(s, 0)[0]
        return _len16(n + (a << 3), _u32(s, n - 4)[0], mul)
    if n > 0:
        y = s[0] + (s[n >> 1] << 8)
        z = n + (s[n - 1] << 2)
        return (_shift_mix(((y * K2) ^ (z * K0)) & _M) * K2) & _M
    return K2


def _len17to32(s: bytes, n: int) -> int:
    mul = K2 + n * 2
    a0, b = _q2(s, 0)
    a = (a0 * K1) & _M
    c = (_u64(s, n - 8)[0] * mul) & _M
    d = (_u64(s, n - 16)[0] * K2) & _M
    return _len16((_rot((a + b) & _M, 43) + _rot(c, 30) + d) & _M, (a + _rot((b + K2) & _M, 18) + c) & _M, mul)


def _len33to64(s: bytes, n: int) -> int:
    mul = K2 + n * 2
    f0, b, e0, f = _q4(s, 0)
    a = (f0 * K2) & _M
    c = (_u64(s, n - 8)[0] * mul) & _M
    d = (_u64(s, n - 16)[0] * K2) & _M
    y = (_rot((a + b) & _M, 43) + _rot(c, 30) + d) & _M
    z = _len16(y, (a + _rot((b + K2) & _M, 18) + c) & _M, mul)
    e = (e0 * mul) & _M
    g = ((y + _u64(s, n - 32)[0]) * mul) & _M
    h = ((z + _u64(s, n - 24)[0]) * mul) & _M
    return _len16((_rot((e + f) & _M, 43) + _rot(g, 30) + h) & _M, (e + _rot((f + a) & _M, 18) + g) & _M, mul)


def _weak32(s: bytes, off: int, a: int, b: int) -> tuple[int, int]:
    w, x, y, z = _q4(s, off)
    a = (a + w) & _M
    b = _rot((b + a + z) & _M, 21)
    c = a
    a = (a + x + y) & _M
    b = (b + _rot(a, 44)) & _M
    return (a + z) & _M, (b + c) & _M


def _long(s: bytes, n: int) -> int:
    x = _SEED
    y = (_SEED * K1 + 113) & _M
    z = (_shift_mix((y * K2 + 113) & _M) * K2) & _M
    v0 = v1 = w0 = w1 = 0
    x = (x * K2 + _u64(s, 0)[0]) & _M
    end = ((n - 1) // 64) * 64
    last64 = end + ((n - 1) & 63) - 63
    pos = 0
    while True:
        f = struct.unpack_from("<8Q", s, pos)
        x = (_rot((x + y + v0 + f[1]) & _M, 37) * K1) & _M
        y = (_rot((y + v1 + f[6]) & _M, 42) * K1) & _M
        x ^= w1
        y = (y + v0 + f[5]) & _M
        z = (_rot((z + w0) & _M, 33) * K1) & _M
        v0, v1 = _weak32(s, pos, (v1 * K1) & _M, (x + w0) & _M)
        w0, w1 = _weak32(s, pos + 32, (z + w1) & _M, (y + f[2]) & _M)
        z, x = x, z
        pos += 64
        if pos == end:
            break
    mul = K1 + ((z & 0xFF) << 1)
    pos = last64
    f = struct.unpack_from("<8Q", s, pos)
    w0 = (w0 + ((n - 1) & 63)) & _M
    v0 = (v0 + w0) & _M
    w0 = (w0 + v0) & _M
    x = (_rot((x + y + v0 + f[1]) & _M, 37) * mul) & _M
    y = (_rot((y + v1 + f[6]) & _M, 42) * mul) & _M
    x ^= (w1 * 9) & _M
    y = (y + v0 * 9 + f[5]) & _M
    z = (_rot((z + w0) & _M, 33) * mul) & _M
    v0, v1 = _weak32(s, pos, (v1 * mul) & _M, (x + w0) & _M)
    w0, w1 = _weak32(s, pos + 32, (z + w1) & _M, (y + f[2]) & _M)
    z, x = x, z
    return _len16((_len16(v0, w0, mul) + _shift_mix(y) * K0 + z) & _M, (_len16(v1, w1, mul) + x) & _M, mul)


def fingerprint64(data: bytes) -> int:
    """FarmHash Fingerprint64 of ``data`` as an unsigned 64-bit integer."""
    n = len(data)
    if n <= 16:
        return _len0to16(data, n)
    if n <= 32:
        return _len17to32(data, n)
    if n <= 64:
        return _len33to64(data, n)
    return _long(data, n)


def hash128to64(low: int, high: int) -> int:
    """farmhash's ``Hash128to64`` (used by the seeded variants in farmhash's self-test)."""
    return _len16(low, high, _KMUL)


def to_signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


@lru_cache(maxsize=1 << 17)
def farm_fingerprint(text: str) -> int:
    """BigQuery's ``FARM_FINGERPRINT(text)``: Fingerprint64 of the UTF-8 bytes, read as a signed INT64."""
    h = fingerprint64(text.encode("utf-8"))
    return h - (1 << 64) if h >= 1 << 63 else h


def farm_fingerprints(texts: Iterable[str | None]) -> list[int | None]:
    """Vectorised form for UDFs and batches: None stays None (SQL NULL in, NULL out)."""
    return [None if t is None else farm_fingerprint(t) for t in texts]
