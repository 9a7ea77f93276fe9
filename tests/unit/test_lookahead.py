"""No look-ahead: truncating the future leaves every past value bit-for-bit unchanged.

Covers every indicator in INDICATORS, every base signal, the signal panel, realized volatility,
every ensemble method (and both IC estimators), the universe mask, the trend sleeve and the sleeve
books (trend_core, xsection_momentum, combined: risk model refreshes, the turnover path), on deterministic random-walk
candles for assets that start (and one that stops) at different times, with missing bars.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from lib.core.errors import IndicatorError
from lib.ops.config import StrategySection
from lib.research.ensemble import EnsembleParams, compute_ensemble
from lib.research.indicators import INDICATORS
from lib.research.portfolio import PerpParams, SpotParams
from lib.research.signal_params import SIGNAL_NAMES, SignalParams
from lib.research.signals import (
    compute_base_signals,
    compute_signal_panel,
    realized_volatility,
)
from lib.research.sleeves.book import BookSettings
from lib.research.sleeves.combiner import CombinerParams
from lib.research.sleeves.sizing import SizingParams
from lib.research.sleeves.trend import TrendParams, compute_trend_sleeve
from lib.research.sleeves.turnover import TurnoverParams
from lib.research.strategy import compute_strategy
from lib.research.universe import UniverseParams, eligible_mask
from tests.helpers import SMALL, synthetic_candles

TOTAL_BARS = 600
CUT_BARS = (90, 257, 333, 480, 599)  # positions on the union index where history is cut


def synthetic_universe() -> dict[str, pd.DataFrame]:
    """Four coins: full history, late starters, one with missing bars, one whose data stop."""
    late = synthetic_candles(TOTAL_BARS - 150, seed=3, start_bar=150, drift=-0.001)
    gappy = synthetic_candles(TOTAL_BARS - 40, seed=2, start_bar=40, drift=0.001)
    gappy = gappy.drop(index=[100, 101, 102, 300]).reset_index(drop=True)
    return {
        "BTC/USDT": synthetic_candles(TOTAL_BARS, seed=1, drift=0.0005),
        "ETH/USDT": gappy,
        "SOL/USDT": late,
        "DOGE/USDT": synthetic_candles(520, seed=4, start_bar=0, vol=0.02),
    }


def _truncate(candles_by_symbol: dict[str, pd.DataFrame], cut_ms: int) -> dict[str, pd.DataFrame]:
    cut = {symbol: frame[frame["timestamp"] <= cut_ms] for symbol, frame in candles_by_symbol.items()}
    return {symbol: frame for symbol, frame in cut.items() if len(frame) > 0}


def _union_index(candles_by_symbol: dict[str, pd.DataFrame]) -> pd.Index:
    return pd.Index(
        np.unique(np.concatenate([f["timestamp"].to_numpy() for f in candles_by_symbol.values()]))
    )


def _assert_prefix_equal(full: pd.DataFrame, truncated: pd.DataFrame) -> None:
    """``truncated`` equals ``full`` on its own rows and columns, exactly (NaN where NaN)."""
    expected = full.loc[truncated.index, list(truncated.columns)]
    pd.testing.assert_frame_equal(expected, truncated, check_exact=True, check_freq=False)


def _wide(candles_by_symbol: dict[str, pd.DataFrame], column: str) -> pd.DataFrame:
    wide = pd.DataFrame({s: f.set_index("timestamp")[column] for s, f in candles_by_symbol.items()})
    wide.index.name = "timestamp"
    return wide.sort_index()


@pytest.fixture(scope="module")
def universe() -> dict[str, pd.DataFrame]:
    return synthetic_universe()


@pytest.fixture(scope="module")
def cut_times(universe) -> list[int]:
    union = _union_index(universe)
    return [int(union[position]) for position in CUT_BARS]


@pytest.mark.parametrize("name", sorted(INDICATORS))
def test_every_indicator_is_causal(name, universe, cut_times):
    candles = universe["ETH/USDT"]
    full = INDICATORS[name](candles)
    assert full.notna().any().all(), f"{name}: some column is never defined on 560 bars"
    for cut_ms in cut_times:
        truncated = candles[candles["timestamp"] <= cut_ms]
        try:
            cut_result = INDICATORS[name](truncated)
        except IndicatorError:  # too short to compute: the full history must be warm-up there too
            assert full.iloc[: len(truncated)].isna().all().all()
            continue
        _assert_prefix_equal(full, cut_result)


@pytest.mark.parametrize("params", [SMALL, SignalParams()], ids=["small_windows", "defaults"])
def test_base_signals_are_causal(params, universe, cut_times):
    candles = universe["BTC/USDT"]
    full = compute_base_signals(candles, params)
    assert list(full.columns) == list(SIGNAL_NAMES)
    assert full.iloc[-1].notna().all()
    for cut_ms in cut_times:
        truncated = candles[candles["timestamp"] <= cut_ms]
        _assert_prefix_equal(full, compute_base_signals(truncated, params, strict=False))


def test_signal_panel_and_realized_volatility_are_causal(universe, cut_times):
    full = compute_signal_panel(universe, SMALL)
    full_vol = realized_volatility(_wide(universe, "close"), window=20)
    for cut_ms in cut_times:
        truncated_candles = _truncate(universe, cut_ms)
        truncated = compute_signal_panel(truncated_candles, SMALL)
        for name in SIGNAL_NAMES:
            _assert_prefix_equal(full[name], truncated[name])
        _assert_prefix_equal(full_vol, realized_volatility(_wide(truncated_candles, "close"), window=20))


ENSEMBLES = {
    "equal_weight": EnsembleParams(method="equal_weight"),
    "rank_average": EnsembleParams(method="rank_average"),
    "adaptive_ic_spearman": EnsembleParams(
        method="adaptive_ic", ic_window_bars=60, ic_min_bars=10, ic_min_assets=2
    ),
    "adaptive_ic_pearson_ts": EnsembleParams(
        method="adaptive_ic",
        ic_method="pearson_time_series",
        ic_window_bars=60,
        ic_min_bars=10,
        ic_horizon_bars=3,
    ),
    "adaptive_ic_signed": EnsembleParams(method="adaptive_ic", ic_floor=-1.0, ic_min_assets=2, ic_min_bars=5),
}
UNIVERSE = UniverseParams(min_history_bars=30, dollar_volume_window_bars=10, min_dollar_volume_quote=1.0)


def _ensemble_inputs(candles_by_symbol):
    panel = compute_signal_panel(candles_by_symbol, SMALL)
    index = panel["trend"].index
    close = _wide(candles_by_symbol, "close").reindex(index)
    volume = _wide(candles_by_symbol, "volume").reindex(index)
    return panel, close, eligible_mask(close, volume, UNIVERSE)


@pytest.fixture(scope="module")
def ensemble_inputs(universe, cut_times):
    """(panel, close_wide, eligible) for the full history and for each cut, computed once."""
    return {
        "full": _ensemble_inputs(universe),
        **{cut_ms: _ensemble_inputs(_truncate(universe, cut_ms)) for cut_ms in cut_times},
    }


def test_universe_mask_is_causal(ensemble_inputs, cut_times):
    full_mask = ensemble_inputs["full"][2]
    assert full_mask.to_numpy().sum() > 1000
    for cut_ms in cut_times:
        _assert_prefix_equal(full_mask, ensemble_inputs[cut_ms][2])


@pytest.mark.parametrize("name", sorted(ENSEMBLES))
def test_ensemble_is_causal(name, ensemble_inputs, cut_times):
    params = ENSEMBLES[name]
    full = compute_ensemble(*ensemble_inputs["full"][:2], params, eligible=ensemble_inputs["full"][2])
    assert full.scores.notna().to_numpy().sum() > 1000
    if params.method == "adaptive_ic":
        assert full.signal_weights.nunique().gt(2).any(), "adaptive weights never moved"
    for cut_ms in cut_times:
        panel, close, mask = ensemble_inputs[cut_ms]
        truncated = compute_ensemble(panel, close, params, eligible=mask)
        _assert_prefix_equal(full.scores, truncated.scores)
        _assert_prefix_equal(full.signal_weights, truncated.signal_weights)
        for signal in truncated.contributions:
            _assert_prefix_equal(full.contributions[signal], truncated.contributions[signal])


# -- the sleeve book (trend_core, combined): sleeves, risk model refreshes, turnover path -------------

BOOK = BookSettings(
    trend=TrendParams(horizons_bars=(10, 30, 60), entry_buffer_frac=0.005),
    sizing=SizingParams(window_bars=30, refresh_every_bars=7, cluster_correlation=0.5),
    turnover=TurnoverParams(min_weight_frac=0.01, band_abs_frac=0.01, band_rel_frac=0.1, min_rebalance_frac=0.02),
)


ALL_SLEEVES = CombinerParams(sleeves=("trend_core", "xsection_momentum", "ensemble"), budgets=(0.5, 0.25, 0.25))


def _book_run(candles_by_symbol: dict[str, pd.DataFrame], name: str) -> pd.DataFrame:
    book = dataclasses.replace(BOOK, combiner=ALL_SLEEVES) if name == "combined_all" else BOOK
    output = compute_strategy(
        candles_by_symbol, strategy=StrategySection(name=name.removesuffix("_all"), timeframe="1h",
                                                    volatility_window_bars=20),
        signals=SMALL, ensemble=EnsembleParams(), universe=UNIVERSE,
        spot=SpotParams(top_n=2, regime_sma_bars=50), perp=PerpParams(), book=book,
    )  # fmt: skip
    assert output.book is not None
    return pd.concat({"target": output.target_weights, "raw": output.book.raw_weights,
                      **{f"sleeve_{k}": v for k, v in output.book.sleeve_weights.items()}}, axis=1)


BOOK_CUT_BARS = (90, 259, 336, 480, 483, 599)  # 259, 336, 483: first bars of a 7-bar risk-refresh period


@pytest.mark.parametrize("name", ["trend_core", "xsection_momentum", "combined", "combined_all"])
def test_sleeve_book_is_causal(name, universe):
    full = _book_run(universe, name)
    assert (full["target"].to_numpy() > 0).sum() > 200, "the book never held anything: the test would be empty"
    assert full["target"].diff().abs().to_numpy()[1:].sum() > 0.5, "the turnover path never moved"
    union = _union_index(universe)
    for cut_ms in (int(union[position]) for position in BOOK_CUT_BARS):
        _assert_prefix_equal(full, _book_run(_truncate(universe, cut_ms), name))


def test_trend_sleeve_is_causal(universe, cut_times):
    like = _wide(universe, "close")
    full = compute_trend_sleeve(universe, like, BOOK.trend).conviction
    assert full.notna().to_numpy().sum() > 1000
    for cut_ms in cut_times:
        truncated = _truncate(universe, cut_ms)
        _assert_prefix_equal(full, compute_trend_sleeve(truncated, _wide(truncated, "close"), BOOK.trend).conviction)
