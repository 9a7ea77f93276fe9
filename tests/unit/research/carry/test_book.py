"""The two-wallet carry book against a hand-computed 3-bar, 1-coin case, and a liquidation."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from lib.research.carry.book import simulate_book
from lib.research.carry.market import build_market
from lib.research.carry.sleeve import CarryParams

H = 3_600_000
STAMPS = [6 * H, 7 * H, 8 * H]  # 06:00, 07:00, 08:00 UTC; funding settles at 08:00 (bar 2's open)
PARAMS = CarryParams(fee_rate=0.001, slippage_rate=0.0005, leverage=2.0)


def candles(rows: list[tuple[float, float, float, float]]) -> pd.DataFrame:
    return pd.DataFrame({"timestamp": STAMPS, "open": [r[0] for r in rows], "high": [r[1] for r in rows],
                         "low": [r[2] for r in rows], "close": [r[3] for r in rows], "volume": 1.0})


def market(perp_high_bar_1: float = 102.6):
    spot = candles([(100.0, 100.0, 100.0, 100.0), (100.0, 102.0, 100.0, 102.0), (102.0, 102.0, 101.0, 101.0)])
    perp = candles([(100.2, 100.5, 100.0, 100.1), (100.1, perp_high_bar_1, 100.0, 102.3),
                    (102.2, 103.0, 101.0, 101.4)])
    funding = pd.DataFrame({"timestamp": [0, 8 * H], "rate": [0.0005, 0.001]})  # only the 08:00 print is held
    return build_market({"BTC": spot}, {"BTC": perp}, {"BTC": funding})


def test_three_bars_by_hand() -> None:
    book = market()
    weights = pd.DataFrame({"BTC": [0.5, 0.5, 0.5]}, index=book.index)
    result = simulate_book(book, weights, PARAMS, capital_quote=1000.0)
    ledger = result.ledger
    # bar 0 close: flat, equity 1000, target 0.5 x 1000 = 500 of each leg, filled at bar 1's opens
    assert ledger["equity"].iloc[0] == 1000.0
    # bar 1 open: buy 5 BTC spot at 100 x 1.0005 (fee 0.1 %), sell 500 / 100.1 perp at 100.1 x 0.9995
    units, short = 500 / 100, 500 / 100.1
    spot_fee, perp_fee = units * 100.05 * 0.001, short * 100.1 * 0.9995 * 0.001
    assert (spot_fee, perp_fee) == pytest.approx((0.50025, 0.49975))
    slippage = units * 100 * 0.0005 + short * 100.1 * 0.0005  # 0.25 + 0.25
    # collateral = 500 / 2 = 250 moved to the futures wallet, covering the perp fee and slippage too
    transfer = 250 + perp_fee + short * 100.1 * 0.0005
    cash = 1000 - units * 100.05 - spot_fee - transfer
    assert cash == pytest.approx(248.5)
    trades = result.trades
    assert list(trades["leg"]) == ["spot", "perp"] and list(trades["side"]) == ["buy", "sell"]
    assert trades["timestamp"].tolist() == [7 * H, 7 * H]
    assert trades["amount_base"].tolist() == pytest.approx([units, short])
    assert trades["price"].tolist() == pytest.approx([100.05, 100.1 * 0.9995])
    assert result.transfers["to_futures_quote"].tolist() == pytest.approx([transfer])
    # bar 1 close: spot 100 -> 102, perp 100.1 -> 102.3
    margin_1 = 250 + short * (100.1 - 102.3)
    equity_1 = cash + units * 102 + margin_1
    assert ledger["equity"].iloc[1] == pytest.approx(equity_1)
    assert ledger["spot_cash"].iloc[1] == pytest.approx(cash)
    # bar 2 open: perp 102.3 -> 102.2, then the 08:00 print pays the short: units x open x rate
    funding = short * 102.2 * 0.001
    margin_2 = margin_1 + short * (102.3 - 102.2) + funding + short * (102.2 - 101.4)
    equity_2 = cash + units * 101 + margin_2
    assert ledger["funding"].iloc[-1] == pytest.approx(funding)
    assert ledger["equity"].iloc[-1] == pytest.approx(equity_2)
    price_pnl = units * (102 - 100) + short * (100.1 - 102.3) + units * (101 - 102) + short * (102.3 - 101.4)
    assert ledger["price_pnl"].iloc[-1] == pytest.approx(price_pnl)
    assert ledger["fees"].iloc[-1] == pytest.approx(1.0) and ledger["slippage"].iloc[-1] == pytest.approx(slippage)
    assert equity_2 == pytest.approx(1000 + price_pnl + funding - 1.0 - slippage)  # the accounting identity
    # margin ratio at the worst intrabar point (perp high), BTC tier 1: 0.4 % x notional / margin balance
    ratio_1 = 0.004 * short * 102.6 / (250 - short * (102.6 - 100.1))
    ratio_2 = 0.004 * short * 103.0 / (margin_1 + short * (102.3 - 102.2) + funding - short * (103.0 - 102.2))
    assert ledger["worst_margin_ratio"].tolist() == pytest.approx([0.0, ratio_1, max(ratio_1, ratio_2)])
    assert ratio_2 > ratio_1  # the second bar's high is the worst point
    # no re-sizing inside the band: only the two opening fills
    assert len(trades) == 2 and result.liquidations == 0


def test_a_wick_through_the_liquidation_price_loses_the_isolated_margin() -> None:
    book = market(perp_high_bar_1=160.0)
    weights = pd.DataFrame({"BTC": [0.5, 0.5, 0.0]}, index=book.index)
    result = simulate_book(book, weights, PARAMS, capital_quote=1000.0)
    short = 500 / 100.1
    margin = 250.0  # after the transfer at bar 1's open, marked at 100.1
    liquidation = (margin + short * 100.1) / (short * 1.004)
    assert result.liquidations == 1
    closing = result.trades[(result.trades["leg"] == "perp") & (result.trades["side"] == "buy")]
    assert closing["timestamp"].tolist() == [7 * H] and closing["fee_quote"].tolist() == [0.0]
    assert closing["price"].tolist() == pytest.approx([liquidation])
    # the spot leg is left alone; the close re-hedges it at the next open (the weight is still 0.5)
    rehedge = result.trades[result.trades["timestamp"] == 8 * H]
    assert set(zip(rehedge["leg"], rehedge["side"], strict=True)) == {("perp", "sell"), ("spot", "sell")}
    left_at_liquidation = margin + short * (100.1 - liquidation)  # = the maintenance margin there
    assert left_at_liquidation == pytest.approx(0.004 * short * liquidation)
    assert result.ledger["liquidation_loss"].iloc[-1] == pytest.approx(margin)  # the move + what was left
    assert result.ledger["price_pnl"].iloc[1] == pytest.approx(5 * (102 - 100))  # only the spot leg's move
    assert result.ledger["worst_margin_ratio"].iloc[-1] == 1.0
    last = result.ledger.iloc[-1]
    moved = last["equity"] - 1000.0
    assert moved == pytest.approx(last["price_pnl"] + last["funding"] - last["fees"] - last["slippage"]
                                  - last["liquidation_loss"])


def test_weights_and_index_must_match() -> None:
    book = market()
    with pytest.raises(Exception, match="index and coins"):
        simulate_book(book, pd.DataFrame({"ETH": np.zeros(3)}, index=book.index), PARAMS)


def test_the_mark_price_proxy_ignores_a_last_price_wick() -> None:
    """Binance liquidates on the mark price (index + basis); a perp-only wick to 160 with spot at 102 does not."""
    book = market(perp_high_bar_1=160.0)
    weights = pd.DataFrame({"BTC": [0.5, 0.5, 0.5]}, index=book.index)
    params = CarryParams(fee_rate=0.001, slippage_rate=0.0005, leverage=2.0, liquidation_price="mark_proxy")
    result = simulate_book(book, weights, params, capital_quote=1000.0)
    assert result.liquidations == 0
    short = 500 / 100.1
    # bar 1: spot high 102 x (100.1 / 100) = 102.102 < perp close 102.3, so the proxy is 102.3
    ratio_1 = 0.004 * short * 102.3 / (250 - short * (102.3 - 100.1))
    assert result.ledger["worst_margin_ratio"].iloc[1] == pytest.approx(ratio_1)


def test_collateral_is_raised_to_keep_the_liquidation_probability_at_the_limit() -> None:
    from lib.research.carry.book import _collateral_target

    params = CarryParams(leverage=3.0, liquidation_probability_limit=0.005)
    # calm (5 %/day): buffer 0.05 x 2.807034 = 0.14035 -> liquidation 115.07; 3 units need 46.6 < 300 / 3 = 100
    assert _collateral_target("BTC", 300.0, 100.0, 0.05, params) == pytest.approx(100.0)
    # stormy (15 %/day): buffer 0.42105 -> liquidation 100 e^0.42105 = 152.36; margin = 3 x 152.36 x 1.004 - 300
    needed = 3 * 100 * math.exp(0.15 * 2.807034) * 1.004 - 300
    assert _collateral_target("BTC", 300.0, 100.0, 0.15, params) == pytest.approx(needed, rel=1e-5)
    assert 100 < needed < 300
    # never more than the notional (1x); no forecast: the initial margin
    assert _collateral_target("BTC", 300.0, 100.0, 0.6, params) == pytest.approx(300.0)
    assert _collateral_target("BTC", 300.0, 100.0, float("nan"), params) == pytest.approx(100.0)
