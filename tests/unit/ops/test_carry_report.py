"""The report's carry-sleeve block (lib.ops.carry_report): funding earned from the ledger, basis P&L gross and net of
both legs' fees, per coin and for the sleeve, hand-computed."""

from __future__ import annotations

from decimal import Decimal

import pytest

from lib.core.state import Positions
from lib.execution.journal import JournalEvent
from lib.ops.carry_report import coin_carry, leg_fees, leg_pnl, sleeve_lines

RUN = {"time_ms": 0, "run_id": "r", "rebalance_id": "b", "mode": "testnet", "venue": "binance"}
SPOT, PERP = "BTC/USDT", "BTC/USDT:USDT"
EVENTS = [
    JournalEvent(event="transferred", **RUN, transfer_id="tr-1", requested_notional_quote=Decimal(200),
                 reason="spot->futures"),
    JournalEvent(event="filled", **RUN, symbol=PERP, client_order_id="a", requested_side="sell",
                 filled_amount_base=Decimal("0.01"), average_price=50_000.0, fee_quote=0.25),
    JournalEvent(event="filled", **RUN, symbol=SPOT, client_order_id="b", requested_side="buy",
                 filled_amount_base=Decimal("0.01"), average_price=49_900.0, fee_quote=0.499),
]
MARKS = {SPOT: 51_000.0, PERP: 51_020.0}
HELD = {SPOT: 0.01, PERP: -0.01}
# spot leg: -499 + 510 = +11; perp leg: +500 - 510.2 = -10.2; basis P&L +0.8 (the coin's +1 100 cancels)
# fees: spot 0.499 + perp 0.25 = 0.749 -> basis net 0.8 - 0.749 = +0.051; funding (the ledger) 1.75 + 1.25 = 3.00
# -> carry net 3.051. ETH paid funding (-0.40) on a leg since closed, with no fill kept: it still shows
FUNDING = {"BTC/USDT": Decimal("1.75") + Decimal("1.25"), "ETH/USDT": Decimal("-0.40")}


def test_leg_pnl_and_the_basis() -> None:
    pnl = leg_pnl([e for e in EVENTS if e.event == "filled"], HELD, MARKS)
    assert pnl[SPOT] == pytest.approx(11.0) and pnl[PERP] == pytest.approx(-10.2)
    assert pnl[SPOT] + pnl[PERP] == pytest.approx(0.8)


def test_each_coin_nets_both_legs_fees_and_adds_its_funding() -> None:
    fills = [e for e in EVENTS if e.event == "filled"]
    assert leg_fees(fills) == {PERP: 0.25, SPOT: 0.499}
    positions = Positions(mode="testnet", venue="binance", updated_ms=0, cash_quote=500.0, amounts_base=HELD,
                          marks=MARKS, equity_quote=1000.0, high_water_mark_quote=1000.0, day_start_ms=0,
                          day_start_equity_quote=1000.0, inception_ms=0, inception_equity_quote=1000.0)
    btc, eth = coin_carry(fills, positions, FUNDING)
    assert (btc.spot, btc.gross, btc.fees, btc.net, btc.funding, btc.carry_net) == pytest.approx(
        ("BTC/USDT", 0.8, 0.749, 0.051, 3.0, 3.051))
    assert (eth.spot, eth.gross, eth.fees, eth.funding, eth.carry_net) == ("ETH/USDT", 0.0, 0.0, -0.4, -0.4)


def test_sleeve_lines() -> None:
    positions = Positions(mode="testnet", venue="binance", updated_ms=0, cash_quote=500.0, amounts_base=HELD,
                          marks=MARKS, equity_quote=1000.0, high_water_mark_quote=1000.0, day_start_ms=0,
                          day_start_equity_quote=1000.0, inception_ms=0, inception_equity_quote=1000.0,
                          wallets={"spot": 307.45, "futures": 192.55})
    lines = sleeve_lines(positions, EVENTS, {}, quote="USDT", funding=FUNDING, max_probability=0.005,
                         fallback_rate=0.05, lookback_days=365)
    assert "futures wallet 192.55" in lines[0] and "funding earned +2.6000 USDT" in lines[0]  # 3.00 - 0.40
    assert "basis P&L +0.80 gross / +0.05 net of fees 0.75; carry net +2.65 USDT" in lines[0]  # 0.051 + 2.6
    assert lines[1] == ("  BTC/USDT: basis P&L +0.80 gross / +0.05 net of fees 0.75 (spot leg +11.00 fee 0.50, perp "
                        "leg -10.20 fee 0.25); funding earned +3.0000; carry net +3.05 USDT; holds 0.01 / -0.01")
    assert lines[2].startswith("  ETH/USDT: basis P&L +0.00 gross / +0.00 net of fees 0.00") and "-0.4000" in lines[2]
    assert any("n/a" in line for line in lines[3:])  # no candles: the VaR/margin cannot be estimated, said so
