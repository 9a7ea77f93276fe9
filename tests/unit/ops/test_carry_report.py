"""The report's carry-sleeve block (lib.ops.carry_report): basis P&L and funding earned, hand-computed."""

from __future__ import annotations

from decimal import Decimal

import pytest

from lib.core.state import Positions
from lib.execution.journal import JournalEvent
from lib.ops.carry_report import funding_earned, leg_pnl, net_transfers_to_futures, sleeve_lines

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
# futures wallet = 200 transferred - 10.2 perp P&L - 0.25 fee + 3 funding = 192.55 -> funding = 3.00


def test_leg_pnl_and_the_basis() -> None:
    pnl = leg_pnl([e for e in EVENTS if e.event == "filled"], HELD, MARKS)
    assert pnl[SPOT] == pytest.approx(11.0) and pnl[PERP] == pytest.approx(-10.2)
    assert pnl[SPOT] + pnl[PERP] == pytest.approx(0.8)


def test_funding_earned_is_what_the_futures_wallet_holds_beyond_transfers_pnl_and_fees() -> None:
    pnl = leg_pnl(EVENTS, HELD, MARKS)
    assert net_transfers_to_futures(EVENTS) == 200.0
    assert funding_earned(EVENTS, pnl, 192.55) == pytest.approx(3.0)


def test_sleeve_lines() -> None:
    positions = Positions(mode="testnet", venue="binance", updated_ms=0, cash_quote=500.0, amounts_base=HELD,
                          marks=MARKS, equity_quote=1000.0, high_water_mark_quote=1000.0, day_start_ms=0,
                          day_start_equity_quote=1000.0, inception_ms=0, inception_equity_quote=1000.0,
                          wallets={"spot": 307.45, "futures": 192.55})
    lines = sleeve_lines(positions, EVENTS, {}, quote="USDT", max_probability=0.005, fallback_rate=0.05,
                         lookback_days=365)
    assert "funding earned +3.00 USDT" in lines[0] and "futures wallet 192.55" in lines[0]
    assert "BTC/USDT: basis P&L +0.80 USDT (spot leg +11.00, perp leg -10.20)" in lines[1]
    assert any("n/a" in line for line in lines[2:])  # no candles: the VaR/margin cannot be estimated, said so
