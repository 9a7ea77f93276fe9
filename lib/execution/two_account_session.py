"""Edge: one book over two accounts: the spot account (``exchange.id``) and the USD-M futures account
(``carry.futures_exchange_id``), with the same keys; paper mode keeps two paper wallets in positions.json.

``RoutingBroker`` is a lib.core.venue.Broker that sends a perp symbol (``BTC/USDT:USDT``) to the futures account
and anything else to spot, so the existing order path (lib.execution.rebalance_engine: journal before the call,
lookup by client id after any failure and before any resend) serves both legs unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from lib.core.errors import StateError
from lib.core.secrets import Secrets
from lib.core.state import Positions
from lib.core.symbols import is_perpetual
from lib.core.venue import Broker, Holdings, MarketRules, OrderResult, Side
from lib.execution.carry_legs import CarrySection, futures_section
from lib.execution.exchange_section import ExchangeSection
from lib.execution.paper import PaperBroker, PaperParams, PaperSnapshot
from lib.execution.simulated import SimulatedParams
from lib.execution.venue_session import Session, connect, connect_market_data, settle_paper_funding
from lib.execution.wallet_transfer import CcxtTransfers, PaperWallets, WalletTransfers

PAPER_LAYOUT = "carry_wallets_v1"
"""``positions.json`` ``paper`` of a carry book: {"layout", "spot": snapshot, "futures": snapshot, "transfers"}."""


class RoutingBroker:
    """Broker over the two accounts: perps to futures, the rest to spot."""

    def __init__(self, spot: Broker, futures: Broker) -> None:
        self.spot, self.futures = spot, futures

    def _for(self, symbol: str) -> Broker:
        return self.futures if is_perpetual(symbol) else self.spot

    def fetch_holdings(self) -> Holdings:
        spot, futures = self.spot.fetch_holdings(), self.futures.fetch_holdings()
        return Holdings(cash_quote=spot.cash_quote + futures.cash_quote,
                        amounts_base={**spot.amounts_base, **futures.amounts_base},
                        free_base=spot.free_base)  # coins locked by open orders: spot only (perps are all free)

    def create_market_order(self, symbol: str, side: Side, amount_base: Decimal, *, client_order_id: str,
                            reduce_only: bool = False) -> OrderResult:
        return self._for(symbol).create_market_order(symbol, side, amount_base, client_order_id=client_order_id,
                                                     reduce_only=reduce_only)

    def fetch_order_by_client_id(self, symbol: str, client_order_id: str) -> OrderResult | None:
        return self._for(symbol).fetch_order_by_client_id(symbol, client_order_id)


@dataclass(slots=True)
class TwoAccountSession:
    """The two sessions of one carry run, the broker routing between them, and the wallet transfers."""

    spot: Session
    futures: Session
    broker: RoutingBroker
    transfers: WalletTransfers
    quote: str
    paper: PaperWallets | None = None

    @property
    def markets(self) -> dict[str, MarketRules]:
        return {**self.spot.markets, **self.futures.markets}

    @property
    def clients(self) -> list[Any]:
        return [c for c in (self.spot.client, self.futures.client) if c is not None]

    def fetch_prices(self, symbols: Iterable[str]) -> dict[str, float]:
        wanted = sorted(set(symbols))
        return {**self.spot.fetch_prices([s for s in wanted if not is_perpetual(s)]),
                **self.futures.fetch_prices([s for s in wanted if is_perpetual(s)])}

    def price_times_ms(self) -> dict[str, int | None]:
        return {**self.spot.price_times_ms, **self.futures.price_times_ms}

    def wallets(self) -> dict[str, Holdings]:
        """Each wallet's quote (spot: free; futures: margin balance) and legs, in the book's quote only."""
        return {"spot": self.spot.fetch_holdings(), "futures": self.futures.fetch_holdings()}

    def paper_document(self, *, keep_orders_since_ms: int | None) -> dict[str, Any] | None:
        if self.paper is None:
            return None
        return {"layout": PAPER_LAYOUT,
                "spot": self.paper.spot.to_snapshot(keep_orders_since_ms=keep_orders_since_ms).to_dict(),
                "futures": self.paper.futures.to_snapshot(keep_orders_since_ms=keep_orders_since_ms).to_dict(),
                "transfers": dict(self.paper.records)}


def connect_two(exchange: ExchangeSection, carry: CarrySection, secrets: Secrets, *, simulated: SimulatedParams,
                paper: PaperParams, quote: str, previous: Positions | None, symbols: Iterable[str],
                now_ms: int) -> TwoAccountSession:
    """Paper: two PaperBrokers (spot cash starts at ``paper.starting_cash_quote``, futures at 0) on the two
    markets' prices, perp funding since the last run settled on the futures wallet; otherwise two ccxt venues."""
    wanted = sorted(set(symbols))
    futures_exchange = futures_section(exchange, carry)
    if exchange.mode != "paper":
        spot = connect(exchange, secrets, simulated=simulated, paper=paper, quote=quote, previous=None,
                       target_symbols=(), now_ms=now_ms)
        futures = connect(futures_exchange, secrets, simulated=simulated, paper=paper, quote=quote, previous=None,
                          target_symbols=(), now_ms=now_ms)
        return TwoAccountSession(spot=spot, futures=futures, broker=RoutingBroker(spot.broker, futures.broker),
                                 transfers=CcxtTransfers(spot.client, quote=quote), quote=quote)
    spot_snap, futures_snap, records = _paper_snapshots(previous, paper)
    sessions = []
    for section, snapshot, legs in ((exchange, spot_snap, [s for s in wanted if not is_perpetual(s)]),
                                    (futures_exchange, futures_snap, [s for s in wanted if is_perpetual(s)])):
        market_data = connect_market_data(section, secrets, now_ms=now_ms, simulated=simulated)
        markets = market_data.load_markets()
        quotes = dict(market_data.fetch_price_quotes(sorted(set(legs) | set(snapshot.amounts_base))))
        prices = {symbol: q.price for symbol, q in quotes.items()}
        if previous is not None and section is futures_exchange:
            snapshot = settle_paper_funding(market_data, snapshot, prices, previous.updated_ms, now_ms)
        account = PaperBroker(snapshot, prices=prices, now_ms=now_ms, params=paper)
        session = Session(broker=account, market_data=market_data, markets=markets, quote=quote, paper=account)
        session.remember(quotes)
        sessions.append(session)
    spot, futures = sessions
    assert spot.paper is not None and futures.paper is not None
    wallets = PaperWallets(spot=spot.paper, futures=futures.paper, now_ms=now_ms, records=records)
    return TwoAccountSession(spot=spot, futures=futures, broker=RoutingBroker(spot.broker, futures.broker),
                             transfers=wallets, quote=quote, paper=wallets)


def _paper_snapshots(previous: Positions | None,
                     paper: PaperParams) -> tuple[PaperSnapshot, PaperSnapshot, dict[str, dict[str, Any]]]:
    if previous is None:
        return PaperSnapshot.initial(paper), PaperSnapshot(cash_quote=Decimal(0)), {}
    document: Mapping[str, Any] = previous.paper or {}
    if document.get("layout") != PAPER_LAYOUT:
        raise StateError("positions.json: the paper account is not a two-wallet carry account; a carry book in "
                         "paper mode needs its own paths.state_dir")
    transfers = document.get("transfers", {})
    if not isinstance(transfers, dict):
        raise StateError("positions.json: paper transfers must be an object")
    return PaperSnapshot.from_dict(document.get("spot")), PaperSnapshot.from_dict(document.get("futures")), transfers
