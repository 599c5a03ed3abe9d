"""Evaluate the ONNX model (what serves, not the native estimator) on the held-out splits.

Per split: accuracy, log loss and a portfolio backtest (see ``metrics`` for every definition): each
UTC day the book holds every row's position of that day, gross-normalised, and the metrics are
computed on that one daily return series (``n_periods`` = distinct days). Per-entity PnL is kept
as a report (``entities``), never gated. ``schedule="backfill"`` also runs the backtest over every
split, train included (in-sample, so read it as a replay of history, not as out-of-sample evidence),
with its daily equity curve.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from feature_platform.training.data import SplitData, TrainingData
from feature_platform.training.metrics import (
    TradingMetrics,
    equity_curve,
    portfolio_returns,
    positions_from_proba,
    trading_metrics,
    utc_days,
)
from feature_platform.training.onnx_export import onnx_predict_proba

Schedule = Literal["adhoc", "backfill"]
EVAL_SPLITS = ("val", "test")
LOG_LOSS_EPS = 1e-15


@dataclass(frozen=True)
class SplitEvaluation:
    split: str
    rows: int
    accuracy: float
    log_loss: float
    trading: TradingMetrics
    entities: list[dict[str, float]]  # per-entity report, not gated

    def to_dict(self) -> dict[str, Any]:
        return {"split": self.split, "rows": self.rows, "accuracy": self.accuracy, "log_loss": self.log_loss,
                "trading": self.trading.to_dict(), "entities": self.entities}


@dataclass(frozen=True)
class Evaluation:
    schedule: Schedule
    classes: list[int]
    splits: dict[str, SplitEvaluation]
    backtest: TradingMetrics | None = None  # backfill only: every split, one book per day
    equity_curve: np.ndarray | None = None  # backfill only: [1, E_1, ..., E_n], one point per day

    @property
    def metrics(self) -> dict[str, float]:
        """Flat ``<split>_<metric>`` names, the form the model manifest and MLflow take."""
        out: dict[str, float] = {}
        for name, ev in self.splits.items():
            out[f"{name}_accuracy"] = ev.accuracy
            out[f"{name}_log_loss"] = ev.log_loss
            out.update({f"{name}_{k}": v for k, v in ev.trading.to_dict().items()})
        if self.backtest is not None:
            out.update({f"backtest_{k}": v for k, v in self.backtest.to_dict().items()})
        return out

    def to_json_dict(self) -> dict[str, Any]:
        return {"schedule": self.schedule, "classes": self.classes,
                "splits": {k: v.to_dict() for k, v in self.splits.items()},
                "backtest": None if self.backtest is None else self.backtest.to_dict(),
                "equity_curve_points": None if self.equity_curve is None else int(self.equity_curve.size),
                "metrics": self.metrics}


def regime_indices(classes: list[int], names: dict[int, str]) -> tuple[int, int]:
    """Column of the bear and bull probabilities; lowest/highest class when the names are absent."""
    by_name = {v: k for k, v in names.items()}
    bear, bull = by_name.get("bear", min(classes)), by_name.get("bull", max(classes))
    return classes.index(bear), classes.index(bull)


def accuracy(proba: np.ndarray, y: np.ndarray, classes: list[int]) -> float:
    if len(y) == 0:
        return 0.0
    return float(np.mean(np.asarray(classes)[np.argmax(proba, axis=1)] == y))


def log_loss(proba: np.ndarray, y: np.ndarray, classes: list[int]) -> float:
    """Mean negative log probability of the true class (probabilities clipped at 1e-15)."""
    if len(y) == 0:
        return 0.0
    idx = np.searchsorted(classes, y)
    if np.any(idx >= len(classes)) or np.any(np.asarray(classes)[np.minimum(idx, len(classes) - 1)] != y):
        raise ValueError(f"labels {sorted(set(y.tolist()) - set(classes))} are not model classes {classes}")
    p = np.clip(proba[np.arange(len(y)), idx], LOG_LOSS_EPS, 1.0)
    return float(-np.mean(np.log(p)))


def daily_book(split: SplitData, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(UTC day ids, R_d)``: the split's portfolio return per distinct UTC day (``metrics``)."""
    return portfolio_returns(utc_days(split.timestamp), positions, split.forward_return)


def entity_breakdown(split: SplitData, positions: np.ndarray) -> list[dict[str, float]]:
    """Per entity: traded rows, summed row PnL ``sum(w f)``, mean |position| and hit rate — a report only."""
    traded = ~np.isnan(split.forward_return)
    ent, w, f = split.entity[traded], positions[traded], split.forward_return[traded]
    ids, index = np.unique(ent, return_inverse=True)
    rows = np.bincount(index, minlength=ids.size)
    pnl = np.bincount(index, weights=w * f, minlength=ids.size)
    gross = np.bincount(index, weights=np.abs(w), minlength=ids.size)
    hits = np.bincount(index, weights=(w * f > 0).astype(np.float64), minlength=ids.size)
    return [{"entity": int(e), "rows": int(n), "pnl": float(p), "mean_abs_position": float(g / n),
             "hit_rate": float(h / n)} for e, n, p, g, h in zip(ids, rows, pnl, gross, hits, strict=True)]


def evaluate_model(
    onnx_path: Path, data: TrainingData, *, schedule: Schedule = "adhoc", classes: list[int] | None = None
) -> Evaluation:
    """Score ``val`` and ``test`` with the ONNX model; ``backfill`` adds the all-splits backtest."""
    if schedule not in ("adhoc", "backfill"):
        raise ValueError(f"schedule must be 'adhoc' or 'backfill', got {schedule!r}")
    classes = sorted(data.label_classes) if classes is None else list(classes)
    bear, bull = regime_indices(classes, data.label_classes)
    results: dict[str, SplitEvaluation] = {}
    all_rows: list[tuple[SplitData, np.ndarray]] = []
    for name in data.splits:
        if name not in EVAL_SPLITS and schedule != "backfill":
            continue
        split = data.split(name)
        proba = onnx_predict_proba(onnx_path, split.X)
        positions = positions_from_proba(proba, bear, bull) if len(proba) else np.zeros(0)
        all_rows.append((split, positions))
        if name in EVAL_SPLITS:
            results[name] = SplitEvaluation(name, split.rows, accuracy(proba, split.y, classes),
                                            log_loss(proba, split.y, classes),
                                            trading_metrics(daily_book(split, positions)[1]),
                                            entity_breakdown(split, positions))
    if schedule != "backfill":
        return Evaluation(schedule, classes, results)
    merged = SplitData(
        X=np.zeros((0, 0), dtype=np.float32),
        y=np.concatenate([s.y for s, _ in all_rows]),
        entity=np.concatenate([s.entity for s, _ in all_rows]),
        timestamp=np.concatenate([s.timestamp for s, _ in all_rows]),
        forward_return=np.concatenate([s.forward_return for s, _ in all_rows]),
    )
    returns = daily_book(merged, np.concatenate([p for _, p in all_rows]))[1]
    return Evaluation(schedule, classes, results, trading_metrics(returns), equity_curve(returns))
