"""Tensor splits: disjoint, covering, deterministic, chunk-local, and held-out regions exactly as declared."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feature_platform.datasets.tensor_splits import (
    SPLIT_NAMES,
    TEST,
    TensorSplitSpec,
    assign_tensor_splits,
    parse_split_arg,
    split_counts,
)
from feature_platform.simulators import get_simulator, simulate_range

N = 4_000
VAR = get_simulator("var").spec
SPECS = [
    TensorSplitSpec.default(),
    TensorSplitSpec.random_interpolation(0.6, 0.25, 0.15),
    TensorSplitSpec.extrapolation_slice("rho", ">=", 0.9),
    TensorSplitSpec.extrapolation_slice("kappa", "<", 0.2, val_fraction=0.3),
    TensorSplitSpec.extrapolation_corner(["rho", "sigma"], 0.7),
    TensorSplitSpec.extrapolation_corner(["rho", "sigma", "phi_pi"], 0.4, side="low", val_fraction=0.0),
]


@pytest.fixture(scope="module")
def theta() -> np.ndarray:
    return simulate_range("var", 21, 0, N, 2, 0).theta


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.describe())
def test_cover_disjoint_deterministic_and_chunk_local(spec: TensorSplitSpec, theta: np.ndarray) -> None:
    idx = np.arange(N)
    codes = assign_tensor_splits(spec, theta, idx, VAR, 21)
    assert codes.dtype == np.int8 and codes.shape == (N,)
    # one code per sample in 0..2: every sample in exactly one split (disjoint and covering)
    assert set(np.unique(codes)) <= {0, 1, 2}
    masks = [codes == k for k in range(len(SPLIT_NAMES))]
    assert np.all(sum(m.astype(int) for m in masks) == 1)
    assert sum(split_counts(codes).values()) == N
    assert np.array_equal(assign_tensor_splits(spec, theta, idx, VAR, 21), codes)
    chunked = np.concatenate([assign_tensor_splits(spec, theta[a:b], idx[a:b], VAR, 21)
                              for a, b in ((0, 1000), (1000, 1001), (1001, 3333), (3333, N))])
    assert np.array_equal(chunked, codes)
    # shuffled order: a sample's split follows the sample, not its position
    perm = np.random.default_rng(0).permutation(N)
    assert np.array_equal(assign_tensor_splits(spec, theta[perm], idx[perm], VAR, 21), codes[perm])
    # the float32 on-disk theta gives the same codes
    assert np.array_equal(assign_tensor_splits(spec, theta.astype(np.float32).astype(np.float64), idx, VAR, 21),
                          codes)


def test_random_interpolation_fractions_and_seed(theta: np.ndarray) -> None:
    spec = TensorSplitSpec.random_interpolation(0.6, 0.25, 0.15)
    counts = split_counts(assign_tensor_splits(spec, theta, np.arange(N), VAR, 1))
    assert abs(counts["train"] / N - 0.6) < 0.03 and abs(counts["val"] / N - 0.25) < 0.03
    a = assign_tensor_splits(spec, theta, np.arange(N), VAR, 1)
    b = assign_tensor_splits(spec, theta, np.arange(N), VAR, 2)
    assert not np.array_equal(a, b)
    # random interpolation ignores theta entirely
    assert np.array_equal(assign_tensor_splits(spec, theta[::-1].copy(), np.arange(N), VAR, 1), a)


def test_slice_holds_out_exactly_the_declared_region(theta: np.ndarray) -> None:
    codes = assign_tensor_splits(TensorSplitSpec.extrapolation_slice("rho", ">=", 0.9), theta, np.arange(N), VAR, 5)
    lo, hi = VAR.parameters[0].lower, VAR.parameters[0].upper
    inside = theta[:, 0].astype(np.float32) >= np.float32(lo + 0.9 * (hi - lo))
    assert inside.any() and (~inside).any()
    assert np.array_equal(codes == TEST, inside)
    rest = codes[~inside]
    assert abs((rest == 1).mean() - 0.1) < 0.03 and not (rest == TEST).any()


@pytest.mark.parametrize("side", ["high", "low"])
def test_corner_holds_out_joint_extremes_only(side: str, theta: np.ndarray) -> None:
    spec = TensorSplitSpec.extrapolation_corner(["rho", "sigma"], 0.6 if side == "high" else 0.4, side=side)
    codes = assign_tensor_splits(spec, theta, np.arange(N), VAR, 5)
    beyond = []
    for name in ("rho", "sigma"):
        k = VAR.parameter_index(name)
        v = VAR.parameters[k]
        thr = np.float32(v.lower + spec.parameters["quantile"] * (v.upper - v.lower))  # type: ignore[operator]
        x = theta[:, k].astype(np.float32)
        beyond.append(x >= thr if side == "high" else x <= thr)
    both = beyond[0] & beyond[1]
    assert both.any() and (beyond[0] & ~beyond[1]).any()  # one extreme alone is not held out
    assert np.array_equal(codes == TEST, both)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32), start=st.integers(0, 10**9), n=st.integers(1, 300), cut=st.integers(0, 300),
       q=st.floats(0.0, 1.0), op=st.sampled_from([">=", ">", "<=", "<"]), param=st.sampled_from(VAR.parameter_names))
def test_property_slice_chunk_local(seed: int, start: int, n: int, cut: int, q: float, op: str, param: str) -> None:
    rng = np.random.default_rng(seed)
    lower, upper = VAR.bounds()
    theta = lower + (upper - lower) * rng.random((n, VAR.n_params))
    idx = np.arange(start, start + n)
    spec = TensorSplitSpec.extrapolation_slice(param, op, q)
    codes = assign_tensor_splits(spec, theta, idx, VAR, seed)
    cut = min(cut, n)
    parts = [assign_tensor_splits(spec, theta[:cut], idx[:cut], VAR, seed),
             assign_tensor_splits(spec, theta[cut:], idx[cut:], VAR, seed)]
    assert np.array_equal(np.concatenate(parts), codes)
    k = VAR.parameter_index(param)
    thr = np.float32(lower[k] + q * (upper[k] - lower[k]))
    x = theta[:, k].astype(np.float32)
    pred = {">=": x >= thr, ">": x > thr, "<=": x <= thr, "<": x < thr}[op]
    assert np.array_equal(codes == TEST, pred)


@pytest.mark.parametrize(("text", "expected"), [
    ("random_interpolation", TensorSplitSpec.random_interpolation()),
    ("random_interpolation:0.7/0.2/0.1", TensorSplitSpec.random_interpolation(0.7, 0.2, 0.1)),
    ("extrapolation_slice:rho>=0.9", TensorSplitSpec.extrapolation_slice("rho", ">=", 0.9)),
    (" extrapolation_slice: kappa < 0.25 ;val=0.2", TensorSplitSpec.extrapolation_slice("kappa", "<", 0.25, 0.2)),
    ("extrapolation_corner:rho,sigma>=0.8", TensorSplitSpec.extrapolation_corner(["rho", "sigma"], 0.8)),
    ("extrapolation_corner:rho, sigma<=0.2", TensorSplitSpec.extrapolation_corner(["rho", "sigma"], 0.2, "low")),
])
def test_parse_split_arg(text: str, expected: TensorSplitSpec) -> None:
    spec = parse_split_arg(text)
    assert spec == expected
    assert parse_split_arg(spec.describe()) == spec
    assert TensorSplitSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec


@pytest.mark.parametrize(("text", "message"), [
    ("kfold", "unknown split algorithm 'kfold'"),
    ("random_interpolation:0.5/0.5", "fractions must be TRAIN/VAL/TEST"),
    ("random_interpolation:0.5/0.4/0.3", "must sum to 1"),
    ("extrapolation_slice:rho=0.9", "cannot parse predicate"),
    ("extrapolation_slice:rho,sigma>=0.9", "takes one parameter"),
    ("extrapolation_slice:rho>=1.5", "'quantile' must lie in \\[0, 1\\]"),
    ("extrapolation_corner:rho,sigma>0.8", "needs >= \\(high\\) or <= \\(low\\)"),
    ("extrapolation_corner:rho,rho>=0.8", "distinct parameter names"),
    ("extrapolation_slice:rho>=0.9;val=1", "'val_fraction' must lie in \\[0, 1\\)"),
    ("extrapolation_slice:rho>=0.9;seed=3", "bad option"),
])
def test_parse_split_arg_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_split_arg(text)


def test_unknown_parameter_and_bad_shapes(theta: np.ndarray) -> None:
    with pytest.raises(ValueError, match="unknown parameter 'beta' for simulator 'var'; valid: rho, rho_pi"):
        assign_tensor_splits(parse_split_arg("extrapolation_corner:rho,beta>=0.8"), theta, np.arange(N), VAR, 1)
    with pytest.raises(ValueError, match="unknown parameter\\(s\\) \\['fraction'\\]"):
        TensorSplitSpec("extrapolation_slice", {"parameter": "rho", "fraction": 0.2})
    with pytest.raises(ValueError, match=r"theta shape expected \(n, 9\)"):
        assign_tensor_splits(TensorSplitSpec.default(), theta[:, :4], np.arange(N), VAR, 1)
    with pytest.raises(ValueError, match=r"indices shape expected \(4000,\)"):
        assign_tensor_splits(TensorSplitSpec.default(), theta, np.arange(3), VAR, 1)
    with pytest.raises(ValueError, match="split seed must be an integer"):
        assign_tensor_splits(TensorSplitSpec.default(), theta, np.arange(N), VAR, -1)
    regime = get_simulator("regime_switching").spec
    with pytest.raises(ValueError, match="unknown parameter 'rho_pi' for simulator 'regime_switching'"):
        TensorSplitSpec.extrapolation_slice("rho_pi").check(regime)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**63), n=st.integers(1, 200), q=st.floats(0.0, 1.0), side=st.sampled_from(["high", "low"]),
       names=st.lists(st.sampled_from(VAR.parameter_names), min_size=1, max_size=4, unique=True),
       val=st.floats(0.0, 0.9))
def test_property_corner_and_val_fraction(seed: int, n: int, q: float, side: str, names: list[str], val: float) -> None:
    rng = np.random.default_rng(seed % 2**32)
    lower, upper = VAR.bounds()
    theta = lower + (upper - lower) * rng.random((n, VAR.n_params))
    idx = rng.choice(10**12, size=n, replace=False)
    spec = TensorSplitSpec.extrapolation_corner(names, q, side, val)
    codes = assign_tensor_splits(spec, theta, idx, VAR, seed)
    expected = np.ones(n, dtype=bool)
    for name in names:
        k = VAR.parameter_index(name)
        thr = np.float32(lower[k] + q * (upper[k] - lower[k]))
        x = theta[:, k].astype(np.float32)
        expected &= x >= thr if side == "high" else x <= thr
    assert np.array_equal(codes == TEST, expected)
    # each sample's code is its own: computing samples one at a time gives the same codes
    single = [assign_tensor_splits(spec, theta[j:j + 1], idx[j:j + 1], VAR, seed)[0] for j in range(min(n, 20))]
    assert np.array_equal(np.array(single, dtype=np.int8), codes[:20])
    if val == 0.0:
        assert not (codes == 1).any()
