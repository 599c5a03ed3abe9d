"""Train/val/test splits for tensor (simulator) datasets: the seed's three planned algorithms.

Every rule is per sample: a sample's split depends only on its own index, its own ``theta`` and the
dataset seed, so chunk workers running in parallel agree with a single-process build and with a
verifier recomputing splits from the store. Held-out regions are defined on the simulator's
*declared* parameter bounds (``lower + q * (upper - lower)``), never on data quantiles, which would
depend on the other samples. Predicates compare float32 values (the on-disk dtype of ``theta``),
so recomputing from the stored array gives the same codes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast, get_args

import numpy as np
from pydantic import JsonValue

from feature_platform.simulators.base import SimulatorSpec

SPLIT_NAMES = ("train", "val", "test")
TRAIN, VAL, TEST = 0, 1, 2
Algorithm = Literal["random_interpolation", "extrapolation_slice", "extrapolation_corner"]
ALGORITHMS: tuple[str, ...] = get_args(Algorithm)
SLICE_OPS = (">=", ">", "<=", "<")
SPLIT_DERIVATION = ("u = (splitmix64(splitmix64(seed ^ 0x5EED5EED5EED5EED) + index) >> 11) / 2**53; "
                    "random_interpolation: train if u < f_train, val if u < f_train + f_val, else test; "
                    "extrapolation_*: test where the float32 predicate on theta holds, "
                    "else val if u < val_fraction, else train")

_DEFAULTS: dict[str, dict[str, JsonValue]] = {
    "random_interpolation": {"train": 0.8, "val": 0.1, "test": 0.1},
    "extrapolation_slice": {"parameter": None, "op": ">=", "quantile": 0.9, "val_fraction": 0.1},
    "extrapolation_corner": {"parameters": None, "quantile": 0.8, "side": "high", "val_fraction": 0.1},
}


def _fraction(algorithm: str, key: str, value: JsonValue, *, below_one: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
        raise ValueError(f"split {algorithm}: parameter {key!r} must be a number, got {value!r}")
    if not (0.0 <= float(value) <= 1.0) or (below_one and float(value) >= 1.0):
        raise ValueError(f"split {algorithm}: parameter {key!r} must lie in [0, 1{')' if below_one else ']'}, "
                         f"got {value!r}")
    return float(value)


@dataclass(frozen=True)
class TensorSplitSpec:
    """An algorithm tag plus its parameters, completed with defaults and validated on construction."""

    algorithm: Algorithm
    parameters: dict[str, JsonValue]

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"unknown split algorithm {self.algorithm!r}; valid: {', '.join(ALGORITHMS)}")
        defaults = _DEFAULTS[self.algorithm]
        unknown = sorted(set(self.parameters) - set(defaults))
        if unknown:
            raise ValueError(f"split {self.algorithm}: unknown parameter(s) {unknown}; valid: {sorted(defaults)}")
        params = {**defaults, **self.parameters}
        a = self.algorithm
        if a == "random_interpolation":
            fractions = {k: _fraction(a, k, params[k]) for k in SPLIT_NAMES}
            if abs(sum(fractions.values()) - 1.0) > 1e-9:
                raise ValueError(f"split {a}: train + val + test must sum to 1, got {sum(fractions.values())}")
            params = dict(fractions)
        else:
            params["quantile"] = _fraction(a, "quantile", params["quantile"])
            params["val_fraction"] = _fraction(a, "val_fraction", params["val_fraction"], below_one=True)
            if a == "extrapolation_slice":
                if not isinstance(params["parameter"], str) or not params["parameter"]:
                    raise ValueError(f"split {a}: parameter 'parameter' must name a simulator parameter, "
                                     f"got {params['parameter']!r}")
                if params["op"] not in SLICE_OPS:
                    raise ValueError(f"split {a}: parameter 'op' must be one of {list(SLICE_OPS)}, "
                                     f"got {params['op']!r}")
            else:
                names = params["parameters"]
                if (not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names)
                        or len(set(cast(list[str], names))) != len(names)):
                    raise ValueError(f"split {a}: parameter 'parameters' must be a non-empty list of distinct "
                                     f"parameter names, got {names!r}")
                if params["side"] not in ("high", "low"):
                    raise ValueError(f"split {a}: parameter 'side' must be 'high' or 'low', got {params['side']!r}")
        object.__setattr__(self, "parameters", params)

    # -- constructors --------------------------------------------------------------------------
    @classmethod
    def default(cls) -> TensorSplitSpec:
        return cls.random_interpolation()

    @classmethod
    def random_interpolation(cls, train: float = 0.8, val: float = 0.1, test: float = 0.1) -> TensorSplitSpec:
        return cls("random_interpolation", {"train": train, "val": val, "test": test})

    @classmethod
    def extrapolation_slice(cls, parameter: str, op: str = ">=", quantile: float = 0.9,
                            val_fraction: float = 0.1) -> TensorSplitSpec:
        return cls("extrapolation_slice",
                   {"parameter": parameter, "op": op, "quantile": quantile, "val_fraction": val_fraction})

    @classmethod
    def extrapolation_corner(cls, parameters: Sequence[str], quantile: float = 0.8, side: str = "high",
                             val_fraction: float = 0.1) -> TensorSplitSpec:
        return cls("extrapolation_corner", {"parameters": list(parameters), "quantile": quantile, "side": side,
                                            "val_fraction": val_fraction})

    # -- serialisation -------------------------------------------------------------------------
    def to_json(self) -> dict[str, JsonValue]:
        params: dict[str, JsonValue] = {k: (list(v) if isinstance(v, list) else v) for k, v in self.parameters.items()}
        return {"algorithm": self.algorithm, "parameters": params}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TensorSplitSpec:
        if not isinstance(data, dict) or set(data) != {"algorithm", "parameters"}:
            raise ValueError(f"split spec must be an object with keys 'algorithm' and 'parameters', got {data!r}")
        return cls(data["algorithm"], dict(data["parameters"]))

    def referenced_parameters(self) -> tuple[str, ...]:
        if self.algorithm == "extrapolation_slice":
            return (cast(str, self.parameters["parameter"]),)
        if self.algorithm == "extrapolation_corner":
            return tuple(cast(list[str], self.parameters["parameters"]))
        return ()

    def check(self, spec_sim: SimulatorSpec) -> None:
        """ValueError naming an unknown parameter and listing the simulator's valid ones."""
        for name in self.referenced_parameters():
            spec_sim.parameter_index(name)

    def describe(self) -> str:
        """The CLI form (``parse_split_arg(spec.describe()) == spec``)."""
        p = self.parameters
        if self.algorithm == "random_interpolation":
            return f"random_interpolation:{p['train']!r}/{p['val']!r}/{p['test']!r}"
        if self.algorithm == "extrapolation_slice":
            return f"extrapolation_slice:{p['parameter']}{p['op']}{p['quantile']!r};val={p['val_fraction']!r}"
        op = ">=" if p["side"] == "high" else "<="
        names = ",".join(cast(list[str], p["parameters"]))
        return f"extrapolation_corner:{names}{op}{p['quantile']!r};val={p['val_fraction']!r}"


# -- assignment --------------------------------------------------------------------------------
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_SALT = 0x5EED5EED5EED5EED


def _splitmix64(x: np.ndarray) -> np.ndarray:
    z = x + _GOLDEN  # uint64 array arithmetic wraps modulo 2**64, as splitmix64 requires
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return cast(np.ndarray, z ^ (z >> np.uint64(31)))


def sample_uniforms(seed: int, indices: np.ndarray) -> np.ndarray:
    """A deterministic U[0, 1) per (seed, index), vectorised; independent of batch composition."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or not 0 <= int(seed) < 2**64:
        raise ValueError(f"split seed must be an integer in [0, 2**64), got {seed!r}")
    key = _splitmix64(np.array([int(seed) ^ _SALT], dtype=np.uint64))
    h = _splitmix64(indices.astype(np.uint64) + key)
    return cast(np.ndarray, (h >> np.uint64(11)).astype(np.float64) * 2.0**-53)


def _threshold(spec_sim: SimulatorSpec, name: str, quantile: float) -> tuple[int, np.float32]:
    k = spec_sim.parameter_index(name)
    v = spec_sim.parameters[k]
    return k, np.float32(v.lower + quantile * (v.upper - v.lower))


def _compare(values: np.ndarray, op: str, threshold: np.float32) -> np.ndarray:
    if op == ">=":
        return values >= threshold
    if op == ">":
        return values > threshold
    if op == "<=":
        return values <= threshold
    return values < threshold


def held_out(spec: TensorSplitSpec, theta: np.ndarray, spec_sim: SimulatorSpec) -> np.ndarray:
    """Boolean mask of samples an extrapolation split holds out as test (all False for random_interpolation)."""
    theta32 = theta.astype(np.float32)
    p = spec.parameters
    if spec.algorithm == "extrapolation_slice":
        k, thr = _threshold(spec_sim, cast(str, p["parameter"]), cast(float, p["quantile"]))
        return _compare(theta32[:, k], cast(str, p["op"]), thr)
    if spec.algorithm == "extrapolation_corner":
        op = ">=" if p["side"] == "high" else "<="
        mask = np.ones(theta.shape[0], dtype=bool)
        for name in cast(list[str], p["parameters"]):
            k, thr = _threshold(spec_sim, name, cast(float, p["quantile"]))
            mask &= _compare(theta32[:, k], op, thr)
        return mask
    return np.zeros(theta.shape[0], dtype=bool)


def assign_tensor_splits(spec: TensorSplitSpec, theta: np.ndarray, indices: np.ndarray, spec_sim: SimulatorSpec,
                         seed: int) -> np.ndarray:
    """int8 codes into SPLIT_NAMES for samples ``indices`` (global sample numbers) with parameters ``theta``."""
    spec.check(spec_sim)
    indices = np.asarray(indices)
    if theta.ndim != 2 or theta.shape[1] != spec_sim.n_params:
        raise ValueError(f"theta shape expected (n, {spec_sim.n_params}) for simulator {spec_sim.name!r}, "
                         f"got {theta.shape}")
    if indices.shape != (theta.shape[0],):
        raise ValueError(f"indices shape expected ({theta.shape[0]},), got {indices.shape}")
    if indices.size and (not np.issubdtype(indices.dtype, np.integer) or int(indices.min()) < 0):
        raise ValueError(f"indices must be non-negative integers, got dtype {indices.dtype}")
    u = sample_uniforms(seed, indices)
    codes = np.full(theta.shape[0], TRAIN, dtype=np.int8)
    p = spec.parameters
    if spec.algorithm == "random_interpolation":
        train, val = cast(float, p["train"]), cast(float, p["val"])
        codes[u >= train] = VAL
        codes[u >= train + val] = TEST
        return codes
    codes[u < cast(float, p["val_fraction"])] = VAL
    codes[held_out(spec, theta, spec_sim)] = TEST
    return codes


def split_counts(codes: np.ndarray) -> dict[str, int]:
    counts = np.bincount(codes.astype(np.int64), minlength=len(SPLIT_NAMES))
    if counts.shape[0] != len(SPLIT_NAMES):
        raise ValueError(f"split codes must lie in 0..{len(SPLIT_NAMES) - 1}, got max {int(codes.max())}")
    return {name: int(c) for name, c in zip(SPLIT_NAMES, counts, strict=True)}


# -- CLI form ----------------------------------------------------------------------------------
_GRAMMAR = ("expected 'random_interpolation[:TRAIN/VAL/TEST]', 'extrapolation_slice:PARAM(>=|>|<=|<)Q[;val=F]' or "
            "'extrapolation_corner:P1,P2,...(>=|<=)Q[;val=F]'")
_PRED = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*(?:\s*,\s*[A-Za-z_][A-Za-z0-9_]*)*)\s*(>=|<=|>|<)\s*([0-9.eE+-]+)\s*$")


def _number(text: str, what: str, raw: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"split {raw!r}: {what} must be a number, got {text!r}; {_GRAMMAR}") from None


def parse_split_arg(text: str) -> TensorSplitSpec:
    """Parse the CLI form of a split.

    Grammar (whitespace around tokens ignored)::

        random_interpolation[:TRAIN/VAL/TEST]          e.g. random_interpolation:0.7/0.15/0.15
        extrapolation_slice:PARAM OP Q[;val=F]         OP in >=, >, <=, <; Q = position in the declared bounds
        extrapolation_corner:P1,P2,... OP Q[;val=F]    OP >= means side "high", <= means side "low"

    ``Q`` is a fraction of the parameter's declared range (``lower + Q * (upper - lower)``), ``F`` the
    fraction of the non-held-out samples that go to val (default 0.1).
    """
    raw = text
    head, _, tail = text.strip().partition(";")
    algo, _, body = head.partition(":")
    algo = algo.strip()
    if algo not in ALGORITHMS:
        raise ValueError(f"unknown split algorithm {algo!r} in {raw!r}; {_GRAMMAR}")
    val_fraction: float | None = None
    if tail:
        key, eq, value = tail.partition("=")
        if key.strip() != "val" or not eq or algo == "random_interpolation":
            raise ValueError(f"split {raw!r}: bad option {tail!r}; {_GRAMMAR}")
        val_fraction = _number(value.strip(), "val", raw)
    if algo == "random_interpolation":
        if not body.strip():
            return TensorSplitSpec.random_interpolation()
        parts = body.split("/")
        if len(parts) != 3:
            raise ValueError(f"split {raw!r}: fractions must be TRAIN/VAL/TEST; {_GRAMMAR}")
        train, val, test = (_number(x.strip(), "fraction", raw) for x in parts)
        return TensorSplitSpec.random_interpolation(train, val, test)
    match = _PRED.match(body)
    if not match:
        raise ValueError(f"split {raw!r}: cannot parse predicate {body!r}; {_GRAMMAR}")
    names = [n.strip() for n in match.group(1).split(",")]
    op, quantile = match.group(2), _number(match.group(3), "quantile", raw)
    extra = {} if val_fraction is None else {"val_fraction": val_fraction}
    if algo == "extrapolation_slice":
        if len(names) != 1:
            raise ValueError(f"split {raw!r}: extrapolation_slice takes one parameter, got {names}; {_GRAMMAR}")
        return TensorSplitSpec.extrapolation_slice(names[0], op, quantile, **extra)
    if op not in (">=", "<="):
        raise ValueError(f"split {raw!r}: extrapolation_corner needs >= (high) or <= (low), got {op!r}; {_GRAMMAR}")
    return TensorSplitSpec.extrapolation_corner(names, quantile, "high" if op == ">=" else "low", **extra)
