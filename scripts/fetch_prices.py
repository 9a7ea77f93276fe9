"""Fetch missing OHLCV candles (and perpetual funding) for the universe into data/ (incremental, validated, atomic).

"Nothing new" is read from each file's Parquet footer; the exchange is contacted only for series that may be due.
Each series is written once complete. Some symbols failing is PARTIAL (exit 5: run_pipeline goes on; each symbol
alerted once, when it starts failing, held ones flagged); all failing is exit 1. A kept price jump is alerted and
quarantined by compute_signals. ``funding_carry``: the spot and the USD-M venue (lib.ops.carry_signals).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace

from loguru import logger
from tqdm import tqdm

from lib.core import storage
from lib.core.errors import CoinbotError, DataError, PartialFailure, StateError
from lib.core.state import Positions
from lib.core.symbols import to_traded_symbols
from lib.core.timeframes import format_ms
from lib.core.venue import MarketData
from lib.data import funding, ohlcv, symbol_failures
from lib.data.fetcher import due_series, exchange_now_ms, fetch_candle_update, fetch_funding_update
from lib.ops.carry_signals import carry_fetch_or
from lib.ops.runner import RunContext, base_parser, run_script


@dataclass
class Summary:
    updated: int = 0
    unchanged: int = 0
    failures: dict[str, str] = field(default_factory=dict)  # symbol -> what failed (all its series)
    jumps: list[str] = field(default_factory=list)  # price jumps kept after a re-fetch: quarantined

    def fail(self, symbol: str, what: str) -> None:
        self.failures[symbol] = f"{self.failures[symbol]}; {what}" if symbol in self.failures else what


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--symbols", nargs="*", help="only these symbols (default: data.symbols from config)")
    parser.add_argument("--progress", action="store_true", help="show a progress bar even when not on a terminal")
    return run_script("fetch_prices", parser.parse_args(argv), carry_fetch_or(_run))


def _run(ctx: RunContext) -> None:
    settings, market_type = ctx.config.data, ctx.config.exchange.market_type
    symbols = to_traded_symbols(ctx.args.symbols or settings.symbols, market_type=market_type)
    due = due_series(ctx.paths, symbols, settings.timeframes, now_ms=ctx.now_ms)  # from file footers
    summary = Summary(unchanged=len(symbols) * len(settings.timeframes) - len(due))
    funding_due = market_type == "swap" and settings.fetch_funding
    if due or funding_due:  # the exchange (and ccxt) only when something may be new
        from lib.execution.venue_session import connect_market_data
        venue = connect_market_data(ctx.config.exchange, ctx.secrets, now_ms=ctx.now_ms, simulated=ctx.config.simulated)
        ctx = replace(ctx, now_ms=exchange_now_ms(venue, ctx.now_ms))  # never ahead of the exchange's clock
        show_progress = ctx.args.progress or sys.stderr.isatty()
        with tqdm(desc="candles", unit="c", disable=not show_progress, file=sys.stderr) as progress:
            for symbol in symbols:
                for timeframe in (timeframe for timeframe in settings.timeframes if (symbol, timeframe) in due):
                    _update_series(ctx, venue, symbol, timeframe, summary, progress.update)
                if funding_due:
                    _update_funding(ctx, venue, symbol, summary)
    logger.info("fetch_prices: {} series updated, {} unchanged, {} symbol(s) failed", summary.updated,
                summary.unchanged, len(summary.failures))
    if summary.jumps:
        ctx.alert("coinbot: price jump(s) kept after a re-fetch, QUARANTINED (not used for signals until later "
                  "candles confirm them, or a person runs scripts.confirm_jump):\n- " + "\n- ".join(summary.jumps))
    _report_failures(ctx, summary, symbols)


def _report_failures(ctx: RunContext, summary: Summary, symbols: list[str]) -> None:
    """Alert each symbol once when it starts failing; PARTIAL while some symbols are healthy, else a failure."""
    ledger = symbol_failures.parse_ledger(storage.read_json(ctx.paths.symbol_failures)
                                          if ctx.paths.symbol_failures.exists() else None)
    update = symbol_failures.update_ledger(ledger, summary.failures, attempted=symbols,
                                           configured=ctx.config.data.symbols, now_ms=ctx.now_ms)
    if update.failing or ledger:
        storage.write_json_atomic(ctx.paths.symbol_failures, symbol_failures.to_document(update.failing))
    for line in symbol_failures.change_lines(ledger, update):  # recovered, or no longer configured: forgotten
        logger.info("{}", line)
    if not summary.failures:
        return
    text = "; ".join(f"{symbol}: {error}" for symbol, error in sorted(summary.failures.items()))
    if len(summary.failures) == len(symbols):
        raise DataError(f"every symbol failed: {text}")
    if update.new:
        ctx.alert(symbol_failures.alert_text(update.new, summary.failures, held=_held_symbols(ctx),
                                             healthy_count=len(symbols) - len(summary.failures)))
    raise PartialFailure(f"{len(summary.failures)} of {len(symbols)} symbol(s) failed (each alerted once): {text}")


def _held_symbols(ctx: RunContext) -> set[str]:
    """Symbols positions.json holds (best effort: the alert must go out even when the file is bad)."""
    try:
        positions = Positions.from_dict(storage.read_json(ctx.paths.positions))
    except StateError:
        return set()
    return {symbol for symbol, amount in positions.amounts_base.items() if amount}


def _update_series(ctx: RunContext, venue: MarketData, symbol: str, timeframe: str, summary: Summary,
                   on_page: object) -> None:
    settings = ctx.config.data
    candles_path, gaps_path = ctx.paths.ohlcv(timeframe, symbol), ctx.paths.known_gaps(timeframe, symbol)
    try:
        stored = storage.read_parquet(candles_path, columns=ohlcv.OHLCV_COLUMNS, dtypes=ohlcv.OHLCV_DTYPES)
        stored_gaps = storage.read_parquet(gaps_path, columns=ohlcv.KNOWN_GAP_COLUMNS)
        update = fetch_candle_update(venue, symbol, timeframe, stored=stored, stored_gaps=stored_gaps,
                                     backfill_start_ms=settings.backfill_start_ms, now_ms=ctx.now_ms,
                                     limit=settings.fetch_limit, max_jump_frac=settings.max_jump_frac,
                                     on_page=on_page)  # type: ignore[arg-type]
    except CoinbotError as error:
        logger.error("{} {}: {}", symbol, timeframe, error)
        summary.fail(symbol, f"{timeframe}: {type(error).__name__}: {error}")
        return
    summary.jumps += [f"{symbol} {timeframe} {format_ms(jump.timestamp_ms)}: {jump.detail}"
                      for jump in update.jumps_kept]
    if update.new_gaps:
        storage.write_parquet_atomic(gaps_path, update.known_gaps)
    if update.new_rows == 0:
        summary.unchanged += 1
        logger.debug("{} {}: nothing new ({} request(s))", symbol, timeframe, update.requests)
        return
    storage.write_parquet_atomic(candles_path, update.candles)
    summary.updated += 1
    first, last = update.candles["timestamp"].iloc[-update.new_rows], update.candles["timestamp"].iloc[-1]
    logger.info("fetched {} candles {} {} ({} → {}), {} request(s)", update.new_rows, symbol, timeframe,
                format_ms(int(first)), format_ms(int(last)), update.requests)


def _update_funding(ctx: RunContext, venue: MarketData, symbol: str, summary: Summary) -> None:
    settings, path = ctx.config.data, ctx.paths.funding(symbol)
    try:
        stored = storage.read_parquet(path, columns=funding.FUNDING_COLUMNS)
        merged, new_rows = fetch_funding_update(
            venue, symbol, stored=stored, backfill_start_ms=settings.backfill_start_ms, now_ms=ctx.now_ms,
            limit=settings.fetch_limit, max_abs_rate=settings.max_funding_abs_rate,
        )
    except CoinbotError as error:
        logger.error("{} funding: {}", symbol, error)
        summary.fail(symbol, f"funding: {type(error).__name__}: {error}")
        return
    if new_rows:
        storage.write_parquet_atomic(path, merged)
        logger.info("fetched {} funding rates {}", new_rows, symbol)


if __name__ == "__main__":
    sys.exit(main())
