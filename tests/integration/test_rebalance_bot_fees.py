"""Issue 9 items 3 and 9 together, over real ccxt HTTP against FakeBinance: in a shared account (book.capital_quote)
the bot's own cash ledger takes a fill's commission from its cash only when the exchange charged it in the quote.
Binance charges a spot buy's commission in the coin bought (the coins arrive net of it) or, with BNB fees on, in
BNB (not the bot's). Before: the ledger also took the commission's quote value from its cash, so the bot's equity
was understated by it on every buy (counted twice; for BNB never paid from the bot's book at all)."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from lib.core.symbols import base_of
from lib.execution.bot_ledger import fill_cash_quote
from tests.fakes.exchange_server import BNB_FEE_DISCOUNT, FakeBinance, exchange_id
from tests.fakes.telegram_server import FakeTelegram
from tests.integration.conftest import Project
from tests.integration.test_rebalance import FAKE_NOW_MS, assert_consistent, assert_ok, positions, write_targets
from tests.integration.test_rebalance_bot_capital import shared_setup

TARGETS = {"BTC/USDT": 0.3, "ETH/USDT": 0.2}
OWNERS_BNB = Decimal(2)  # kept in the account for fees: not in data.symbols, so not the bot's


@pytest.mark.parametrize("fee_asset", ["received", "BNB"])
def test_the_bots_equity_counts_a_commission_once_whatever_coin_paid_it(project: Project, telegram: FakeTelegram,
                                                                        fee_asset: str) -> None:
    """1,000 of the bot's capital in a 5,000 USDT account buys ~300 of BTC and ~200 of ETH at frozen prices.

    From the exchange's trade records (quantity q, price p, commission c per buy): the bot's cash is
    1000 - sum(q p) (no commission left the USDT), its coins are what arrived: q - c in the coin bought ("received"),
    q with BNB fees. Its equity at p is 1000 - sum(c p) ("received": the commissions, once) or 1000 (BNB: paid from
    the owner's BNB). The old ledger also took sum(fee_quote) from the cash: it would say that much less.
    """
    with FakeBinance(now_ms=FAKE_NOW_MS, spot_balances={"USDT": 5_000, "BNB": OWNERS_BNB}) as fake:
        fake.spot_fee_asset = fee_asset  # type: ignore[assignment]
        shared_setup(project, telegram, fake)
        write_targets(project, TARGETS, exchange="binance")
        assert_ok(project.run("rebalance"))
        first = positions(project)
        assert_ok(project.run("rebalance"))  # a re-run books nothing again and trades nothing
        events = assert_consistent(project, fake)
        trades = {symbol: next(t for t in fake._trades["spot"] if t["symbol"] == exchange_id(symbol))
                  for symbol in TARGETS}
        prices = {symbol: fake.last_price(symbol) for symbol in TARGETS}
        bnb_price, balances = fake.last_price("BNB/USDT"), dict(fake.spot_balances)
    assert len(fake._trades["spot"]) == 2 and all(t["commissionAsset"] == (base_of(s) if fee_asset == "received"
                                                                         else "BNB") for s, t in trades.items())
    quantity = {s: Decimal(t["qty"]) for s, t in trades.items()}
    commission = {s: Decimal(t["commission"]) for s, t in trades.items()}
    assert all(Decimal(t["price"]) == prices[s] for s, t in trades.items())  # frozen: the valuation price

    spent = sum(quantity[s] * prices[s] for s in TARGETS)
    held = {s: quantity[s] - (commission[s] if fee_asset == "received" else 0) for s in TARGETS}
    assert all(balances[base_of(s)] == held[s] for s in TARGETS)  # the exchange's coins: net of a base commission
    expected_cash = Decimal(1000) - spent
    expected_equity = expected_cash + sum(held[s] * prices[s] for s in TARGETS)
    true_fees = sum(commission[s] * (prices[s] if fee_asset == "received" else bnb_price) for s in TARGETS)
    if fee_asset == "received":
        assert expected_equity == Decimal(1000) - true_fees  # the commissions, once
    else:
        assert expected_equity == Decimal(1000) and balances["BNB"] == OWNERS_BNB - sum(commission.values())
        assert float(true_fees) == pytest.approx(float(Decimal("0.001") * BNB_FEE_DISCOUNT * spent), rel=1e-4)

    book = positions(project)
    assert book.ledger is not None and book.ledger.cash_quote == expected_cash
    assert book.equity_quote == pytest.approx(float(expected_equity), abs=1e-6)
    assert first.equity_quote == pytest.approx(book.equity_quote, abs=1e-6)
    assert book.fees_paid_quote == pytest.approx(float(true_fees), rel=1e-9)  # fees_paid_quote kept: all of them

    fills = [e for e in events if e.event == "filled"]
    assert {e.symbol: e.fees_paid for e in fills} == {
        s: ((base_of(s) if fee_asset == "received" else "BNB", commission[s]),) for s in TARGETS}
    old_cash = Decimal(1000) + sum(fill_cash_quote(replace(e, fees_paid=None)) for e in fills)  # the old ledger
    old_equity = old_cash + sum(held[s] * prices[s] for s in TARGETS)
    assert float(old_equity) == pytest.approx(float(expected_equity - true_fees), abs=1e-6)
    assert float(expected_equity - old_equity) > 0.35  # 0.1 % (0.075 % in BNB) of the ~500 bought
