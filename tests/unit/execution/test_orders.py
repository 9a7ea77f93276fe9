"""lib/execution/orders.py: exact Decimal rounding, market rules from ccxt, client ids, and the order planner."""

from __future__ import annotations

import math
import re
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given

from lib.core.errors import ConfigError, DataError
from lib.core.venue import Holdings, MarketRules
from lib.execution.ccxt_markets import PRECISION_DECIMAL_PLACES, PRECISION_SIGNIFICANT_DIGITS, to_market_rules
from lib.execution.orders import (
    SKIP_BAND,
    SKIP_MAX_AMOUNT,
    SKIP_MIN_AMOUNT,
    SKIP_MIN_NOTIONAL,
    SKIP_NO_CASH,
    SKIP_ROUNDS_TO_ZERO,
    OrderParams,
    OrderPlan,
    PlannedOrder,
    client_order_id,
    compute_equity_quote,
    plan_orders,
    round_down_to_step,
    to_decimal,
)
from tests.helpers import SEEDS, random_examples

D = Decimal
BINANCE_CLIENT_ID = re.compile(r"^[\.A-Z\:/a-z0-9_-]{1,36}$")


def rules(symbol: str, step: str, *, min_amount: str = "0", min_notional: str = "0",
          max_amount: str | None = None, fee: float = 0.001) -> MarketRules:
    base, rest = symbol.split("/")
    return MarketRules(symbol=symbol, base=base, quote=rest.split(":")[0], is_perpetual=":" in symbol,
                       amount_step=D(step), price_step=D("0.01"), min_amount_base=D(min_amount),
                       max_amount_base=None if max_amount is None else D(max_amount),
                       min_notional_quote=D(min_notional), taker_fee_frac=fee)


def plan(targets: dict[str, float], cash: float, held: dict[str, float], prices: dict[str, float],
         markets: dict[str, MarketRules], *, params: OrderParams | None = None, equity: float | None = None,
         rebalance_id: str = "r-2025-01-01") -> OrderPlan:
    holdings = Holdings(cash_quote=cash, amounts_base=held)
    return plan_orders(target_weights=targets, holdings=holdings, prices=prices, markets=markets,
                       equity_quote=equity if equity is not None else compute_equity_quote(holdings, prices),
                       params=params or OrderParams(), rebalance_id=rebalance_id)


# --- rounding -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [
    (0.1 + 0.2, D("0.3")),
    (0.29999999999999993, D("0.3")),
    (2.9999999999999996, D("3")),
    (1e-05, D("0.00001")),
    (123.456, D("123.456")),
    (-0.30000000000000004, D("-0.3")),
    (0.0, D("0")),
])
def test_to_decimal_drops_binary_noise(value: float, expected: Decimal) -> None:
    assert to_decimal(value) == expected


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_to_decimal_refuses_non_finite(value: float) -> None:
    with pytest.raises(DataError):
        to_decimal(value)


@pytest.mark.parametrize(("amount", "step", "expected"), [
    ("0.30000000000000004", "0.1", "0.3"),
    ("0.29999999999999999", "0.1", "0.2"),  # Decimal input is taken literally: floor, never up
    ("0.3", "0.1", "0.3"),
    ("0.12345678", "0.00001", "0.12345"),
    ("0.00000999", "0.00001", "0"),
    ("7.999", "1", "7"),
    ("5", "1", "5"),
    ("1234.5", "10", "1230"),
    ("-1", "0.1", "0"),
])
def test_round_down_to_step_exact(amount: str, step: str, expected: str) -> None:
    rounded = round_down_to_step(D(amount), D(step))
    assert rounded == D(expected)
    assert rounded <= max(D(amount), D(0))
    assert rounded % D(step) == 0


@pytest.mark.parametrize("step", [D(0), D(-1), D("NaN"), D("Infinity")])
def test_round_down_to_step_refuses_bad_step(step: Decimal) -> None:
    with pytest.raises(DataError):
        round_down_to_step(D(1), step)


# --- market rules -------------------------------------------------------------------------------------------


def binance_spot_market(**overrides: object) -> dict[str, object]:
    market: dict[str, object] = {
        "id": "BTCUSDT", "symbol": "BTC/USDT", "base": "BTC", "quote": "USDT", "type": "spot", "spot": True,
        "swap": False, "active": True, "taker": 0.001, "maker": 0.001, "contractSize": None, "linear": None,
        "precision": {"amount": 1e-05, "price": 0.01},
        "limits": {"amount": {"min": 1e-05, "max": 9000.0}, "cost": {"min": 5.0, "max": 9000000.0}},
    }
    market.update(overrides)
    return market


def test_to_market_rules_binance_spot_tick_size() -> None:
    converted = to_market_rules(binance_spot_market())
    assert converted == MarketRules(
        symbol="BTC/USDT", base="BTC", quote="USDT", is_perpetual=False, amount_step=D("0.00001"),
        price_step=D("0.01"), min_amount_base=D("0.00001"), max_amount_base=D("9000"),
        min_notional_quote=D("5"), contract_size=D(1), taker_fee_frac=0.001)


def test_to_market_rules_linear_perp() -> None:
    market = binance_spot_market(symbol="BTC/USDT:USDT", type="swap", spot=False, swap=True, linear=True,
                                 contractSize=1.0, taker=0.0005, precision={"amount": 0.001, "price": 0.1},
                                 limits={"amount": {"min": 0.001, "max": None}, "cost": {"min": 100.0}})
    converted = to_market_rules(market)
    assert converted.is_perpetual and converted.amount_step == D("0.001") and converted.contract_size == 1
    assert converted.max_amount_base is None and converted.min_notional_quote == D(100)
    assert converted.taker_fee_frac == 0.0005


def test_to_market_rules_decimal_places_mode() -> None:
    market = binance_spot_market(precision={"amount": 3, "price": 2})
    converted = to_market_rules(market, precision_mode=PRECISION_DECIMAL_PLACES)
    assert converted.amount_step == D("0.001") and converted.price_step == D("0.01")
    whole = to_market_rules(binance_spot_market(precision={"amount": 0, "price": 1}),
                            precision_mode=PRECISION_DECIMAL_PLACES)
    assert whole.amount_step == D(1) and whole.price_step == D("0.1")


def test_to_market_rules_missing_limits_mean_no_limit() -> None:
    converted = to_market_rules(binance_spot_market(limits={}))
    assert converted.min_amount_base == 0 and converted.min_notional_quote == 0
    assert converted.max_amount_base is None


@pytest.mark.parametrize(("overrides", "mode", "field"), [
    ({"precision": {"price": 0.01}}, None, "precision.amount"),
    ({"precision": None}, None, "precision"),
    ({"precision": {"amount": math.nan, "price": 0.01}}, None, "precision.amount"),
    ({"precision": {"amount": 0.0, "price": 0.01}}, None, "precision.amount"),
    ({"precision": {"amount": -0.001, "price": 0.01}}, None, "precision.amount"),
    ({"precision": {"amount": "abc", "price": 0.01}}, None, "precision.amount"),
    ({"precision": {"amount": True, "price": 0.01}}, None, "precision.amount"),
    ({"limits": {"amount": {"min": -1.0}}}, None, "limits.amount.min"),
    ({"limits": {"cost": {"min": math.inf}}}, None, "limits.cost.min"),
    ({"limits": {"amount": {"min": 2.0, "max": 1.0}}}, None, "limits.amount.max"),
    ({"taker": None}, None, "taker"),
    ({"taker": 0.5}, None, "taker"),
    ({"active": False}, None, "not active"),
    ({"type": "future", "spot": False}, None, "type"),
    ({"type": "swap", "spot": False, "swap": True, "linear": False, "inverse": True}, None, "inverse"),
    ({"type": "swap", "spot": False, "swap": True, "linear": True, "contractSize": 0}, None, "contractSize"),
    ({"base": None}, None, "base"),
    ({}, PRECISION_SIGNIFICANT_DIGITS, "precision mode"),
    ({"precision": {"amount": 2.5, "price": 2}}, PRECISION_DECIMAL_PLACES, "precision.amount"),
])
def test_to_market_rules_rejects_bad_markets(overrides: dict[str, object], mode: int | None,
                                              field: str) -> None:
    kwargs = {} if mode is None else {"precision_mode": mode}
    with pytest.raises(DataError, match=re.escape(field)) as raised:
        to_market_rules(binance_spot_market(**overrides), **kwargs)
    assert "BTC/USDT" in str(raised.value)


def test_to_market_rules_without_symbol() -> None:
    with pytest.raises(DataError, match="without a symbol"):
        to_market_rules({"id": "X"})


# --- client order ids ---------------------------------------------------------------------------------------


def test_client_order_id_is_deterministic_short_and_safe() -> None:
    first = client_order_id("r-1", "BTC/USDT", "buy", D("0.001"))
    assert first == client_order_id("r-1", "BTC/USDT", "buy", D("0.001"))
    assert first == client_order_id("r-1", "BTC/USDT", "buy", D("0.00100"))  # same amount, other spelling
    assert first.startswith("cb-") and len(first) == 32
    assert re.fullmatch(r"[A-Za-z0-9-]{1,32}", first) and BINANCE_CLIENT_ID.match(first)


@pytest.mark.parametrize("changed", [
    {"rebalance_id": "r-2"}, {"symbol": "ETH/USDT"}, {"side": "sell"}, {"amount_base": D("0.002")},
    {"reduce_only": True},
])
def test_client_order_id_depends_on_every_input(changed: dict[str, object]) -> None:
    arguments: dict[str, object] = {"rebalance_id": "r-1", "symbol": "BTC/USDT", "side": "buy",
                                    "amount_base": D("0.001")}
    base_id = client_order_id(**arguments)  # type: ignore[arg-type]
    assert client_order_id(**{**arguments, **changed}) != base_id  # type: ignore[arg-type]


def test_client_order_id_random_inputs_stay_within_charset() -> None:
    rng = np.random.default_rng(7)
    seen = set()
    for _ in range(500):
        prefix = "".join(rng.choice(list("abcXYZ019"), size=int(rng.integers(1, 9))))
        identifier = client_order_id(f"run/{rng.integers(10**9)}:ü", "ETH/USDT:USDT", "sell",
                                     D(str(round(float(rng.uniform(1e-5, 1e4)), 5))), prefix=prefix)
        assert len(identifier) <= 32 and identifier.startswith(prefix + "-")
        assert BINANCE_CLIENT_ID.match(identifier)
        seen.add(identifier)
    assert len(seen) == 500


@pytest.mark.parametrize(("kwargs", "error"), [
    ({"prefix": "bad_prefix"}, ConfigError), ({"prefix": ""}, ConfigError), ({"prefix": "a-b"}, ConfigError),
    ({"amount_base": D(0)}, DataError), ({"amount_base": D("NaN")}, DataError),
    ({"rebalance_id": ""}, DataError),
])
def test_client_order_id_rejects_bad_input(kwargs: dict[str, object], error: type[Exception]) -> None:
    arguments: dict[str, object] = {"rebalance_id": "r-1", "symbol": "BTC/USDT", "side": "buy",
                                    "amount_base": D("0.001"), **kwargs}
    with pytest.raises(error):
        client_order_id(**arguments)  # type: ignore[arg-type]


# --- parameters and records ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "key"), [
    ({"no_trade_band_frac": -0.01}, "orders.no_trade_band_frac"),
    ({"no_trade_band_frac": 1.0}, "orders.no_trade_band_frac"),
    ({"min_order_notional_quote": D(-1)}, "orders.min_order_notional_quote"),
    ({"client_order_id_prefix": "way-too-long"}, "orders.client_order_id_prefix"),
    ({"slippage_allowance_bps": -1.0}, "orders.slippage_allowance_bps"),
])
def test_order_params_validation(kwargs: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(key)):
        OrderParams(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("amount", [D(0), D(-1), D("NaN"), D("Infinity")])
def test_planned_order_refuses_non_positive_amounts(amount: Decimal) -> None:
    with pytest.raises(DataError, match="refusing order"):
        PlannedOrder(symbol="BTC/USDT", side="buy", amount_base=amount, reference_price=100.0,
                     notional_quote=D(1), reduce_only=False, client_order_id="cb-x", target_weight=0.1,
                     current_weight=0.0)


def test_compute_equity_quote_counts_spot_not_perps() -> None:
    holdings = Holdings(cash_quote=1000.0, amounts_base={"BTC/USDT": 0.5, "ETH/USDT:USDT": -2.0})
    assert compute_equity_quote(holdings, {"BTC/USDT": 100.0, "ETH/USDT:USDT": 10.0}) == 1050.0
    with pytest.raises(DataError, match="BTC/USDT"):
        compute_equity_quote(holdings, {"ETH/USDT:USDT": 10.0})


# --- planning: hand-checked examples ------------------------------------------------------------------------

SPOT = {"BTC/USDT": rules("BTC/USDT", "0.00001", min_amount="0.00001", min_notional="5"),
        "ETH/USDT": rules("ETH/USDT", "0.0001", min_amount="0.0001", min_notional="5")}
SPOT_PRICES = {"BTC/USDT": 50_000.0, "ETH/USDT": 3_000.0}


def test_plan_sells_first_and_scales_buys_to_cash() -> None:
    # equity 1000 + 1 ETH x 3000 = 4000; ETH 0.75 -> 0.30 sells 0.6 ETH (1800 quote).
    # Budget = 1000 + 1800 x (1 - 0.001 fee - 0.0025 allowance) = 2793.7.
    # BTC 0 -> 0.70 wants 0.056 BTC = 2800 x 1.0035 = 2809.8 > budget, so it is scaled by 2793.7 / 2809.8
    # to 0.0556791... and floored to the 0.00001 step: 0.05567 BTC = 2783.5 quote (x 1.0035 = 2793.24).
    result = plan({"BTC/USDT": 0.7, "ETH/USDT": 0.3}, 1000.0, {"ETH/USDT": 1.0}, SPOT_PRICES, SPOT)
    assert [(o.symbol, o.side, o.amount_base, o.notional_quote) for o in result.orders] == [
        ("ETH/USDT", "sell", D("0.6"), D("1800")),
        ("BTC/USDT", "buy", D("0.05567"), D("2783.5")),
    ]
    sell, buy = result.orders
    assert sell.current_weight == 0.75 and sell.target_weight == 0.3 and not sell.reduce_only
    assert buy.current_weight == 0.0 and buy.reference_price == 50_000.0
    assert result.skipped == ()


def test_plan_buys_without_scaling_when_cash_suffices() -> None:
    result = plan({"BTC/USDT": 0.5}, 10_000.0, {}, SPOT_PRICES, SPOT)
    (buy,) = result.orders
    assert buy.amount_base == D("0.1") and buy.notional_quote == D(5000)


def test_plan_full_exit_sells_exactly_the_held_amount() -> None:
    markets = {"XRP/USDT": rules("XRP/USDT", "0.1"), "BTC/USDT": rules("BTC/USDT", "0.00001")}
    held = {"XRP/USDT": 0.30000000000000004 * 1000, "BTC/USDT": 1.23456789}
    result = plan({}, 0.0, held, {"XRP/USDT": 0.5, "BTC/USDT": 100.0}, markets)
    amounts = {o.symbol: o.amount_base for o in result.orders}
    assert amounts == {"XRP/USDT": D("300.0"), "BTC/USDT": D("1.23456")}
    assert all(o.side == "sell" and o.target_weight == 0.0 for o in result.orders)


def test_plan_exit_of_tricky_float_amount() -> None:
    markets = {"ETH/USDT": rules("ETH/USDT", "0.1")}
    result = plan({"ETH/USDT": 0.0}, 0.0, {"ETH/USDT": 0.1 + 0.2}, {"ETH/USDT": 100.0}, markets)
    assert [o.amount_base for o in result.orders] == [D("0.3")]


def test_plan_targets_unlisted_holdings_to_zero_and_exits_ignore_band() -> None:
    # ETH is 1% of equity (inside the 2% band) but no longer targeted: it is closed anyway.
    result = plan({"BTC/USDT": 0.0}, 9_900.0, {"ETH/USDT": 100.0 / 3_000.0}, SPOT_PRICES, SPOT)
    assert [(o.symbol, o.side) for o in result.orders] == [("ETH/USDT", "sell")]
    kept = plan({}, 9_900.0, {"ETH/USDT": 100.0 / 3_000.0}, SPOT_PRICES, SPOT,
                params=OrderParams(exits_ignore_band=False))
    assert kept.orders == () and [s.reason for s in kept.skipped] == [SKIP_BAND]


@pytest.mark.parametrize(("target", "traded"), [(0.31, False), (0.3199, False), (0.32, True), (0.28, True)])
def test_plan_no_trade_band(target: float, traded: bool) -> None:
    # ETH is exactly 30% of 10 000; the band is 2% of equity
    result = plan({"ETH/USDT": target}, 7_000.0, {"ETH/USDT": 1.0}, SPOT_PRICES, SPOT)
    assert bool(result.orders) is traded
    if not traded:
        assert [s.reason for s in result.skipped] == [SKIP_BAND]


@pytest.mark.parametrize(("market", "target", "reason"), [
    (rules("BTC/USDT", "0.001"), 0.00004, SKIP_ROUNDS_TO_ZERO),          # 0.4 quote = 0.000008 BTC < step
    (rules("BTC/USDT", "0.00001", min_amount="0.001"), 0.0004, SKIP_MIN_AMOUNT),  # 0.00008 BTC < 0.001
    (rules("BTC/USDT", "0.00001", min_notional="5"), 0.0004, SKIP_MIN_NOTIONAL),  # 4 quote < 5
])
def test_plan_skips_dust_with_reason(market: MarketRules, target: float, reason: str) -> None:
    result = plan({"BTC/USDT": target}, 10_000.0, {}, {"BTC/USDT": 50_000.0}, {"BTC/USDT": market},
                  params=OrderParams(no_trade_band_frac=0.0))
    assert result.orders == ()
    assert [(s.symbol, s.side, s.reason) for s in result.skipped] == [("BTC/USDT", "buy", reason)]


def test_plan_respects_our_min_notional_floor() -> None:
    markets = {"BTC/USDT": rules("BTC/USDT", "0.00001")}
    result = plan({"BTC/USDT": 0.002}, 10_000.0, {}, {"BTC/USDT": 50_000.0}, markets,
                  params=OrderParams(no_trade_band_frac=0.0, min_order_notional_quote=D("25")))
    assert result.orders == () and result.skipped[0].reason == SKIP_MIN_NOTIONAL


def test_plan_dust_holding_is_left_and_reported() -> None:
    # 0.00008 BTC is worth 4 quote < the 5 min notional
    result = plan({}, 1_000.0, {"BTC/USDT": 0.00008}, {"BTC/USDT": 50_000.0}, SPOT)
    assert result.orders == () and [s.reason for s in result.skipped] == [SKIP_MIN_NOTIONAL]


@pytest.mark.parametrize(("target", "sold", "floor"), [
    (0.0009, "1", "0"),        # the rest, 0.0003 ETH = 0.9 quote < 5: it could never be sold alone, so all goes
    (0.0015, "1", "0"),        # 0.0015 ETH = 4.5 quote < 5: all goes
    (0.0025, "0.9975", "0"),   # the rest, 0.0025 ETH = 7.5 quote >= 5: sold down to the target
    (0.0025, "1", "10"),       # our own floor (10 quote) strands 7.5 quote too: all goes
])
def test_plan_spot_sell_never_strands_an_unsellable_rest(target: float, sold: str, floor: str) -> None:
    # 1 ETH at 3000 in a 3000 book, targeted down to a sliver: what stays must be sellable later
    result = plan({"ETH/USDT": target}, 0.0, {"ETH/USDT": 1.0}, SPOT_PRICES, SPOT,
                  params=OrderParams(min_order_notional_quote=D(floor)))
    assert [(o.side, o.amount_base) for o in result.orders] == [("sell", D(sold))]


def test_plan_clips_to_max_amount() -> None:
    markets = {"DOGE/USDT": rules("DOGE/USDT", "1", max_amount="1000")}
    result = plan({"DOGE/USDT": 0.5}, 10_000.0, {}, {"DOGE/USDT": 0.1}, markets)
    assert [o.amount_base for o in result.orders] == [D(1000)]
    assert [s.reason for s in result.skipped] == [SKIP_MAX_AMOUNT]


def test_plan_without_cash_skips_buys() -> None:
    result = plan({"BTC/USDT": 0.5}, 0.0, {}, SPOT_PRICES, SPOT, equity=10_000.0)
    assert result.orders == () and [s.reason for s in result.skipped] == [SKIP_NO_CASH]


def test_plan_is_deterministic() -> None:
    args = ({"BTC/USDT": 0.4, "ETH/USDT": 0.4}, 5_000.0, {"ETH/USDT": 1.0}, SPOT_PRICES, SPOT)
    assert plan(*args) == plan(*args)
    other_run = plan(*args, rebalance_id="r-other")
    assert plan(*args).orders[0].client_order_id != other_run.orders[0].client_order_id


# --- perps --------------------------------------------------------------------------------------------------

PERPS = {"BTC/USDT:USDT": rules("BTC/USDT:USDT", "0.001", min_notional="5", fee=0.0005),
         "ETH/USDT:USDT": rules("ETH/USDT:USDT", "0.01", min_notional="5", fee=0.0005)}
PERP_PRICES = {"BTC/USDT:USDT": 50_000.0, "ETH/USDT:USDT": 2_500.0}


def test_plan_perp_flip_is_a_reduce_only_close_then_an_open() -> None:
    # equity 10 000: long 0.05 BTC (25%) -> short 25% = sell 0.05 to close (reduce only) + sell 0.05 to open
    result = plan({"BTC/USDT:USDT": -0.25}, 10_000.0, {"BTC/USDT:USDT": 0.05}, PERP_PRICES, PERPS,
                  equity=10_000.0)
    assert [(o.side, o.amount_base, o.reduce_only) for o in result.orders] == [
        ("sell", D("0.05"), True), ("sell", D("0.05"), False)]
    assert len({o.client_order_id for o in result.orders}) == 2


def test_plan_perp_reduce_short_and_open_long() -> None:
    held = {"BTC/USDT:USDT": -0.1, "ETH/USDT:USDT": 0.0}
    result = plan({"BTC/USDT:USDT": -0.25, "ETH/USDT:USDT": 0.25}, 20_000.0, held, PERP_PRICES, PERPS,
                  equity=20_000.0)
    # BTC: -0.1 (-25%) is already at target -> band; ETH: 0 -> +5000 quote = 2 ETH
    assert [(o.symbol, o.side, o.amount_base, o.reduce_only) for o in result.orders] == [
        ("ETH/USDT:USDT", "buy", D("2"), False)]
    reduced = plan({"BTC/USDT:USDT": -0.1}, 20_000.0, held, PERP_PRICES, PERPS, equity=20_000.0)
    assert [(o.side, o.amount_base, o.reduce_only) for o in reduced.orders] == [("buy", D("0.06"), True)]


def test_plan_perp_buys_are_not_limited_by_cash() -> None:
    result = plan({"ETH/USDT:USDT": 0.9, "BTC/USDT:USDT": -0.9}, 0.0, {}, PERP_PRICES, PERPS, equity=10_000.0)
    assert {(o.symbol, o.side, o.amount_base) for o in result.orders} == {
        ("ETH/USDT:USDT", "buy", D("3.6")), ("BTC/USDT:USDT", "sell", D("0.18"))}
    assert [o.side for o in result.orders] == ["sell", "buy"]


# --- planning: refusals -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("targets", "held", "prices", "match"), [
    ({"BTC/USDT": 0.5}, {}, {"ETH/USDT": 3_000.0}, "no valid price for BTC/USDT"),
    ({}, {"ETH/USDT": 1.0}, {"BTC/USDT": 50_000.0}, "no valid price for ETH/USDT"),  # held, cannot price it
    ({"BTC/USDT": 0.5}, {}, {"BTC/USDT": math.nan}, "no valid price"),
    ({"BTC/USDT": 0.5}, {}, {"BTC/USDT": -1.0}, "no valid price"),
    ({"SOL/USDT": 0.5}, {}, {"SOL/USDT": 100.0}, "no market rules for SOL/USDT"),
    ({"BTC/USDT": math.nan}, {}, SPOT_PRICES, "target weight of BTC/USDT"),
    ({"BTC/USDT": -0.1}, {}, SPOT_PRICES, "spot cannot be short"),
    ({}, {"BTC/USDT": math.inf}, SPOT_PRICES, "holdings amount of BTC/USDT"),
])
def test_plan_refuses_what_it_cannot_price(targets: dict[str, float], held: dict[str, float],
                                           prices: dict[str, float], match: str) -> None:
    with pytest.raises(DataError, match=re.escape(match)):
        plan(targets, 1_000.0, held, prices, SPOT, equity=1_000.0)


@pytest.mark.parametrize("equity", [0.0, -1.0, math.nan])
def test_plan_refuses_bad_equity(equity: float) -> None:
    with pytest.raises(DataError, match="equity_quote"):
        plan({"BTC/USDT": 0.5}, 1_000.0, {}, SPOT_PRICES, SPOT, equity=equity)


def test_plan_refuses_contract_size_other_than_one() -> None:
    market = MarketRules(symbol="BTC/USDT:USDT", base="BTC", quote="USDT", is_perpetual=True,
                         amount_step=D(1), price_step=D("0.1"), min_amount_base=D(1), max_amount_base=None,
                         min_notional_quote=D(0), contract_size=D("0.001"))
    with pytest.raises(DataError, match="contract size"):
        plan({"BTC/USDT:USDT": 0.5}, 1_000.0, {}, {"BTC/USDT:USDT": 1.0}, {"BTC/USDT:USDT": market},
             equity=1_000.0)


# --- planning: invariants over random books -----------------------------------------------------------------

STEPS = ["0.00001", "0.001", "0.1", "1", "10"]


SpotCase = tuple[dict[str, float], Holdings, dict[str, float], dict[str, MarketRules]]


def random_spot_case(seed: int) -> SpotCase:
    rng = np.random.default_rng(seed)
    symbols = [f"C{i}/USDT" for i in range(int(rng.integers(1, 8)))]
    markets = {s: rules(s, str(rng.choice(STEPS)), min_notional=str(rng.choice(["0", "5", "10"])),
                        fee=float(rng.choice([0.0, 0.001, 0.002]))) for s in symbols}
    prices = {s: float(10 ** rng.uniform(-3, 5)) for s in symbols}
    held = {s: float(rng.uniform(0, 5_000) / prices[s]) for s in symbols if rng.random() < 0.6}
    weights = rng.dirichlet(np.ones(len(symbols))) * rng.uniform(0.0, 1.0)
    targets = {s: float(w) for s, w in zip(symbols, weights, strict=True) if rng.random() < 0.8}
    return targets, Holdings(cash_quote=float(rng.uniform(0, 5_000)), amounts_base=held), prices, markets


@random_examples(300)
@given(seed=SEEDS)
def test_plan_invariants_on_random_spot_books(seed: int) -> None:
    targets, holdings, prices, markets = random_spot_case(seed)
    params = OrderParams(no_trade_band_frac=float(np.random.default_rng(seed).choice([0.0, 0.01, 0.05])))
    result = plan_orders(target_weights=targets, holdings=holdings, prices=prices, markets=markets,
                         equity_quote=compute_equity_quote(holdings, prices), params=params,
                         rebalance_id=f"r{seed}")
    sides = [o.side for o in result.orders]
    assert sides == sorted(sides, key=lambda side: side != "sell")  # every sell before every buy
    assert len({o.client_order_id for o in result.orders}) == len(result.orders)
    allowance = D("0.0025")
    budget = D(repr(holdings.cash_quote))
    spent = D(0)
    for order in result.orders:
        market = markets[order.symbol]
        assert order.amount_base.is_finite() and order.amount_base > 0
        assert order.amount_base % market.amount_step == 0
        assert order.notional_quote >= market.min_notional_quote
        assert len(order.client_order_id) <= 32 and BINANCE_CLIENT_ID.match(order.client_order_id)
        fee = D(repr(market.taker_fee_frac))
        if order.side == "sell":
            assert order.amount_base <= D(repr(holdings.amounts_base[order.symbol]))
            budget += order.notional_quote * (1 - fee - allowance)
        else:
            spent += order.notional_quote * (1 + fee + allowance)
    assert spent <= budget
    assert_progress_toward_targets(targets, holdings, prices, markets, band=params.no_trade_band_frac, plan=result)


def assert_progress_toward_targets(targets: dict[str, float], holdings: Holdings, prices: dict[str, float],
                                   markets: dict[str, MarketRules], *, band: float, plan: OrderPlan) -> None:
    """Every spot symbol off its target by at least the band (or held and targeted to 0) is traded toward it,
    or skipped for a reason its own numbers confirm; no order goes past its target."""
    equity = compute_equity_quote(holdings, prices)
    planned = {order.symbol: order for order in plan.orders}
    skipped = {skip.symbol: skip for skip in plan.skipped}
    for symbol in set(targets) | {s for s, amount in holdings.amounts_base.items() if amount != 0}:
        target, held, price = targets.get(symbol, 0.0), holdings.amounts_base.get(symbol, 0.0), prices[symbol]
        gap = target - held * price / equity
        wanted_base = held if target == 0 else abs(gap) * equity / price  # what reaching the target takes
        tolerance = wanted_base * 1e-9 + 1e-12
        if symbol in planned:
            order, rules = planned[symbol], markets[symbol]
            assert order.side == ("buy" if gap > 0 else "sell"), (symbol, gap, order)
            # past the target only by selling the whole holding, when what would stay is below the minimum order
            step, held_lots = float(rules.amount_step), round_down_to_step(D(repr(held)), rules.amount_step)
            whole = order.side == "sell" and order.amount_base == held_lots and (
                (held - wanted_base) * price < float(rules.min_notional_quote) + step * price + 1e-9)
            assert float(order.amount_base) <= wanted_base + tolerance or whole, (symbol, wanted_base, order)
            continue
        if abs(gap) + 1e-9 < band and target != 0:
            continue  # inside the no-trade band: nothing to do
        assert symbol in skipped, f"{symbol} is {gap:+.6f} off its target, neither traded nor skipped"
        reason, rules = skipped[symbol].reason, markets[symbol]
        step = float(rules.amount_step)
        tradeable_base = math.floor((wanted_base + tolerance) / step) * step
        if reason == SKIP_ROUNDS_TO_ZERO:
            assert wanted_base < step + tolerance, (symbol, wanted_base, step)
        elif reason == SKIP_MIN_NOTIONAL:
            assert tradeable_base * price < float(rules.min_notional_quote) * (1 + 1e-9), (symbol, tradeable_base)
        else:
            assert reason == SKIP_NO_CASH and gap > 0, (symbol, reason, gap)


@random_examples(100)
@given(seed=SEEDS)
def test_flatten_plan_sells_everything_it_can(seed: int) -> None:
    _, holdings, prices, markets = random_spot_case(seed)
    result = plan_orders(target_weights={}, holdings=holdings, prices=prices, markets=markets,
                         equity_quote=compute_equity_quote(holdings, prices), params=OrderParams(),
                         rebalance_id="flatten")
    for order in result.orders:
        held = D(repr(holdings.amounts_base[order.symbol]))
        assert order.side == "sell"
        assert order.amount_base == round_down_to_step(held, markets[order.symbol].amount_step)
    planned = {o.symbol for o in result.orders} | {s.symbol for s in result.skipped}
    assert planned == {s for s, a in holdings.amounts_base.items() if a != 0}
