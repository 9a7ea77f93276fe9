"""Edge: the daily report's carry-sleeve block (``strategy.name = "funding_carry"``): per pair the basis P&L, the
funding the short legs earned, each short's margin ratio and liquidation price (the futures wallet is its margin),
and the 99/95 % 1-day VaR/CVaR of the hedged book from both venues' candles; all at the last rebalance's marks.

Where the numbers come from (the journal and positions.json; the exchange is not asked):
- a leg's trading P&L = its fills' cash flows (sell +, buy -) + what it holds x its mark; a pair's two legs
  together cancel the coin's move, so their sum is the basis P&L (entry/exit spreads included, fees not);
- the futures wallet's margin balance = transfers in - out + the perp legs' trading P&L - their fees + funding,
  so funding earned = margin balance - net transfers - perp trading P&L + perp fees.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import replace

import pandas as pd

from lib.core.errors import CoinbotError
from lib.core.paths import ProjectPaths, venue_dir_name
from lib.core.state import Positions
from lib.core.storage import read_jsonl, read_parquet
from lib.core.symbols import is_perpetual, quote_of, to_perpetual, to_spot
from lib.execution.carry_legs import futures_section
from lib.execution.journal import JournalEvent, parse_journal
from lib.ops.config import Config
from lib.ops.health import newest_closed_open_ms
from lib.ops.risk_report import margin_lines, tail_lines

CARRY_STRATEGY = "funding_carry"


def leg_pnl(fills: Iterable[JournalEvent], held: Mapping[str, float], marks: Mapping[str, float]) -> dict[str, float]:
    """Trading P&L per leg: fills' cash flows + holdings at their marks (fees excluded)."""
    pnl: dict[str, float] = defaultdict(float)
    for fill in fills:
        if fill.symbol and fill.filled_amount_base and fill.average_price:
            sign = -1.0 if fill.requested_side == "buy" else 1.0
            pnl[fill.symbol] += sign * float(fill.filled_amount_base) * fill.average_price
    for symbol, amount in held.items():
        pnl[symbol] += amount * marks.get(symbol, 0.0)
    return dict(pnl)


def net_transfers_to_futures(events: Iterable[JournalEvent]) -> float:
    total = 0.0
    for event in events:
        if event.event == "transferred" and event.requested_notional_quote is not None:
            amount = float(event.requested_notional_quote)
            total += amount if event.reason == "spot->futures" else -amount if event.reason == "futures->spot" else 0.0
    return total


def funding_earned(events: list[JournalEvent], pnl: Mapping[str, float], futures_balance: float) -> float:
    """Margin balance - net transfers in - perp trading P&L + perp fees (see the module docstring)."""
    perp_fees = sum(e.fee_quote or 0.0 for e in events if e.event == "filled" and e.symbol and is_perpetual(e.symbol))
    perp_pnl = sum(v for s, v in pnl.items() if is_perpetual(s))
    return futures_balance - net_transfers_to_futures(events) - perp_pnl + perp_fees


def sleeve_lines(positions: Positions, events: list[JournalEvent], closes: Mapping[str, pd.Series], *, quote: str,
                 max_probability: float, fallback_rate: float, lookback_days: int) -> list[str]:
    """The block's lines from what was read (``closes``: both legs' daily closes, pd.Series by symbol)."""
    own = [e for e in events if (e.mode, e.venue) == (positions.mode, positions.venue)]
    fills = [e for e in own if e.event == "filled"]
    pnl = leg_pnl(fills, positions.amounts_base, positions.marks)
    futures = positions.wallets.get("futures", 0.0)
    lines = [f"carry sleeve (at the marks of the last rebalance): spot wallet {positions.wallets.get('spot', 0.0):.2f}"
             f" / futures wallet {futures:.2f} {quote}; funding earned {funding_earned(own, pnl, futures):+.2f} "
             f"{quote}"]
    coins = sorted({to_spot(s) for s in pnl})
    for spot in coins:
        perp = to_perpetual(spot)
        lines.append(f"  {spot}: basis P&L {pnl.get(spot, 0.0) + pnl.get(perp, 0.0):+.2f} {quote} (spot leg "
                     f"{pnl.get(spot, 0.0):+.2f}, perp leg {pnl.get(perp, 0.0):+.2f}); holds "
                     f"{positions.amounts_base.get(spot, 0.0):g} / {positions.amounts_base.get(perp, 0.0):g}")
    weights = {s: a * positions.marks.get(s, 0.0) / positions.equity_quote for s, a in positions.amounts_base.items()
               if a} if positions.equity_quote > 0 else {}
    lines += tail_lines("carry book (held, both legs: the basis)", weights, closes,
                        lookback_days=lookback_days)
    lines += margin_lines(replace(positions, cash_quote=futures), positions.marks, closes,
                          max_probability=max_probability, fallback_rate=fallback_rate)
    return lines


def carry_lines(paths: ProjectPaths, config: Config, positions: Positions) -> list[str]:
    """The carry book's risk block for report, in place of the one-venue block ([] for any other book: that one
    stays); an unreadable input is a line, never a failed report."""
    if config.strategy.name != CARRY_STRATEGY:
        return []
    from lib.execution.carry_risk import CarryCandles, leg_closes  # the exchange client only for a carry book

    try:
        lines, _ = read_jsonl(paths.journal)
        events = parse_journal(lines)
        candles = CarryCandles(spot=paths, perp=candle_paths(paths, config), timeframe=config.strategy.timeframe)
        closes = leg_closes(candles, [s for s, a in positions.amounts_base.items() if a])
    except CoinbotError as error:
        return [f"carry sleeve: n/a ({error})"]
    return sleeve_lines(positions, events, closes, quote=quote_of(config.data.symbols[0]),
                        max_probability=config.risk.max_liquidation_prob_24h,
                        fallback_rate=config.risk.fallback_maintenance_rate,
                        lookback_days=config.risk.var_lookback_days)


def perp_freshness(paths: ProjectPaths, config: Config, now_ms: int) -> dict[tuple[str, str], int | None]:
    """The health check's view of the carry book's USD-M candles: ``(perp symbol, timeframe) -> newest closed open``
    from the futures venue's directory ({} for any other book), so stale perp data is a health problem too."""
    if config.strategy.name != CARRY_STRATEGY:
        return {}
    return newest_perp_candles(candle_paths(paths, config), config, now_ms)


def candle_paths(paths: ProjectPaths, config: Config) -> ProjectPaths:
    """Where the perps' candles are: the USD-M venue's directory for the carry book, else the book's own."""
    if config.strategy.name != CARRY_STRATEGY:
        return paths
    futures = futures_section(config.exchange, config.carry)
    return ProjectPaths(data_dir=paths.data_dir, state_dir=paths.state_dir,
                        venue=venue_dir_name(futures.id, futures.market_type))


def newest_perp_candles(perp_paths: ProjectPaths, config: Config, now_ms: int) -> dict[tuple[str, str], int | None]:
    """``(perp symbol, timeframe) -> newest closed candle open`` of the carry book's USD-M candles."""
    newest: dict[tuple[str, str], int | None] = {}
    for timeframe in config.data.timeframes:
        for perp in dict.fromkeys(to_perpetual(to_spot(s)) for s in config.data.symbols):
            try:
                frame = read_parquet(perp_paths.ohlcv(timeframe, perp), columns=["timestamp"])
            except CoinbotError:
                frame = None
            stamps = None if frame is None else frame["timestamp"].to_numpy()
            newest[(perp, timeframe)] = newest_closed_open_ms(stamps, now_ms=now_ms, timeframe=timeframe)
    return newest
