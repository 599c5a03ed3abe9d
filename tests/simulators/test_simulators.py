"""Simulators: seeded, per-sample regenerable, shapes per spec, stable, analytic IRFs."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from feature_platform.simulators import (
    DEFAULT_SIMULATOR,
    SEED_DERIVATION,
    SIMULATORS,
    SampleBatch,
    Simulator,
    SimulatorSpec,
    Variable,
    get_simulator,
    regime,
    sample_rng,
    simulate_range,
    var,
)

T, H = 24, 6


@pytest.fixture(scope="module", params=SIMULATORS)
def name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def big(name: str) -> SampleBatch:
    return simulate_range(name, 11, 0, 64, T, H)


def _equal(a: SampleBatch, b: SampleBatch) -> bool:
    return (all(np.array_equal(x, y) for x, y in zip(a.arrays().values(), b.arrays().values(), strict=True))
            and a.metadata.keys() == b.metadata.keys()
            and all(np.array_equal(a.metadata[k], b.metadata[k]) for k in a.metadata))


def test_registry() -> None:
    assert DEFAULT_SIMULATOR in SIMULATORS and set(SIMULATORS) == {"var", "regime_switching"}
    for n in SIMULATORS:
        sim = get_simulator(n)
        assert isinstance(sim, Simulator) and sim.spec.name == n
    with pytest.raises(ValueError, match="unknown simulator 'dsge'; valid: var, regime_switching"):
        get_simulator("dsge")


def test_same_seed_same_data_and_different_seeds_differ(name: str, big: SampleBatch) -> None:
    assert _equal(simulate_range(name, 11, 0, 64, T, H), big)
    other = simulate_range(name, 12, 0, 64, T, H)
    assert not np.array_equal(other.theta, big.theta) and not np.array_equal(other.shocks, big.shocks)


def test_per_sample_seed_derivation(name: str, big: SampleBatch) -> None:
    """Sample i alone (from its own rng), any chunk, and the big range agree bit for bit."""
    sim = get_simulator(name)
    for i in (0, 17, 63):
        assert _equal(sim.simulate(sample_rng(11, i), T, H), big.rows(i, i + 1))
    chunks = [simulate_range(name, 11, a, b, T, H) for a, b in ((0, 5), (5, 40), (40, 64))]
    assert _equal(SampleBatch.concat(chunks), big)
    assert _equal(simulate_range(name, 11, 30, 30, T, H), big.rows(0, 0))


def test_shapes_dtypes_and_bounds(name: str, big: SampleBatch) -> None:
    spec = get_simulator(name).spec
    big.validate(spec, T, H)
    assert big.theta.shape == (64, spec.n_params) and big.irfs.shape == (64, spec.n_shocks, H + 1, 3)
    assert spec.n_obs == 3
    lower, upper = spec.bounds()
    assert np.all(big.theta >= lower) and np.all(big.theta <= upper)
    # uniform draws actually spread over the declared range, not a corner of it
    assert np.all(big.theta.min(0) < lower + 0.25 * (upper - lower))
    assert np.all(big.theta.max(0) > lower + 0.75 * (upper - lower))
    for arr in big.arrays().values():
        assert arr.dtype == np.float64 and np.isfinite(arr).all()


def test_validate_names_array_expected_and_actual(name: str, big: SampleBatch) -> None:
    spec = get_simulator(name).spec
    bad = big.rows(0, 4)
    with pytest.raises(ValueError, match=r"array 'irfs' shape expected \(4, 3, 8, 3\), got \(4, 3, 7, 3\)"):
        SampleBatch(bad.theta, bad.shocks, bad.trajectories, bad.irfs, bad.metadata).validate(spec, T, H + 1)
    with pytest.raises(ValueError, match="array 'theta' dtype expected float64, got float32"):
        SampleBatch(bad.theta.astype(np.float32), bad.shocks, bad.trajectories, bad.irfs,
                    bad.metadata).validate(spec, T, H)
    with pytest.raises(ValueError, match="metadata arrays expected"):
        SampleBatch(bad.theta, bad.shocks, bad.trajectories, bad.irfs, {"flag": np.zeros(4)}).validate(spec, T, H)


def test_spec_json_round_trip(name: str) -> None:
    spec = get_simulator(name).spec
    doc = json.loads(json.dumps(spec.to_json()))
    assert SimulatorSpec.from_json(doc) == spec
    assert [p["name"] for p in doc["parameters"]] == list(spec.parameter_names)
    assert {"rho", "sigma"} <= set(spec.parameter_names)
    assert "SeedSequence(global_seed, spawn_key=(i,))" in SEED_DERIVATION


def test_bad_arguments_rejected() -> None:
    with pytest.raises(ValueError, match="global seed must be a non-negative integer"):
        sample_rng(-1, 0)
    with pytest.raises(ValueError, match="T \\(trajectory length\\) must be a positive integer"):
        simulate_range("var", 1, 0, 2, 0, 3)
    with pytest.raises(ValueError, match=r"0 <= start <= stop"):
        simulate_range("var", 1, 5, 2, 10, 3)
    with pytest.raises(ValueError, match="exactly 3 observables"):
        SimulatorSpec("x", "1", (), (), var.OBSERVABLES[:2], {})
    with pytest.raises(ValueError, match="bounds must be finite"):
        Variable("a", "1", 1.0, 0.0)


def test_var_stable_and_irfs_are_analytic() -> None:
    batch = simulate_range("var", 3, 0, 200, T, 30)
    a, b = var.transition(batch.theta)
    assert np.max(np.abs(np.linalg.eigvals(a))) < 1.0
    # irfs[s, h, k] == (A^h B)[k, s]
    for j in (0, 99):
        power = np.eye(3)
        for h in range(31):
            assert np.allclose(batch.irfs[j, :, h, :], (power @ b[j]).T, rtol=1e-12, atol=1e-15)
            power = a[j] @ power
    assert np.all(np.abs(batch.irfs[:, :, -1, :]) < np.abs(batch.irfs).max(axis=2) + 1e-12)
    # trajectories are the model's propagation of the stored shocks: a unit impulse reproduces the IRF
    impulse = np.zeros((200, 31, 3))
    impulse[:, 0, 1] = 1.0
    assert np.allclose(var.trajectories_from(batch.theta, impulse), batch.irfs[:, 1], rtol=1e-12, atol=1e-15)
    # and linearity: trajectories equal the sum of shock-by-shock responses
    x = batch.shocks[5]
    manual = np.zeros((T, 3))
    big_irf = var.irfs_from(batch.theta[5:6], T)[0]
    for t in range(T):
        for s in range(3):
            manual[t:] += x[t, s] * big_irf[s, : T - t]
    assert np.allclose(batch.trajectories[5], manual, rtol=1e-10, atol=1e-12)


def test_regime_metadata_valid() -> None:
    batch = simulate_range("regime_switching", 4, 0, 300, 120, 4)
    reg = batch.metadata["regime"]
    assert reg.dtype == np.int8 and reg.shape == (300, 120) and set(np.unique(reg)) == {0, 1}
    # regime frequencies follow the chain's stationary distribution (averaged over samples)
    p00, p11 = batch.theta[:, 7], batch.theta[:, 8]
    stationary_1 = (1 - p00) / (2 - p00 - p11)
    assert abs(reg.mean() - stationary_1.mean()) < 0.05
    # staying probabilities match p11 on average (empirical vs declared)
    stay = (reg[:, 1:] == 1) & (reg[:, :-1] == 1)
    from_one = reg[:, :-1] == 1
    assert abs(stay.sum() / from_one.sum() - np.average(p11, weights=from_one.sum(1))) < 0.05


def test_regime_irfs_equal_exact_expectation_over_paths() -> None:
    """Expected IRF == sum over all regime paths of probability x product of transition matrices."""
    batch = simulate_range("regime_switching", 9, 0, 3, 5, 3)
    theta = batch.theta
    for j in range(3):
        rho, rho_i, kappa, phi0, phi1, sigma, _vol, p00, p11 = theta[j]
        a = [np.array([[rho, 0, 0], [kappa, rho, 0], [0, phi, rho_i]]) for phi in (phi0, phi1)]
        p = np.array([[p00, 1 - p00], [1 - p11, p11]])
        for h in range(4):
            expected = np.zeros((3, 3))
            for path in itertools.product((0, 1), repeat=h):
                prob, m, prev = 1.0, sigma * np.eye(3), 0
                for r in path:
                    prob *= p[prev, r]
                    m = a[r] @ m
                    prev = r
                expected += prob * m
            assert np.allclose(batch.irfs[j, :, h, :], expected.T, rtol=1e-12, atol=1e-15)
        assert np.isfinite(batch.irfs).all()


def test_regime_trajectories_use_regime_scale() -> None:
    batch = simulate_range("regime_switching", 2, 0, 1, 50, 1)
    theta, reg = batch.theta[0], batch.metadata["regime"][0]
    # output gap innovation y_t - rho*y_{t-1} equals the regime's shock scale times the stored shock
    y = np.concatenate([[0.0], batch.trajectories[0, :, 0]])
    innov = y[1:] - theta[0] * y[:-1]
    scale = np.where(reg == 1, theta[5] * theta[6], theta[5])
    assert np.allclose(innov, scale * batch.shocks[0, :, 0], rtol=1e-9, atol=1e-12)
    assert regime.SPEC.metadata == {"regime": "int8"}


def test_seed_derivation_is_literally_the_documented_recipe(name: str, big: SampleBatch) -> None:
    """Anyone with numpy alone can regenerate sample i from SEED_DERIVATION, without this package's rng code."""
    spec = get_simulator(name).spec
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(11, spawn_key=(17,))))
    lower, upper = spec.bounds()
    assert np.array_equal(lower + (upper - lower) * rng.random(spec.n_params), big.theta[17])
    assert np.array_equal(rng.standard_normal((T, spec.n_shocks)), big.shocks[17])
    if name == "regime_switching":
        uniforms = rng.random(T)
        assert np.array_equal(regime.regimes_from(big.theta[17:18], uniforms[None]), big.metadata["regime"][17:18])


def test_theta_does_not_depend_on_horizons(name: str, big: SampleBatch) -> None:
    assert np.array_equal(simulate_range(name, 11, 0, 64, 3, 0).theta, big.theta)
