"""The carry sleeve's live targets: both legs per coin at the decision bar, no look-ahead (a history cut at the
decision bar gives the same targets as any longer one), and the staleness gate."""

from __future__ import annotations

import pytest

from lib.core.errors import DataError
from lib.research.carry.live import check_fresh, late_legs, live_targets
from lib.research.carry.market import build_market, slice_market
from lib.research.carry.sleeve import CarryParams, carry_weights
from tests.unit.research.carry.synthetic import START_MS, H, synthetic_frames

PARAMS = CarryParams()


def market(days: int = 90):  # type: ignore[no-untyped-def]
    return build_market(*synthetic_frames(days=days))


def test_targets_hold_both_legs_of_equal_weight_from_the_sleeve() -> None:
    full = market()
    held_bars = carry_weights(full, PARAMS)[0]
    as_of = int(held_bars.index[(held_bars.sum(axis=1) > 0).to_numpy()][-1])  # a bar where the sleeve holds
    found = live_targets(full, PARAMS, as_of_ms=as_of)
    for coin in ("BTC", "ETH"):
        assert found.weights[f"{coin}/USDT"] == pytest.approx(float(held_bars.at[as_of, coin]))
        assert found.weights[f"{coin}/USDT:USDT"] == -found.weights[f"{coin}/USDT"]
        assert found.breakdown[f"{coin}/USDT:USDT"]["leg"] == "perp"
        assert found.breakdown[f"{coin}/USDT"]["close"] == pytest.approx(float(full.spot_close.at[as_of, coin]))
    assert found.book["carry"]["gross_spot_weight"] > 0


def test_no_look_ahead_a_history_cut_at_the_decision_bar_gives_the_same_targets() -> None:
    full = market()
    params = CarryParams(risk_budget_daily=0.0005)  # sized by the rolling volatility, under the per-coin cap
    for hours in (700, 1205, 1500, 2100):  # flat; then held at volatility-dependent sizes (0.079 .. 0.096)
        as_of = START_MS + hours * H
        later = live_targets(full, params, as_of_ms=as_of)
        cut = live_targets(slice_market(full, end_ms=as_of), params, as_of_ms=as_of)
        assert cut.weights == pytest.approx(later.weights, rel=1e-12)
        assert cut.book == later.book
        assert (hours == 700) == (later.weights["BTC/USDT"] == 0.0) and later.weights["ETH/USDT"] < 0.13


def test_stale_candles_or_funding_fail_closed() -> None:
    full = market(days=60)
    last = int(full.index[-1])
    check_fresh(full, as_of_ms=last, now_ms=last + H, max_staleness_bars=2, max_funding_age_ms=9 * H)
    with pytest.raises(DataError, match="BTC perp candles"):
        check_fresh(full, as_of_ms=last + 3 * H, now_ms=last + 4 * H, max_staleness_bars=2,
                    max_funding_age_ms=9 * H)
    with pytest.raises(DataError, match="ETH funding"):  # the last print is at most 8 h old at `last`
        check_fresh(full, as_of_ms=last, now_ms=last + 10 * H, max_staleness_bars=12, max_funding_age_ms=9 * H)


def test_a_pair_missing_a_leg_at_the_decision_bar_is_listed_late() -> None:
    spot, perp, funding = synthetic_frames(days=30)  # BTC spot has no candles at hours 500..502 (an outage)
    perp["ETH"] = perp["ETH"][perp["ETH"]["timestamp"] != START_MS + 501 * H].reset_index(drop=True)
    full = build_market(spot, perp, funding)
    assert late_legs(full, as_of_ms=START_MS + 501 * H) == {"BTC": "spot", "ETH": "perp"}
    assert late_legs(full, as_of_ms=START_MS + 503 * H) == {}
    assert late_legs(full, as_of_ms=START_MS + 30 * 24 * H) == {"BTC": "spot and perp", "ETH": "spot and perp"}
