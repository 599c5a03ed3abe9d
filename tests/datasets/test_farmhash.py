"""The runtime FarmHash (pyfarmhash) against published vectors: BigQuery and Redshift docs, farmhash.cc's self-test."""

from __future__ import annotations

from pathlib import Path

import pytest

from feature_platform.datasets.definitions.farmhash import farm_fingerprint, farm_fingerprints, fingerprint64, to_signed

# BigQuery documentation, FARM_FINGERPRINT example:
# FARM_FINGERPRINT(CONCAT(CAST(x AS STRING), y, CAST(z AS STRING))) for (1,'foo',true), (2,'apple',false), (3,'',true)
BIGQUERY_DOC = {"1footrue": -1541654101129638711, "2applefalse": 2794438866806483259, "3true": -4880158226897771312}
# Amazon Redshift documentation, farmFingerprint64('Amazon Redshift').
REDSHIFT_DOC = {"Amazon Redshift": 8085098817162212970}

EXPECTED = Path(__file__).parents[1] / "data" / "farmhashna_selftest_expected.txt"
C1 = 0xCC9E2D51
K0 = 0xC3A5C85C97CB3127
K2 = 0x9AE16A3B2F90404F
K_MUL = 0x9DDFEA08EB382D69
M32 = 0xFFFFFFFF
M64 = 0xFFFFFFFFFFFFFFFF


@pytest.mark.parametrize(("text", "expected"), [*BIGQUERY_DOC.items(), *REDSHIFT_DOC.items()])
def test_published_sql_examples(text: str, expected: int) -> None:
    assert farm_fingerprint(text) == expected


def test_signed_and_unsigned_views_agree() -> None:
    for text in ("", "a", "user-42", "x" * 100):
        unsigned = fingerprint64(text.encode())
        assert 0 <= unsigned < 2**64
        assert farm_fingerprint(text) % 2**64 == unsigned
        assert -(2**63) <= farm_fingerprint(text) < 2**63
    assert farm_fingerprints(["1footrue", None]) == [BIGQUERY_DOC["1footrue"], None]
    assert (to_signed(2**63 - 1), to_signed(2**63), to_signed(2**64 - 1)) == (2**63 - 1, -(2**63), -1)


def test_text_is_hashed_as_utf8_and_bytes_only_reach_the_hash() -> None:
    for text in ("é", "日本語", "emoji-😀", "a\x00b"):
        assert farm_fingerprint(text) == to_signed(fingerprint64(text.encode("utf-8")))
    assert farm_fingerprint("é") != to_signed(fingerprint64("é".encode("latin-1")))
    with pytest.raises(TypeError, match="hashes bytes; got str"):
        fingerprint64("abc")  # type: ignore[arg-type]
    with pytest.raises(UnicodeEncodeError):
        farm_fingerprint("\ud800")  # a lone surrogate has no UTF-8 form (and no SQL string holds one)


def _selftest_data(size: int) -> bytes:
    """farmhash.cc ``Setup()``: the pseudorandom bytes its self-test hashes."""
    a, b = 9, 777
    out = bytearray(size)
    for i in range(size):
        a = (a + b) & M64
        b = (b + a) & M64
        a = ((a ^ (a >> 41)) * K0) & M64
        b = (((b ^ (b >> 41)) * K0) + i) & M64
        out[i] = (b >> 37) & 0xFF
    return bytes(out)


def hash128to64(low: int, high: int) -> int:
    """farmhash.cc ``Hash128to64``: its self-test derives the seeded variants' expectations from Hash64 with it."""
    a = ((low ^ high) * K_MUL) & M64
    a ^= a >> 47
    b = ((high ^ a) * K_MUL) & M64
    b ^= b >> 47
    return (b * K_MUL) & M64


def _create_seed(offset: int, salt: int) -> int:
    h = salt & M32
    for _ in range(3):
        h = (h * C1) & M32
        h ^= h >> 17
    h = (h + (offset & M32)) & M32
    for _ in range(3):
        h = (h * C1) & M32
        h ^= h >> 17
    return h


def test_farmhash_selftest_vectors() -> None:
    """Every farmhashna expectation of farmhash.cc's self-test (Hash64 and its seeded wrappers), lengths 0 to 1 MiB.

    The seeded variants are thin wrappers around Hash64 (``HashLen16(Hash64(s) - seed0, seed1)``), so
    they check Hash64 too; the numbers in tests/data are farmhash.cc's ``farmhashnaTest::expected``.
    """
    expected = [int(x) for x in EXPECTED.read_text().split()]
    size = 1 << 20
    data = _selftest_data(size)
    cases = [(i * i, i) for i in range(299)]
    i = 299
    while i < size:
        cases.append((0, i))
        i += i // 7
    cases.append((0, size))
    assert len(expected) == 6 * len(cases)
    got: list[int] = []
    for offset, length in cases:
        h = fingerprint64(data[offset:offset + length])
        seeds = hash128to64((h - _create_seed(offset, 0)) & M64, _create_seed(offset, 1))
        seed = hash128to64((h - K2) & M64, _create_seed(offset, -1))
        for value in (seeds, seed, h):
            got += [value >> 32, value & M32]
    mismatches = [k for k, (g, e) in enumerate(zip(got, expected, strict=True)) if g != e]
    assert not mismatches, f"{len(mismatches)} mismatches, first at case {mismatches[0] // 6}"
