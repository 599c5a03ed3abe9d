"""Linear VAR(1) in (output gap, inflation, policy rate), stable by construction.

``x_t = A x_{t-1} + B eps_t`` with ``x_{-1} = 0``, ``eps_t ~ N(0, I)`` (the stored ``shocks``) and

    A = [[rho,    0,      0    ],      B = diag(sigma, sigma_pi, sigma_i)
         [kappa,  rho_pi, 0    ],
         [phi_y,  phi_pi, rho_i]]

A is lower triangular, so its eigenvalues are its diagonal (each <= 0.95): every draw is stable.
``irfs[s, h, k] = (A^h B)[k, s]``: the response of observable k, h periods after a one-unit
(one standard deviation) innovation in shock s. Shock and irf arithmetic is element-wise per sample.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from feature_platform.simulators.base import BatchSimulator, SampleBatch, SimulatorSpec, Variable, draw_inputs

OBSERVABLES = (
    Variable("output_gap", "percent", -50.0, 50.0, "deviation of output from potential"),
    Variable("inflation", "percent", -50.0, 50.0, "annualised inflation deviation from target"),
    Variable("policy_rate", "percent", -50.0, 50.0, "policy rate deviation from neutral"),
)
SHOCKS = (
    Variable("demand", "std", -10.0, 10.0, "demand innovation, N(0, 1)"),
    Variable("cost_push", "std", -10.0, 10.0, "cost-push innovation, N(0, 1)"),
    Variable("monetary", "std", -10.0, 10.0, "monetary policy innovation, N(0, 1)"),
)
# parameters of the same meaning and range in every simulator of this family
RHO_I = Variable("rho_i", "1", 0.1, 0.95, "policy-rate smoothing")
KAPPA = Variable("kappa", "1", 0.0, 0.5, "slope of inflation on lagged output gap")

SPEC = SimulatorSpec(
    name="var",
    version="1.0.0",
    parameters=(
        Variable("rho", "1", 0.1, 0.95, "output-gap persistence"),
        Variable("rho_pi", "1", 0.1, 0.95, "inflation persistence"),
        RHO_I,
        KAPPA,
        Variable("phi_pi", "1", 0.0, 0.5, "policy response to lagged inflation"),
        Variable("phi_y", "1", 0.0, 0.5, "policy response to lagged output gap"),
        Variable("sigma", "percent", 0.1, 1.0, "demand shock standard deviation"),
        Variable("sigma_pi", "percent", 0.1, 1.0, "cost-push shock standard deviation"),
        Variable("sigma_i", "percent", 0.05, 0.5, "monetary shock standard deviation"),
    ),
    shocks=SHOCKS,
    observables=OBSERVABLES,
    metadata={},
)


def transition(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``A (n, 3, 3)`` and ``B (n, 3, 3)`` per sample: for tests and reports, not the hot path."""
    rho, rho_pi, rho_i, kappa, phi_pi, phi_y, sigma, sigma_pi, sigma_i = theta.T
    n = theta.shape[0]
    a = np.zeros((n, 3, 3))
    a[:, 0, 0], a[:, 1, 0], a[:, 1, 1] = rho, kappa, rho_pi
    a[:, 2, 0], a[:, 2, 1], a[:, 2, 2] = phi_y, phi_pi, rho_i
    b = np.zeros((n, 3, 3))
    b[:, 0, 0], b[:, 1, 1], b[:, 2, 2] = sigma, sigma_pi, sigma_i
    return a, b


def trajectories_from(theta: np.ndarray, shocks: np.ndarray) -> np.ndarray:
    """Propagate ``shocks (n, T, 3)`` through the VAR; loops over T, vectorised over samples."""
    rho, rho_pi, rho_i, kappa, phi_pi, phi_y = (np.ascontiguousarray(theta[:, k]) for k in range(6))
    # (T, 3, n) time-major innovations B eps_t, so each step works on contiguous rows
    u = np.ascontiguousarray(shocks.transpose(1, 2, 0)) * np.ascontiguousarray(theta[:, 6:9].T)
    return propagate(u, rho, rho_pi, rho_i, kappa, phi_pi[None], phi_y[None])


def propagate(u: np.ndarray, rho: np.ndarray, rho_pi: np.ndarray, rho_i: np.ndarray, kappa: np.ndarray,
              phi_pi: np.ndarray, phi_y: np.ndarray) -> np.ndarray:
    """``x_t = A_t x_{t-1} + u_t`` (``x_{-1} = 0``) for lower-triangular A_t; ``u`` is ``(T, 3, n)``.

    ``phi_pi``/``phi_y`` are ``(1, n)`` (time-invariant) or ``(T, n)`` (e.g. switching with the regime).
    Each observable is summed left to right in a fixed order with element-wise ufuncs only, so a
    sample's result never depends on n. Returns ``(n, T, 3)``.
    """
    T, _, n = u.shape
    diag = np.stack([rho, rho_pi, rho_i])  # (3, n)
    lower = np.empty((2, n))  # rows: kappa (y -> pi), phi_y (y -> i) at the current step
    lower[0] = kappa
    out = np.empty((T, 3, n))
    tmp2 = np.empty((2, n))
    tmp = np.empty(n)
    prev = np.zeros((3, n))
    for t in range(T):
        o = out[t]
        # x_t = ((diag * x_{t-1} + u_t) + [0, kappa, phi_y] * y_{t-1}) + [0, 0, phi_pi] * pi_{t-1}
        np.multiply(diag, prev, out=o)
        o += u[t]
        lower[1] = phi_y[t if phi_y.shape[0] > 1 else 0]
        np.multiply(lower, prev[0], out=tmp2)
        o[1:] += tmp2
        np.multiply(phi_pi[t if phi_pi.shape[0] > 1 else 0], prev[1], out=tmp)
        o[2] += tmp
        prev = o
    return np.ascontiguousarray(out.transpose(2, 0, 1))


def irfs_from(theta: np.ndarray, H: int) -> np.ndarray:
    """Analytic ``(A^h B)[k, s]`` as ``(n, S, H+1, 3)``; every shock column propagated at once."""
    rho, rho_pi, rho_i, kappa, phi_pi, phi_y, sigma, sigma_pi, sigma_i = (c[:, None] for c in theta.T)
    n = theta.shape[0]
    zeros = np.zeros((n, 1))
    # r_k[:, s] = response of observable k to shock s at the current horizon; h = 0 is B.
    y = np.concatenate([sigma, zeros, zeros], axis=1)
    p = np.concatenate([zeros, sigma_pi, zeros], axis=1)
    i = np.concatenate([zeros, zeros, sigma_i], axis=1)
    out = np.empty((H + 1, 3, n, 3))  # (h, k, n, s)
    for h in range(H + 1):
        out[h, 0], out[h, 1], out[h, 2] = y, p, i
        y, p, i = rho * y, kappa * y + rho_pi * p, phi_y * y + phi_pi * p + rho_i * i
    return np.ascontiguousarray(out.transpose(2, 3, 0, 1))


class VarSimulator(BatchSimulator):
    spec: SimulatorSpec = SPEC

    def simulate_batch(self, rngs: Sequence[np.random.Generator], T: int, H: int) -> SampleBatch:
        theta, shocks, _ = draw_inputs(self.spec, rngs, T, H)
        return SampleBatch(theta, shocks, trajectories_from(theta, shocks), irfs_from(theta, H), {})
