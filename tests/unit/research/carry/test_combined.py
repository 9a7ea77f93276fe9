"""The combined book with the funding-carry sleeve (pure parts), hand-computed: the capital split, one set of
weights with the per-part breakdown, the decision alignment, the re-split backtest formula, and no look-ahead
(the combined weights of past bars do not change when the future is cut off, sleeves and carry refits included)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lib.core.errors import ConfigError, DataError
from lib.ops.config import StrategySection
from lib.research.carry.combined import (
    carry_decision_ms,
    carry_split,
    combine_breakdown,
    combine_frames,
    combine_weights,
)
from lib.research.carry.combined_book import combine_books, decision_weights
from lib.research.carry.market import build_market, slice_market
from lib.research.carry.sleeve import CarryParams, carry_weights
from lib.research.ensemble import EnsembleParams
from lib.research.portfolio import PerpParams, SpotParams
from lib.research.sleeves.book import BookSettings, book_sleeves
from lib.research.sleeves.combiner import CombinerParams
from lib.research.sleeves.sizing import SizingParams
from lib.research.sleeves.trend import TrendParams
from lib.research.strategy import compute_strategy
from lib.research.universe import UniverseParams
from tests.helpers import SMALL
from tests.unit.research.carry.synthetic import START_MS, H, synthetic_frames

DAY = 24 * H
COMBINER = CombinerParams(sleeves=("trend_core", "funding_carry", "xsection_momentum"), budgets=(0.45, 0.3, 0.15))


def test_the_carry_budget_is_a_capital_share_and_the_spot_sleeves_share_the_rest() -> None:
    split = carry_split("combined", COMBINER)
    assert split is not None and split.carry_frac == pytest.approx(0.3 / 0.9)
    assert split.directional_name == "combined"
    assert split.directional.sleeves == ("trend_core", "xsection_momentum")
    assert split.directional.budgets == pytest.approx((0.5, 1 / 6))  # 0.45 / 0.9, 0.15 / 0.9: renormalized later
    one = carry_split("combined", CombinerParams(sleeves=("trend_core", "funding_carry"), budgets=(3, 1)))
    assert one is not None and one.directional_name == "trend_core" and one.carry_frac == 0.25
    assert carry_split("trend_core", COMBINER) is None and carry_split("combined", CombinerParams()) is None


def test_the_config_refuses_a_carry_only_combiner_and_the_spot_book_refuses_the_carry_sleeve() -> None:
    with pytest.raises(ConfigError, match="at least one spot sleeve"):
        CombinerParams(sleeves=("funding_carry",), budgets=(1.0,))
    with pytest.raises(ConfigError, match="lib.research.carry.combined"):
        book_sleeves("combined", COMBINER)


def test_one_weight_per_symbol_with_both_parts() -> None:
    split = carry_split("combined", CombinerParams(sleeves=("trend_core", "funding_carry"), budgets=(0.6, 0.4)))
    assert split is not None
    directional = {"BTC/USDT": 0.5, "SOL/USDT": 0.25}
    carry = {"BTC/USDT": 0.3, "BTC/USDT:USDT": -0.3, "ETH/USDT": 0.2, "ETH/USDT:USDT": -0.2}
    weights = combine_weights(directional, carry, split)
    # BTC: 0.6 x 0.5 + 0.4 x 0.3 = 0.42; perp -0.4 x 0.3 = -0.12; ETH 0.08 / -0.08; SOL 0.6 x 0.25 = 0.15
    assert weights == pytest.approx({"BTC/USDT": 0.42, "BTC/USDT:USDT": -0.12, "ETH/USDT": 0.08,
                                     "ETH/USDT:USDT": -0.08, "SOL/USDT": 0.15})
    why = combine_breakdown(directional, carry, split, directional_breakdown={"BTC/USDT": {"score": 1.0, "close": 9.0}},
                            carry_breakdown={"BTC/USDT": {"pair_weight": 0.3, "close": 10.0, "eligible": True}})
    assert why["BTC/USDT"]["parts"] == pytest.approx({"directional": 0.3, "funding_carry": 0.12})
    assert why["BTC/USDT"]["score"] == 1.0 and why["BTC/USDT"]["close"] == 9.0
    assert why["BTC/USDT"]["carry"] == {"pair_weight": 0.3, "close": 10.0, "eligible": True,
                                        "book_weight": pytest.approx(0.12)}
    assert why["SOL/USDT"]["carry"] is None and why["BTC/USDT:USDT"]["weight"] == pytest.approx(-0.12)
    with pytest.raises(DataError):
        combine_weights({"BTC/USDT:USDT": 0.1}, {}, split)


def test_the_carry_part_is_decided_at_the_same_close() -> None:
    assert carry_decision_ms(START_MS, "1d") == START_MS + 23 * H  # the 23:00 hourly bar closes at midnight too
    assert carry_decision_ms(START_MS, "1h") == START_MS
    hourly = pd.DataFrame({"BTC": np.arange(48, dtype=float)}, index=START_MS + H * np.arange(48))
    held = decision_weights(hourly, "1d")
    assert (held["BTC"].iloc[:23] == 0).all() and (held["BTC"].iloc[23:47] == 23).all() and held["BTC"].iloc[47] == 47


def test_the_book_is_its_two_parts_resplit_with_the_resplit_costed() -> None:
    """b = 0.25, cost 0.2 %. Bar 1: r_d = +10 %, r_c = +2 %, gross held over it g_d = 0.8, g_c = 0.5:
    drift 0.25 x 0.75 x 0.08 = 0.015 of the book moved, at 0.002 x (0.8 + 2 x 0.5) = 0.0036 -> 5.4e-5;
    r = 0.75 x 0.10 + 0.25 x 0.02 - 5.4e-5 = 0.079946. Bar 2: r_d = -10/110, r_c = 0: drift 0.1875 x 10/110."""
    split = carry_split("combined", CombinerParams(sleeves=("trend_core", "funding_carry"), budgets=(3, 1)))
    assert split is not None
    days = START_MS + DAY * np.arange(3)
    directional = pd.Series([100.0, 110.0, 100.0], index=days)
    gross = pd.Series([0.8, 0.6, 0.0], index=days)
    hours = START_MS + H * np.arange(3 * 24)
    equity = np.full(len(hours), 50.0)
    equity[23:47], equity[47:] = 50.0, 51.0  # the carry part's equity at the 1st close 50, at the 2nd and 3rd 51
    equity[:23] = 49.0
    ledger = pd.DataFrame({"equity": equity, "funding": np.where(np.arange(len(hours)) >= 47, 1.5, 0.0),
                           "price_pnl": 0.0, "fees": 0.0, "slippage": 0.0, "liquidation_loss": 0.0}, index=hours)
    book = combine_books(directional, gross, ledger, pd.Series(0.5, index=hours), split, timeframe="1d",
                         cost=0.002, capital_quote=1000.0)
    first = 0.75 * 0.10 + 0.25 * 0.02 - 0.25 * 0.75 * 0.08 * 0.002 * (0.8 + 2 * 0.5)
    second = 0.75 * (-10 / 110) - 0.25 * 0.75 * (10 / 110) * 0.002 * (0.6 + 2 * 0.5)
    assert book.returns.tolist() == pytest.approx([0.0, first, second])
    assert book.equity.tolist() == pytest.approx([1000.0, 1000 * (1 + first), 1000 * (1 + first) * (1 + second)])
    # funding 1.5 on the carry part's 50 = 3 % of it, on a quarter of the 1,000 book = 7.5 quote
    assert book.carry_flows["funding"].tolist() == pytest.approx([0.0, 7.5, 0.0])


def _directional(spot: dict[str, pd.DataFrame]) -> pd.DataFrame:
    candles = {f"{coin}/USDT": frame for coin, frame in spot.items()}
    output = compute_strategy(
        candles, strategy=StrategySection(name="trend_core", timeframe="1h", volatility_window_bars=20), signals=SMALL,
        ensemble=EnsembleParams(), universe=UniverseParams(min_history_bars=60, min_dollar_volume_quote=0.0),
        spot=SpotParams(), perp=PerpParams(),
        book=BookSettings(trend=TrendParams(horizons_bars=(10, 30, 60)), sizing=SizingParams(window_bars=30)),
    )  # fmt: skip
    return output.target_weights


def test_no_look_ahead_cutting_the_future_leaves_past_combined_weights_unchanged() -> None:
    split = carry_split("combined", CombinerParams(sleeves=("trend_core", "funding_carry"), budgets=(0.5, 0.5)))
    assert split is not None
    params = CarryParams(risk_budget_daily=0.0005)
    spot, perp, funding = synthetic_frames(days=90)
    full = combine_frames(_directional(spot), carry_weights(build_market(spot, perp, funding), params)[0], split,
                          "1h")
    assert (full.filter(like=":USDT") < 0).any().any() and (full[["BTC/USDT", "ETH/USDT"]] > 0).any().all()
    for hours in (900, 1500):
        cut_ms = START_MS + hours * H
        spot_cut = {c: f[f["timestamp"] <= cut_ms] for c, f in spot.items()}
        market = slice_market(build_market(spot, perp, funding), end_ms=cut_ms)
        past = combine_frames(_directional(spot_cut), carry_weights(market, params)[0], split, "1h")
        pd.testing.assert_frame_equal(past, full.loc[:cut_ms, past.columns])
