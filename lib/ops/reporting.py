"""Pure: the daily report's numbers: the book marked to market, the equity.csv row layout, buy-and-hold
benchmarks since inception, PnL for the day and since inception, metrics vs the benchmarks, the chart's
frames and the summary text.

The metrics are lib.research.metrics' (the backtest's), computed on the last equity.csv row of each UTC day, so the
live numbers and the backtest's mean the same thing whatever the report's cron cadence. Deposits and withdrawals
(state/cashflows.jsonl) are not P&L: the day's P&L, the P&L since inception and the metrics leave them out (a flow
counts from the first report after its time; one the last rebalance has not valued yet is added to the equity).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lib.core.errors import DataError, StateError
from lib.core.state import Positions
from lib.core.symbols import is_perpetual
from lib.core.timeframes import MS_PER_DAY, floor_ms, format_ms, last_closed_open_ms
from lib.execution.cashflows import CashFlow, sum_flows_quote
from lib.ops.equity_csv import EquityRow
from lib.ops.health import HealthReport, to_health_table
from lib.research.metrics import buy_and_hold_equity, drawdown_series, equal_weight_equity, summary_metrics

METRICS_TIMEFRAME = "1d"  # metrics run on the last row of each UTC day
METRIC_ROWS = (("total_return_frac", "total return", "pct"), ("max_drawdown_frac", "max drawdown", "pct"),
               ("volatility_annual_frac", "volatility (ann.)", "pct"), ("sharpe", "sharpe", "num"),
               ("sortino", "sortino", "num"))
CURVE_NAMES = {"equity_quote": "strategy", "btc_benchmark_quote": "BTC buy & hold",
               "basket_benchmark_quote": "equal-weight basket"}


@dataclass(frozen=True, slots=True, kw_only=True)
class BookMark:
    """The book at report prices. ``values_quote`` are signed notionals (amount x price)."""

    equity_quote: float
    gross_exposure_quote: float
    exposure_gross_frac: float  # NaN when equity <= 0
    prices: dict[str, float]
    values_quote: dict[str, float]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Performance:
    equity_quote: float
    day_pnl_quote: float
    day_pnl_frac: float
    day_reference: str  # what the day's PnL is measured against
    inception_ms: int
    inception_pnl_quote: float
    inception_pnl_frac: float
    btc_benchmark_quote: float
    basket_benchmark_quote: float
    fees_paid_quote: float
    exposure_gross_frac: float
    metrics: dict[str, dict[str, float]]  # curve name -> summary_metrics; {} with < 2 days of history
    days: int  # UTC days with a report row
    history_start_ms: int  # time of the first equity.csv row (the metrics' period starts there)


@dataclass(frozen=True, slots=True)
class ChartFrames:
    """Columns = curve names, tz-aware UTC DatetimeIndex; drawdowns are fractions <= 0."""

    curves_quote: pd.DataFrame
    drawdowns_frac: pd.DataFrame


def to_close_frame(candles_by_symbol: Mapping[str, pd.DataFrame], *, now_ms: int,
                   timeframe: str) -> pd.DataFrame:
    """Wide closes (index: candle open ms, one column per symbol) of the candles CLOSED at ``now_ms``."""
    cutoff_ms = last_closed_open_ms(now_ms, timeframe)
    columns = {symbol: frame.loc[frame["timestamp"] <= cutoff_ms].set_index("timestamp")["close"]
               for symbol, frame in candles_by_symbol.items()}
    wide = pd.DataFrame(columns, dtype="float64").sort_index()
    wide.index = wide.index.astype("int64")
    wide.index.name = "timestamp"
    return wide


def latest_prices(close_wide: pd.DataFrame) -> dict[str, float]:
    """Each symbol's newest close (symbols without any close are left out)."""
    return {str(symbol): float(column.dropna().iloc[-1]) for symbol, column in close_wide.items()
            if column.notna().any()}


def compute_mark_to_market(positions: Positions, prices: Mapping[str, float], *,
                            pending_flows_quote: float = 0.0) -> BookMark:
    """equity = cash + sum(amount x price) for spot; + sum(amount x (price - mark)) for perps, whose
    ``cash_quote`` already holds the unrealized PnL at the rebalance marks. A held symbol without a price
    is valued at its rebalance mark (and noted). ``pending_flows_quote``: cash flows recorded after the last
    rebalance (not in positions.json's cash yet, but moved already): added to the cash (and noted).

    Raises:
        DataError: a held symbol has neither a price nor a mark.
    """
    equity, gross_quote = positions.cash_quote + pending_flows_quote, 0.0
    used: dict[str, float] = {}
    values: dict[str, float] = {}
    notes: list[str] = []
    if pending_flows_quote:
        notes.append(f"cash flows recorded since the last rebalance: {_signed(pending_flows_quote)} (counted in "
                     "the equity)")
    for symbol, amount in sorted(positions.amounts_base.items()):
        if amount == 0:
            continue
        mark = positions.marks.get(symbol)
        price = prices.get(symbol)
        if price is None:
            if mark is None:
                raise DataError(f"cannot value {symbol}: no stored candle and no mark in positions.json; "
                                "run fetch_prices")
            price = mark
            notes.append(f"{symbol} valued at the rebalance mark {mark:g} (no stored candle)")
        if is_perpetual(symbol):
            if mark is None:
                raise StateError(f"positions.json holds the perp {symbol} without a mark: cannot value it")
            equity += amount * (price - mark)
        else:
            equity += amount * price
        used[symbol], values[symbol] = float(price), amount * float(price)
        gross_quote += abs(values[symbol])
    return BookMark(equity_quote=float(equity), gross_exposure_quote=gross_quote,
                    exposure_gross_frac=gross_quote / equity if equity > 0 else math.nan,
                    prices=used, values_quote=values, notes=tuple(notes))


def compute_benchmark_curves(close_wide: pd.DataFrame, *, inception_ms: int, inception_equity_quote: float,
                             timeframe: str, btc_symbol: str) -> pd.DataFrame:
    """Buy-and-hold value of the inception equity, bought at the last close known at ``inception_ms``
    (or the first stored one if later), in BTC and in an equal-weight basket of the symbols priced then.

    Columns ``btc_benchmark_quote``, ``basket_benchmark_quote`` (NaN when there are no prices).
    """
    start_ms = last_closed_open_ms(inception_ms, timeframe)
    before = close_wide.index[close_wide.index <= start_ms]
    window = close_wide.loc[before[-1]:] if len(before) else close_wide
    nan_curve = pd.Series(np.nan, index=window.index)
    btc = window.get(btc_symbol)
    btc_curve = (buy_and_hold_equity(btc, starting_capital_quote=inception_equity_quote)
                 if btc is not None and btc.notna().any() else nan_curve)
    basket_curve = (equal_weight_equity(window, starting_capital_quote=inception_equity_quote)
                    if len(window) and window.iloc[0].notna().any() else nan_curve)
    return pd.DataFrame({"btc_benchmark_quote": btc_curve, "basket_benchmark_quote": basket_curve})


def to_equity_row(*, now_ms: int, mark: BookMark, benchmarks: pd.DataFrame,
                  fees_paid_quote: float) -> EquityRow:
    last = benchmarks.iloc[-1] if len(benchmarks) else pd.Series(dtype="float64")
    return EquityRow(time_ms=now_ms, equity_quote=mark.equity_quote,
                     btc_benchmark_quote=float(last.get("btc_benchmark_quote", math.nan)),
                     basket_benchmark_quote=float(last.get("basket_benchmark_quote", math.nan)),
                     fees_paid_quote=fees_paid_quote, exposure_gross_frac=mark.exposure_gross_frac)


def to_daily_history(history: pd.DataFrame) -> pd.DataFrame:
    """The last row of each UTC day, indexed by that day's start (ms)."""
    days_ms = (history["time_ms"] - history["time_ms"] % MS_PER_DAY).rename("day_ms")
    last_rows = history.groupby(days_ms, sort=True).tail(1)
    return last_rows.set_index(days_ms.loc[last_rows.index])


def compute_day_reference(history: pd.DataFrame, *, now_ms: int, day_start_equity_quote: float,
                          day_start_ms: int) -> tuple[float, str]:
    """The equity the day's PnL is measured from: the last report row of the previous UTC day, else the
    rebalance's start-of-day equity."""
    previous = _previous_day_report(history, now_ms=now_ms)
    if previous is not None:
        return float(previous["equity_quote"]), f"report {previous['time_iso']}"
    return day_start_equity_quote, f"day start {format_ms(day_start_ms)}"


def _previous_day_report(history: pd.DataFrame, *, now_ms: int) -> pd.Series | None:
    """The last row of the previous UTC day with a known equity, if any."""
    today_ms = floor_ms(now_ms, "1d")
    earlier = history[(history["time_ms"] < today_ms) & (history["time_ms"] >= today_ms - MS_PER_DAY)]
    if len(earlier) and math.isfinite(earlier["equity_quote"].iloc[-1]):
        return earlier.iloc[-1]
    return None


def pending_flows_quote(positions: Positions, flows: Sequence[CashFlow], *, now_ms: int) -> float:
    """The net flow recorded after the last rebalance valued the book (not in positions.json yet)."""
    return sum_flows_quote(flows, after_ms=positions.updated_ms, until_ms=now_ms)


def to_flow_free_curves(daily: pd.DataFrame, flows: Sequence[CashFlow], *,
                        inception_equity_quote: float) -> pd.DataFrame:
    """``daily``'s curves without the jumps cash flows make: the strategy as a time-weighted return index (a
    day's return is its equity over the previous one plus the day's net flow: a flow moves at once), each
    benchmark divided by the inception equity its row was computed from (today's minus the flows after that
    row) and scaled to today's."""
    if not flows or daily.empty:
        return daily
    times = daily["time_ms"].to_numpy()
    equity = daily["equity_quote"].to_numpy(dtype="float64")
    starts = [equity[i - 1] + sum_flows_quote(flows, after_ms=int(times[i - 1]), until_ms=int(times[i]))
              for i in range(1, len(times))]
    growth = [1.0] + [equity[i] / start if start > 0 else math.nan for i, start in enumerate(starts, start=1)]
    adjusted = daily.copy()
    adjusted["equity_quote"] = equity[0] * np.cumprod(growth)
    later = np.array([sum_flows_quote(flows, after_ms=int(time), until_ms=2**62) for time in times])
    row_inception = inception_equity_quote - later
    scale = np.where(row_inception > 0, inception_equity_quote / np.where(row_inception > 0, row_inception, 1.0),
                     math.nan)
    for column in ("btc_benchmark_quote", "basket_benchmark_quote"):
        adjusted[column] = daily[column].to_numpy(dtype="float64") * scale
    return adjusted


def compute_curve_metrics(history: pd.DataFrame, *, flows: Sequence[CashFlow] = (),
                          inception_equity_quote: float = math.nan) -> dict[str, dict[str, float]]:
    """summary_metrics of the strategy and each benchmark over the same days ({} with < 2 days), cash flows
    taken out (``to_flow_free_curves``; ``inception_equity_quote``: today's, flows included)."""
    daily = to_flow_free_curves(to_daily_history(history), flows, inception_equity_quote=inception_equity_quote)
    out: dict[str, dict[str, float]] = {}
    for column, name in CURVE_NAMES.items():
        curve = daily[column].astype("float64")
        if len(curve) >= 2 and curve.notna().all():
            out[name] = summary_metrics(curve, timeframe=METRICS_TIMEFRAME)
    return out


def compute_performance(history: pd.DataFrame, positions: Positions, row: EquityRow, *,
                        now_ms: int, flows: Sequence[CashFlow] = ()) -> Performance:
    """PnL for the day and since inception, and the metrics of ``history`` (which holds ``row``); ``flows``
    (state/cashflows.jsonl) are taken out of all of them."""
    pending = pending_flows_quote(positions, flows, now_ms=now_ms)
    reference, label = compute_day_reference(history, now_ms=now_ms, day_start_ms=positions.day_start_ms,
                                             day_start_equity_quote=positions.day_start_equity_quote + pending)
    previous = _previous_day_report(history, now_ms=now_ms)
    if previous is not None:  # that report's equity, moved by the flows since it
        net = sum_flows_quote(flows, after_ms=int(previous["time_ms"]), until_ms=now_ms)
        if net:
            reference, label = reference + net, f"{label}, net of cash flows {_signed(net)}"
    inception = positions.inception_equity_quote + pending
    return Performance(
        equity_quote=row.equity_quote, day_pnl_quote=row.equity_quote - reference,
        day_pnl_frac=row.equity_quote / reference - 1 if reference > 0 else math.nan, day_reference=label,
        inception_ms=positions.inception_ms, inception_pnl_quote=row.equity_quote - inception,
        inception_pnl_frac=row.equity_quote / inception - 1 if inception > 0 else math.nan,
        btc_benchmark_quote=row.btc_benchmark_quote, basket_benchmark_quote=row.basket_benchmark_quote,
        fees_paid_quote=row.fees_paid_quote, exposure_gross_frac=row.exposure_gross_frac,
        metrics=compute_curve_metrics(history, flows=flows, inception_equity_quote=inception),
        days=len(to_daily_history(history)),
        history_start_ms=int(history["time_ms"].iloc[0]) if len(history) else row.time_ms,
    )


def build_chart_frames(history: pd.DataFrame) -> ChartFrames:
    """Equity and benchmark curves of the history, and each one's drawdown (curves without data dropped)."""
    index = pd.DatetimeIndex(pd.to_datetime(history["time_ms"].to_numpy(), unit="ms", utc=True), name="time")
    shown = {column: name for column, name in CURVE_NAMES.items() if history[column].notna().any()}
    curves = pd.DataFrame({name: history[column].to_numpy(dtype="float64") for column, name in shown.items()},
                          index=index)
    drawdowns = pd.DataFrame({name: drawdown_series(curve.ffill()) for name, curve in curves.items()},
                             index=index)
    return ChartFrames(curves, drawdowns)


def build_summary_text(*, now_ms: int, title: str, health: HealthReport, quote: str,
                       performance: Performance | None = None, mark: BookMark | None = None,
                       notes: Sequence[str] = (), max_positions: int = 10, risk: Sequence[str] = ()) -> str:
    """The Telegram summary (plain text). Without a performance (no positions.json yet) it says so. ``risk``:
    the tail-risk and margin block (lib.ops.risk_report)."""
    lines = [f"coinbot report {format_ms(now_ms)} ({title})"]
    if performance is None or mark is None:
        lines.append("no positions yet: state/positions.json does not exist (rebalance has not run)")
    else:
        lines += [*_performance_lines(performance, mark, quote=quote, max_positions=max_positions), *risk]
    lines += [f"note: {note}" for note in notes]
    return "\n".join([*lines, "", to_health_table(health)])


def _performance_lines(perf: Performance, mark: BookMark, *, quote: str, max_positions: int) -> list[str]:
    inception = format_ms(perf.inception_ms)[:10]
    day_frac = _pct(perf.day_pnl_frac, signed=True)
    inception_frac = _pct(perf.inception_pnl_frac, signed=True)
    lines = [
        f"equity {_money(perf.equity_quote)} {quote}",
        f"day {_signed(perf.day_pnl_quote)} {quote} ({day_frac}) vs {perf.day_reference}",
        f"since {inception}: {_signed(perf.inception_pnl_quote)} {quote} ({inception_frac})",
        f"buy & hold since {inception}: BTC {_money(perf.btc_benchmark_quote)}, "
        f"basket {_money(perf.basket_benchmark_quote)}",
        f"exposure gross {_pct(perf.exposure_gross_frac)}, fees paid {_money(perf.fees_paid_quote)} {quote}",
    ]
    held = sorted(mark.values_quote.items(), key=lambda item: -abs(item[1]))
    for symbol, value in held[:max_positions]:
        share = value / perf.equity_quote if perf.equity_quote > 0 else math.nan
        lines.append(f"  {symbol} {_money(value)} ({_pct(share)}) @ {mark.prices[symbol]:g}")
    if len(held) > max_positions:
        lines.append(f"  ... and {len(held) - max_positions} more")
    lines += [f"note: {note}" for note in mark.notes]
    if perf.metrics:
        names = list(perf.metrics)
        lines.append(f"metrics since {format_ms(perf.history_start_ms)[:10]} ({perf.days} daily closes): "
                     + " | ".join(names))
        for key, label, kind in METRIC_ROWS:
            cells = [_pct(perf.metrics[name][key]) if kind == "pct" else _num(perf.metrics[name][key])
                     for name in names]
            lines.append(f"  {label}: " + " | ".join(cells))
    else:
        lines.append("metrics: need 2+ days of equity history")
    return lines


def _money(value: float) -> str:
    return f"{value:,.2f}" if math.isfinite(value) else "n/a"


def _signed(value: float) -> str:
    return f"{value:+,.2f}" if math.isfinite(value) else "n/a"


def _pct(value: float, *, signed: bool = False) -> str:
    if not math.isfinite(value):
        return "n/a"
    value += 0.0  # -0.0 -> 0.0, so a zero is never shown as "-0.0%"
    return f"{value:+.2%}" if signed else f"{value:.1%}"


def _num(value: float) -> str:
    return f"{value:.2f}" if math.isfinite(value) else "n/a"
