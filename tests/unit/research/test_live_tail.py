"""The backtest's model of the live pre-trade tail-risk pass (lib/research/live_tail.py, applied by
lib/research/live_risk.py): hand-computed scale / refuse / off cases, the factors equal to what
lib.execution.tail_risk_checks.fit_tail decides on the same closes and weights at every tick, and no look-ahead."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lib.core.daily_returns import daily_closes
from lib.core.timeframes import MS_PER_DAY, MS_PER_HOUR
from lib.execution.risk import RiskLimits
from lib.execution.tail_risk_checks import fit_tail
from lib.research.backtest_params import BacktestParams
from lib.research.backtester import BacktestResult, run_backtest
from lib.research.live_risk import LiveRiskLimits, LiveRiskState
from lib.research.live_tail import day_closes, tail_scales
from tests.unit.research.backtest_frames import decision_targets, price_frame

A = "A/USDT"
ZERO_COST = BacktestParams(fee_bps=0.0, slippage_bps=0.0, min_notional_quote=0.0)
# Daily bars. Days 1-30: +0.5 % / -0.5 % in turn, day 31: -30 %, then flat. A fill at bar f sees the days that
# ended by its open (days <= f - 1). Book w on the window of days 1-31: historical 99 % VaR = CVaR = the worst
# loss, w x 30 % (the Gaussian ones are lower: mean -0.3/31, std 0.054113 -> w x 13.6 % / w x 15.4 %), so at the
# limits 8 % / 12 % the factor is min(0.08, 0.12) / (w x 0.30): w = 0.5 -> 8/15, target 4/15.
DAILY_RETURNS = [0.005 if day % 2 else -0.005 for day in range(1, 31)] + [-0.30] + [0.0] * 8


def _daily_book() -> tuple[pd.DataFrame, pd.DataFrame]:
    closes = 100.0 * np.cumprod([1.0] + [1.0 + r for r in DAILY_RETURNS])
    opens = np.concatenate([[100.0], closes[:-1]])  # each bar opens at the previous close
    return price_frame({A: list(opens)}, MS_PER_DAY), price_frame({A: list(closes)}, MS_PER_DAY)


def _limits(action: str) -> LiveRiskLimits:
    """[risk] as shipped, with the drawdown, daily-loss and notional caps out of the way."""
    return LiveRiskLimits.from_risk_limits(RiskLimits(
        max_asset_weight_frac=1.0, max_order_notional_quote=Decimal("1e9"), max_drawdown_frac=0.9,
        daily_loss_limit_frac=0.5, tail_risk_action=action))  # type: ignore[arg-type]


def _run(action: str, rows: dict[int, dict[str, float]], *, with_days: bool = True) -> BacktestResult:
    opens, closes = _daily_book()
    return run_backtest(open_wide=opens, close_wide=closes, target_weights=decision_targets(closes, rows),
                        params=ZERO_COST, live_risk=_limits(action), compiled=False,
                        daily_close=day_closes(closes, timeframe_ms=MS_PER_DAY) if with_days else None)


def test_a_book_over_the_var_limit_is_scaled_by_lives_factor() -> None:
    result = _run("scale", {25: {A: 0.5}, 31: {A: 0.5}})
    assert result.live_risk is not None and result.live_risk.tail_action == "scale"
    assert result.live_risk.tail_scales == (pytest.approx(8 / 15, rel=1e-12),)  # fill 26 fits, fill 32 is cut
    assert result.trades["notional_quote"].iloc[0] == pytest.approx(500.0, rel=1e-12)  # fill 26: 0.5 of 1,000
    assert result.weights[A].iloc[32] == pytest.approx(4 / 15, rel=1e-12)  # flat prices: the fill's weight
    assert result.live_risk.tail_refused_ticks == result.live_risk.tail_unknown_ticks == 0


def test_refuse_keeps_the_position_and_trades_only_what_reduces_risk() -> None:
    closes = _daily_book()[1][A]
    moved = 500.0 * closes.iloc[31] / closes.iloc[25]  # bought at bar 26's open (= close 25), at bar 32's open
    held = moved / (moved + 500.0)  # ~0.41 after the crash
    refused = _run("refuse", {25: {A: 0.5}, 31: {A: 0.5}})
    assert refused.weights[A].iloc[32] == pytest.approx(held, rel=1e-12)  # the buy back to 0.5 is not sent
    assert len(refused.trades) == 1 and refused.live_risk is not None and refused.live_risk.tail_refused_ticks == 1
    assert refused.live_risk.tail_scales == ()
    reduced = _run("refuse", {25: {A: 0.5}, 31: {A: 0.3}})  # 0.3 x 30 % = 9 % > 8 %: refused, but it sells
    assert reduced.weights[A].iloc[32] == pytest.approx(0.3, rel=1e-12)


def test_the_caps_judge_the_scaled_target_and_a_refused_one_as_it_stands() -> None:
    """As live: check_all sees the tail pass's targets; a refusal keeps a cap breach's halt (nothing sent)."""
    opens, closes = _daily_book()
    targets = decision_targets(closes, {25: {A: 0.3}, 31: {A: 0.5}})  # 0.5 > the gross cap 0.45; 4/15 is not

    def run(action: str) -> BacktestResult:
        limits = LiveRiskLimits.from_risk_limits(RiskLimits(
            max_asset_weight_frac=1.0, max_gross_exposure_frac=0.45, max_order_notional_quote=Decimal("1e9"),
            max_drawdown_frac=0.9, daily_loss_limit_frac=0.5, tail_risk_action=action))  # type: ignore[arg-type]
        return run_backtest(open_wide=opens, close_wide=closes, target_weights=targets, params=ZERO_COST,
                            live_risk=limits, compiled=False, daily_close=day_closes(closes, timeframe_ms=MS_PER_DAY))

    scaled = run("scale")
    assert scaled.weights[A].iloc[32] == pytest.approx(4 / 15, rel=1e-12) and len(scaled.trades) == 2
    for action in ("refuse", "off"):
        blocked = run(action)
        assert len(blocked.trades) == 1 and blocked.live_risk is not None
        assert blocked.live_risk.blocked_ticks == {"exposure": 1}
    assert run("refuse").live_risk.tail_refused_ticks == 1  # type: ignore[union-attr]


def test_off_changes_nothing() -> None:
    off = _run("off", {25: {A: 0.5}, 31: {A: 0.5}})
    without = _run("scale", {25: {A: 0.5}, 31: {A: 0.5}}, with_days=False)
    assert off.equity.equals(without.equity) and off.trades.equals(without.trades)
    assert off.weights[A].iloc[32] == pytest.approx(0.5, rel=1e-12)
    assert off.live_risk is not None and off.live_risk.tail_action == "off" and off.live_risk.tail_scales == ()
    no_layer = run_backtest(open_wide=_daily_book()[0], close_wide=_daily_book()[1], params=ZERO_COST,
                            target_weights=decision_targets(_daily_book()[1], {25: {A: 0.5}, 31: {A: 0.5}}),
                            daily_close=day_closes(_daily_book()[1], timeframe_ms=MS_PER_DAY))
    assert no_layer.live_risk is None and no_layer.weights[A].iloc[32] == pytest.approx(0.5, rel=1e-12)


def test_an_unknown_risk_is_refused_as_live_fails_closed() -> None:
    early = _run("scale", {10: {A: 0.5}})  # 10 daily returns by the fill at bar 11: no estimate
    assert early.trades.empty and early.live_risk is not None and early.live_risk.tail_unknown_ticks == 1
    assert not _run("off", {10: {A: 0.5}}).trades.empty


def _hourly_panel(seed: int = 3, days: int = 70) -> pd.DataFrame:
    """4 coins x hourly closes: B listed on day 25, C with gaps (some of them the day's last hour), D delisted."""
    rng = np.random.default_rng(seed)
    n = days * 24
    closes = pd.DataFrame(100 * np.exp(np.cumsum(rng.normal(0, 0.008, size=(n, 4)), axis=0)),
                          columns=["A/USDT", "B/USDT", "C/USDT", "D/USDT"],
                          index=pd.Index(np.arange(n, dtype=np.int64) * MS_PER_HOUR + 5 * MS_PER_DAY, name="timestamp"))
    closes.iloc[: 25 * 24, 1] = np.nan
    closes.iloc[rng.choice(n, 8, replace=False), 2] = np.nan
    closes.iloc[[24 * d + 23 for d in (30, 31, 44, 50)], 2] = np.nan
    closes.iloc[60 * 24 + 7 :, 3] = np.nan
    return closes


def _live_factor(closes: pd.DataFrame, fill: int, weights: np.ndarray, limits: RiskLimits) -> float:
    """What rebalance's tail pass decides on the run that fills at bar ``fill``: the stored candles are those
    of the bars before it; each symbol's daily closes as lib.execution.tail_risk_checks.read_daily_closes."""
    book = {str(s): float(w) for s, w in zip(closes.columns, weights, strict=True) if w != 0}
    stored = closes.iloc[:fill]
    daily = {s: daily_closes(stored[s].dropna().rename("close").rename_axis("timestamp").reset_index(),
                             timeframe_ms=MS_PER_HOUR) for s in book}
    scaled, changed, refused = fit_tail(book, daily, fixed=set(), limits=limits)
    if refused:
        return float("nan")
    return scaled[next(iter(book))] / book[next(iter(book))] if changed else 1.0


def test_every_ticks_factor_is_what_the_live_tail_pass_decides() -> None:
    closes = _hourly_panel()
    limits = RiskLimits(var_lookback_days=30, max_var_99_frac=0.03, max_cvar_99_frac=0.04)
    rng = np.random.default_rng(11)
    fills = np.arange(24 * 10, len(closes), 7)
    books = rng.uniform(0, 0.6, size=(len(fills), 4)) * (rng.random((len(fills), 4)) < 0.5)
    books[5::9] = books[4::9][: len(books[5::9])]  # repeats of the previous run's book
    factors = tail_scales(day_closes(closes, timeframe_ms=MS_PER_HOUR), closes.index.to_numpy()[fills], books,
                          max_var=0.03, max_cvar=0.04, lookback_days=30)
    live = np.array([_live_factor(closes, int(f), w, limits) if w.any() else 1.0 for f, w in zip(fills, books,
                                                                                                  strict=True)])
    np.testing.assert_allclose(factors, live, rtol=1e-12)  # NaN where live refuses, at the same ticks
    assert (factors < 1).sum() > 20 and np.isnan(factors).sum() > 10 and (factors == 1).sum() > 20  # all three


def test_truncating_the_future_leaves_past_factors_and_equity_unchanged() -> None:
    closes = _hourly_panel(seed=5)
    opens = closes.shift(1).fillna(100.0)
    rng = np.random.default_rng(2)
    targets = pd.DataFrame(rng.uniform(0, 0.24, size=closes.shape) * (rng.random(closes.shape) < 0.6),
                           index=closes.index, columns=closes.columns).where(closes.notna(), 0.0)
    targets.iloc[np.arange(len(targets)) % 6 != 0] = np.nan  # a decision every 6 hours
    limits = dataclass_limits(var_lookback_days=30, max_var_99_frac=0.02, max_cvar_99_frac=0.03)
    params = BacktestParams(fee_bps=10.0, slippage_bps=5.0, min_notional_quote=0.0)

    def run(cut: int) -> BacktestResult:
        return run_backtest(open_wide=opens.iloc[:cut], close_wide=closes.iloc[:cut], target_weights=targets.iloc[:cut],
                            params=params, live_risk=limits, compiled=False,
                            daily_close=day_closes(closes.iloc[:cut], timeframe_ms=MS_PER_HOUR))

    full = run(len(closes))
    assert full.live_risk is not None and len(full.live_risk.tail_scales) > 10
    for cut in (24 * 33 + 5, 24 * 41, 24 * 52 + 23, 24 * 61 + 1):
        past = run(cut)
        np.testing.assert_array_equal(past.equity.to_numpy(), full.equity.to_numpy()[:cut])
        assert past.live_risk is not None
        assert past.live_risk.tail_scales == full.live_risk.tail_scales[: len(past.live_risk.tail_scales)]


def dataclass_limits(**tail: object) -> LiveRiskLimits:
    return LiveRiskLimits.from_risk_limits(RiskLimits(max_asset_weight_frac=1.0, max_drawdown_frac=0.9,
                                                      max_order_notional_quote=Decimal("1e9"), **tail))  # type: ignore[arg-type]


@pytest.mark.realdata
def test_real_daily_closes_give_lives_factors(shared_data_dir: Path) -> None:
    """25 coins' real daily candles <= 2022 (listings, delistings): random books at 150 runs, against fit_tail."""
    frames = {path.stem.replace("-", "/"): pd.read_parquet(path, columns=["timestamp", "close"]) for path in
              sorted((shared_data_dir / "market" / "1d").glob("*.parquet"))}
    closes = pd.DataFrame({s: f.set_index("timestamp")["close"] for s, f in frames.items()}).sort_index()
    closes = closes.loc[: pd.Timestamp("2022-12-31", tz="UTC").value // 1_000_000]
    rng = np.random.default_rng(0)
    fills = np.sort(rng.choice(np.arange(30, len(closes)), 150, replace=False))
    books = rng.uniform(0, 0.5, size=(len(fills), closes.shape[1])) * (rng.random((len(fills), closes.shape[1])) < 0.2)
    books = np.where(closes.iloc[fills - 1].notna().to_numpy(), books, 0.0)  # only coins with a price
    factors = tail_scales(day_closes(closes, timeframe_ms=MS_PER_DAY), closes.index.to_numpy()[fills], books,
                          max_var=0.08, max_cvar=0.12, lookback_days=365)
    limits = RiskLimits()
    live = []
    for fill, book in zip(fills, books, strict=True):
        weights = {s: float(w) for s, w in zip(closes.columns, book, strict=True) if w != 0}
        daily = {s: daily_closes(frames[s][frames[s]["timestamp"] < closes.index[fill]], timeframe_ms=MS_PER_DAY)
                 for s in weights}
        scaled, changed, refused = fit_tail(weights, daily, fixed=set(), limits=limits) if weights else ({}, [], [])
        first = next(iter(weights), None)
        live.append(float("nan") if refused else scaled[first] / weights[first] if changed and first else 1.0)
    np.testing.assert_allclose(factors, live, rtol=1e-12)
    assert (factors < 1).sum() > 10


def test_the_tail_factors_are_computed_on_the_clipped_targets_as_live_clips_first() -> None:
    state = LiveRiskState(limits=dataclass_limits(), index=np.arange(3, dtype=np.int64), starting_capital_quote=1.0,
                          is_perp=True)
    state.limits = LiveRiskLimits.from_risk_limits(RiskLimits(max_asset_weight_frac=0.35))
    rows = np.array([[0.5, -0.9, 0.35 + 5e-10, np.nan], [0.1, 0.2, -0.3, 0.0]])
    clipped = state.clip_all(rows)
    np.testing.assert_array_equal(clipped[0], [0.35, -0.35, 0.35 + 5e-10, np.nan])  # within tolerance: kept
    np.testing.assert_array_equal(clipped[1], rows[1])
    np.testing.assert_array_equal(clipped[0], state.clip(rows[0]))


def test_day_closes_are_each_symbols_daily_closes_on_the_union_of_their_calendars() -> None:
    closes = _hourly_panel()
    closes.iloc[24 * 40 + 23, 0] = -1.0  # a non-positive close: not a day's close (daily_closes drops it)
    closes.iloc[24 * 42 + 23, :] = np.nan  # no symbol ends day 42: the day is not in the calendar
    frame = day_closes(closes, timeframe_ms=MS_PER_HOUR)
    one_by_one = pd.DataFrame({s: daily_closes(closes[s].dropna().rename("close").rename_axis("timestamp")
                                               .reset_index(), timeframe_ms=MS_PER_HOUR) for s in closes.columns})
    pd.testing.assert_frame_equal(frame, one_by_one.sort_index(), check_index_type=False, check_names=False)
    assert (5 + 42) * MS_PER_DAY not in frame.index and np.isnan(frame.loc[(5 + 40) * MS_PER_DAY, "A/USDT"])


def test_a_run_whose_books_are_all_empty_scales_nothing() -> None:
    """A strategy that never holds anything (no eligible coin yet, a flat book): every factor is 1, no error."""
    daily = pd.DataFrame({"BTC/USDT": [100.0, 101.0, 99.0]}, index=pd.Index([0, MS_PER_DAY, 2 * MS_PER_DAY]))
    fills = np.array([MS_PER_DAY, 2 * MS_PER_DAY, 3 * MS_PER_DAY], dtype=np.int64)
    scales = tail_scales(daily, fills, np.zeros((3, 1)), max_var=0.05, max_cvar=0.08, lookback_days=365)
    assert scales.tolist() == [1.0, 1.0, 1.0]
