"""Named hyperparameter profiles for the market-regime classifier.

The model is scikit-learn's ``HistGradientBoostingClassifier``: deterministic for a fixed
``random_state`` (early stopping off, so no random validation carve-out), and skl2onnx converts it
to an ONNX tree ensemble whose probabilities match to ~1e-7. Profiles live in code (not a YAML
file) so they ship with the package; their canonical-JSON digest goes into the training manifest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from feature_platform.contracts.canonical import digest

if TYPE_CHECKING:
    import numpy as np

ALGORITHM = "sklearn.HistGradientBoostingClassifier"
DEFAULT_PROFILE = "default"

PROFILES: dict[str, dict[str, Any]] = {
    "default": {"learning_rate": 0.1, "max_iter": 200, "max_leaf_nodes": 31, "max_depth": None,
                "min_samples_leaf": 20, "l2_regularization": 0.0, "max_bins": 255},
    "fast": {"learning_rate": 0.2, "max_iter": 40, "max_leaf_nodes": 15, "max_depth": None,
             "min_samples_leaf": 20, "l2_regularization": 0.0, "max_bins": 63},
    "deep": {"learning_rate": 0.05, "max_iter": 500, "max_leaf_nodes": 63, "max_depth": None,
             "min_samples_leaf": 40, "l2_regularization": 1.0, "max_bins": 255},
}

# key -> (accepted Python types, validity test, human description)
_RULES: dict[str, tuple[tuple[type, ...], Any, str]] = {
    "learning_rate": ((int, float), lambda v: 0 < v <= 1, "a number in (0, 1]"),
    "max_iter": ((int,), lambda v: 1 <= v <= 10_000, "an integer in [1, 10000]"),
    "max_leaf_nodes": ((int,), lambda v: 2 <= v <= 4096, "an integer in [2, 4096]"),
    "max_depth": ((int, type(None)), lambda v: v is None or 1 <= v <= 64, "null or an integer in [1, 64]"),
    "min_samples_leaf": ((int,), lambda v: v >= 1, "an integer >= 1"),
    "l2_regularization": ((int, float), lambda v: v >= 0, "a number >= 0"),
    "max_bins": ((int,), lambda v: 2 <= v <= 255, "an integer in [2, 255]"),
}
ALLOWED_KEYS = frozenset(_RULES)


class HyperparameterError(ValueError):
    """Unknown profile, unknown key or an out-of-range value."""


def resolve_hyperparameters(
    profile: str | None, overrides: dict[str, Any] | None
) -> tuple[dict[str, Any], str | None]:
    """Profile values overlaid with ``overrides``; returns (hyperparameters, profile name used).

    No profile and no overrides means ``default``; overrides alone start from ``default`` too but
    report no profile name, since the result is not a named profile.
    """
    if profile is not None and profile not in PROFILES:
        raise HyperparameterError(f"unknown hyperparameter profile {profile!r}; known: {sorted(PROFILES)}")
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - ALLOWED_KEYS)
    if unknown:
        raise HyperparameterError(f"unknown hyperparameter(s) {unknown}; allowed: {sorted(ALLOWED_KEYS)}")
    name = profile if profile is not None else (None if overrides else DEFAULT_PROFILE)
    params = {**PROFILES[profile or DEFAULT_PROFILE], **overrides}
    for key, value in params.items():
        types, ok, what = _RULES[key]
        if isinstance(value, bool) or not isinstance(value, types) or not ok(value):
            raise HyperparameterError(f"hyperparameter {key} must be {what}, got {value!r}")
    return {k: params[k] for k in sorted(params)}, name


def profile_sha256(name: str) -> str:
    return digest(PROFILES[name])


def build_estimator(hyperparameters: dict[str, Any], seed: int) -> Any:
    """A fresh seeded estimator; early stopping off so every tree sees the whole train split."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(**hyperparameters, early_stopping=False, random_state=seed)


def fit_estimator(X: np.ndarray, y: np.ndarray, params: dict[str, Any], seed: int) -> Any:
    """The fit: the profile's estimator, seeded, on (X, y). The same inputs give the same model on any machine."""
    model = build_estimator(params, seed)
    model.fit(X, y)
    return model
