"""Trading metrics against values computed by hand on tiny arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest

from feature_platform.training.data import SplitData, forward_returns
from feature_platform.training.evaluate import accuracy, daily_book, entity_breakdown, log_loss, regime_indices
from feature_platform.training.metrics import (
    DAY_US,
    PERIODS_PER_YEAR,
    cumulative_pnl,
    equity_curve,
    max_drawdown,
    pnl,
    portfolio_returns,
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


def _split(entity: list[int], ts: list[int], fwd: list[float]) -> SplitData:
    n = len(entity)
    return SplitData(X=np.zeros((n, 1), np.float32), y=np.zeros(n, np.int64), entity=np.array(entity),
                     timestamp=np.array(ts, dtype=np.int64), forward_return=np.array(fwd))


def test_daily_book_is_the_gross_normalised_return_of_each_utc_day() -> None:
    # day 0: entities 1, 2, 3 with w = 1, -0.5, 0.5 and f = 0.1, 0.2, nan (untraded)
    #   R_0 = (1*0.1 + -0.5*0.2) / (1 + 0.5) = 0 / 1.5 = 0
    # day 1: w = 0.5, 0.25 and f = 0.04, -0.08 -> (0.02 - 0.02) / 0.75 = 0 ... choose f2 = 0.08:
    #   (0.5*0.04 + 0.25*0.08) / 0.75 = 0.04 / 0.75 = 0.053333
    # day 3: one row, w = 0 -> zero exposure -> 0
    split = _split([1, 2, 3, 1, 2, 1], [5, DAY_US - 1, 7, DAY_US, DAY_US + 9, 3 * DAY_US + 1],
                   [0.1, 0.2, np.nan, 0.04, 0.08, 0.3])
    days, r = daily_book(split, np.array([1.0, -0.5, 0.5, 0.5, 0.25, 0.0]))
    assert days.tolist() == [0, 1, 3]
    np.testing.assert_allclose(r, [0.0, 0.04 / 0.75, 0.0])


def test_portfolio_metrics_hand_computed_over_three_days() -> None:
    # two entities a day, unit longs: R = mean of the day's forward returns = 0.01, -0.02, 0.03
    days = np.array([0, 0, 1, 1, 2, 2])
    _, r = portfolio_returns(days, np.ones(6), np.array([0.0, 0.02, -0.02, -0.02, 0.05, 0.01]))
    np.testing.assert_allclose(r, [0.01, -0.02, 0.03])
    m = trading_metrics(r, periods_per_year=1)
    assert m.n_periods == 3 and m.n_downside == 1
    assert m.total_return == pytest.approx(1.01 * 0.98 * 1.03 - 1)  # 0.019494
    # mean 0.02/3, sd(ddof=1) = sqrt(((0.01-m)^2 + (-0.02-m)^2 + (0.03-m)^2) / 2) = 0.025166
    assert m.sharpe == pytest.approx((0.02 / 3) / math.sqrt(0.0019 / 3))
    assert m.max_drawdown == pytest.approx(0.02)


def test_portfolio_invariants() -> None:
    rng = np.random.default_rng(7)
    n = 400
    days = rng.integers(0, 40, n)
    w = rng.uniform(-1, 1, n)
    f = rng.normal(0.001, 0.02, n)
    base = trading_metrics(portfolio_returns(days, w, f)[1])
    assert base.n_periods == len(np.unique(days))
    # duplicating every entity (each row twice) leaves every metric unchanged
    dup = trading_metrics(portfolio_returns(np.tile(days, 2), np.tile(w, 2), np.tile(f, 2))[1])
    assert dup.sharpe == pytest.approx(base.sharpe) and dup.total_return == pytest.approx(base.total_return)
    # scaling all positions by a constant leaves it unchanged
    scaled = trading_metrics(portfolio_returns(days, 3.7 * w, f)[1])
    assert scaled.sharpe == pytest.approx(base.sharpe) and scaled.max_drawdown == pytest.approx(base.max_drawdown)
    # an always-flat strategy scores 0
    flat = trading_metrics(portfolio_returns(days, np.zeros(n), f)[1])
    assert (flat.sharpe, flat.pnl, flat.total_return, flat.max_drawdown) == (0.0, 0.0, 0.0, 0.0)
    assert flat.n_periods == base.n_periods
    # a day's return is a weighted mean: bounded by the day's extreme row returns, so never 1e20
    _, r = portfolio_returns(days, np.abs(w), f)
    assert np.all(np.abs(r) <= np.max(np.abs(f)) + 1e-12)


def test_entity_breakdown_is_a_per_entity_report() -> None:
    split = _split([2, 1, 2, 1], [0, 0, DAY_US, DAY_US], [0.1, -0.2, np.nan, 0.05])
    rows = entity_breakdown(split, np.array([1.0, 0.5, 1.0, -1.0]))
    assert rows == [{"entity": 1, "rows": 2, "pnl": pytest.approx(-0.15), "mean_abs_position": 0.75,
                     "hit_rate": 0.0},
                    {"entity": 2, "rows": 1, "pnl": pytest.approx(0.1), "mean_abs_position": 1.0, "hit_rate": 1.0}]


def test_accuracy_and_log_loss_hand_computed() -> None:
    proba = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    y = np.array([0, 1])
    assert accuracy(proba, y, [0, 1, 2]) == 0.5
    assert log_loss(proba, y, [0, 1, 2]) == pytest.approx(-(math.log(0.7) + math.log(0.3)) / 2)
    with pytest.raises(ValueError, match="not model classes"):
        log_loss(proba, np.array([0, 5]), [0, 1, 2])


def test_portfolio_metrics_agree_with_empyrical() -> None:
    """Dev-only cross-check against an independent implementation (empyrical-reloaded)."""
    import empyrical  # type: ignore[import-untyped]
    import pandas as pd

    rng = np.random.default_rng(11)
    days = rng.integers(0, 120, 3000)
    _, r = portfolio_returns(days, rng.uniform(-1, 1, 3000), rng.normal(0.0005, 0.03, 3000))
    m = trading_metrics(r)
    series = pd.Series(r)
    assert m.sharpe == pytest.approx(empyrical.sharpe_ratio(series, annualization=PERIODS_PER_YEAR), rel=1e-9)
    assert m.sortino == pytest.approx(empyrical.sortino_ratio(series, annualization=PERIODS_PER_YEAR), rel=1e-9)
    assert m.max_drawdown == pytest.approx(-empyrical.max_drawdown(series), rel=1e-9)
    assert m.total_return == pytest.approx(empyrical.cum_returns_final(series), rel=1e-9)
