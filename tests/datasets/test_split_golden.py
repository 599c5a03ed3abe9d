"""Split assignment is bit-identical to the one recorded before the runtime FarmHash moved to pyfarmhash.

The digests below were computed with the previous (pure-Python, farmhash.cc-verified) implementation over
8,009 keys: integers (negative included), strings of every FarmHash length class, non-ASCII and NUL.
Any change to the hash, the UTF-8 encoding, the signed reading or the ABS/MOD bucket rule changes them.
"""

from __future__ import annotations

import hashlib

import duckdb
import pytest

from feature_platform.datasets.definitions.sql import BUCKETS, bucket_of, register_udfs

KEYS: list[int | str] = [*range(-500, 4500), *(f"user-{i}" for i in range(3000)),
                         "", "é", "日本語キー", "x" * 63, "y" * 64, "z" * 65, "w" * 300, "\x00nul", "emoji-😀"]
RECORDED = {
    "": "923637e2ada303a934efa97870c14ddf9971b1cdd33ecae8062f9842596b92d6",
    "s1": "5ba520fdb205a52af7a464925577a423c5b5d0bbbabb44105b8e0c0cbc0f79ca",
    "split-salt-ü": "31d7eddb13345125917da688771fa22df89fbeb44510b056bf32e756f96ffb72",
}
RECORDED_S1 = {0: 800633, 1: 590447, -1: 345560, 42: 207531, "user-0": 665203, "user-1": 136022, "": 699894,
               "é": 42703, "w" * 300: 400273}


def _digest(buckets: dict[int | str, int]) -> str:
    return hashlib.sha256("\n".join(f"{k!r}\t{buckets[k]}" for k in KEYS).encode()).hexdigest()


@pytest.mark.parametrize("salt", sorted(RECORDED))
def test_bucket_of_matches_the_recorded_assignment(salt: str) -> None:
    assert _digest({k: bucket_of(salt, k) for k in KEYS}) == RECORDED[salt]


def test_recorded_buckets_by_key() -> None:
    assert {k: bucket_of("s1", k) for k in RECORDED_S1} == RECORDED_S1


@pytest.mark.parametrize("salt", sorted(RECORDED))
def test_duckdb_udf_matches_the_recorded_assignment(salt: str) -> None:
    """The SQL the definitions emit (ABS(MOD(FARM_FINGERPRINT(CONCAT(salt, CAST(k AS STRING))), 1e6))) in DuckDB."""
    conn = duckdb.connect()
    register_udfs(conn)
    ints = [k for k in KEYS if isinstance(k, int)]
    texts = [k for k in KEYS if isinstance(k, str)]
    sql = "SELECT k, ABS(farm_fingerprint(CONCAT(?, CAST(k AS VARCHAR))) % ?) FROM unnest(?) AS t(k)"
    got: dict[int | str, int] = dict(conn.execute(sql, [salt, BUCKETS, ints]).fetchall())
    got.update(dict(conn.execute(sql, [salt, BUCKETS, texts]).fetchall()))
    null = conn.execute("SELECT farm_fingerprint(NULL::VARCHAR)").fetchall()
    conn.close()
    assert _digest(got) == RECORDED[salt]
    assert null == [(None,)]
