"""Simulator contract: declared variables, one batch type, and the protocol every simulator implements.

A simulator draws all randomness of sample ``i`` from that sample's own generator and then computes
a whole batch with element-wise numpy operations only (no BLAS, no reductions across samples), so
a sample's bytes do not depend on which other samples share its batch: a chunk computed alone
equals the same rows of a bigger range, bit for bit.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

N_OBSERVABLES = 3  # the irf last axis indexes exactly these three observables


@dataclass(frozen=True)
class Variable:
    """A named quantity with units and declared bounds (parameters are drawn uniformly inside them)."""

    name: str
    units: str
    lower: float
    upper: float
    description: str = ""

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"variable name must be an identifier, got {self.name!r}")
        if not (np.isfinite(self.lower) and np.isfinite(self.upper) and self.lower <= self.upper):
            raise ValueError(f"variable {self.name!r}: bounds must be finite with lower <= upper, "
                             f"got [{self.lower}, {self.upper}]")

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "units": self.units, "lower": float(self.lower), "upper": float(self.upper),
                "description": self.description}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Variable:
        return cls(str(data["name"]), str(data["units"]), float(data["lower"]), float(data["upper"]),
                   str(data.get("description", "")))


@dataclass(frozen=True)
class SimulatorSpec:
    """What a simulator produces; serialised into the manifest's ``simulators`` section.

    ``metadata`` maps each per-sample metadata array name to its numpy dtype string; the array's
    first axis is the sample axis (e.g. ``{"regime": "int8"}`` for an ``(n, T)`` regime sequence).
    """

    name: str
    version: str
    parameters: tuple[Variable, ...]
    shocks: tuple[Variable, ...]
    observables: tuple[Variable, ...]
    metadata: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.observables) != N_OBSERVABLES:
            raise ValueError(f"simulator {self.name!r}: needs exactly {N_OBSERVABLES} observables, "
                             f"got {len(self.observables)}")
        for group in (self.parameters, self.shocks, self.observables):
            names = [v.name for v in group]
            if len(set(names)) != len(names):
                raise ValueError(f"simulator {self.name!r}: duplicate variable names in {names}")
        for key, dtype in self.metadata.items():
            np.dtype(dtype)  # raises TypeError on an unknown dtype string
            if not key.isidentifier():
                raise ValueError(f"simulator {self.name!r}: metadata name must be an identifier, got {key!r}")

    @property
    def n_params(self) -> int:
        return len(self.parameters)

    @property
    def n_shocks(self) -> int:
        return len(self.shocks)

    @property
    def n_obs(self) -> int:
        return len(self.observables)

    @property
    def parameter_names(self) -> tuple[str, ...]:
        return tuple(v.name for v in self.parameters)

    def parameter_index(self, name: str) -> int:
        """Column of ``theta`` holding parameter ``name``; ValueError lists the valid names."""
        names = self.parameter_names
        if name not in names:
            raise ValueError(f"unknown parameter {name!r} for simulator {self.name!r}; valid: {', '.join(names)}")
        return names.index(name)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper parameter bounds as float64 vectors in ``theta`` column order."""
        lower = np.array([v.lower for v in self.parameters], dtype=np.float64)
        upper = np.array([v.upper for v in self.parameters], dtype=np.float64)
        return lower, upper

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "parameters": [v.to_json() for v in self.parameters],
            "shocks": [v.to_json() for v in self.shocks],
            "observables": [v.to_json() for v in self.observables],
            "metadata": dict(sorted(self.metadata.items())),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SimulatorSpec:
        return cls(
            name=str(data["name"]),
            version=str(data["version"]),
            parameters=tuple(Variable.from_json(v) for v in data["parameters"]),
            shocks=tuple(Variable.from_json(v) for v in data["shocks"]),
            observables=tuple(Variable.from_json(v) for v in data["observables"]),
            metadata={str(k): str(v) for k, v in data.get("metadata", {}).items()},
        )


ARRAY_NAMES = ("theta", "shocks", "trajectories", "irfs")


@dataclass
class SampleBatch:
    """``n`` samples: float64 ``theta (n, P)``, ``shocks (n, T, S)``, ``trajectories (n, T, 3)``,
    ``irfs (n, S, H+1, 3)`` and per-sample ``metadata`` arrays (own dtypes, first axis ``n``)."""

    theta: np.ndarray
    shocks: np.ndarray
    trajectories: np.ndarray
    irfs: np.ndarray
    metadata: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.theta.shape[0])

    def arrays(self) -> dict[str, np.ndarray]:
        return {"theta": self.theta, "shocks": self.shocks, "trajectories": self.trajectories, "irfs": self.irfs}

    def expected_shapes(self, spec: SimulatorSpec, T: int, H: int) -> dict[str, tuple[int, ...]]:
        n = len(self)
        return {"theta": (n, spec.n_params), "shocks": (n, T, spec.n_shocks), "trajectories": (n, T, spec.n_obs),
                "irfs": (n, spec.n_shocks, H + 1, N_OBSERVABLES)}

    def validate(self, spec: SimulatorSpec, T: int, H: int) -> None:
        """Fail before anything is written: one ValueError naming the array, expected and actual."""
        for name, shape in self.expected_shapes(spec, T, H).items():
            arr = self.arrays()[name]
            if arr.dtype != np.float64:
                raise ValueError(f"{spec.name}: array {name!r} dtype expected float64, got {arr.dtype}")
            if arr.shape != shape:
                raise ValueError(f"{spec.name}: array {name!r} shape expected {shape}, got {arr.shape}")
        if set(self.metadata) != set(spec.metadata):
            raise ValueError(f"{spec.name}: metadata arrays expected {sorted(spec.metadata)}, "
                             f"got {sorted(self.metadata)}")
        for name, dtype in spec.metadata.items():
            arr = self.metadata[name]
            if arr.dtype != np.dtype(dtype):
                raise ValueError(f"{spec.name}: metadata {name!r} dtype expected {dtype}, got {arr.dtype}")
            if arr.ndim == 0 or arr.shape[0] != len(self):
                raise ValueError(f"{spec.name}: metadata {name!r} first axis expected {len(self)}, "
                                 f"got shape {arr.shape}")

    def rows(self, start: int, stop: int) -> SampleBatch:
        """Samples ``start..stop-1`` of this batch (views)."""
        return SampleBatch(self.theta[start:stop], self.shocks[start:stop], self.trajectories[start:stop],
                           self.irfs[start:stop], {k: v[start:stop] for k, v in self.metadata.items()})

    @staticmethod
    def concat(batches: Sequence[SampleBatch]) -> SampleBatch:
        if not batches:
            raise ValueError("cannot concatenate zero sample batches")
        return SampleBatch(
            np.concatenate([b.theta for b in batches]),
            np.concatenate([b.shocks for b in batches]),
            np.concatenate([b.trajectories for b in batches]),
            np.concatenate([b.irfs for b in batches]),
            {k: np.concatenate([b.metadata[k] for b in batches]) for k in batches[0].metadata},
        )


@runtime_checkable
class Simulator(Protocol):
    """``simulate`` returns a SampleBatch with n=1; ``simulate_batch`` gives row j from ``rngs[j]`` alone."""

    spec: SimulatorSpec

    def simulate(self, rng: np.random.Generator, T: int, H: int) -> SampleBatch: ...

    def simulate_batch(self, rngs: Sequence[np.random.Generator], T: int, H: int) -> SampleBatch: ...


def check_horizons(T: int, H: int) -> None:
    if isinstance(T, bool) or not isinstance(T, int | np.integer) or T < 1:
        raise ValueError(f"T (trajectory length) must be a positive integer, got {T!r}")
    if isinstance(H, bool) or not isinstance(H, int | np.integer) or H < 0:
        raise ValueError(f"H (irf horizon) must be a non-negative integer, got {H!r}")


def draw_theta(rng: np.random.Generator, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Uniform within declared bounds; the first draw of every sample (the documented draw order)."""
    theta: np.ndarray = lower + (upper - lower) * rng.random(lower.shape[0])
    return theta


def draw_inputs(spec: SimulatorSpec, rngs: Sequence[np.random.Generator], T: int, H: int,
                uniforms: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row j's draws from ``rngs[j]`` alone, in the documented order: theta, shocks ``(T, S)``, then ``uniforms``
    uniform numbers when asked for. Returns ``theta (n, P)``, ``shocks (n, T, S)``, ``uniforms (n, uniforms)``."""
    check_horizons(T, H)
    lower, upper = spec.bounds()
    n = len(rngs)
    theta = np.empty((n, spec.n_params))
    shocks = np.empty((n, T, spec.n_shocks))
    extra = np.empty((n, uniforms))
    for j, rng in enumerate(rngs):
        theta[j] = draw_theta(rng, lower, upper)
        rng.standard_normal(out=shocks[j])
        if uniforms:
            rng.random(out=extra[j])
    return theta, shocks, extra


class BatchSimulator(ABC):
    """``simulate`` as a batch of one."""

    spec: SimulatorSpec

    def simulate(self, rng: np.random.Generator, T: int, H: int) -> SampleBatch:
        return self.simulate_batch([rng], T, H)

    @abstractmethod
    def simulate_batch(self, rngs: Sequence[np.random.Generator], T: int, H: int) -> SampleBatch: ...
