"""Edge: the funding the carry book's perp legs earned, booked from the exchange's own funding records into
``state/funding.jsonl`` (next to positions.json), one line per record, each booked exactly once.

Live/testnet: ccxt ``fetch_funding_history`` on the USD-M client (Binance GET /fapi/v1/income, incomeType
FUNDING_FEE): every FUNDING_FEE record since the newest one booked (inclusive: a record stamped at the same time
is not missed), in windows of at most 7 days (Binance answers a request without a window with the last 7 days
only), 1,000 a page. Paper: the funding the paper account settled between two runs (lib.execution.paper_funding:
each settlement's ``amount x price x rate``, the same figures) as one record per perp and settlement.

Idempotent: a record's key is (its exchange id, symbol, time); a key already in the ledger is never booked again,
so a re-run, an overlapping window or a killed run does not double-count. The book's funding earned per coin is
the sum of its records (lib.ops.carry_report). A failed fetch books nothing, is logged and named in the run's one
alert (an incident of the run: funding bookkeeping is no trading input, so the run trades on); the next run asks
again from the same point (the window starts at the newest record booked), so nothing is lost.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from loguru import logger

from lib.core import errors
from lib.core.storage import append_jsonl, read_jsonl
from lib.core.symbols import is_perpetual, to_spot
from lib.core.timeframes import format_ms
from lib.execution.carry_state import RunState
from lib.execution.ccxt_client import call
from lib.execution.paper import PaperSnapshot
from lib.execution.simulated import FUNDING_INTERVAL_MS

FUNDING_LEDGER = "funding.jsonl"
WINDOW_MS = 7 * 86_400_000
PAGE = 1000
INCOME_FUNDING = "FUNDING_FEE"


@dataclass(frozen=True, slots=True)
class FundingRecord:
    """One funding payment on one perp: ``amount_quote`` > 0 received (a short when longs pay), < 0 paid."""

    record_id: str
    symbol: str
    time_ms: int
    amount_quote: Decimal
    mode: str
    venue: str

    @property
    def key(self) -> tuple[str, str, int]:
        return self.record_id, self.symbol, self.time_ms

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.record_id, "symbol": self.symbol, "time_ms": self.time_ms,
                "amount_quote": format(self.amount_quote, "f"), "mode": self.mode, "venue": self.venue}

    @classmethod
    def from_dict(cls, row: Mapping[str, Any]) -> FundingRecord:
        try:
            amount = Decimal(str(row["amount_quote"]))
            record = cls(record_id=str(row["id"]), symbol=str(row["symbol"]), time_ms=int(row["time_ms"]),
                         amount_quote=amount, mode=str(row["mode"]), venue=str(row["venue"]))
        except (KeyError, TypeError, ValueError, InvalidOperation) as error:
            raise errors.StateError(f"{FUNDING_LEDGER}: malformed record {dict(row)!r} ({error})") from None
        if not amount.is_finite() or not is_perpetual(record.symbol):
            raise errors.StateError(f"{FUNDING_LEDGER}: bad record {dict(row)!r}")
        return record


def ledger_path(state_dir: Path) -> Path:
    return state_dir / FUNDING_LEDGER


def read_ledger(path: Path, *, mode: str | None = None, venue: str | None = None) -> list[FundingRecord]:
    """The booked records (of one mode and venue when given); a missing ledger is empty."""
    if not path.exists():
        return []
    rows, _torn = read_jsonl(path)  # a torn last line was never booked: its record comes again next run
    records = [FundingRecord.from_dict(row) for row in rows]
    return [r for r in records if (mode is None or r.mode == mode) and (venue is None or r.venue == venue)]


def book(path: Path, records: Iterable[FundingRecord]) -> list[FundingRecord]:
    """Append the records whose key is not yet in the ledger (nor twice in ``records``); returns those booked."""
    seen = {r.key for r in read_ledger(path)}
    booked = []
    for record in sorted(records, key=lambda r: (r.time_ms, r.symbol, r.record_id)):
        if record.key in seen:
            continue
        append_jsonl(path, record.to_dict())
        seen.add(record.key)
        booked.append(record)
    return booked


def funding_by_coin(records: Iterable[FundingRecord]) -> dict[str, Decimal]:
    """Spot symbol -> funding earned (sum of its perp's records)."""
    totals: dict[str, Decimal] = {}
    for record in records:
        spot = to_spot(record.symbol)
        totals[spot] = totals.get(spot, Decimal(0)) + record.amount_quote
    return totals


def parse_funding_rows(rows: Any, *, quote: str, mode: str, venue: str) -> list[FundingRecord]:
    """ccxt funding-history structures -> records (the exact ``income`` text when the raw row has it). Rows in
    another asset than the book's quote are not the book's. A row without id, symbol, time or amount: DataError."""
    if not isinstance(rows, list):
        raise errors.DataError(f"fetch_funding_history: expected a list, got {type(rows).__name__}")
    records = []
    for row in rows:
        info = row.get("info") if isinstance(row, dict) else None
        info = info if isinstance(info, dict) else {}
        if not isinstance(row, dict) or (info.get("incomeType") not in (None, INCOME_FUNDING)):
            continue
        if row.get("code") not in (None, quote):
            continue
        try:
            amount = Decimal(str(info.get("income", row.get("amount"))))
            record = FundingRecord(record_id=str(row["id"]), symbol=str(row["symbol"]), time_ms=int(row["timestamp"]),
                                   amount_quote=amount, mode=mode, venue=venue)
        except (KeyError, TypeError, ValueError, InvalidOperation) as error:
            raise errors.DataError(f"fetch_funding_history: malformed row {row!r} ({error})") from None
        if not record.record_id or record.record_id == "None" or not amount.is_finite() \
                or not is_perpetual(record.symbol):
            raise errors.DataError(f"fetch_funding_history: unusable row {row!r}")
        records.append(record)
    return records


def fetch_exchange_funding(client: Any, *, since_ms: int, until_ms: int, quote: str, mode: str,
                           venue: str) -> list[FundingRecord]:
    """Every funding record in [since_ms, until_ms] from the USD-M client, window by window, page by page."""
    records: list[FundingRecord] = []
    start = since_ms
    while start <= until_ms:
        end = min(start + WINDOW_MS - 1, until_ms)
        page_start = start
        while True:
            rows = call(client, f"fetch_funding_history {page_start}..{end}",
                        lambda s=page_start, e=end: client.fetch_funding_history(None, s, PAGE, {"until": e}))
            page = parse_funding_rows(rows, quote=quote, mode=mode, venue=venue)
            records += page
            if len(rows) < PAGE:
                break
            newest = max(r.time_ms for r in page) if page else page_start
            if newest <= page_start:  # a full page at one instant: cannot page on (never seen on Binance)
                raise errors.DataError(f"fetch_funding_history: {PAGE} records at {page_start}; cannot page on")
            page_start = newest
        start = end + 1
    return records


def paper_funding_records(amounts: Mapping[str, Decimal], *, rates: Mapping[str, Sequence[tuple[int, float]]],
                          prices: Mapping[str, float], since_ms: int, until_ms: int, mode: str,
                          venue: str) -> list[FundingRecord]:
    """Pure: the paper account's funding per perp and settlement in (since_ms, until_ms], exactly as
    lib.execution.paper_funding.accrue_funding charges it (paid = amount x price x rate; the record is -paid)."""
    records = []
    for symbol, amount in sorted(amounts.items()):
        if not is_perpetual(symbol) or not amount:
            continue
        price = prices.get(symbol)
        if price is None or not math.isfinite(price) or price <= 0:
            raise errors.DataError(f"paper funding: no valid price for {symbol} ({price!r})")
        for time_ms, rate in rates.get(symbol, ()):
            if since_ms < time_ms <= until_ms and math.isfinite(rate):
                paid = amount * Decimal(repr(float(price))) * Decimal(repr(float(rate)))
                records.append(FundingRecord(record_id=f"paper-{time_ms}", symbol=symbol, time_ms=int(time_ms),
                                             amount_quote=-paid, mode=mode, venue=venue))
    return records


def window_start(path: Path, *, mode: str, venue: str, first_fill_ms: int | None, now_ms: int) -> int:
    """Where the next fetch starts: the newest record booked (inclusive), else the book's first fill, else now."""
    booked = read_ledger(path, mode=mode, venue=venue)
    if booked:
        return max(r.time_ms for r in booked)
    return first_fill_ms if first_fill_ms is not None else now_ms


def book_run_funding(state: RunState) -> list[FundingRecord]:
    """Book this run's new funding records (paper: what the paper account settled since the last run; otherwise
    the exchange's FUNDING_FEE records since the newest booked). Never fails the run (no trading input): a failed
    fetch is logged and added to ``state.incidents`` (the run's one alert); the next run asks again from the same
    point."""
    path, run, session = ledger_path(state.positions_path.parent), state.run, state.session
    since: int | None = None
    try:
        if session.paper is not None:
            records = paper_run_records(state)
        else:
            first_fill = min((e.time_ms for e in state.journal.history if e.event == "filled" and e.symbol
                              and is_perpetual(e.symbol) and (e.mode, e.venue) == (run.mode, run.venue)), default=None)
            since = window_start(path, mode=run.mode, venue=run.venue, first_fill_ms=first_fill, now_ms=run.time_ms)
            records = fetch_exchange_funding(session.futures.client, since_ms=since, until_ms=run.time_ms,
                                             quote=session.quote, mode=run.mode, venue=run.venue)
        booked = book(path, records)
    except errors.CoinbotError as error:
        logger.warning("funding records not booked this run ({}): the next run asks again", error)
        state.incidents.append(not_booked_text(error, paper=session.paper is not None, since_ms=since))
        return []
    if booked:
        logger.info("funding booked: {} record(s), {} {}", len(booked), sum(r.amount_quote for r in booked),
                    session.quote)
    return booked


def paper_run_records(state: RunState) -> list[FundingRecord]:
    """The paper futures wallet's settlements since the last run, as lib.execution.venue_session settled them."""
    previous, run = state.previous, state.run
    if previous is None:
        return []
    snapshot = PaperSnapshot.from_dict((previous.paper or {}).get("futures"))
    perps = sorted(s for s, a in snapshot.amounts_base.items() if is_perpetual(s) and a)
    if not perps:
        return []
    since, until = previous.updated_ms, run.time_ms
    limit = min(1000, (until - since) // FUNDING_INTERVAL_MS + 2)
    market_data = state.session.futures.market_data
    rates = {s: market_data.fetch_funding_history(s, since_ms=since + 1, limit=limit) for s in perps}
    return paper_funding_records(snapshot.amounts_base, rates=rates, prices=state.session.fetch_prices(perps),
                                 since_ms=since, until_ms=until, mode=run.mode, venue=run.venue)


def not_booked_text(error: errors.CoinbotError, *, paper: bool, since_ms: int | None) -> str:
    """Pure: the alert line of a failed funding fetch. The error text is the one the runner alerts for any failed
    call (lib.execution.ccxt_client: what, error class, the exchange's short message; the alert path redacts the
    credentials). ``paper``: the paper wallet has already paid or received its settlements; only the ledger, i.e.
    the report's funding earned, misses them. ``since_ms``: where the exchange window started (None: the ledger
    could not be read to find it)."""
    if paper:
        return (f"paper funding records not booked ({type(error).__name__}: {error}); the paper wallet settled "
                "them, the report's funding earned misses them")
    start = format_ms(since_ms) if since_ms is not None else "the newest record booked"
    return (f"funding records not booked ({type(error).__name__}: {error}); nothing booked, the next run asks again "
            f"from {start}")
