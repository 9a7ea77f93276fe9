"""Edge: rebalance's state files through lib.core.storage: the order journal (state/orders.jsonl), the targets,
positions and halt readers, the halt writer and the positions writer (the paper account lives in positions.json).
Every reader refuses (StateError or TradingHalted) what it cannot trust; nothing is replaced silently."""

from __future__ import annotations

from dataclasses import asdict, replace
from decimal import Decimal
from pathlib import Path

from loguru import logger

from lib.core import errors, storage
from lib.core.state import FlaggedHolding, HaltRecord, Positions, Targets
from lib.core.symbols import quote_of
from lib.core.timeframes import MS_PER_DAY
from lib.core.venue import Holdings
from lib.execution import bot_ledger
from lib.execution import journal as records
from lib.execution.book import Book, quote_cash_held
from lib.execution.cashflows import CashFlow
from lib.execution.exchange_section import ExchangeSection
from lib.execution.journal import JournalEvent, RunInfo
from lib.execution.orders import compute_equity_quote
from lib.execution.venue_session import Session

PAPER_ORDER_RETENTION_MS = 7 * MS_PER_DAY
"""Paper order records older than this leave the snapshot at the end of a run (the journal keeps them)."""


class Journal:
    """state/orders.jsonl: the events read at start plus this run's, and the one fsync'ing appender.

    ``write=False`` (dry run) keeps new events in memory. A torn final line (a crash mid-append) is
    repaired by lib.core.storage's appender before the next line, so that line never lands glued to it.
    """

    def __init__(self, path: Path, *, write: bool) -> None:
        self.path, self.write = path, write
        lines, torn = storage.read_jsonl(path)
        if torn:
            logger.warning("{}: the final line was torn by an interrupted write; {}", path,
                           "the next append repairs it" if write else "ignoring it (dry run)")
        self.history: list[JournalEvent] = records.parse_journal(lines)
        self.appended: list[JournalEvent] = []

    def append(self, event: JournalEvent) -> None:
        if self.write:
            storage.append_jsonl(self.path, event.to_dict())
        self.history.append(event)
        self.appended.append(event)


def read_targets(path: Path, *, strategy: str, exchange: ExchangeSection, timeframe: str | None = None,
                 quote: str | None = None) -> Targets:
    """targets.json; refused (StateError) when missing, malformed or made for another strategy, venue or
    ``timeframe``, or when it weights a symbol outside the book's ``quote`` (sized in one currency, bought with
    another, and never seen in the book's holdings: every run would buy it again)."""
    if not path.exists():
        raise errors.StateError(f"{path} does not exist: run compute_signals first")
    targets = Targets.from_dict(storage.read_json(path))
    wanted = (strategy, exchange.market_type, exchange.id)
    found = (targets.strategy, targets.market_type, targets.exchange)
    if found != wanted:
        raise errors.StateError(f"{path} is for strategy/market/exchange {'/'.join(found)} but the config "
                                f"trades {'/'.join(wanted)}: run compute_signals with this config")
    if timeframe is not None and targets.timeframe != timeframe:
        raise errors.StateError(f"{path} was computed on {targets.timeframe} candles but strategy.timeframe is "
                                f"{timeframe}: run compute_signals with this config")
    foreign = sorted(s for s, w in targets.weights.items() if w and quote is not None and quote_of(s) != quote)
    if foreign:
        raise errors.StateError(f"{path} weights {', '.join(foreign)}, not quoted in the book's {quote}: the bot "
                                f"trades one quote currency (that of data.symbols[0]); keep data.symbols in {quote}")
    return targets


def read_positions(path: Path, *, mode: str, venue: str, journal: Journal,
                   reset_baselines: bool = False) -> Positions | None:
    """The last run's positions.json, or None on a genuine first run.

    Raises:
        StateError: invalid file, a file of another mode or venue, or a missing file although the journal
            records fills of this mode and venue: paper would silently restart from cash; testnet/live would
            silently restart the high-water mark and start of day from today's equity (a drawdown forgotten),
            unless a person asked for exactly that with ``reset_baselines``.
    """
    if not path.exists():
        fills = [e for e in journal.history if e.event == "filled" and (e.mode, e.venue) == (mode, venue)]
        if mode == "paper" and fills:
            raise errors.StateError(f"{path} is missing but {journal.path} records fills: restore it (it holds "
                                    "the paper account) or move the journal aside to start over")
        # fills of one run only: the very first run died before writing positions.json (a re-run is the fix)
        if len({e.run_id for e in fills}) > 1 and not reset_baselines:
            raise errors.StateError(
                f"{path} is missing but {journal.path} records {len(fills)} {mode} fill(s) of several runs: the "
                "drawdown and daily-loss baselines (high-water mark, start of day) would restart from today's equity. "
                "Restore positions.json from a backup, or run rebalance --reset-high-water-mark once to accept "
                "today's equity as the new peak and start of day")
        return None
    previous = Positions.from_dict(storage.read_json(path))
    if (previous.mode, previous.venue) != (mode, venue):
        raise errors.StateError(f"{path} was written for mode={previous.mode} venue={previous.venue}, this "
                                f"config trades mode={mode} venue={venue}: use another paths.state_dir")
    if mode == "paper" and previous.paper is None:
        raise errors.StateError(f"{path} has no paper account snapshot; refusing to restart the paper account")
    return previous


def read_cashflows(path: Path) -> list[CashFlow]:
    """state/cashflows.jsonl (absent = no flows). A torn last line is ignored (its writer failed); any other
    unreadable line refuses the run: a lost withdrawal would read as a drawdown."""
    lines, torn = storage.read_jsonl(path)
    if torn:
        logger.warning("{}: the final line was torn by an interrupted write; ignoring it", path)
    return [CashFlow.from_dict(line) for line in lines]


def read_halt(path: Path) -> HaltRecord | None:
    """The drawdown halt in force, if any. An unreadable halt file halts too (fail closed)."""
    if not path.exists():
        return None
    try:
        return HaltRecord.from_dict(storage.read_json(path))
    except errors.StateError as error:
        raise errors.TradingHalted(f"{path} exists but cannot be read ({error}): trading stays halted until a "
                                   "person checks and deletes it") from None


def write_halt(path: Path, halt: HaltRecord) -> None:
    """halt.json, atomically: written before a flatten starts, and again once it is complete."""
    storage.write_json_atomic(path, halt.to_dict())


class PositionsWriter:
    """positions.json from the venue's holdings, after each paper fill (the paper account lives in it) and
    at the end of the run. ``enabled=False`` (dry run) writes nothing."""

    def __init__(self, path: Path, session: Session, book: Book, journal: Journal, run: RunInfo, *,
                 enabled: bool) -> None:
        self.path, self.session, self.book, self.journal, self.run = path, session, book, journal, run
        self.enabled = enabled

    def after_fill(self) -> None:
        if self.session.paper is not None:
            self.write(final=False)

    def write(self, *, final: bool) -> None:
        """``final`` drops paper order records older than PAPER_ORDER_RETENTION_MS (none is open then)."""
        if not self.enabled:
            return
        book, run, paper = self.book, self.run, self.session.paper
        holdings = book.managed_holdings(self.session.fetch_holdings())
        account_cash, ledger = holdings.cash_quote, book.ledger
        if ledger is not None:  # the bot's cash: the ledger with this run's fills, within the account's cash
            ledger = bot_ledger.book_fills(ledger, self.journal.history, mode=run.mode, venue=run.venue,
                                           now_ms=run.time_ms)
            free = Decimal(repr(account_cash))
            held = quote_cash_held(self.session, free, ledger.cash_quote)  # free + locked, if needed
            ledger = bot_ledger.reconcile(ledger, account_cash=held).ledger
            holdings = Holdings(cash_quote=float(ledger.cash_quote), amounts_base=holdings.amounts_base)
        equity = compute_equity_quote(holdings, book.prices)
        snapshot = None if paper is None else paper.to_snapshot(
            keep_orders_since_ms=run.time_ms - PAPER_ORDER_RETENTION_MS if final else None).to_dict()
        fees = max(  # from the journal, so a crash between fill and write loses none; a rotated journal loses none
            records.compute_fees_quote(e for e in self.journal.history if (e.mode, e.venue) == (run.mode, run.venue)),
            book.baselines.fees_paid_quote + records.compute_fees_quote(self.journal.appended))
        baselines = replace(book.baselines, high_water_mark_quote=max(book.baselines.high_water_mark_quote, equity),
                            fees_paid_quote=fees)
        positions = Positions(mode=run.mode, venue=run.venue, updated_ms=run.time_ms, cash_quote=holdings.cash_quote,
                              amounts_base=dict(holdings.amounts_base), marks=dict(book.prices), equity_quote=equity,
                              last_rebalance_id=run.rebalance_id, paper=snapshot, ignored_base=dict(book.ignored),
                              account_cash_quote=None if ledger is None else account_cash, ledger=ledger,
                              unpriced=flag_unpriced(book, holdings), **asdict(baselines))
        storage.write_json_atomic(self.path, positions.to_dict())


def flag_unpriced(book: Book, holdings: Holdings) -> dict[str, FlaggedHolding]:
    """Held coins the exchange no longer prices, for positions.json and ``doctor``: a person must sell them by hand
    or add them to book.ignored_assets (the bot never orders them)."""
    return {symbol: FlaggedHolding(amount_base=holdings.amounts_base[symbol], last_close=close,
                                   since_ms=book.unpriced_since_ms[symbol])
            for symbol, close in sorted(book.unpriced.items()) if holdings.amounts_base.get(symbol)}
