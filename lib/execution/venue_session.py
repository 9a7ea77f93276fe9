"""Edge: where one rebalance trades: the paper account on the built-in/ccxt market data, or a ccxt venue; the
perp settings an order needs first (``prepare_perps``) and the key check against the exchange."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from loguru import logger

from lib.core.paths import ProjectPaths
from lib.core.secrets import Secrets
from lib.core.state import Positions
from lib.core.storage import read_parquet
from lib.core.symbols import is_perpetual, quote_of
from lib.core.venue import Broker, Holdings, MarketData, MarketRules, PriceQuote
from lib.execution.binance_keys import fetch_api_key_permissions
from lib.execution.ccxt_client import call, create_client
from lib.execution.ccxt_venue import CcxtVenue
from lib.execution.exchange_section import ExchangeSection
from lib.execution.orders import PlannedOrder
from lib.execution.paper import PaperBroker, PaperParams, PaperSnapshot
from lib.execution.paper_funding import accrue_funding
from lib.execution.risk import RiskLimits
from lib.execution.risk_live_key import check_key_permissions, refuse_unsafe_key
from lib.execution.simulated import FUNDING_INTERVAL_MS, SimulatedMarket, SimulatedParams

PERP_MARGIN_MODE = "cross"
"""Set on every perp before an order that opens or grows it: one margin pool for the whole book."""


STORED_CANDLE_COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")  # lib.data.ohlcv's (not imported)
StoredClose = Callable[[str], float | None]
"""The last stored candle close of a symbol, or None: the fallback value of a holding the venue cannot price."""


def stored_close_reader(paths: ProjectPaths, timeframe: str) -> StoredClose:
    """The last close of data/ohlcv/<venue>/<timeframe>/<symbol>.parquet (None without one)."""
    def last_close(symbol: str) -> float | None:
        frame = read_parquet(paths.ohlcv(timeframe, symbol), columns=STORED_CANDLE_COLUMNS)
        return None if frame is None or frame.empty else float(frame.sort_values("timestamp")["close"].iloc[-1])
    return last_close


def fetch_quotes(market_data: MarketData, markets: Mapping[str, MarketRules], symbols: list[str],
                 stored_close: StoredClose | None) -> tuple[dict[str, PriceQuote], dict[str, float]]:
    """(live quotes, {symbol: last stored close} for those the venue no longer lists). A listed symbol whose
    price is missing from a reply stays unpriced, so the run fails closed and the next run asks again.

    Without ``stored_close`` every symbol is asked of the venue as it is (an unknown one fails the run)."""
    if stored_close is None:
        return dict(market_data.fetch_price_quotes(symbols)), {}
    listed = [symbol for symbol in symbols if symbol in markets]
    quotes = dict(market_data.fetch_price_quotes(listed)) if listed else {}
    dead: dict[str, float] = {}
    for symbol in (s for s in symbols if s not in markets):
        close = stored_close(symbol)
        if close is not None and math.isfinite(close) and close > 0:
            dead[symbol] = close
            logger.warning("{} has no live price (not listed by the exchange): valued at its last stored close {:g}, "
                           "never traded this run; a person must sell or write it off", symbol, close)
    return quotes, dead


@dataclass(slots=True)
class Session:
    """Where this run trades: the broker, the market data, its markets, and prices fetched so far."""

    broker: Broker
    market_data: MarketData
    markets: dict[str, MarketRules]
    quote: str
    paper: PaperBroker | None = None  # the same object as ``broker`` in paper mode
    client: Any = None  # the ccxt client (perp settings); None in paper mode
    prices: dict[str, float] = field(default_factory=dict)
    price_times_ms: dict[str, int | None] = field(default_factory=dict)  # the venue's time of each price
    stored_close: StoredClose | None = None  # None: a symbol without a live price stays unpriced (fails closed)
    unpriced: dict[str, float] = field(default_factory=dict)  # no live price: valued at the last stored close

    def fetch_prices(self, symbols: Iterable[str]) -> dict[str, float]:
        """Last prices (paper: the ones its account was opened with); their times go to ``price_times_ms``."""
        missing = sorted(set(symbols) - set(self.prices))
        if missing and self.paper is None:
            quotes, dead = fetch_quotes(self.market_data, self.markets, missing, self.stored_close)
            self.remember(quotes)
            self.adopt_unpriced(dead)
        return {symbol: self.prices[symbol] for symbol in sorted(set(symbols)) if symbol in self.prices}

    def adopt_unpriced(self, dead: Mapping[str, float]) -> None:
        """Symbols the venue cannot price (delisted, no ticker): valued at their last stored close, never traded
        (lib.execution.rebalance_engine), no price time (not live)."""
        self.prices.update(dead)
        self.unpriced.update(dead)

    def remember(self, quotes: Mapping[str, PriceQuote]) -> None:
        self.prices.update({symbol: quote.price for symbol, quote in quotes.items()})
        self.price_times_ms.update({symbol: quote.time_ms for symbol, quote in quotes.items()})

    def fetch_holdings(self) -> Holdings:
        """Holdings in the book's quote only: other pairs a ccxt account holds are not ours to trade."""
        if isinstance(self.broker, CcxtVenue) and self.stored_close is not None:  # a coin whose market stopped is
            holdings = self.broker.fetch_holdings(unlisted=True)  # still held: valued unpriced, flagged, not traded
        else:
            holdings = self.broker.fetch_holdings()
        amounts = {s: a for s, a in holdings.amounts_base.items() if a != 0 and quote_of(s) == self.quote}
        return replace(holdings, amounts_base=amounts)  # free_base kept: what of each coin can be sold


def connect_market_data(section: ExchangeSection, secrets: Secrets, *, now_ms: int,
                        simulated: SimulatedParams) -> MarketData:
    """The market-data source the config names: the built-in simulated market or a ccxt exchange."""
    if section.id == "simulated":
        return SimulatedMarket(simulated, now_ms=now_ms, market_type=section.market_type)
    return CcxtVenue(create_client(section, secrets))


def connect(exchange: ExchangeSection, secrets: Secrets, *, simulated: SimulatedParams, paper: PaperParams,
            quote: str, previous: Positions | None, target_symbols: Iterable[str], now_ms: int,
            stored_close: StoredClose | None = None) -> Session:
    """Paper: a PaperBroker on the saved account at this run's prices; otherwise the ccxt venue.

    The caller has checked that the mode is allowed (keys, live opt-in).
    """
    if exchange.mode == "paper":
        market_data = connect_market_data(exchange, secrets, now_ms=now_ms, simulated=simulated)
        snapshot = PaperSnapshot.initial(paper) if previous is None else PaperSnapshot.from_dict(previous.paper)
        markets = market_data.load_markets()
        quotes, dead = fetch_quotes(market_data, markets, sorted(set(target_symbols) | set(snapshot.amounts_base)),
                                    stored_close)
        prices = {**{symbol: q.price for symbol, q in quotes.items()}, **dead}
        if previous is not None:  # perps held since the last run paid or received funding meanwhile
            snapshot = settle_paper_funding(market_data, snapshot, prices, previous.updated_ms, now_ms)
        account = PaperBroker(snapshot, prices=prices, now_ms=now_ms, params=paper)
        session = Session(broker=account, market_data=market_data, markets=markets, quote=quote, paper=account,
                          stored_close=stored_close)
        session.remember(quotes)
        session.adopt_unpriced(dead)
        return session
    venue = CcxtVenue(create_client(exchange, secrets), quote=quote)
    markets = venue.load_markets()
    venue.check_one_way_mode()
    return Session(broker=venue, market_data=venue, markets=markets, quote=quote, client=venue.client,
                   stored_close=stored_close)


def settle_paper_funding(market_data: MarketData, snapshot: PaperSnapshot, prices: Mapping[str, float],
                         since_ms: int, now_ms: int) -> PaperSnapshot:
    """Funding paid or received by the paper perps held since the last run (lib.execution.paper_funding)."""
    perps = [symbol for symbol in snapshot.amounts_base if ":" in symbol]
    limit = min(1000, (now_ms - since_ms) // FUNDING_INTERVAL_MS + 2)
    rates = {s: market_data.fetch_funding_history(s, since_ms=since_ms + 1, limit=limit) for s in perps}
    settled, paid = accrue_funding(snapshot, rates=rates, prices=prices, since_ms=since_ms, until_ms=now_ms)
    if paid:
        logger.info("paper perps: funding since the last run {} {:.4f}", "paid" if paid > 0 else "received", abs(paid))
    return settled


def prepare_perps(session: Session, orders: Iterable[PlannedOrder], *, limits: RiskLimits) -> None:
    """Cross margin, and leverage enough for the book's ``max_gross_leverage``, on every perp an order opens
    or grows (ccxt venues; idempotent).

    "Already cross" is fine (ccxt's documented option ``throwMarginModeAlreadySet`` is turned off). An
    isolated position cannot be switched: that error stops the run before any order, for a person to see.
    """
    client = session.client
    symbols = sorted({o.symbol for o in orders if is_perpetual(o.symbol) and not o.reduce_only})
    if client is None or not symbols:
        return
    leverage = max(1, math.ceil(limits.max_gross_leverage))
    client.options["setMarginMode"] = {**client.options.get("setMarginMode", {}), "throwMarginModeAlreadySet": False}
    for symbol in symbols:
        call(client, f"set_margin_mode {PERP_MARGIN_MODE} {symbol}",
                      lambda s=symbol: client.set_margin_mode(PERP_MARGIN_MODE, s))
        call(client, f"set_leverage {leverage} {symbol}",
                      lambda s=symbol: client.set_leverage(leverage, s))


def require_safe_key(client: Any, *, mode: str) -> None:
    """Before any order (testnet or live): ask the exchange what the key may do and refuse an unsafe key
    (lib.execution.risk_live_key); warnings (e.g. no IP restriction, unknown in testnet) are logged.

    Raises:
        ConfigError: the key's permissions are unsafe, or unknown in live (create a trade-only key).
        ExchangeError / ExchangeUnavailable: the permissions could not be read.
    """
    findings = check_key_permissions(fetch_api_key_permissions(client), mode=mode)
    for finding in findings:
        if finding.status == "warn":
            logger.warning("API key: {} ({})", finding.detail, finding.what_to_do)
    refuse_unsafe_key(findings)
