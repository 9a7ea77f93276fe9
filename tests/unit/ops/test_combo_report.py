"""The combined carry book's report (lib.ops.combo_report and lib.ops.carry_report's combined block): a coin's one
spot holding split into the carry spot leg and the directional part, hand-computed."""

from __future__ import annotations

from decimal import Decimal

import pytest

from lib.core.state import Positions
from lib.execution.journal import JournalEvent
from lib.ops.carry_report import coin_carry, leg_fees, leg_pnl, sleeve_lines
from lib.ops.combo_report import carry_weights, split_spot

SPOT, PERP, BNB = "BTC/USDT", "BTC/USDT:USDT", "BNB/USDT"


def fill(run_id: str, symbol: str, side: str, amount: str, price: float, fee: float) -> JournalEvent:
    """A fill of rebalance run ``run_id`` (both runs trade the same targets: one rebalance id)."""
    return JournalEvent(event="filled", time_ms=0, run_id=run_id, rebalance_id="combined-1", mode="testnet",
                        venue="binance", symbol=symbol, client_order_id=f"{run_id}-{symbol}-{side}",
                        requested_side=side, filled_amount_base=Decimal(amount), average_price=price, fee_quote=fee)


# r1: one BTC spot order for both parts (directional 0.006 + carry leg 0.010) and the 0.010 short; BNB directional only
R1 = [fill("r1", PERP, "sell", "0.01", 50_000.0, 0.25), fill("r1", SPOT, "buy", "0.016", 49_900.0, 0.7984),
      fill("r1", BNB, "buy", "0.5", 600.0, 0.3)]
# r2: the short cut to 0.006 (perp buy 0.004), no spot order: the carry leg's 0.004 passes to the directional part
R2 = [fill("r2", PERP, "buy", "0.004", 52_000.0, 0.104)]


def positions(held: dict[str, float], marks: dict[str, float]) -> Positions:
    return Positions(mode="testnet", venue="binance", updated_ms=0, cash_quote=200.0, amounts_base=held, marks=marks,
                     equity_quote=1000.0, high_water_mark_quote=1000.0, day_start_ms=0, day_start_equity_quote=1000.0,
                     inception_ms=0, inception_equity_quote=1000.0, wallets={"spot": 120.0, "futures": 80.0})


def test_one_spot_order_split_between_the_carry_leg_and_the_directional_part() -> None:
    held, marks = {SPOT: 0.016, PERP: -0.01, BNB: 0.5}, {SPOT: 51_000.0, PERP: 51_020.0, BNB: 610.0}
    pnl, fees = leg_pnl(R1, held, marks), leg_fees(R1)
    split = split_spot(R1, pnl, fees, held, marks)
    btc, bnb = split[SPOT], split[BNB]
    # spot: -0.016 x 49 900 + 0.016 x 51 000 = +17.6; carry leg: -0.010 x 49 900 + 0.010 x 51 000 = +11.0
    # directional: 17.6 - 11.0 = +6.6 (= 0.006 x 1 100); fee 0.7984 shared 10:6 -> carry 0.499, directional 0.2994
    assert (btc.carry_pnl, btc.carry_fee, btc.directional_pnl, btc.directional_fee) == pytest.approx(
        (11.0, 0.499, 6.6, 0.2994))
    assert (btc.carry_base, btc.directional_base) == pytest.approx((0.01, 0.006))
    # BNB: no perp: all directional, 0.5 x (610 - 600) = +5
    assert (bnb.carry_pnl, bnb.carry_fee, bnb.directional_pnl, bnb.directional_fee, bnb.directional_base) == \
        pytest.approx((0.0, 0.0, 5.0, 0.3, 0.5))


def test_a_perp_change_without_a_spot_order_moves_spot_between_the_parts_at_the_perp_price() -> None:
    held, marks = {SPOT: 0.016, PERP: -0.006}, {SPOT: 52_000.0, PERP: 52_000.0}
    fills = R1[:2] + R2
    pnl, fees = leg_pnl(fills, held, marks), leg_fees(fills)
    btc = split_spot(fills, pnl, fees, held, marks)[SPOT]
    # carry leg: bought 0.010 @ 49 900, passed 0.004 on @ 52 000, holds 0.006 @ 52 000: -499 + 208 + 312 = +21
    # directional: 0.006 bought @ 49 900 + 0.004 taken @ 52 000, all @ 52 000 now: +12.6 (spot P&L 33.6 - 21)
    assert (btc.carry_pnl, btc.directional_pnl, btc.carry_base, btc.directional_base) == pytest.approx(
        (21.0, 12.6, 0.006, 0.010))
    # perp: +500 - 208 - 312 = -20 -> basis +1.0 = the entry spread (50 000 - 49 900) x 0.010
    coin = coin_carry(fills, positions(held, marks), {SPOT: Decimal("0.75")},
                      split_spot(fills, pnl, fees, held, marks))
    assert [(c.spot, c.spot_pnl, c.perp_pnl, c.gross, c.fees, c.funding) for c in coin] == [
        (SPOT, pytest.approx(21.0), pytest.approx(-20.0), pytest.approx(1.0), pytest.approx(0.354 + 0.499), 0.75)]
    assert carry_weights(split_spot(fills, pnl, fees, held, marks), marks, 1000.0) == pytest.approx(
        {SPOT: 0.312, PERP: -0.312})


def test_combined_block_lines() -> None:
    held, marks = {SPOT: 0.016, PERP: -0.01, BNB: 0.5}, {SPOT: 51_000.0, PERP: 51_020.0, BNB: 610.0}
    lines = sleeve_lines(positions(held, marks), R1, {}, quote="USDT", funding={SPOT: Decimal("1.5")},
                         max_probability=0.005, fallback_rate=0.05, lookback_days=365, combined=True)
    assert lines[0].startswith("1-day VaR/CVaR") and "book (both parts, both venues, held): n/a" in lines[1]
    # directional: BTC 0.006 x 51 000 = 306 + BNB 0.5 x 610 = 305 -> 611 (61.1 %); P&L 6.6 + 5 = 11.6, fees 0.5994
    assert lines[2] == ("directional part (at the marks of the last rebalance): holds 611.00 USDT (61.1% of equity); "
                        "P&L +11.60 gross / +11.00 net of fees 0.60 USDT")
    assert lines[3] == "  BNB/USDT: holds 0.5 = 305.00 USDT; P&L +5.00 gross / +4.70 net of fees 0.30 USDT"
    assert lines[4] == "  BTC/USDT: holds 0.006 = 306.00 USDT; P&L +6.60 gross / +6.30 net of fees 0.30 USDT"
    assert "directional part (held): n/a" in lines[5]
    # carry: spot leg +11.0 fee 0.499, perp -10.2 fee 0.25 -> basis +0.80 / +0.05 net; funding 1.5 -> carry net 1.55
    carry = next(i for i, line in enumerate(lines) if line.startswith("carry part"))
    assert "funding earned +1.5000 USDT" in lines[carry] and "futures wallet 80.00" in lines[carry]
    assert "basis P&L +0.80 gross / +0.05 net of fees 0.75; carry net +1.55 USDT" in lines[carry]
    assert lines[carry + 1] == ("  BTC/USDT: basis P&L +0.80 gross / +0.05 net of fees 0.75 (spot leg +11.00 fee 0.50, "
                                "perp leg -10.20 fee 0.25); funding earned +1.5000; carry net +1.55 USDT; holds "
                                "0.01 / -0.01")
    assert not any(line.startswith("  BNB/USDT: basis") for line in lines)  # no perp: not a carry coin
    assert "carry part (held, both legs: the basis): n/a" in lines[carry + 2]
