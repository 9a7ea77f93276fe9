"""check_all also sanity-checks the live price of every symbol whose candle moved the weights (issue 9 item 5):
the benchmark is usually neither held nor targeted, yet its regime moves the whole book."""

from __future__ import annotations

from decimal import Decimal

from lib.core.venue import Holdings
from lib.execution.orders import OrderPlan
from lib.execution.risk import RiskLimits, check_all

NOW_MS = 1_767_225_600_000
LIMITS = RiskLimits(max_order_notional_quote=Decimal(100_000))


def verdict(input_prices: dict[str, float] | None):  # type: ignore[no-untyped-def]
    return check_all(plan=OrderPlan(orders=(), skipped=()), target_weights={"ETH/USDT": 0.2},
                     holdings=Holdings(cash_quote=10_000.0, amounts_base={}), prices={"ETH/USDT": 2_000.0},
                     equity_quote=10_000.0, start_of_day_equity_quote=10_000.0, high_water_mark_quote=10_000.0,
                     targets_as_of_ms=NOW_MS - 3_600_000, price_times_ms={"ETH/USDT": NOW_MS}, now_ms=NOW_MS,
                     kill_switch_present=False, halt_active=False, limits=LIMITS,
                     reference_prices={"ETH/USDT": 2_000.0, "BTC/USDT": 110_000.0},  # a x2.2 benchmark close
                     input_prices=input_prices)


def test_a_benchmark_close_far_from_its_live_price_halts() -> None:
    halted = verdict({"BTC/USDT": 50_000.0})  # |50,000 / 110,000 - 1| = 54.5 % > 50 %
    assert halted.decision == "halt" and [(r.check, r.symbol) for r in halted.rejections] == [
        ("price_sanity", "BTC/USDT")]


def test_a_benchmark_close_near_its_live_price_trades() -> None:
    assert verdict({"BTC/USDT": 100_000.0}).decision == "trade"  # -9.1 %: within the bound
    assert verdict(None).decision == "trade"  # without live input prices only traded symbols are checked
