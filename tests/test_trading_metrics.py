"""Trading metrics against values computed by hand on tiny arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest

from feature_platform.training.data import SplitData, forward_returns
from feature_platform.training.evaluate import _book, accuracy, log_loss, regime_indices
from feature_platform.training.metrics import (
    PERIODS_PER_YEAR,
    cumulative_pnl,
    equity_curve,
    max_drawdown,
    pnl,
    positions_from_proba,
    sharpe,
    sortino,
    strategy_returns,
    trading_metrics,
)

R = np.array([0.1, -0.05, 0.02, -0.03])
# mean = 0.04 / 4 = 0.01; deviations 0.09, -0.06, 0.01, -0.04 -> squares sum 0.0134; var(ddof=1) = 0.0134 / 3
STD = math.sqrt(0.0134 / 3)  # 0.066833...
# downside: min(r, 0) = 0, -0.05, 0, -0.03 -> squares 0.0025 + 0.0009 = 0.0034; mean over all 4 = 0.00085
DOWNSIDE = math.sqrt(0.00085)  # 0.029155...


def test_pnl_is_the_sum_and_cumulative_is_the_running_sum() -> None:
    assert pnl(R) == pytest.approx(0.04)
    np.testing.assert_allclose(cumulative_pnl(R), [0.1, 0.05, 0.07, 0.04])
    assert pnl(np.array([])) == 0.0


def test_sharpe_hand_computed_and_annualised() -> None:
    assert pytest.approx(0.0668331, rel=1e-6) == STD
    assert sharpe(R, periods_per_year=1) == pytest.approx(0.01 / STD) == pytest.approx(0.1496265, rel=1e-6)
    assert sharpe(R, periods_per_year=4) == pytest.approx(2 * 0.01 / STD)
    assert sharpe(R) == pytest.approx(0.01 / STD * math.sqrt(365))
    assert PERIODS_PER_YEAR == 365


def test_sortino_hand_computed() -> None:
    assert sortino(R, periods_per_year=1) == pytest.approx(0.01 / DOWNSIDE) == pytest.approx(0.3429972, rel=1e-6)
    assert sortino(R, periods_per_year=9) == pytest.approx(3 * 0.01 / DOWNSIDE)


def test_equity_curve_and_max_drawdown_hand_computed() -> None:
    # 1 -> 1.1 -> 1.045 -> 1.0659 -> 1.033923; peak stays 1.1 after the first period
    np.testing.assert_allclose(equity_curve(R), [1.0, 1.1, 1.045, 1.0659, 1.033923])
    assert max_drawdown(R) == pytest.approx((1.1 - 1.033923) / 1.1) == pytest.approx(0.0600700)
    assert max_drawdown(np.array([0.5, -0.5, 0.1])) == pytest.approx(0.5)  # 1.5 -> 0.75
    assert max_drawdown(np.array([-0.2, 0.5])) == pytest.approx(0.2)  # first period draws down from E_0 = 1


def test_edge_cases_are_finite_and_documented() -> None:
    flat = np.array([0.01, 0.01, 0.01])
    assert sharpe(flat) == 0.0  # zero std: undefined -> 0.0
    assert sortino(flat) == 0.0  # no downside: undefined -> 0.0
    assert sharpe(np.array([0.3])) == 0.0 and sortino(np.array([-0.3])) == 0.0  # fewer than 2 periods
    assert max_drawdown(np.array([])) == 0.0
    assert max_drawdown(np.array([0.1, 0.2])) == 0.0  # only up
    assert max_drawdown(np.array([0.1, -1.5])) == 1.0  # ruin floors equity at 0: drawdown 100 %
    m = trading_metrics(np.array([]))
    assert (m.n_periods, m.pnl, m.sharpe, m.sortino, m.max_drawdown, m.total_return) == (0, 0.0, 0.0, 0.0, 0.0, 0.0)


def test_trading_metrics_bundle() -> None:
    m = trading_metrics(R, periods_per_year=1)
    assert m.n_periods == 4 and m.n_downside == 2
    assert m.total_return == pytest.approx(0.033923)
    assert m.sharpe == pytest.approx(0.01 / STD) and m.sortino == pytest.approx(0.01 / DOWNSIDE)
    assert all(math.isfinite(v) for v in m.to_dict().values())


def test_positions_are_bull_minus_bear_clipped() -> None:
    proba = np.array([[0.2, 0.3, 0.5], [0.7, 0.2, 0.1], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(positions_from_proba(proba, bear_index=0, bull_index=2), [0.3, -0.6, 1.0])
    np.testing.assert_allclose(strategy_returns(np.array([0.3, -0.6]), np.array([0.1, 0.05])), [0.03, -0.03])
    assert regime_indices([0, 1, 2], {0: "bear", 1: "sideways", 2: "bull"}) == (0, 2)
    assert regime_indices([0, 2], {}) == (0, 1)  # no names: lowest class is bear, highest is bull


def test_forward_return_is_next_row_of_same_entity_in_time_order() -> None:
    entity = np.array([1, 2, 1, 1, 2])
    ts = np.array([30, 10, 10, 20, 20])
    lr = np.array([0.01, 0.02, 0.03, 0.04, 0.05], dtype=np.float32)
    fwd = forward_returns(entity, ts, lr)
    # entity 1 in time order: rows 2 (t=10), 3 (t=20), 0 (t=30); entity 2: rows 1 (t=10), 4 (t=20)
    expected = [np.nan, math.expm1(np.float32(0.05)), math.expm1(np.float32(0.04)),
                math.expm1(np.float32(0.01)), np.nan]
    np.testing.assert_allclose(fwd, expected)


def test_book_orders_by_time_and_drops_rows_without_forward_return() -> None:
    split = SplitData(X=np.zeros((3, 1), np.float32), y=np.zeros(3, np.int64), entity=np.array([1, 2, 3]),
                      timestamp=np.array([2, 1, 3]), forward_return=np.array([0.1, np.nan, -0.2]))
    np.testing.assert_allclose(_book(split, np.array([1.0, 1.0, 0.5])), [0.1, -0.1])


def test_accuracy_and_log_loss_hand_computed() -> None:
    proba = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    y = np.array([0, 1])
    assert accuracy(proba, y, [0, 1, 2]) == 0.5
    assert log_loss(proba, y, [0, 1, 2]) == pytest.approx(-(math.log(0.7) + math.log(0.3)) / 2)
    with pytest.raises(ValueError, match="not model classes"):
        log_loss(proba, np.array([0, 5]), [0, 1, 2])
