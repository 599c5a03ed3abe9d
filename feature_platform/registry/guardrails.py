"""The deployment guardrails a model version must meet before it may become production, with their defaults.

Light on purpose (no MLflow, no pyarrow): the CLI's option defaults and the Dagster config read them.
"""

from __future__ import annotations

from dataclasses import dataclass

from feature_platform.contracts.checks import Check

DEFAULT_SHARPE_METRIC = "test_sharpe"
DEFAULT_DRAWDOWN_METRIC = "test_max_drawdown"
DEFAULT_MIN_SHARPE = 0.0
DEFAULT_MAX_DRAWDOWN = 0.5


@dataclass(frozen=True)
class Guardrails:
    """Deployment policy: Sharpe at or above target, drawdown within policy, no open review block."""

    min_sharpe: float = DEFAULT_MIN_SHARPE
    max_drawdown: float = DEFAULT_MAX_DRAWDOWN
    require_unblocked: bool = True
    sharpe_metric: str = DEFAULT_SHARPE_METRIC
    drawdown_metric: str = DEFAULT_DRAWDOWN_METRIC

    def check(self, metrics: dict[str, float]) -> list[Check]:
        """The metric policy on ``metrics``; a missing metric fails (fail closed)."""
        sharpe, drawdown = metrics.get(self.sharpe_metric), metrics.get(self.drawdown_metric)
        return [
            Check(f"guardrail[{self.sharpe_metric}]", sharpe is not None and sharpe >= self.min_sharpe,
                  f">= {self.min_sharpe}", "missing" if sharpe is None else str(sharpe)),
            Check(f"guardrail[{self.drawdown_metric}]", drawdown is not None and drawdown <= self.max_drawdown,
                  f"<= {self.max_drawdown}", "missing" if drawdown is None else str(drawdown)),
        ]
