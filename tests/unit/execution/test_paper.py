"""lib/execution/paper.py: exact fills, idempotency by client order id, never-negative invariants, snapshots."""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given

from lib.core.errors import ConfigError, DataError, OrderRejected, StateError
from lib.core.venue import Broker, MarketRules, Side
from lib.execution.orders import OrderParams, compute_equity_quote, plan_orders
from lib.execution.paper import PaperBroker, PaperParams, PaperSnapshot
from tests.helpers import SEEDS, random_examples

D = Decimal
NOW_MS = 1_700_000_000_000
PARAMS = PaperParams(starting_cash_quote=Decimal("10000"))  # 10 000 cash, 10 bps fee, 5 bps slippage


def broker(prices: dict[str, float], snapshot: PaperSnapshot | None = None, *,
           params: PaperParams = PARAMS, now_ms: int = NOW_MS) -> PaperBroker:
    return PaperBroker(snapshot or PaperSnapshot.initial(params), prices=prices, now_ms=now_ms, params=params)


# --- parameters ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "key"), [
    ({"starting_cash_quote": D(0)}, "paper.starting_cash_quote"),
    ({"starting_cash_quote": D("NaN")}, "paper.starting_cash_quote"),
    ({"fee_bps": -1.0}, "paper.fee_bps"),
    ({"slippage_bps": 5_000.0}, "paper.slippage_bps"),
    ({"max_leverage": 0.0}, "paper.max_leverage"),
])
def test_paper_params_validation(kwargs: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(key)):
        PaperParams(**kwargs)  # type: ignore[arg-type]


def test_paper_broker_is_a_broker() -> None:
    venue: Broker = broker({"BTC/USDT": 100.0})
    assert venue.fetch_holdings().cash_quote == 10_000.0 and venue.fetch_holdings().amounts_base == {}


@pytest.mark.parametrize("price", [math.nan, 0.0, -1.0, math.inf])
def test_paper_broker_refuses_bad_prices(price: float) -> None:
    with pytest.raises(DataError, match="BTC/USDT"):
        broker({"BTC/USDT": price})


# --- spot fills computed by hand ----------------------------------------------------------------------------


def test_spot_buy_then_sell_exact() -> None:
    account = broker({"BTC/USDT": 100.0})
    bought = account.create_market_order("BTC/USDT", "buy", D("0.5"), client_order_id="cb-1")
    # fill 100 x 1.0005 = 100.05; notional 50.025; fee 10 bps = 0.050025; cash 10000 - 50.075025
    assert bought.average_price == 100.05 and bought.fee_quote == 0.050025
    assert bought.status == "closed" and bought.filled_amount_base == bought.requested_amount_base == D("0.5")
    assert bought.timestamp_ms == NOW_MS and bought.exchange_order_id.startswith("paper-")
    assert account.to_snapshot().cash_quote == D("9949.924975")
    assert account.fetch_holdings().amounts_base == {"BTC/USDT": 0.5}

    later = broker({"BTC/USDT": 110.0}, account.to_snapshot(), now_ms=NOW_MS + 1)
    sold = later.create_market_order("BTC/USDT", "sell", D("0.5"), client_order_id="cb-2")
    # fill 110 x 0.9995 = 109.945; notional 54.9725; fee 0.0549725
    assert sold.average_price == 109.945 and sold.fee_quote == 0.0549725
    assert later.to_snapshot().cash_quote == D("10004.8425025")
    assert later.to_snapshot().amounts_base == {}
    assert later.equity_quote() == D("10004.8425025")


def test_equity_matches_compute_equity_quote() -> None:
    account = broker({"BTC/USDT": 100.0, "ETH/USDT": 10.0})
    account.create_market_order("BTC/USDT", "buy", D("10"), client_order_id="cb-1")
    account.create_market_order("ETH/USDT", "buy", D("100"), client_order_id="cb-2")
    prices = {"BTC/USDT": 100.0, "ETH/USDT": 10.0}
    # each buy of 1000 costs 0.5 slippage + 1.0005 fee
    assert account.equity_quote() == D("9996.999")
    assert compute_equity_quote(account.fetch_holdings(), prices) == pytest.approx(9996.999, abs=1e-9)


# --- idempotency --------------------------------------------------------------------------------------------


def test_same_client_order_id_fills_once() -> None:
    account = broker({"BTC/USDT": 100.0})
    first = account.create_market_order("BTC/USDT", "buy", D("1"), client_order_id="cb-abc")
    cash_after_first = account.to_snapshot().cash_quote
    again = account.create_market_order("BTC/USDT", "buy", D("1.000"), client_order_id="cb-abc")
    assert again == first
    assert account.to_snapshot().cash_quote == cash_after_first
    assert account.fetch_holdings().amounts_base == {"BTC/USDT": 1.0}
    assert account.fetch_order_by_client_id("BTC/USDT", "cb-abc") == first
    assert account.fetch_order_by_client_id("ETH/USDT", "cb-abc") is None
    assert account.fetch_order_by_client_id("BTC/USDT", "cb-unknown") is None


def test_paper_fees_are_paid_in_the_quote_and_saved() -> None:
    """1 BTC bought at 100 + 5 bps = 100.05; 10 bps of it is 0.10005 USDT; a snapshot saved before fees_paid
    existed gives its orders none."""
    account = broker({"BTC/USDT": 100.0})
    bought = account.create_market_order("BTC/USDT", "buy", D("1"), client_order_id="cb-fee")
    assert bought.fees_paid == (("USDT", D("0.10005")),) and bought.fee_quote == pytest.approx(0.10005)
    saved = json.loads(json.dumps(account.to_snapshot().to_dict()))
    assert PaperSnapshot.from_dict(saved).orders["cb-fee"] == bought
    del saved["orders"][0]["fees_paid"]
    assert PaperSnapshot.from_dict(saved).orders["cb-fee"].fees_paid == ()


def test_rerun_after_crash_finds_the_order_in_the_saved_snapshot() -> None:
    account = broker({"BTC/USDT": 100.0})
    first = account.create_market_order("BTC/USDT", "buy", D("1"), client_order_id="cb-run1-x")
    saved = json.loads(json.dumps(account.to_snapshot().to_dict()))
    rerun = broker({"BTC/USDT": 120.0}, PaperSnapshot.from_dict(saved), now_ms=NOW_MS + 60_000)
    assert rerun.fetch_order_by_client_id("BTC/USDT", "cb-run1-x") == first
    assert rerun.create_market_order("BTC/USDT", "buy", D("1"), client_order_id="cb-run1-x") == first
    assert rerun.to_snapshot() == PaperSnapshot.from_dict(saved)


@pytest.mark.parametrize(("symbol", "side", "amount"), [
    ("BTC/USDT", "buy", "2"), ("BTC/USDT", "sell", "1"), ("ETH/USDT", "buy", "1")])
def test_reused_client_order_id_with_other_content_is_rejected(symbol: str, side: str, amount: str) -> None:
    account = broker({"BTC/USDT": 100.0, "ETH/USDT": 10.0})
    account.create_market_order("BTC/USDT", "buy", D("1"), client_order_id="cb-abc")
    with pytest.raises(OrderRejected, match="already used"):
        account.create_market_order(symbol, side, D(amount), client_order_id="cb-abc")  # type: ignore[arg-type]


# --- rejections change nothing ------------------------------------------------------------------------------


@pytest.mark.parametrize(("symbol", "side", "amount", "client_id", "match"), [
    ("BTC/USDT", "buy", "100", "cb-1", "cash"),                   # 10 005 + fee > 10 000
    ("BTC/USDT", "sell", "0.1", "cb-1", "held"),                  # nothing held
    ("SOL/USDT", "buy", "1", "cb-1", "no last price"),
    ("BTC/USDT", "buy", "0", "cb-1", "amount"),
    ("BTC/USDT", "buy", "-1", "cb-1", "amount"),
    ("BTC/USDT", "buy", "NaN", "cb-1", "amount"),
    ("BTC/USDT", "hold", "1", "cb-1", "side"),
    ("BTC/USDT", "buy", "1", "bad id with spaces", "client order id"),
    ("BTC/USDT", "buy", "1", "x" * 37, "client order id"),
])
def test_rejected_orders_raise_and_leave_the_account_alone(symbol: str, side: str, amount: str,
                                                           client_id: str, match: str) -> None:
    account = broker({"BTC/USDT": 100.0})
    before = account.to_snapshot()
    with pytest.raises(OrderRejected, match=match):
        account.create_market_order(symbol, side, D(amount), client_order_id=client_id)  # type: ignore[arg-type]
    assert account.to_snapshot() == before
    assert account.fetch_order_by_client_id(symbol, client_id) is None


def test_buy_of_exactly_all_cash_fills_and_one_step_more_is_rejected() -> None:
    params = PaperParams(starting_cash_quote=Decimal("10000"), fee_bps=0.0, slippage_bps=0.0)
    account = broker({"BTC/USDT": 100.0}, params=params)
    with pytest.raises(OrderRejected):
        account.create_market_order("BTC/USDT", "buy", D("100.00001"), client_order_id="cb-1")
    account.create_market_order("BTC/USDT", "buy", D("100"), client_order_id="cb-2")
    assert account.to_snapshot().cash_quote == 0


# --- perps --------------------------------------------------------------------------------------------------


def test_perp_short_then_close_exact() -> None:
    account = broker({"ETH/USDT:USDT": 1_000.0})
    account.create_market_order("ETH/USDT:USDT", "sell", D("2"), client_order_id="cb-open")
    # fill 999.5, fee 1999 x 0.001 = 1.999 -> wallet 9998.001; entry 999.5; unrealized at 1000 = -1
    snapshot = account.to_snapshot()
    assert snapshot.cash_quote == D("9998.001") and snapshot.amounts_base == {"ETH/USDT:USDT": D("-2")}
    assert snapshot.entry_prices == {"ETH/USDT:USDT": D("999.5")}
    assert account.fetch_holdings().cash_quote == pytest.approx(9997.001, abs=1e-9)
    assert account.equity_quote() == D("9997.001")

    later = broker({"ETH/USDT:USDT": 900.0}, snapshot)
    later.create_market_order("ETH/USDT:USDT", "buy", D("2"), client_order_id="cb-close", reduce_only=True)
    # fill 900.45; realized 2 x (999.5 - 900.45) = 198.1; fee 1.8009 -> wallet 10194.3001
    closed = later.to_snapshot()
    assert closed.cash_quote == D("10194.3001") and closed.amounts_base == {} and closed.entry_prices == {}


def test_perp_flip_and_average_entry() -> None:
    params = PaperParams(starting_cash_quote=Decimal("10000"), fee_bps=0.0, slippage_bps=0.0)
    account = broker({"BTC/USDT:USDT": 100.0}, params=params)
    account.create_market_order("BTC/USDT:USDT", "buy", D("1"), client_order_id="cb-1")
    added = broker({"BTC/USDT:USDT": 130.0}, account.to_snapshot(), params=params)
    added.create_market_order("BTC/USDT:USDT", "buy", D("2"), client_order_id="cb-2")
    assert added.to_snapshot().entry_prices == {"BTC/USDT:USDT": D(120)}  # (100 + 2 x 130) / 3
    # sell 5: closes the 3 long and opens 2 short
    added.create_market_order("BTC/USDT:USDT", "sell", D("5"), client_order_id="cb-3")
    flipped = added.to_snapshot()
    assert flipped.amounts_base == {"BTC/USDT:USDT": D(-2)}
    assert flipped.entry_prices == {"BTC/USDT:USDT": D(130)}
    assert flipped.cash_quote == D(10_030)  # realized 3 x (130 - 120)


@pytest.mark.parametrize(("held", "side", "amount"), [
    (None, "sell", "1"),   # nothing to reduce
    ("1", "buy", "1"),     # would increase a long
    ("1", "sell", "2"),    # would flip
])
def test_perp_reduce_only_never_increases_or_flips(held: str | None, side: str, amount: str) -> None:
    snapshot = PaperSnapshot(cash_quote=D(10_000), amounts_base={"BTC/USDT:USDT": D(held)} if held else {},
                             entry_prices={"BTC/USDT:USDT": D(100)} if held else {})
    account = broker({"BTC/USDT:USDT": 100.0}, snapshot)
    with pytest.raises(OrderRejected, match="reduce-only"):
        account.create_market_order("BTC/USDT:USDT", side, D(amount), client_order_id="cb-r",  # type: ignore[arg-type]
                                    reduce_only=True)
    assert account.to_snapshot() == snapshot


def test_perp_margin_caps_gross_leverage() -> None:
    params = PaperParams(starting_cash_quote=Decimal("10000"), fee_bps=0.0, slippage_bps=0.0)
    account = broker({"BTC/USDT:USDT": 100.0}, params=params)
    account.create_market_order("BTC/USDT:USDT", "sell", D("300"), client_order_id="cb-1")  # 3x: allowed
    with pytest.raises(OrderRejected, match="3.0x equity"):
        account.create_market_order("BTC/USDT:USDT", "sell", D("1"), client_order_id="cb-2")
    account.create_market_order("BTC/USDT:USDT", "buy", D("100"), client_order_id="cb-3", reduce_only=True)
    assert account.fetch_holdings().amounts_base == {"BTC/USDT:USDT": -200.0}


# --- snapshots ----------------------------------------------------------------------------------------------


def test_snapshot_round_trip_and_pruning() -> None:
    account = broker({"BTC/USDT": 100.0, "ETH/USDT:USDT": 10.0})
    account.create_market_order("BTC/USDT", "buy", D("0.123"), client_order_id="cb-1")
    account.create_market_order("ETH/USDT:USDT", "sell", D("7"), client_order_id="cb-2")
    snapshot = account.to_snapshot()
    assert PaperSnapshot.from_dict(json.loads(json.dumps(snapshot.to_dict()))) == snapshot
    assert account.to_snapshot(keep_orders_since_ms=NOW_MS + 1).orders == {}
    assert set(account.to_snapshot(keep_orders_since_ms=NOW_MS).orders) == {"cb-1", "cb-2"}


def valid_dict() -> dict[str, object]:
    return PaperSnapshot(cash_quote=D(5), amounts_base={"BTC/USDT": D(1), "ETH/USDT:USDT": D(-1)},
                         entry_prices={"ETH/USDT:USDT": D(10)}).to_dict()


@pytest.mark.parametrize("change", [
    {"schema_version": 99},
    {"cash_quote": 5.0},                                   # a float: would round money through binary
    {"cash_quote": "NaN"},
    {"cash_quote": "lots"},
    {"amounts_base": {"BTC/USDT": "-1"}},                  # negative spot
    {"amounts_base": {"BTC/USDT": "0"}},
    {"amounts_base": {"ETH/USDT:USDT": "-1"}, "entry_prices": {}},  # perp without entry
    {"entry_prices": {"ETH/USDT:USDT": "10", "SOL/USDT:USDT": "1"}},
    {"orders": [{"client_order_id": "cb-1"}]},
    {"orders": None},
])
def test_snapshot_from_bad_dict_is_a_state_error(change: dict[str, object]) -> None:
    with pytest.raises(StateError, match="paper snapshot"):
        PaperSnapshot.from_dict({**valid_dict(), **change})


def test_snapshot_from_non_object() -> None:
    with pytest.raises(StateError):
        PaperSnapshot.from_dict([1, 2])


# --- invariants over random order streams -------------------------------------------------------------------

SYMBOLS = ["BTC/USDT", "ETH/USDT", "DOGE/USDT"]


@random_examples(200)
@given(seed=SEEDS)
def test_spot_account_never_goes_negative(seed: int) -> None:
    rng = np.random.default_rng(seed)
    prices = {s: float(10 ** rng.uniform(-2, 4)) for s in SYMBOLS}
    account = broker(prices, params=PaperParams(starting_cash_quote=Decimal("10000"), fee_bps=float(rng.uniform(0, 50)),
                                                slippage_bps=float(rng.uniform(0, 50))))
    for step in range(40):
        symbol = str(rng.choice(SYMBOLS))
        amount = max(D(str(round(float(rng.uniform(0, 8_000) / prices[symbol]), 6))), D("0.000001"))
        before = account.to_snapshot()
        try:
            account.create_market_order(symbol, "buy" if rng.random() < 0.5 else "sell", amount,
                                        client_order_id=f"cb-{seed}-{step}")
        except OrderRejected:
            assert account.to_snapshot() == before
        after = account.to_snapshot()
        assert after.cash_quote >= 0
        assert all(a > 0 for a in after.amounts_base.values())


@random_examples(100)
@given(seed=SEEDS)
def test_perp_reduce_only_fills_only_shrink_positions(seed: int) -> None:
    rng = np.random.default_rng(seed)
    symbols = [f"{s}:USDT" for s in SYMBOLS]
    prices = {s: float(10 ** rng.uniform(-1, 3)) for s in symbols}
    account = broker(prices)
    for step in range(40):
        symbol = str(rng.choice(symbols))
        position = account.to_snapshot().amounts_base.get(symbol, D(0))
        reduce_only = bool(rng.random() < 0.5)
        amount = D(str(round(float(rng.uniform(0.01, 5) * 2_000 / prices[symbol]), 4)))
        side: Side = "buy" if rng.random() < 0.5 else "sell"
        try:
            account.create_market_order(symbol, side, amount, client_order_id=f"cb-{step}",
                                        reduce_only=reduce_only)
        except OrderRejected:
            continue
        after = account.to_snapshot().amounts_base.get(symbol, D(0))
        if reduce_only:
            assert abs(after) < abs(position) and after * position >= 0
        if abs(after) > abs(position):
            gross = sum(abs(a) * D(repr(prices[s])) for s, a in account.to_snapshot().amounts_base.items())
            assert gross <= 3 * account.equity_quote()
        assert account.equity_quote() > 0


def spot_market(symbol: str, step: str) -> MarketRules:
    return MarketRules(symbol=symbol, base=symbol.split("/")[0], quote="USDT", is_perpetual=False,
                       amount_step=D(step), price_step=D("0.0001"), min_amount_base=D(0),
                       max_amount_base=None, min_notional_quote=D(5), taker_fee_frac=0.001)


@random_examples(100)
@given(seed=SEEDS)
def test_planned_orders_always_fill_in_the_paper_account(seed: int) -> None:
    """plan_orders' cash budget (fee + 25 bps allowance) covers paper fills (fee + 5 bps slippage)."""
    rng = np.random.default_rng(seed)
    prices = {s: float(10 ** rng.uniform(-2, 4)) for s in SYMBOLS}
    markets = {s: spot_market(s, str(rng.choice(["0.00001", "0.01", "1"]))) for s in SYMBOLS}
    account = broker(prices)
    for run in range(4):
        weights = rng.dirichlet(np.ones(len(SYMBOLS))) * rng.uniform(0.5, 1.0)
        holdings = account.fetch_holdings()
        targets = dict(zip(SYMBOLS, map(float, weights), strict=True))
        plan = plan_orders(target_weights=targets, holdings=holdings, prices=prices, markets=markets,
                           equity_quote=compute_equity_quote(holdings, prices),
                           params=OrderParams(), rebalance_id=f"seed{seed}-run{run}")
        for order in plan.orders:
            account.create_market_order(order.symbol, order.side, order.amount_base,
                                        client_order_id=order.client_order_id, reduce_only=order.reduce_only)
        assert account.to_snapshot().cash_quote >= 0
