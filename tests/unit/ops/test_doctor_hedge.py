"""doctor's hedge rows of the carry books (lib.ops.doctor_hedge.check_hedges) on hand-computed holdings."""

from __future__ import annotations

from lib.core.state import Positions
from lib.ops.doctor_hedge import check_hedges

SPOT, PERP = "BTC/USDT", "BTC/USDT:USDT"


def book(spot: float, short: float) -> Positions:
    return Positions(mode="testnet", venue="binance", updated_ms=0, cash_quote=500.0,
                     amounts_base={SPOT: spot, PERP: -short, "ETH/USDT": 1.0}, marks={SPOT: 25_000.0, PERP: 25_000.0},
                     equity_quote=1000.0, high_water_mark_quote=1000.0, day_start_ms=0, day_start_equity_quote=1000.0,
                     inception_ms=0, inception_equity_quote=1000.0, wallets={"spot": 300.0, "futures": 200.0})


def statuses(spot: float, short: float, weights: dict[str, float] | None, risk_changed: bool = False) -> list[str]:
    return [f.status for f in check_hedges(book(spot, short), weights, max_unhedged_quote=25.0, quote="USDT",
                                           risk_changed=risk_changed)]


def test_the_spot_above_the_directional_target_covers_the_short() -> None:
    # directional 0.15 of 1 000 at 25 000 = 0.006 BTC; spot 0.016 = 0.006 + 0.010 hedge: the 0.010 short is covered
    rows = check_hedges(book(0.016, 0.01), {SPOT: 0.15}, max_unhedged_quote=25.0, quote="USDT")
    assert [(r.check, r.status) for r in rows] == [("carry hedge", "ok")]  # one row per short (ETH has none)
    assert "short 0.01, spot 0.016 = directional target 0.006 + hedge 0.01" in rows[0].detail
    assert "0.00 USDT of the short uncovered" in rows[0].detail


def test_a_broken_hedge_fails() -> None:
    # spot 0.012: 0.006 above the directional 0.006 -> 0.004 x 25 000 = 100 USDT uncovered > 25
    rows = check_hedges(book(0.012, 0.01), {SPOT: 0.15}, max_unhedged_quote=25.0, quote="USDT")
    assert rows[0].status == "fail" and "100.00 USDT of the short uncovered" in rows[0].detail
    assert "rebalance" in rows[0].what_to_do
    assert statuses(0.012, 0.01, {SPOT: 0.15}, risk_changed=True) == ["warn"]  # the risk pass made it smaller
    assert statuses(0.012, 0.01, None) == ["ok"]  # target unknown: only the whole spot counts, and it covers
    # spot 0.005 < the 0.010 short: 125 USDT not covered by any spot: fails whatever is known of the targets
    assert statuses(0.005, 0.01, None) == ["fail"] and statuses(0.005, 0.01, {SPOT: 0.15}, True) == ["fail"]


def test_funding_carry_within_the_limit() -> None:
    # the carry book alone: 0.0095 spot for a 0.010 short leaves 0.0005 x 25 000 = 12.50 <= 25: ok; 0.008: 50 fails
    assert statuses(0.0095, 0.01, {}) == ["ok"] and statuses(0.008, 0.01, {}) == ["fail"]
