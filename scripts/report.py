"""Mark the book to market, append state/equity.csv, chart it vs buy-and-hold, send the summary, check health.

Story: positions.json (missing = rebalance never ran) -> closed candles -> health from state/runs.jsonl and
each series' newest candle -> mark to market, benchmarks -> one equity.csv row (none if this time has one)
-> state/report.png -> Telegram -> a stale stage fails the run AFTER the row and chart are written, so cron
notices even when the stale one could not alert. --dry-run: stdout only, state/ left byte for byte as it was.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
from loguru import logger

from lib.core import storage
from lib.core.errors import CoinbotError, DataError
from lib.core.state import Positions
from lib.core.symbols import is_perpetual, quote_of, to_traded_symbols
from lib.core.timeframes import format_ms
from lib.data import symbol_failures
from lib.data.stored import read_candle_timestamps, read_valid_candles
from lib.execution.cashflows import CashFlow
from lib.ops import carry_report, equity_csv, reporting, risk_report
from lib.ops.health import HealthReport, check_health, newest_closed_open_ms, to_run_records
from lib.ops.runner import RunContext, base_parser, run_script


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true",
                        help="print the summary, do not send it; write nothing (no equity row, chart or run record)")
    args = parser.parse_args(argv)
    return run_script("report", args, _run, writes_state=not args.dry_run)


def _run(ctx: RunContext) -> None:
    timeframe, positions = ctx.config.strategy.timeframe, _read_positions(ctx.paths.positions)
    universe = to_traded_symbols(ctx.config.data.symbols, market_type=ctx.config.exchange.market_type)
    held = sorted(positions.amounts_base) if positions is not None else []
    candles = {symbol: _read_candles(ctx, timeframe, symbol) for symbol in dict.fromkeys([*universe, *held])}
    health = _check_health(ctx, universe, candles)
    title = f"{ctx.config.exchange.mode}, {ctx.config.exchange.id} {ctx.config.exchange.market_type}"
    quote, chart = quote_of(ctx.config.strategy.benchmark_symbol), None
    if positions is None:
        logger.warning("no {} yet: reporting health only", ctx.paths.positions)
        text = reporting.build_summary_text(now_ms=ctx.now_ms, title=title, health=health, quote=quote)
    else:
        chart, text = _report_book(ctx, positions, candles, universe, health, title=title, quote=quote)
    if ctx.args.dry_run:
        print(text)
    delivered = ctx.args.dry_run or ctx.alert(text, image=chart, incident=False)  # a report, not an incident
    if not health.is_healthy:
        raise DataError("pipeline unhealthy: " + " | ".join(health.problems()))
    if not delivered and ctx.secrets.has_telegram:  # without Telegram settings the log is the channel
        raise CoinbotError("the report summary could not be delivered to Telegram (see the error above)")


def _report_book(ctx: RunContext, positions: Positions, candles: dict[str, pd.DataFrame | None],
                 universe: list[str], health: HealthReport, *, title: str, quote: str) -> tuple[bytes | None, str]:
    timeframe, stored = ctx.config.strategy.timeframe, {s: frame for s, frame in candles.items() if frame is not None}
    closes = reporting.to_close_frame(stored, now_ms=ctx.now_ms, timeframe=timeframe)
    flows = [CashFlow.from_dict(line) for line in storage.read_jsonl(ctx.paths.cashflows)[0]]  # not P&L
    pending = reporting.pending_flows_quote(positions, flows, now_ms=ctx.now_ms)  # not valued by a rebalance yet
    mark = reporting.compute_mark_to_market(positions, reporting.latest_prices(closes), pending_flows_quote=pending)
    benchmarks = reporting.compute_benchmark_curves(
        closes[[symbol for symbol in universe if symbol in closes]], inception_ms=positions.inception_ms,
        inception_equity_quote=positions.inception_equity_quote + pending, timeframe=timeframe,
        btc_symbol=to_traded_symbols([ctx.config.strategy.benchmark_symbol],
                                     market_type=ctx.config.exchange.market_type)[0],
    )
    row = reporting.to_equity_row(now_ms=ctx.now_ms, mark=mark, benchmarks=benchmarks,
                                  fees_paid_quote=positions.fees_paid_quote)
    history = _append_equity_row(ctx, row)
    history = history[history["time_ms"] <= ctx.now_ms]
    performance = reporting.compute_performance(history, positions, row, now_ms=ctx.now_ms, flows=flows)
    chart = None  # a dry run draws none: the chart is only sent, and a dry run leaves state/report.png as it is
    if not ctx.args.dry_run:
        from lib.ops import charts  # matplotlib (~0.35 s, ~40 MB) only when a chart is drawn
        frames = reporting.build_chart_frames(history)
        chart = charts.render_equity_chart(frames.curves_quote, frames.drawdowns_frac, quote=quote,
                                           title=f"coinbot equity vs buy & hold ({title})")
        storage.write_bytes_atomic(ctx.paths.chart, chart)
    logger.info("equity {:.2f} {} (day {:+.2f}, since inception {:+.2f}), gross exposure {:.3f}; "
                "{} history rows", row.equity_quote, quote, performance.day_pnl_quote,
                performance.inception_pnl_quote, row.exposure_gross_frac, len(history))
    risk = risk_report.report_risk(positions, values_quote=mark.values_quote, equity_quote=mark.equity_quote,
                                   prices=mark.prices, candles=candles, timeframe=timeframe, limits=ctx.config.risk,
                                   targets_document=storage.read_json(ctx.paths.targets) if ctx.paths.targets.exists()
                                   else None)  # VaR/CVaR of the book and of each sleeve, perp shorts' margin
    risk = carry_report.carry_lines(ctx.paths, ctx.config, positions) or risk  # funding_carry: both venues
    text = reporting.build_summary_text(now_ms=ctx.now_ms, title=title, health=health, quote=quote,
                                        performance=performance, mark=mark, risk=risk)
    return chart, text


def _append_equity_row(ctx: RunContext, row: equity_csv.EquityRow) -> pd.DataFrame:
    """Append ``row`` unless the history already reaches its time (idempotent re-runs); the new history."""
    path, text = ctx.paths.equity_csv, storage.read_text(ctx.paths.equity_csv)
    history, torn = equity_csv.parse_equity_csv(text)
    if not equity_csv.is_new_row(history, row.time_ms, past_ok=ctx.args.as_of is not None):
        logger.info("{} has a row at or after {}; nothing appended", path, format_ms(row.time_ms))
        return history
    if ctx.args.dry_run:
        return equity_csv.append_row(history, row)
    if torn:  # storage.append_line cuts the partial line, so the new row starts on its own line
        logger.warning("{} ended in a torn line (an interrupted append); the append drops it", path)
    if "\n" not in text:  # not even a complete header line
        storage.append_line(path, equity_csv.to_equity_csv_header())
    storage.append_line(path, equity_csv.to_equity_csv_line(row))
    return equity_csv.append_row(history, row)


def _check_health(ctx: RunContext, universe: list[str], candles: dict[str, pd.DataFrame | None]) -> HealthReport:
    newest = carry_report.perp_freshness(ctx.paths, ctx.config, ctx.now_ms)  # funding_carry: USD-M candles
    for timeframe in ctx.config.data.timeframes:
        for symbol in universe:
            frame = (candles[symbol] if timeframe == ctx.config.strategy.timeframe
                     else _read_candles(ctx, timeframe, symbol, validate=False))
            stamps = None if frame is None else frame["timestamp"].to_numpy()
            newest[(symbol, timeframe)] = newest_closed_open_ms(stamps, now_ms=ctx.now_ms, timeframe=timeframe)
    raw_records, torn = storage.read_jsonl(ctx.paths.runs)
    notes = [f"{ctx.paths.runs.name} ends in a torn line (an interrupted append)"] if torn else []
    notes += [f"TRADING STOPPED: {p.name} exists (README Runbook)" for p in (ctx.paths.halt, ctx.paths.kill_switch)
              if p.exists()]  # a halted book sits in cash: every report says so, not only the halting run
    ledger = storage.read_json(ctx.paths.symbol_failures) if ctx.paths.symbol_failures.exists() else None
    health = check_health(to_run_records(raw_records), newest, now_ms=ctx.now_ms, params=ctx.config.health, notes=notes,
                          known_failing=symbol_failures.parse_ledger(ledger))
    for problem in health.problems():
        logger.warning("{}", problem)
    return health


def _read_positions(path: Path) -> Positions | None:  # None: rebalance never ran; StateError: a bad file
    return Positions.from_dict(storage.read_json(path)) if path.exists() else None


def _read_candles(ctx: RunContext, timeframe: str, symbol: str, *, validate: bool = True) -> pd.DataFrame | None:
    """Stored timestamps and closes (None: no file; a carry book's perp: its USD-M venue's); DataError if invalid."""
    paths = carry_report.candle_paths(ctx.paths, ctx.config) if is_perpetual(symbol) else ctx.paths
    path = paths.ohlcv(timeframe, symbol)
    if not path.exists() or not validate:  # not validated: only the newest candle matters, the timestamps alone
        return read_candle_timestamps(path) if path.exists() else None
    candles = read_valid_candles(path, timeframe, max_jump_frac=ctx.config.data.max_jump_frac)
    return candles[["timestamp", "close"]]  # all the report uses: the rest is freed now (memory)


if __name__ == "__main__":
    sys.exit(main())
