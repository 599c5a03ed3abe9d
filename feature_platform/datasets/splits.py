"""Deterministic train/val/test assignment by hash of the entity id.

A key's split depends only on ``salt`` and the key's text, so the same entity lands in the same
split in every build, every batch and every consumer (no entity leaks across splits). The hash
range is cut in the *sorted* order of the split names, never in dict order: a manifest stores the
fractions as a JSON object (canonical JSON sorts its keys), so any other order would be lost.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

DEFAULT_FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}
DERIVATION = ("bucket = int.from_bytes(sha256(f'{salt}:{key}'.encode())[:8], 'big') / 2**64, compared with the "
              "cumulative fractions in sorted split-name order")


@dataclass(frozen=True)
class SplitSpec:
    fractions: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_FRACTIONS))
    salt: str = "fp-split-v1"

    def __post_init__(self) -> None:
        if not self.fractions or any(not (0.0 <= f <= 1.0) for f in self.fractions.values()):
            raise ValueError(f"split fractions must lie in [0, 1], got {self.fractions}")
        if abs(sum(self.fractions.values()) - 1.0) > 1e-9:
            raise ValueError(f"split fractions must sum to 1, got {sum(self.fractions.values())}")

    @property
    def names(self) -> tuple[str, ...]:
        """Split names in the order the hash range is cut: sorted, so a JSON round trip keeps it."""
        return tuple(sorted(self.fractions))

    def bucket(self, key: object) -> float:
        return _bucket(self.salt, str(key))

    def split_of(self, key: object) -> str:
        return self.names[self._index(self.bucket(key))]

    def _index(self, bucket: float) -> int:
        edge = 0.0
        for i, name in enumerate(self.names):
            edge += self.fractions[name]
            if bucket < edge:
                return i
        return len(self.fractions) - 1

    def count(self, keys: pa.Array) -> np.ndarray:
        """Rows per split (in ``names`` order) without a code per row: hash-count distinct keys first."""
        counts = pc.value_counts(keys)
        values = counts.field("values").to_pylist()
        per_key = counts.field("counts").to_numpy()
        codes = np.fromiter((self._index(self.bucket(k)) for k in values), np.int64, len(values))
        return np.bincount(codes, weights=per_key, minlength=len(self.fractions)).astype(np.int64)

    def assign(self, keys: np.ndarray) -> np.ndarray:
        """Split index (into ``names``) per key; hashes each distinct key once."""
        uniq, inverse = np.unique(keys, return_inverse=True)
        codes = np.fromiter((self._index(self.bucket(k)) for k in uniq.tolist()), np.int8, len(uniq))
        return codes[inverse.reshape(-1)]


@lru_cache(maxsize=1 << 16)
def _bucket(salt: str, key: str) -> float:
    h = hashlib.sha256(f"{salt}:{key}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def parse_fractions(text: str) -> dict[str, float]:
    """``train=0.8,val=0.1,test=0.1`` → dict, in the order given."""
    out: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ValueError(f"expected name=fraction, got {part!r}")
        try:
            out[name] = float(value)
        except ValueError:
            raise ValueError(f"fraction for {name!r} is not a number: {value!r}") from None
    return out
