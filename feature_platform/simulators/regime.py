"""Two-regime Markov-switching VAR(1): regime 0 "normal", regime 1 "stress" (louder shocks, other policy).

``x_t = A_{r_t} x_{t-1} + B_{r_t} eps_t`` with ``x_{-1} = 0`` and

    A_r = [[rho,   0,       0    ],      B_0 = sigma * I,   B_1 = sigma * vol_ratio * I
           [kappa, rho,     0    ],
           [0,     phi_r,   rho_i]]      phi_0 = phi_pi, phi_1 = phi_pi_stress

Regimes follow a Markov chain with P(stay in 0) = p00, P(stay in 1) = p11; r_0 is drawn from its
stationary distribution. Per-sample metadata ``regime`` is the (T,) int8 sequence r_0..r_{T-1}.

IRFs are *expected* responses to a one-unit innovation in shock s hitting in regime 0, averaged
over the regime path that follows (exact, not simulated): with m_h^r = E[x_h 1{r_h = r}],
``m_0 = (B_0 e_s, 0)`` and ``m_h^{r'} = A_{r'} sum_r P[r, r'] m_{h-1}^r``; ``irf_h = m_h^0 + m_h^1``.
Each A_r is lower triangular with diagonal <= 0.95, so every path, and the expectation, decays.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from feature_platform.simulators.base import BatchSimulator, SampleBatch, SimulatorSpec, Variable, draw_inputs
from feature_platform.simulators.var import KAPPA, OBSERVABLES, RHO_I, SHOCKS, propagate

SPEC = SimulatorSpec(
    name="regime_switching",
    version="1.0.0",
    parameters=(
        Variable("rho", "1", 0.1, 0.95, "output-gap and inflation persistence (both regimes)"),
        RHO_I,
        KAPPA,
        Variable("phi_pi", "1", 0.0, 0.5, "policy response to lagged inflation in regime 0"),
        Variable("phi_pi_stress", "1", 0.0, 0.5, "policy response to lagged inflation in regime 1"),
        Variable("sigma", "percent", 0.1, 1.0, "shock standard deviation in regime 0"),
        Variable("vol_ratio", "1", 1.0, 4.0, "shock standard deviation multiplier in regime 1"),
        Variable("p00", "probability", 0.8, 0.99, "probability of staying in regime 0"),
        Variable("p11", "probability", 0.5, 0.95, "probability of staying in regime 1"),
    ),
    shocks=SHOCKS,
    observables=OBSERVABLES,
    metadata={"regime": "int8"},
)


def regimes_from(theta: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """Regime paths ``(n, T)`` int8 from per-sample uniforms ``(n, T)``: r_t = 1 iff u_t < P(r_t = 1 | r_{t-1})."""
    p00, p11 = theta[:, 7], theta[:, 8]
    n, T = uniforms.shape
    u = np.ascontiguousarray(uniforms.T)
    out = np.empty((T, n), dtype=np.int8)
    leave0 = 1.0 - p00
    stationary_1 = leave0 / (leave0 + (1.0 - p11))
    r = u[0] < stationary_1
    out[0] = r
    for t in range(1, T):
        r = u[t] < np.where(r, p11, leave0)
        out[t] = r
    return np.ascontiguousarray(out.T)


def trajectories_from(theta: np.ndarray, shocks: np.ndarray, regimes: np.ndarray) -> np.ndarray:
    """Propagate ``shocks (n, T, 3)`` along each sample's regime path ``(n, T)``."""
    rho, rho_i, kappa, phi0, phi1, sigma, vol_ratio = (np.ascontiguousarray(theta[:, k]) for k in range(7))
    stress = np.ascontiguousarray(regimes.T).astype(bool)  # (T, n)
    scale = np.where(stress, sigma * vol_ratio, sigma)
    phi = np.where(stress, phi1, phi0)
    u = np.ascontiguousarray(shocks.transpose(1, 2, 0)) * scale[:, None, :]
    return propagate(u, rho, rho, rho_i, kappa, phi, np.zeros((1, theta.shape[0])))


def irfs_from(theta: np.ndarray, H: int) -> np.ndarray:
    """Expected IRFs given the shock hits in regime 0 (see module docstring), ``(n, S, H+1, 3)``."""
    rho, rho_i, kappa, phi0, phi1, sigma, _vol, p00, p11 = (theta[:, k][:, None] for k in range(9))
    n = theta.shape[0]
    zeros = np.zeros((n, 3))
    eye = np.zeros((n, 3, 3))
    eye[:, 0, 0] = eye[:, 1, 1] = eye[:, 2, 2] = 1.0
    # m[r][k] has shape (n, S): mass-weighted response of observable k in regime r to shock s.
    m0 = [sigma * eye[:, 0], sigma * eye[:, 1], sigma * eye[:, 2]]
    m1 = [zeros, zeros, zeros]
    out = np.empty((H + 1, 3, n, 3))
    for h in range(H + 1):
        for k in range(3):
            out[h, k] = m0[k] + m1[k]
        into0 = [p00 * a + (1.0 - p11) * b for a, b in zip(m0, m1, strict=True)]
        into1 = [(1.0 - p00) * a + p11 * b for a, b in zip(m0, m1, strict=True)]
        m0 = [rho * into0[0], kappa * into0[0] + rho * into0[1], phi0 * into0[1] + rho_i * into0[2]]
        m1 = [rho * into1[0], kappa * into1[0] + rho * into1[1], phi1 * into1[1] + rho_i * into1[2]]
    return np.ascontiguousarray(out.transpose(2, 3, 0, 1))


class RegimeSwitchingSimulator(BatchSimulator):
    spec: SimulatorSpec = SPEC

    def simulate_batch(self, rngs: Sequence[np.random.Generator], T: int, H: int) -> SampleBatch:
        theta, shocks, uniforms = draw_inputs(self.spec, rngs, T, H, uniforms=T)  # then the regime uniforms (T,)
        regimes = regimes_from(theta, uniforms)
        return SampleBatch(theta, shocks, trajectories_from(theta, shocks, regimes), irfs_from(theta, H),
                           {"regime": regimes})
