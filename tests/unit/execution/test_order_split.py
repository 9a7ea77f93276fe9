"""lib/execution/order_split.py and lib/execution/risk_targets.py: exits are split under the fat-finger cap and
never counted against max_orders_per_run; targets over the asset cap are clipped per asset (issue 9, item 4)."""

from __future__ import annotations

from decimal import Decimal

from lib.core.venue import Holdings, MarketRules
from lib.execution.order_split import split_reducing_orders
from lib.execution.orders import OrderParams, plan_orders
from lib.execution.risk import RiskLimits, check_all, check_reduces_risk
from lib.execution.risk_targets import clip_target_weights

D = Decimal
NOW_MS = 1_700_000_000_000


def rules(symbol: str, *, step: str = "0.001", min_notional: str = "5") -> MarketRules:
    base, quote = symbol.split("/")
    return MarketRules(symbol=symbol, base=base, quote=quote.split(":")[0], is_perpetual=":" in symbol,
                       amount_step=D(step), price_step=D("0.01"), min_amount_base=D(step), max_amount_base=None,
                       min_notional_quote=D(min_notional))


MARKETS = {s: rules(s) for s in ("BTC/USDT", "ETH/USDT", "SOL/USDT", "BTC/USDT:USDT")}
PRICES = {"BTC/USDT": 100.0, "ETH/USDT": 10.0, "SOL/USDT": 1.0, "BTC/USDT:USDT": 100.0}


def plan(targets: dict[str, float], held: dict[str, float], cash: float, cap: str = "300"):  # type: ignore[no-untyped-def]
    holdings = Holdings(cash_quote=cash, amounts_base=held)
    equity = cash + sum(a * PRICES[s] for s, a in held.items() if ":" not in s)
    raw = plan_orders(target_weights=targets, holdings=holdings, prices=PRICES, markets=MARKETS,
                      equity_quote=equity, params=OrderParams(), rebalance_id="r-1")
    return holdings, equity, split_reducing_orders(raw, holdings=holdings, markets=MARKETS,
                                                   max_order_notional_quote=D(cap), rebalance_id="r-1", prefix="cb")


def verdict(targets: dict[str, float], held: dict[str, float], cash: float, *, limits: RiskLimits,
            start_of_day: float | None = None):  # type: ignore[no-untyped-def]
    holdings, equity, split = plan(targets, held, cash, cap=str(limits.max_order_notional_quote))
    return split, check_all(plan=split, target_weights=targets, holdings=holdings, prices=PRICES, equity_quote=equity,
                            start_of_day_equity_quote=start_of_day or equity, high_water_mark_quote=equity,
                            targets_as_of_ms=NOW_MS, price_times_ms={s: NOW_MS for s in PRICES}, now_ms=NOW_MS,
                            kill_switch_present=False, halt_active=False, limits=limits)


def test_an_exit_above_the_cap_becomes_children_under_it_that_add_up() -> None:
    _, _, split = plan({}, {"BTC/USDT": 10.0}, 0.0)  # sell 10 BTC = 1000 USDT, cap 300
    assert [o.amount_base for o in split.orders] == [D("2.5")] * 3 + [D("2.5")]  # ceil(1000/300) = 4 children
    assert sum(o.amount_base for o in split.orders) == D(10)
    assert all(o.notional_quote <= D(300) for o in split.orders)
    assert len({o.client_order_id for o in split.orders}) == 4
    assert check_reduces_risk(split.orders, Holdings(cash_quote=0.0, amounts_base={"BTC/USDT": 10.0})) == []
    _, _, again = plan({}, {"BTC/USDT": 10.0}, 0.0)
    assert [o.client_order_id for o in again.orders] == [o.client_order_id for o in split.orders]  # deterministic


def test_rounding_remainder_goes_to_the_last_child_and_stays_under_the_cap() -> None:
    _, _, split = plan({}, {"BTC/USDT": 7.001}, 0.0, cap="350")  # 700.1 USDT: 3 children of 2.333, last 2.335
    assert [o.amount_base for o in split.orders] == [D("2.333"), D("2.333"), D("2.335")]
    assert max(o.notional_quote for o in split.orders) == D("233.5")


def test_a_buy_above_the_cap_is_not_split_and_still_trips_the_fat_finger_check() -> None:
    split, result = verdict({"BTC/USDT": 0.9}, {}, 1000.0, limits=RiskLimits(max_order_notional_quote=D(300),
                                                                           max_asset_weight_frac=1.0))
    assert len(split.orders) == 1 and result.decision == "halt"
    assert [r.check for r in result.rejections] == ["fat_finger"]


def test_a_perp_reduce_leg_is_split_and_the_open_leg_is_not() -> None:
    _, _, split = plan({"BTC/USDT:USDT": -0.1}, {"BTC/USDT:USDT": 5.0}, 1000.0)  # close 5 (500), open 1 (100)
    assert [(o.amount_base, o.reduce_only) for o in split.orders] == [(D("2.5"), True), (D("2.5"), True),
                                                                      (D("1.000"), False)]


def test_children_below_the_exchange_minimum_keep_the_parent_whole() -> None:
    _, _, split = plan({}, {"SOL/USDT": 9.0}, 0.0, cap="4")  # children of 4 USDT < min notional 5
    assert [o.amount_base for o in split.orders] == [D("9.000")]


def test_a_regime_flip_to_cash_exits_a_position_larger_than_the_cap() -> None:
    split, result = verdict({}, {"BTC/USDT": 10.0, "ETH/USDT": 35.0}, 0.0,
                            limits=RiskLimits(max_order_notional_quote=D(300), max_orders_per_run=2))
    assert result.decision == "trade" and result.rejections == ()
    assert len(result.allowed_orders) == 6  # 4 BTC + 2 ETH children: above the count cap, none counted


def test_reduce_only_day_exits_above_the_cap_and_the_count_cap() -> None:
    split, result = verdict({"ETH/USDT": 0.2}, {"BTC/USDT": 10.0}, 0.0, start_of_day=1200.0,
                            limits=RiskLimits(max_order_notional_quote=D(300), max_orders_per_run=1))
    assert result.decision == "reduce_only"
    assert [o.symbol for o in result.allowed_orders] == ["BTC/USDT"] * 4
    assert {r.check for r in result.rejections} == {"daily_loss"}


def test_non_reducing_orders_still_count_against_the_order_cap() -> None:
    _, result = verdict({"BTC/USDT": 0.3, "ETH/USDT": 0.3}, {}, 1000.0,
                        limits=RiskLimits(max_orders_per_run=1))
    assert result.decision == "halt" and [r.check for r in result.rejections] == ["order_count"]


def test_targets_over_the_asset_cap_are_clipped_per_asset() -> None:
    clipped, rejections = clip_target_weights({"BTC/USDT": 0.5, "ETH/USDT": 0.2, "BTC/USDT:USDT": -0.6},
                                              RiskLimits(max_asset_weight_frac=0.35))
    assert clipped == {"BTC/USDT": 0.35, "ETH/USDT": 0.2, "BTC/USDT:USDT": -0.35}
    assert [(r.check, r.symbol) for r in rejections] == [("asset_weight_clipped", "BTC/USDT"),
                                                         ("asset_weight_clipped", "BTC/USDT:USDT")]
    assert clip_target_weights({"ETH/USDT": 0.35}, RiskLimits(max_asset_weight_frac=0.35)) == ({"ETH/USDT": 0.35}, [])
