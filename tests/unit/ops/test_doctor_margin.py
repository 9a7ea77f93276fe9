"""doctor's perp-margin rows (lib.ops.doctor_margin.check_perp_margin) on hand-computed shorts."""

from __future__ import annotations

from lib.core.state import Positions
from lib.execution.risk import RiskLimits
from lib.ops.doctor import FileFacts
from lib.ops.doctor_margin import check_perp_margin

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
