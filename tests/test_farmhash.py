"""FarmHash Fingerprint64 against published vectors (BigQuery docs, farmhash's own self-test) and pyfarmhash."""

from __future__ import annotations

from pathlib import Path

import farmhash as pyfarmhash
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feature_platform.datasets.definitions.farmhash import (
    K0,
    K2,
    farm_fingerprint,
    farm_fingerprints,
    fingerprint64,
    hash128to64,
)

# BigQuery documentation, FARM_FINGERPRINT example:
# FARM_FINGERPRINT(CONCAT(CAST(x AS STRING), y, CAST(z AS STRING))) for (1,'foo',true), (2,'apple',false), (3,'',true)
BIGQUERY_DOC = {"1footrue": -1541654101129638711, "2applefalse": 2794438866806483259, "3true": -4880158226897771312}
# Amazon Redshift documentation, farmFingerprint64('Amazon Redshift').
REDSHIFT_DOC = {"Amazon Redshift": 8085098817162212970}

EXPECTED = Path(__file__).parent / "data" / "farmhashna_selftest_expected.txt"
C1 = 0xCC9E2D51
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


# pyfarmhash (C++ farmhash) as a witness, over every length class of the algorithm.
@pytest.mark.parametrize("sizes", [(0, 4), (5, 16), (17, 32), (33, 64), (65, 600)])
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_matches_pyfarmhash(sizes: tuple[int, int], data: st.DataObject) -> None:
    blob = data.draw(st.binary(min_size=sizes[0], max_size=sizes[1]))
    assert fingerprint64(blob) == pyfarmhash.fingerprint64(blob)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=80))
def test_text_is_hashed_as_utf8(text: str) -> None:
    expected = pyfarmhash.fingerprint64(text.encode("utf-8"))
    assert farm_fingerprint(text) == (expected - 2**64 if expected >= 2**63 else expected)
