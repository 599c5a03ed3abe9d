"""Simulators by name, and the chunk-local range computation every executor calls."""

from __future__ import annotations

from feature_platform.simulators.base import SampleBatch, Simulator
from feature_platform.simulators.regime import RegimeSwitchingSimulator
from feature_platform.simulators.seeds import sample_rng
from feature_platform.simulators.var import VarSimulator

_SIMULATORS: dict[str, type[VarSimulator] | type[RegimeSwitchingSimulator]] = {
    "var": VarSimulator,
    "regime_switching": RegimeSwitchingSimulator,
}
SIMULATORS: tuple[str, ...] = tuple(_SIMULATORS)
DEFAULT_SIMULATOR = "var"


def get_simulator(name: str) -> Simulator:
    try:
        return _SIMULATORS[name]()
    except KeyError:
        raise ValueError(f"unknown simulator {name!r}; valid: {', '.join(SIMULATORS)}") from None


def simulate_range(name: str, global_seed: int, start: int, stop: int, T: int, H: int) -> SampleBatch:
    """Samples ``start..stop-1``, each from ``sample_rng(global_seed, i)``: equal, bit for bit, to the same
    rows of any other range containing them."""
    if not 0 <= start <= stop:
        raise ValueError(f"sample range must satisfy 0 <= start <= stop, got [{start}, {stop})")
    sim = get_simulator(name)
    batch = sim.simulate_batch([sample_rng(global_seed, i) for i in range(start, stop)], T, H)
    batch.validate(sim.spec, T, H)
    return batch
