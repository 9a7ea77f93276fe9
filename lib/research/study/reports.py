"""Pure: a study's result documents: metrics.json and cost_sensitivity.json contents and the stdout table."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from lib.core.timeframes import format_ms
from lib.research.backtester import BacktestResult
from lib.research.metrics import summary_metrics, years_covered
from lib.research.study.benchmark_curves import STRATEGY_COLUMN
from lib.research.study.json_values import json_safe
from lib.research.study.simulation import Frame

SCHEMA_VERSION = 1  # of metrics.json / walkforward.json / cost_sensitivity.json
SUMMARY_COLUMNS = (
    ("cagr_frac", "CAGR", True), ("volatility_annual_frac", "vol", True), ("sharpe", "Sharpe", False),
    ("sortino", "Sortino", False), ("max_drawdown_frac", "maxDD", True), ("calmar", "Calmar", False),
    ("turnover_annual", "turn/yr", False), ("cost_drag_annual_frac", "costs/yr", True),
)  # fmt: skip
"""(metric, header, shown as percent) of the stdout summary table."""


def metrics_report(result: BacktestResult, benchmarks: Frame, *, timeframe: str) -> dict[str, Any]:
    """Headline metrics of the strategy and of each benchmark (JSON-safe: undefined = None)."""
    traded_quote = float(result.trades["notional_quote"].sum())
    years, mean_equity = years_covered(result.equity, timeframe=timeframe), float(result.equity.mean())
    costs_quote = result.fees_paid_quote + result.slippage_paid_quote
    report: dict[str, Any] = {STRATEGY_COLUMN: summary_metrics(
        result.equity, timeframe=timeframe, weights=result.weights, traded_notional_quote=traded_quote) | {
        "net_exposure_frac": float(result.weights.sum(axis=1).mean()),
        "fees_paid_quote": result.fees_paid_quote, "slippage_paid_quote": result.slippage_paid_quote,
        "funding_paid_quote": result.funding_paid_quote,
        "trade_count": len(result.trades), "final_equity_quote": float(result.equity.iloc[-1]),
        "cost_drag_annual_frac": costs_quote / mean_equity / years if years > 0 and mean_equity > 0 else math.nan,
        "halted_bars": 0 if result.live_risk is None else result.live_risk.halted_bars,
        "reduce_only_bars": 0 if result.live_risk is None else result.live_risk.reduce_only_bars,
        "data_end_exit_count": len(result.data_end_exits),
    } | {key: value for key, value in tail_risk_counts(result).items() if key != "tail_risk_action"}}  # fmt: skip
    for name in benchmarks.columns:
        curve = benchmarks[name].reindex(result.equity.index)
        final = {"final_equity_quote": float(curve.iloc[-1])}
        report[name] = summary_metrics(curve, timeframe=timeframe) | final
    return json_safe(report)  # type: ignore[no-any-return]

def live_risk_report(result: BacktestResult) -> dict[str, Any]:
    """What the modelled ``[risk]`` layer did (``modelled: false`` when the run had it off)."""
    risk = result.live_risk
    if risk is None:
        return {"modelled": False}
    halted_at = None if risk.halted_at_ms is None else format_ms(risk.halted_at_ms)
    return {"modelled": True, "halted_at": halted_at, "halted_bars": risk.halted_bars,
            "reduce_only_bars": risk.reduce_only_bars, "reduce_only_days": risk.reduce_only_days,
            "blocked_ticks": dict(risk.blocked_ticks), "clipped_ticks": risk.clipped_ticks,
            "tail_risk": tail_risk_counts(result),
            "halts": [{"halted_at": format_ms(start), "rearmed_at": None if end is None else format_ms(end)}
                      for start, end in risk.halts]}

def tail_risk_counts(result: BacktestResult) -> dict[str, Any]:
    """The modelled pre-trade tail-risk pass: rebalance bars scaled (their mean and smallest factor: 1.0 when none
    was cut) or refused (``tail_unknown_bars`` of them because the risk could not be estimated)."""
    risk = result.live_risk
    scales = () if risk is None else risk.tail_scales
    return {"tail_risk_action": "off" if risk is None else risk.tail_action,
            "tail_scaled_bars": len(scales), "tail_mean_scale": sum(scales) / len(scales) if scales else 1.0,
            "tail_min_scale": min(scales) if scales else 1.0,
            "tail_refused_bars": 0 if risk is None else risk.tail_refused_ticks + risk.tail_unknown_ticks,
            "tail_unknown_bars": 0 if risk is None else risk.tail_unknown_ticks}

def tail_risk_line(result: BacktestResult) -> str:
    """One line of the run's summary: what the tail-risk pass did (or that it was not modelled)."""
    counts = tail_risk_counts(result)
    if result.live_risk is None:
        return "tail risk (VaR/CVaR pre-trade pass): not modelled (no live risk layer)"
    if counts["tail_risk_action"] == "off":
        return "tail risk (VaR/CVaR pre-trade pass): off (risk.tail_risk_action)"
    mean = f", mean factor {counts['tail_mean_scale']:.3f}" if counts["tail_scaled_bars"] else ""
    return (f"tail risk ({counts['tail_risk_action']}): {counts['tail_scaled_bars']} rebalance bar(s) scaled{mean}; "
            f"{counts['tail_refused_bars']} refused ({counts['tail_unknown_bars']} risk unknown)")

def cost_report(table: Frame) -> dict[str, Any]:
    """lib.research.walkforward.cost_sensitivity's table (one row per fee_bps) as JSON."""
    rows = {f"{float(fee_bps):g}": row.to_dict() for fee_bps, row in table.iterrows()}
    varied = "backtest.fee_bps (slippage unchanged)"
    return json_safe({"schema_version": SCHEMA_VERSION, "varied": varied, "by_fee_bps": rows})  # type: ignore[no-any-return]

def summary_table(title: str, metrics: Mapping[str, Mapping[str, Any]]) -> str:
    """The script's stdout: one line per curve (strategy first), SUMMARY_COLUMNS; '-' = undefined."""
    lines = [title, f"{'':<28}" + "".join(f"{header:>9}" for _, header, _ in SUMMARY_COLUMNS)]
    for name, values in metrics.items():
        cells = [_cell(values.get(key), as_percent=as_percent) for key, _, as_percent in SUMMARY_COLUMNS]
        lines.append(f"{name:<28}" + "".join(cells))
    return "\n".join(lines)

def _cell(value: float | None, *, as_percent: bool) -> str:
    return f"{'-':>9}" if value is None else f"{value:>9.1%}" if as_percent else f"{value:>9.2f}"
