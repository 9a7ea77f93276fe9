"""The live trailing window: its last row equals the full-history run's, on real Binance data at many dates.

compute_signals runs the strategy over a trailing window only (lib.research.live_window.run_settled). The
full-history run is what the backtest trades; the live targets must be the same numbers. Tolerance:
TOLERANCE (absolute, on weights in [0, 1]); the window is derived so that only float rounding of rolling
sums (~1e-16) and recursive averages' start values (weight < 1e-13) can differ.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lib.core.timeframes import timeframe_ms
from lib.research import live_window
from lib.research.ensemble_params import EnsembleParams
from lib.research.portfolio_params import PerpParams, SpotParams
from lib.research.signal_params import SignalParams
from lib.research.sleeves.book import BookSettings
from lib.research.sleeves.params import SizingParams, TrendParams, TurnoverParams
from lib.research.sleeves.trend import states_known_from_ms
from lib.research.strategy import StrategyOutput, compute_strategy
from lib.research.strategy_params import StrategySection
from lib.research.universe_params import UniverseParams

TOLERANCE = 1e-9
RESEARCH_END = "2023-01-01"  # research data only (2023 is the hold-out)


def _params(name: str, timeframe: str) -> live_window.WindowParams:
    book = BookSettings(sizing=SizingParams(cluster_correlation=0.85))
    return live_window.WindowParams(
        strategy=StrategySection(name=name, timeframe=timeframe), signals=SignalParams(), ensemble=EnsembleParams(),
        universe=UniverseParams(), spot=SpotParams(), trend=book.trend, sizing=book.sizing, combiner=book.combiner,
        turnover=book.turnover)  # fmt: skip


def _output(candles: Mapping[str, pd.DataFrame], params: live_window.WindowParams) -> StrategyOutput:
    book = BookSettings(trend=params.trend, sizing=params.sizing, combiner=params.combiner, turnover=params.turnover)
    return compute_strategy(candles, strategy=params.strategy, signals=params.signals, ensemble=params.ensemble,
                            universe=params.universe, spot=params.spot, perp=PerpParams(), book=book)


def _real_candles(shared_data_dir: Path, timeframe: str) -> dict[str, pd.DataFrame]:
    end_ms = pd.Timestamp(RESEARCH_END, tz="UTC").value // 1_000_000
    candles = {}
    for path in sorted((shared_data_dir / "market" / timeframe).glob("*.parquet")):
        frame = pd.read_parquet(path)
        candles[path.stem.replace("-", "/")] = frame[frame["timestamp"] < end_ms].reset_index(drop=True)
    return candles


@pytest.mark.realdata
@pytest.mark.parametrize(("name", "timeframe", "first", "dates"), [
    ("trend_core", "1d", "2019-09-01", 16),
    ("trend_core", "1h", "2020-09-01", 12),
    ("spot_long_only", "1h", "2020-09-01", 12),
])  # fmt: skip
def test_live_window_targets_equal_the_full_history_run(shared_data_dir: Path, name: str, timeframe: str,
                                                        first: str, dates: int) -> None:
    candles = _real_candles(shared_data_dir, timeframe)
    params = _params(name, timeframe)
    bars = live_window.required_history_bars(params)
    full = _output(candles, params).target_weights
    checked, windows, settled_in_window = 0, [], 0
    for date in pd.date_range(first, "2022-12-20", periods=dates, tz="UTC"):
        as_of_ms = int(full.index[full.index.searchsorted(date.value // 1_000_000)])
        past = {symbol: frame[frame["timestamp"] <= as_of_ms] for symbol, frame in candles.items()}
        past = {symbol: frame for symbol, frame in past.items() if len(frame)}
        history_from_ms = min(int(frame["timestamp"].iloc[0]) for frame in past.values())

        def window(bars: int, past=past, as_of_ms=as_of_ms, history_from_ms=history_from_ms):
            windows.append(bars)
            start_ms = live_window.window_start_ms(as_of_ms=as_of_ms, timeframe=timeframe, bars=bars)
            return (live_window.trailing_window(past, as_of_ms=as_of_ms, timeframe=timeframe, bars=bars),
                    start_ms <= history_from_ms)

        output, used = live_window.run_settled(window, lambda window_candles: _output(window_candles, params), params)
        settled_in_window += len(output.target_weights) < len(full.loc[:as_of_ms])
        live = output.target_weights.loc[as_of_ms]
        expected = full.loc[as_of_ms, live.index]
        assert np.allclose(live.to_numpy(), expected.to_numpy(), rtol=0.0, atol=TOLERANCE), (date, live - expected)
        assert full.loc[as_of_ms].drop(live.index).eq(0.0).all()  # symbols outside the window are not held
        checked += 1
    print(f"{name} {timeframe}: windows tried {windows} (bars); settled in a cut window at {settled_in_window} "
          f"of {dates} dates")
    assert min(windows) == bars and settled_in_window > 0  # the window really cuts, at least at some dates
    assert checked == dates


def test_window_grows_with_every_lookback() -> None:
    """Hand-derived: trend_core defaults = max(120 SMA, 250 history) + 90 + 1 + 7 (covariance, returns, one
    refresh period) + 3 x 120 (path settle) = 708 bars; each lookback moves it."""
    base = _params("trend_core", "1d")
    assert live_window.required_history_bars(base) == 708
    longer = live_window.WindowParams(**{**{k: getattr(base, k) for k in live_window.WINDOW_SECTIONS},
                                         "trend": TrendParams(horizons_bars=(20, 60, 300))})
    assert live_window.required_history_bars(longer) == 300 + 98 + 3 * 300
    calmer = live_window.WindowParams(**{**{k: getattr(base, k) for k in live_window.WINDOW_SECTIONS},
                                         "sizing": SizingParams(window_bars=200, refresh_every_bars=30),
                                         "turnover": TurnoverParams()})
    assert live_window.required_history_bars(calmer) == 250 + 201 + 30 + 3 * 200


def test_ewma_settle_bars_leave_less_than_the_tolerance_on_the_start() -> None:
    alpha = 2.0 / 101
    bars = live_window.ewma_settle_bars(alpha)
    assert (1 - alpha) ** bars < live_window.EWMA_TOLERANCE <= (1 - alpha) ** (bars - 1)


def test_trailing_window_is_a_clock_window_and_drops_symbols_without_a_bar_in_it() -> None:
    step = timeframe_ms("1d")
    old = pd.DataFrame({"timestamp": np.arange(0, 3) * step, "close": [1.0, 2.0, 3.0]})
    recent = pd.DataFrame({"timestamp": np.arange(0, 10) * step, "close": np.arange(10.0)})
    window = live_window.trailing_window({"OLD/USDT": old, "NEW/USDT": recent}, as_of_ms=9 * step, timeframe="1d",
                                         bars=4)
    assert list(window) == ["NEW/USDT"]
    assert window["NEW/USDT"]["timestamp"].tolist() == [6 * step, 7 * step, 8 * step, 9 * step]
    kept = live_window.candles_from(old, 6 * step, keep_last=True)
    assert kept["timestamp"].tolist() == [2 * step]


def test_trigger_states_are_known_from_each_horizons_first_decision() -> None:
    step = timeframe_ms("1d")
    close = [100.0] * 5 + [110.0] + [100.0] * 4  # the 3-bar gap leaves the +-2 % band at bar 5 (up) and bar 7
    candles = pd.DataFrame({"timestamp": np.arange(10) * step, "close": close})
    # horizon 3: gap at bar 5 = 110 / 103.33 - 1 > 0.02 (first decision); horizon 2: bar 5 too (110 / 105 - 1)
    assert states_known_from_ms(candles, TrendParams(horizons_bars=(2, 3), entry_buffer_frac=0.02)) == 5 * step
    flat = pd.DataFrame({"timestamp": np.arange(10) * step, "close": [100.0] * 10})
    assert states_known_from_ms(flat, TrendParams(horizons_bars=(2, 3), entry_buffer_frac=0.02)) is None


def test_the_book_path_is_settled_only_by_a_flat_raw_row_after_the_warm_up() -> None:
    params = live_window.WindowParams(**{**{k: getattr(_params("trend_core", "1d"), k)
                                            for k in live_window.WINDOW_SECTIONS},
                                         "trend": TrendParams(horizons_bars=(2,), entry_buffer_frac=0.0)})
    step, rows = timeframe_ms("1d"), 1000
    index = pd.Index(np.arange(rows) * step, name="timestamp")
    candles = {"BTC/USDT": pd.DataFrame({"timestamp": index.to_numpy(), "close": 100.0 + np.arange(rows) % 7})}
    bars = rows  # the window: all 1000 rows; warm-up 348 bars + one 7-bar refresh period -> settled from row 355
    invested = pd.DataFrame({"BTC/USDT": np.full(rows, 0.5)}, index=index)
    assert not live_window.book_path_settled(invested, candles, params, bars=bars)
    early_flat = invested.copy()
    early_flat.iloc[300] = 0.005  # below min_weight_frac (0.01) but inside the warm-up: proves nothing
    assert not live_window.book_path_settled(early_flat, candles, params, bars=bars)
    late_flat = invested.copy()
    late_flat.iloc[600] = 0.0
    assert live_window.book_path_settled(late_flat, candles, params, bars=bars)
    spot = live_window.WindowParams(**{**{k: getattr(params, k) for k in live_window.WINDOW_SECTIONS},
                                       "strategy": StrategySection(name="spot_long_only", timeframe="1d")})
    assert live_window.book_path_settled(invested, candles, spot, bars=bars)  # no path state outside the book
