"""HyperLogLog distinct-value sketch in numpy: mergeable exactly (register-wise max), so a profile
computed file by file and reduced gives the very estimate a single pass over all files gives.

Values are hashed by their float64 bit pattern (``-0.0`` counted as ``0.0``) through splitmix64;
other values by FarmHash Fingerprint64 of their text's UTF-8 bytes. 2**14 registers: about 0.8% standard
error; small cardinalities use linear counting (off only by register collisions, ~n²/2**15).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from feature_platform.datasets.definitions.farmhash import fingerprint64

PRECISION = 14
REGISTERS = 1 << PRECISION
_LOW_BITS = 64 - PRECISION
_LOW_MASK = np.uint64((1 << _LOW_BITS) - 1)
_ALPHA = 0.7213 / (1.0 + 1.079 / REGISTERS)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser of a uint64 array (a new array; ``x`` is not changed)."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z ^= z >> np.uint64(30)
        z *= np.uint64(0xBF58476D1CE4E5B9)
        z ^= z >> np.uint64(27)
        z *= np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return z


@dataclass
class HyperLogLog:
    registers: np.ndarray = field(default_factory=lambda: np.zeros(REGISTERS, dtype=np.int8))

    def add_hashes(self, h: np.ndarray) -> None:
        if h.size == 0:
            return
        index = (h >> np.uint64(_LOW_BITS)).astype(np.intp)
        low = (h & _LOW_MASK).astype(np.float64)  # < 2**50: exact in float64, so frexp's exponent is exact
        rank = (_LOW_BITS + 1 - np.frexp(low)[1]).astype(np.int8)  # leading zeros of the 50 bits, plus one
        np.maximum.at(self.registers, index, rank)

    def add_floats(self, values: np.ndarray) -> None:
        """Add finite float64 values (callers drop nulls and NaN/±inf first)."""
        self.add_hashes(splitmix64((values + 0.0).view(np.uint64)))

    def add_texts(self, values: pa.Array | pa.ChunkedArray) -> None:
        """Add the non-null values of a non-numeric column, each hashed by the UTF-8 bytes of its text."""
        distinct = pc.unique(values.drop_null() if isinstance(values, pa.Array) else pc.drop_null(values))
        hashes = [fingerprint64(str(v).encode("utf-8")) for v in distinct.to_pylist()]
        self.add_hashes(splitmix64(np.asarray(hashes, dtype=np.uint64)))

    def merge(self, other: HyperLogLog) -> None:
        np.maximum(self.registers, other.registers, out=self.registers)

    def estimate(self) -> int:
        zeros = int(np.count_nonzero(self.registers == 0))
        if zeros == REGISTERS:
            return 0
        raw = _ALPHA * REGISTERS * REGISTERS / float(np.sum(np.ldexp(1.0, -self.registers.astype(np.int64))))
        if raw <= 2.5 * REGISTERS and zeros:
            return round(REGISTERS * math.log(REGISTERS / zeros))
        return round(raw)
