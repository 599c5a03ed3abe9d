from __future__ import annotations

import numpy as np
import pytest

from feature_platform.datasets.splits import SplitSpec, parse_fractions


def test_assignment_is_deterministic_and_per_key() -> None:
    spec = SplitSpec()
    keys = np.array([5, 1, 5, 9, 1, 5], dtype=np.int64)
    codes = spec.assign(keys)
    assert codes.tolist() == SplitSpec().assign(keys).tolist()
    assert codes[0] == codes[2] == codes[5] and codes[1] == codes[4]
    assert [spec.names[c] for c in codes] == [spec.split_of(int(k)) for k in keys]


def test_fractions_hold_over_many_keys() -> None:
    spec = SplitSpec({"train": 0.7, "val": 0.2, "test": 0.1})
    counts = np.bincount(spec.assign(np.arange(50_000)), minlength=3) / 50_000
    shares = dict(zip(spec.names, counts, strict=True))
    assert np.allclose([shares["train"], shares["val"], shares["test"]], [0.7, 0.2, 0.1], atol=0.01)


def test_assignment_does_not_depend_on_dict_order() -> None:
    """A manifest stores fractions as a JSON object with sorted keys; the split must survive that."""
    keys = np.arange(5_000)
    a = SplitSpec({"train": 0.8, "val": 0.1, "test": 0.1})
    b = SplitSpec({"test": 0.1, "train": 0.8, "val": 0.1})
    assert a.names == b.names == ("test", "train", "val")
    assert (a.assign(keys) == b.assign(keys)).all()


def test_salt_changes_the_assignment() -> None:
    keys = np.arange(1_000)
    assert (SplitSpec(salt="a").assign(keys) != SplitSpec(salt="b").assign(keys)).any()


def test_bucket_matches_documented_formula() -> None:
    import hashlib

    expected = int.from_bytes(hashlib.sha256(b"fp-split-v1:42").digest()[:8], "big") / 2**64
    assert SplitSpec().bucket(42) == expected


@pytest.mark.parametrize("fractions", [{"train": 0.8, "val": 0.3}, {"train": 1.2, "val": -0.2}, {}])
def test_invalid_fractions(fractions: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        SplitSpec(fractions)


def test_parse_fractions() -> None:
    assert parse_fractions("train=0.6, val=0.4") == {"train": 0.6, "val": 0.4}
    for bad in ["train", "train=x", "=0.5"]:
        with pytest.raises(ValueError):
            parse_fractions(bad)


def test_count_agrees_with_per_row_assignment() -> None:
    import pyarrow as pa

    spec = SplitSpec()
    keys = np.random.default_rng(0).integers(0, 500, 20_000)
    expected = np.bincount(spec.assign(keys), minlength=3)
    assert spec.count(pa.array(keys)).tolist() == expected.tolist()
    assert spec.count(pa.array(keys)).sum() == 20_000
