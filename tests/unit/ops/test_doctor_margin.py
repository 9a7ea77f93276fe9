"""doctor's perp-margin rows (lib.ops.doctor_margin.check_perp_margin) on hand-computed shorts."""

from __future__ import annotations

from decimal import Decimal

from lib.core.state import Positions
from lib.execution.risk import RiskLimits
from lib.ops.config import Config
from lib.ops.doctor import FileFacts
from lib.ops.doctor_margin import amount_steps, check_perp_data, check_perp_margin, check_wallets

BTC = "BTC/USDT:USDT"


def facts(cash: float, amounts: dict[str, float]) -> FileFacts:
    positions = Positions(mode="paper", venue="binanceusdm_swap", updated_ms=0, cash_quote=cash, amounts_base=amounts,
                          marks={BTC: 50_000.0, "ETH/USDT:USDT": 3_000.0}, equity_quote=cash,
                          high_water_mark_quote=cash, day_start_ms=0, day_start_equity_quote=cash, inception_ms=0,
                          inception_equity_quote=cash)
    return FileFacts(exists=True, document=positions.to_dict())


def test_ok_warn_and_fail_rows() -> None:
    # 0.1 BTC short on 500: L = 54 780.9 (+9.6 %); sigma 3 % -> P 0.2335 % (ok), sigma 5 % -> 6.78 % (warn)
    ok = check_perp_margin(facts(500.0, {BTC: -0.1}), {BTC: 0.03}, limits=RiskLimits())
    assert [(f.status, f.check) for f in ok] == [("ok", "perp margin")]
    assert "margin ratio 0.0400, liquidation price 54780.9 (+9.6%), P(24 h) 0.234%" in ok[0].detail
    warn = check_perp_margin(facts(500.0, {BTC: -0.1}), {BTC: 0.05}, limits=RiskLimits())
    assert warn[0].status == "warn" and "cuts it to 0.0643993" in warn[0].what_to_do
    assert "276.41 collateral" in warn[0].what_to_do
    # balance 10 against maintenance 20: margin ratio 2 -> past liquidation
    fail = check_perp_margin(facts(10.0, {BTC: -0.1}), {BTC: 0.03}, limits=RiskLimits())
    assert fail[0].status == "fail" and "at or past liquidation" in fail[0].detail


def test_no_shorts_no_row_and_unknown_risk_warns() -> None:
    assert check_perp_margin(facts(500.0, {"ETH/USDT:USDT": 1.0}), {}, limits=RiskLimits()) == []
    assert check_perp_margin(FileFacts(exists=False), {}, limits=RiskLimits()) == []
    unknown = check_perp_margin(facts(500.0, {BTC: -0.1}), {}, limits=RiskLimits())
    assert unknown[0].status == "warn" and "volatility" in unknown[0].detail


def carry_facts(spot: float, futures: float) -> FileFacts:
    """A carry book: positions.json's cash is both wallets; the short's margin is the futures wallet alone."""
    positions = Positions(mode="testnet", venue="binance", updated_ms=0, cash_quote=spot + futures,
                          amounts_base={"BTC/USDT": 0.1, BTC: -0.1}, marks={"BTC/USDT": 50_000.0, BTC: 50_000.0},
                          equity_quote=spot + futures + 5_000.0, high_water_mark_quote=0.0, day_start_ms=0,
                          day_start_equity_quote=0.0, inception_ms=0, inception_equity_quote=0.0,
                          wallets={"spot": spot, "futures": futures})
    return FileFacts(exists=True, document=positions.to_dict())


def test_a_carry_short_is_margined_by_the_futures_wallet_only() -> None:
    # the same 0.1 BTC short on a 500 futures wallet as above (L = 54 780.9), although spot holds 4 500 more
    rows = check_perp_margin(carry_facts(4_500.0, 500.0), {BTC: 0.03}, limits=RiskLimits())
    assert "margin ratio 0.0400, liquidation price 54780.9 (+9.6%)" in rows[0].detail
    assert [r.detail for r in check_wallets(carry_facts(4_500.0, 500.0), "USDT")] == [
        "spot 4500.00 USDT free, futures 500.00 USDT margin balance (at 1970-01-01T00:00Z)"]
    assert check_wallets(facts(500.0, {BTC: -0.1}), "USDT")[0].status == "warn"  # a carry book without wallets


def test_perp_data_rows() -> None:
    hour = 3_600_000
    now = 100 * hour + 60_000  # the last closed 1h candle opened at 99 h
    rows = check_perp_data({(BTC, "1h"): 99 * hour, ("ETH/USDT:USDT", "1h"): 90 * hour, ("XRP/USDT:USDT", "1h"): None},
                           now_ms=now, max_staleness_bars=2)
    assert [(r.detail.split(" ")[0], r.status) for r in rows] == [(BTC, "ok"), ("ETH/USDT:USDT", "warn"),
                                                                  ("XRP/USDT:USDT", "warn")]
    assert "9 bar(s) behind" in rows[1].detail and "no stored candles" in rows[2].detail


def test_amount_steps_of_the_simulated_markets() -> None:
    # the simulated exchange's lots (lib.execution.simulated.market_rules) at BTC's anchor 25 000: spot
    # 10^floor(log10(1 / 25 000)) = 0.00001, perp 10^floor(log10(30 / 25 000)) = 0.001; no network
    steps, unknown = amount_steps(Config(), {"BTC/USDT", BTC, "NOPE/USDT"}, now_ms=1_767_225_600_000)
    assert steps == {"BTC/USDT": Decimal("0.00001"), BTC: Decimal("0.001")}
    assert unknown == "NOPE/USDT not listed on simulated"
