"""Edge: the daily report's carry-sleeve block (``strategy.name = "funding_carry"``): per coin the funding its
short leg earned, the basis P&L gross and net of both legs' fees, each short's margin ratio and liquidation price
(the futures wallet is its margin), and the 99/95 % 1-day VaR/CVaR of the hedged book from both venues' candles; all
at the last rebalance's marks.

Where the numbers come from (the exchange is not asked):
- funding earned: the exchange's own FUNDING_FEE records the rebalance booked in state/funding.jsonl
  (lib.execution.funding_ledger; paper: its simulated settlements, booked the same way), summed per coin;
- a leg's trading P&L = its fills' cash flows (sell +, buy -) + what it holds x its mark (orders.jsonl,
  positions.json); a pair's two legs together cancel the coin's move, so their sum is the basis P&L gross (entry and
  exit spreads included); net = gross - both legs' fees (the fills' ``fee_quote``);
- carry net = basis net + funding earned: what the pair made.

The combined book with the funding-carry sleeve (``strategy.name = "combined"``, ``funding_carry`` among
``combiner.sleeves``) gets the same block for its carry part, its spot legs being the carry's share of each coin's one
spot holding (lib.ops.combo_report), after the whole book's VaR/CVaR and the directional part's lines.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal

import pandas as pd

from lib.core.errors import CoinbotError
from lib.core.paths import ProjectPaths, venue_dir_name
from lib.core.perp_margin import MARGIN_TIERS
from lib.core.state import Positions
from lib.core.storage import read_jsonl
from lib.core.symbols import base_of, is_perpetual, quote_of, to_perpetual, to_spot
from lib.data.stored import read_candle_timestamps
from lib.execution.carry_legs import futures_section
from lib.execution.journal import JournalEvent, parse_journal
from lib.ops import combo_report
from lib.ops.combo_report import SpotSplit
from lib.ops.config import Config
from lib.ops.health import newest_closed_open_ms
from lib.ops.risk_report import margin_lines, tail_lines
from lib.research.carry.combined import carry_split

CARRY_STRATEGY = "funding_carry"


def is_carry_book(config: Config) -> bool:
    """The carry book, or the combined book with the funding_carry sleeve: both trade the spot and USD-M accounts."""
    return config.strategy.name == CARRY_STRATEGY or is_combined_carry(config)


def is_combined_carry(config: Config) -> bool:
    return carry_split(config.strategy.name, config.combiner) is not None


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


def leg_fees(fills: Iterable[JournalEvent]) -> dict[str, float]:
    """Fees per leg (symbol), in quote, from the fills' ``fee_quote``."""
    fees: dict[str, float] = defaultdict(float)
    for fill in fills:
        if fill.symbol and fill.fee_quote:
            fees[fill.symbol] += fill.fee_quote
    return dict(fees)


@dataclass(frozen=True, slots=True)
class CoinCarry:
    """One coin's carry in quote: both legs' trading P&L and fees, and the funding its short leg earned."""

    spot: str
    spot_pnl: float
    perp_pnl: float
    spot_fee: float
    perp_fee: float
    funding: float

    @property
    def gross(self) -> float:
        return self.spot_pnl + self.perp_pnl

    @property
    def fees(self) -> float:
        return self.spot_fee + self.perp_fee

    @property
    def net(self) -> float:
        return self.gross - self.fees

    @property
    def carry_net(self) -> float:
        return self.net + self.funding


def coin_carry(fills: list[JournalEvent], positions: Positions, funding: Mapping[str, Decimal],
               split: Mapping[str, SpotSplit] | None = None) -> list[CoinCarry]:
    """Each coin traded or paid funding: its legs' P&L at the marks, their fees and its funding (spot symbol).
    ``split`` (the combined book): the spot leg is the carry's share of the coin's spot (lib.ops.combo_report), and
    the coins are those with a perp leg traded or held or with funding."""
    pnl, fees = leg_pnl(fills, positions.amounts_base, positions.marks), leg_fees(fills)
    if split is None:
        coins = sorted({to_spot(s) for s in (*pnl, *fees)} | set(funding))
        return [CoinCarry(spot=c, spot_pnl=pnl.get(c, 0.0), perp_pnl=pnl.get(to_perpetual(c), 0.0),
                          spot_fee=fees.get(c, 0.0), perp_fee=fees.get(to_perpetual(c), 0.0),
                          funding=float(funding.get(c, Decimal(0)))) for c in coins]
    coins = sorted({to_spot(s) for s in (*pnl, *fees) if is_perpetual(s)} | set(funding))
    none = SpotSplit(0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    return [CoinCarry(spot=c, spot_pnl=split.get(c, none).carry_pnl, perp_pnl=pnl.get(to_perpetual(c), 0.0),
                      spot_fee=split.get(c, none).carry_fee, perp_fee=fees.get(to_perpetual(c), 0.0),
                      funding=float(funding.get(c, Decimal(0)))) for c in coins]


def sleeve_lines(positions: Positions, events: list[JournalEvent], closes: Mapping[str, pd.Series], *, quote: str,
                 funding: Mapping[str, Decimal], max_probability: float, fallback_rate: float,
                 lookback_days: int, combined: bool = False) -> list[str]:
    """The block's lines from what was read (``closes``: both legs' daily closes, pd.Series by symbol; ``funding``:
    funding earned by spot symbol, from the ledger). ``combined``: the combined book's block, the whole book's
    VaR/CVaR and the directional part first, then the carry part on its share of each coin's spot."""
    own = [e for e in events if (e.mode, e.venue) == (positions.mode, positions.venue)]
    fills = [e for e in own if e.event == "filled"]
    held, marks, equity = positions.amounts_base, positions.marks, positions.equity_quote
    lines: list[str] = []
    split = None
    if combined:
        split = combo_report.split_spot(fills, leg_pnl(fills, held, marks), leg_fees(fills), held, marks)
        lines += combo_report.book_lines(held, marks, closes, equity=equity, lookback_days=lookback_days)
        lines += combo_report.directional_lines(split, marks, closes, equity=equity, quote=quote,
                                                lookback_days=lookback_days)
    coins = coin_carry(fills, positions, funding, split)
    gross, fees = sum(c.gross for c in coins), sum(c.fees for c in coins)
    earned = sum(c.funding for c in coins)
    name = "carry part" if combined else "carry sleeve"
    spot_leg = dict(held) if split is None else {c: part.carry_base for c, part in split.items()}
    lines += [f"{name} (at the marks of the last rebalance): spot wallet {positions.wallets.get('spot', 0.0):.2f}"
              f" / futures wallet {positions.wallets.get('futures', 0.0):.2f} {quote}; funding earned {earned:+.4f} "
              f"{quote} (the exchange's funding records); basis P&L {gross:+.2f} gross / {gross - fees:+.2f} net of "
              f"fees {fees:.2f}; carry net {gross - fees + earned:+.2f} {quote}"]
    lines += [f"  {c.spot}: basis P&L {c.gross:+.2f} gross / {c.net:+.2f} net of fees {c.fees:.2f} (spot leg "
              f"{c.spot_pnl:+.2f} fee {c.spot_fee:.2f}, perp leg {c.perp_pnl:+.2f} fee {c.perp_fee:.2f}); funding "
              f"earned {c.funding:+.4f}; carry net {c.carry_net:+.2f} {quote}; holds "
              f"{spot_leg.get(c.spot, 0.0):g} / {held.get(to_perpetual(c.spot), 0.0):g}" for c in coins]
    if split is None:
        weights = {s: a * marks.get(s, 0.0) / equity for s, a in held.items() if a} if equity > 0 else {}
    else:
        weights = combo_report.carry_weights(split, marks, equity)
    lines += tail_lines(f"{'carry part' if combined else 'carry book'} (held, both legs: the basis)", weights, closes,
                        lookback_days=lookback_days)
    lines += margin_lines(replace(positions, cash_quote=positions.wallets.get("futures", 0.0)), marks,
                          closes, max_probability=max_probability, fallback_rate=fallback_rate)
    return lines


def carry_lines(paths: ProjectPaths, config: Config, positions: Positions) -> list[str]:
    """The carry book's (and the combined carry book's) risk block for report, in place of the one-venue block ([]
    for any other book: that one stays); an unreadable input is a line, never a failed report."""
    if not is_carry_book(config):
        return []
    from lib.execution.carry_risk import CarryCandles, leg_closes  # the exchange client only for a carry book
    from lib.execution.funding_ledger import funding_by_coin, ledger_path, read_ledger

    try:
        lines, _ = read_jsonl(paths.journal)
        events = parse_journal(lines)
        funding = funding_by_coin(read_ledger(ledger_path(paths.state_dir), mode=positions.mode,
                                              venue=positions.venue))
        candles = CarryCandles(spot=paths, perp=candle_paths(paths, config), timeframe=config.strategy.timeframe)
        closes = leg_closes(candles, [s for s, a in positions.amounts_base.items() if a])
    except CoinbotError as error:
        return [f"carry sleeve: n/a ({error})"]
    return sleeve_lines(positions, events, closes, quote=quote_of(config.data.symbols[0]), funding=funding,
                        max_probability=config.risk.max_liquidation_prob_24h,
                        fallback_rate=config.risk.fallback_maintenance_rate,
                        lookback_days=config.risk.var_lookback_days, combined=is_combined_carry(config))


def perp_freshness(paths: ProjectPaths, config: Config, now_ms: int) -> dict[tuple[str, str], int | None]:
    """The health check's view of the carry book's USD-M candles: ``(perp symbol, timeframe) -> newest closed open``
    from the futures venue's directory ({} for any other book), so stale perp data is a health problem too."""
    if not is_carry_book(config):
        return {}
    return newest_perp_candles(candle_paths(paths, config), config, now_ms)


def candle_paths(paths: ProjectPaths, config: Config) -> ProjectPaths:
    """Where the perps' candles are: the USD-M venue's directory for a carry book, else the book's own."""
    if not is_carry_book(config):
        return paths
    futures = futures_section(config.exchange, config.carry)
    return ProjectPaths(data_dir=paths.data_dir, state_dir=paths.state_dir,
                        venue=venue_dir_name(futures.id, futures.market_type))


def newest_perp_candles(perp_paths: ProjectPaths, config: Config, now_ms: int) -> dict[tuple[str, str], int | None]:
    """``(perp symbol, timeframe) -> newest closed candle open`` of the carry book's USD-M candles (the combined
    book: of the coins its carry part may pair, those with margin tiers, lib.ops.combo_signals.carry_coins)."""
    newest: dict[tuple[str, str], int | None] = {}
    combined = is_combined_carry(config)
    for timeframe in config.data.timeframes:
        for perp in dict.fromkeys(to_perpetual(to_spot(s)) for s in config.data.symbols
                                  if not combined or base_of(s) in MARGIN_TIERS):
            path = perp_paths.ohlcv(timeframe, perp)
            try:  # the timestamps alone (a whole candle file is no ["timestamp"]-only parquet for read_parquet)
                frame = read_candle_timestamps(path) if path.exists() else None
            except CoinbotError:
                frame = None
            stamps = None if frame is None else frame["timestamp"].to_numpy()
            newest[(perp, timeframe)] = newest_closed_open_ms(stamps, now_ms=now_ms, timeframe=timeframe)
    return newest
