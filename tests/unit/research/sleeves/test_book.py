"""The sleeve book through compute_strategy: long-only invariants, contributions that explain every
weight, the targets.json breakdown and summary, and the trend-only book ignoring the ensemble."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from lib.ops.config import StrategySection
from lib.research.ensemble import EnsembleParams
from lib.research.portfolio import PerpParams, SpotParams
from lib.research.sleeves.book import BookSettings, book_summary
from lib.research.sleeves.combiner import CombinerParams
from lib.research.sleeves.sizing import SizingParams
from lib.research.sleeves.trend import TrendParams
from lib.research.strategy import StrategyOutput, compute_strategy, latest_targets
from lib.research.universe import UniverseParams
from tests.helpers import SMALL, synthetic_candles

BOOK = BookSettings(trend=TrendParams(horizons_bars=(10, 30, 60)), sizing=SizingParams(window_bars=30),
                    combiner=CombinerParams(budgets=(0.6, 0.4)))


def _universe() -> dict:
    return {
        "BTC/USDT": synthetic_candles(500, seed=1, drift=0.002),
        "ETH/USDT": synthetic_candles(500, seed=2, drift=0.001),
        "SOL/USDT": synthetic_candles(400, seed=3, start_bar=100, drift=-0.001, vol=0.02),
        "XRP/USDT": synthetic_candles(500, seed=6, drift=0.0015, vol=0.012),
    }


def _run(name: str, book: BookSettings = BOOK) -> StrategyOutput:
    return compute_strategy(
        _universe(), strategy=StrategySection(name=name, timeframe="1h", volatility_window_bars=20), signals=SMALL,
        ensemble=EnsembleParams(), universe=UniverseParams(min_history_bars=60, min_dollar_volume_quote=0.0),
        spot=SpotParams(top_n=2, regime_sma_bars=50), perp=PerpParams(), book=book,
    )  # fmt: skip


@pytest.fixture(scope="module", params=["trend_core", "combined"])
def output(request) -> StrategyOutput:
    return _run(request.param)


def test_book_weights_are_long_only_without_leverage(output):
    weights = output.target_weights.to_numpy()
    assert np.isfinite(weights).all() and (weights >= 0).all()
    assert (weights.sum(axis=1) <= 1 + 1e-12).all()
    assert (weights > 0).any(axis=1).sum() > 100
    raw = output.book.raw_weights.to_numpy()
    assert (raw <= BOOK.combiner.max_asset_weight_frac + 1e-12).all()


def test_contributions_add_up_to_the_raw_book(output):
    total = sum(frame.to_numpy() for frame in output.book.contributions.values())
    np.testing.assert_allclose(total, output.book.raw_weights.to_numpy(), atol=1e-12)
    expected = {"trend_core": 1.0} if output.strategy == "trend_core" else {"trend_core": 0.6, "xsection_momentum": 0.4}
    assert output.book.sleeves == pytest.approx(expected)


def test_breakdown_explains_each_weight_and_is_json_safe(output):
    as_of_ms = int(output.target_weights.index[-1])
    weights, breakdown = latest_targets(output, as_of_ms=as_of_ms)
    summary = book_summary(output.book, as_of_ms)
    json.dumps({"breakdown": breakdown, "book": summary}, allow_nan=False)
    assert summary["sleeve_budgets"] == output.book.sleeves
    for symbol, entry in breakdown.items():
        book = entry["book"]
        assert entry["weight"] == weights[symbol]
        assert set(book["sleeves"]) == set(output.book.sleeves)
        if book["raw_weight"] is not None:
            assert sum(value or 0.0 for value in book["sleeves"].values()) == pytest.approx(book["raw_weight"])
        if book["trend_conviction"] is not None:
            states = [value for value in book["trend_states"].values()]
            assert book["trend_conviction"] == pytest.approx(np.mean(states))


def test_the_ensemble_signals_run_only_for_the_ensemble_sleeve():
    assert _run("trend_core").signals == {} and _run("combined").regime_is_bullish is None
    with_ensemble = replace(BOOK, combiner=CombinerParams(sleeves=("trend_core", "ensemble"), budgets=(0.7, 0.3)))
    combined = _run("combined", with_ensemble)
    assert combined.signals and combined.regime_is_bullish is not None
    assert combined.book.sleeves == pytest.approx({"trend_core": 0.7, "ensemble": 0.3})


def test_momentum_sleeve_is_volatility_capped_and_alone_in_its_book():
    momentum = _run("xsection_momentum")
    assert momentum.book.sleeves == {"xsection_momentum": 1.0}
    held = momentum.book.sleeve_weights["xsection_momentum"].to_numpy()
    assert (held > 0).any() and (held <= 1 / 5 + 1e-12).all()  # 1/n of top 5, scaled down only
    stats = momentum.book.row_stats["predicted_vol_annual_frac"].dropna().astype(float)
    assert (stats <= BOOK.sizing.target_vol_annual_frac + 1e-9).all()


def test_each_coin_follows_its_own_trend_not_btc():
    """BTC falls while ETH rises: the trend core holds ETH and not BTC (no BTC gate on alts)."""
    falling = synthetic_candles(300, seed=11, drift=-0.004, vol=0.002)
    rising = synthetic_candles(300, seed=12, drift=0.004, vol=0.002)
    output = compute_strategy(
        {"BTC/USDT": falling, "ETH/USDT": rising},
        strategy=StrategySection(name="trend_core", timeframe="1h", volatility_window_bars=20), signals=SMALL,
        ensemble=EnsembleParams(), universe=UniverseParams(min_history_bars=60, min_dollar_volume_quote=0.0),
        spot=SpotParams(), perp=PerpParams(), book=BOOK,
    )  # fmt: skip
    late = output.target_weights.iloc[-100:]
    assert (late["ETH/USDT"] > 0).all() and (late["BTC/USDT"] == 0).all()
