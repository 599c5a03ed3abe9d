"""Seeded simulators of macro trajectories and impulse responses (pure numpy; no Dagster, no storage)."""

from feature_platform.simulators.base import SampleBatch, Simulator, SimulatorSpec, Variable
from feature_platform.simulators.registry import DEFAULT_SIMULATOR, SIMULATORS, get_simulator, simulate_range
from feature_platform.simulators.seeds import SEED_DERIVATION, sample_rng

__all__ = [
    "DEFAULT_SIMULATOR",
    "SEED_DERIVATION",
    "SIMULATORS",
    "SampleBatch",
    "Simulator",
    "SimulatorSpec",
    "Variable",
    "get_simulator",
    "sample_rng",
    "simulate_range",
]
