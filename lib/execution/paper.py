"""Pure: an in-memory paper account behind lib.core.venue.Broker (fills at last price +- slippage, taker fee).

The rebalance script builds a ``PaperBroker`` from the saved ``PaperSnapshot`` plus this run's last prices and
``now_ms``, sends orders, then saves ``to_snapshot()``. Accounting is exact (``Decimal``):

- spot: ``cash_quote`` pays for buys and receives sells; neither cash nor a spot amount ever goes below 0;
- perps (symbols with ":"): signed positions with an average entry price; ``cash_quote`` is the wallet
  (realized PnL and fees). ``fetch_holdings().cash_quote`` is wallet + unrealized PnL, as Binance USD-M
  reports its margin balance, so ``lib.execution.orders.compute_equity_quote`` is right for both account kinds.

A refused order raises ``OrderRejected`` (as lib.execution.ccxt_venue does) and changes nothing; it is not recorded, so
``fetch_order_by_client_id`` returns None for it, like an exchange that never accepted it. An accepted order
fills completely at once and is recorded by client order id: sending it again returns the same result.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from lib.core.errors import ConfigError, DataError, OrderRejected, StateError
from lib.core.symbols import quote_of
from lib.core.venue import Holdings, OrderResult, Side

PAPER_SNAPSHOT_VERSION = 1
"""``schema_version`` of :meth:`PaperSnapshot.to_dict`."""
CLIENT_ORDER_ID = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")
"""What Binance accepts as a client order id; the paper account is no more lenient."""

_BPS = Decimal(10_000)


@dataclass(frozen=True, slots=True, kw_only=True)
class PaperParams:
    """TOML section ``paper``."""

    starting_cash_quote: Decimal = Decimal("1000")  # a small book, like the owners'; matches backtest default
    fee_bps: float = 10.0  # taker fee on notional, charged in quote
    slippage_bps: float = 5.0  # adverse: buys fill higher, sells lower
    max_leverage: float = 3.0  # perps: gross position notional <= this x equity after an increasing fill

    def __post_init__(self) -> None:
        if not self.starting_cash_quote.is_finite() or self.starting_cash_quote <= 0:
            raise ConfigError(f"paper.starting_cash_quote must be > 0, got {self.starting_cash_quote}")
        for key, value in (("fee_bps", self.fee_bps), ("slippage_bps", self.slippage_bps)):
            if not 0 <= value <= 1_000:
                raise ConfigError(f"paper.{key} must be in [0, 1000], got {value}")
        if not 0 < self.max_leverage <= 20:
            raise ConfigError(f"paper.max_leverage must be in (0, 20], got {self.max_leverage}")


@dataclass(frozen=True, slots=True, kw_only=True)
class PaperSnapshot:
    """Everything the paper account must remember between runs. Invalid content raises StateError."""

    cash_quote: Decimal
    amounts_base: Mapping[str, Decimal] = field(default_factory=dict)  # signed, no zeros
    entry_prices: Mapping[str, Decimal] = field(default_factory=dict)  # perps only: average entry price
    orders: Mapping[str, OrderResult] = field(default_factory=dict)  # client order id -> result

    def __post_init__(self) -> None:
        if not isinstance(self.cash_quote, Decimal) or not self.cash_quote.is_finite():
            raise StateError(f"paper snapshot: cash_quote {self.cash_quote!r} is not a finite Decimal")
        for symbol, amount in self.amounts_base.items():
            if not isinstance(amount, Decimal) or not amount.is_finite() or amount == 0:
                raise StateError(f"paper snapshot: amount of {symbol} {amount!r} is not a non-zero Decimal")
            if ":" not in symbol and amount < 0:
                raise StateError(f"paper snapshot: spot amount of {symbol} is negative: {amount}")
            entry = self.entry_prices.get(symbol)
            if ":" in symbol and (not isinstance(entry, Decimal) or not entry.is_finite() or entry <= 0):
                raise StateError(f"paper snapshot: perp {symbol} has no valid entry price ({entry!r})")
        if set(self.entry_prices) - {s for s in self.amounts_base if ":" in s}:
            raise StateError("paper snapshot: entry prices for symbols without an open perp position")
        for client_order_id, result in self.orders.items():
            if result.client_order_id != client_order_id:
                raise StateError(f"paper snapshot: order under {client_order_id!r} has a different id")

    @classmethod
    def initial(cls, params: PaperParams) -> PaperSnapshot:
        """A fresh account holding only ``starting_cash_quote``."""
        return cls(cash_quote=params.starting_cash_quote)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; Decimals as strings so nothing is rounded through a float."""
        return {
            "schema_version": PAPER_SNAPSHOT_VERSION,
            "cash_quote": str(self.cash_quote),
            "amounts_base": {symbol: str(amount) for symbol, amount in sorted(self.amounts_base.items())},
            "entry_prices": {symbol: str(price) for symbol, price in sorted(self.entry_prices.items())},
            "orders": [_order_to_dict(result) for result in self.orders.values()],
        }

    @classmethod
    def from_dict(cls, raw: Any) -> PaperSnapshot:
        """Inverse of :meth:`to_dict`. Raises StateError for anything malformed (never a silent reset)."""
        if not isinstance(raw, dict) or raw.get("schema_version") != PAPER_SNAPSHOT_VERSION:
            raise StateError(f"paper snapshot: expected an object, schema_version {PAPER_SNAPSHOT_VERSION}")
        try:
            orders = [_order_from_dict(entry) for entry in raw["orders"]]
            return cls(
                cash_quote=_decimal(raw["cash_quote"]),
                amounts_base={str(s): _decimal(a) for s, a in dict(raw["amounts_base"]).items()},
                entry_prices={str(s): _decimal(p) for s, p in dict(raw["entry_prices"]).items()},
                orders={result.client_order_id: result for result in orders},
            )
        except (KeyError, TypeError, ValueError, InvalidOperation) as error:
            raise StateError(f"paper snapshot: malformed ({type(error).__name__}: {error})") from None


class PaperBroker:
    """lib.core.venue.Broker over a PaperSnapshot, for one run at fixed ``prices`` and ``now_ms``."""

    def __init__(self, snapshot: PaperSnapshot, *, prices: Mapping[str, float], now_ms: int,
                 params: PaperParams) -> None:
        for symbol, price in prices.items():
            if isinstance(price, bool) or not isinstance(price, numbers.Real) or not math.isfinite(price) \
                    or price <= 0:
                raise DataError(f"paper broker: price of {symbol} is not a finite number > 0: {price!r}")
        self._prices = {symbol: Decimal(repr(float(price))) for symbol, price in prices.items()}
        self._now_ms = now_ms
        self._params = params
        self._cash = snapshot.cash_quote
        self._amounts = dict(snapshot.amounts_base)
        self._entries = dict(snapshot.entry_prices)
        self._orders = dict(snapshot.orders)

    # --- Broker protocol -------------------------------------------------------------------------------

    def fetch_holdings(self) -> Holdings:
        """Spot cash (+ perps' unrealized PnL) and signed amounts, as floats (the Holdings contract)."""
        cash = self._cash + self._unrealized(self._amounts, self._entries)
        amounts = {symbol: float(amount) for symbol, amount in sorted(self._amounts.items())}
        return Holdings(cash_quote=float(cash), amounts_base=amounts)

    def create_market_order(self, symbol: str, side: Side, amount_base: Decimal, *, client_order_id: str,
                            reduce_only: bool = False) -> OrderResult:
        """Fill the whole amount now, or raise OrderRejected and change nothing.

        Idempotent: an already-executed ``client_order_id`` returns its recorded result (no second fill).
        """
        recorded = self._orders.get(client_order_id)
        if recorded is not None:
            if (recorded.symbol, recorded.side, recorded.requested_amount_base) != (
                    symbol, side, amount_base):
                raise OrderRejected(f"paper: client order id {client_order_id} was already used for "
                                    f"{recorded.side} {recorded.requested_amount_base} {recorded.symbol}")
            return recorded
        if not CLIENT_ORDER_ID.match(client_order_id):
            raise OrderRejected(f"paper: invalid client order id {client_order_id!r}")
        if side not in ("buy", "sell"):
            raise OrderRejected(f"paper: invalid side {side!r} for {symbol}")
        if not isinstance(amount_base, Decimal) or not amount_base.is_finite() or amount_base <= 0:
            raise OrderRejected(f"paper: {side} {symbol} amount {amount_base!r} is not a finite Decimal > 0")
        last = self._prices.get(symbol)
        if last is None:
            raise OrderRejected(f"paper: no last price for {symbol}")
        slippage = Decimal(repr(self._params.slippage_bps)) / _BPS
        fill_price = last * (1 + slippage) if side == "buy" else last * (1 - slippage)
        notional = amount_base * fill_price
        fee = notional * Decimal(repr(self._params.fee_bps)) / _BPS
        if ":" in symbol:
            self._fill_perp(symbol, side, amount_base, fill_price, fee, reduce_only=reduce_only)
        else:
            self._fill_spot(symbol, side, amount_base, notional, fee)
        result = OrderResult(
            client_order_id=client_order_id, exchange_order_id=_exchange_order_id(client_order_id),
            symbol=symbol, side=side, status="closed", requested_amount_base=amount_base,
            filled_amount_base=amount_base, average_price=float(fill_price), fee_quote=float(fee),
            timestamp_ms=self._now_ms, fees_paid=((quote_of(symbol), fee),))
        self._orders[client_order_id] = result
        return result

    def fetch_order_by_client_id(self, symbol: str, client_order_id: str) -> OrderResult | None:
        recorded = self._orders.get(client_order_id)
        return recorded if recorded is not None and recorded.symbol == symbol else None

    # --- beyond the protocol ---------------------------------------------------------------------------

    def move_cash(self, amount_quote: Decimal) -> None:
        """A wallet transfer in (> 0) or out (< 0) of this account (lib.execution.wallet_transfer). Out never takes
        more than the cash, nor leaves the perps over ``max_leverage`` x equity; else OrderRejected, nothing moved."""
        if not amount_quote.is_finite() or self._cash + amount_quote < 0:
            raise OrderRejected(f"paper: transfer {amount_quote} > wallet cash {self._cash}")
        if amount_quote < 0 and any(":" in s for s in self._amounts):
            self._check_margin("transfer", self._cash + amount_quote, dict(self._amounts), dict(self._entries))
        self._cash += amount_quote

    def equity_quote(self) -> Decimal:
        """Wallet + spot amounts at last prices + perps' unrealized PnL (exact)."""
        spot = sum((a * self._price(s) for s, a in self._amounts.items() if ":" not in s), Decimal(0))
        return self._cash + spot + self._unrealized(self._amounts, self._entries)

    def to_snapshot(self, *, keep_orders_since_ms: int | None = None) -> PaperSnapshot:
        """The account to save; ``keep_orders_since_ms`` drops older order records (the journal has them)."""
        orders = {client_order_id: result for client_order_id, result in self._orders.items()
                  if keep_orders_since_ms is None or result.timestamp_ms >= keep_orders_since_ms}
        return PaperSnapshot(cash_quote=self._cash, amounts_base=dict(self._amounts),
                             entry_prices=dict(self._entries), orders=orders)

    # --- fills -----------------------------------------------------------------------------------------

    def _fill_spot(self, symbol: str, side: Side, amount: Decimal, notional: Decimal, fee: Decimal) -> None:
        held = self._amounts.get(symbol, Decimal(0))
        if side == "buy":
            cash_after, held_after = self._cash - notional - fee, held + amount
            if cash_after < 0:
                raise OrderRejected(f"paper: buy {amount} {symbol}"
                                    f" costs {notional + fee} > cash {self._cash}")
        else:
            cash_after, held_after = self._cash + notional - fee, held - amount
            if held_after < 0:
                raise OrderRejected(f"paper: sell {amount} {symbol} > held {held}")
        self._cash = cash_after
        self._set_position(self._amounts, self._entries, symbol, held_after, None)

    def _fill_perp(self, symbol: str, side: Side, amount: Decimal, fill_price: Decimal, fee: Decimal, *,
                   reduce_only: bool) -> None:
        position = self._amounts.get(symbol, Decimal(0))
        entry = self._entries.get(symbol, fill_price)
        signed = amount if side == "buy" else -amount
        reduces = position != 0 and (signed > 0) != (position > 0)
        if reduce_only and (not reduces or amount > abs(position)):
            raise OrderRejected(f"paper: reduce-only {side} {amount} {symbol} does not reduce {position}")
        closed = min(amount, abs(position)) if reduces else Decimal(0)
        realized = closed * (fill_price - entry) * (1 if position > 0 else -1)
        after = position + signed
        if after == 0:
            new_entry = None
        elif reduces:  # still the same side at the same entry, or flipped through zero at the fill price
            new_entry = entry if (after > 0) == (position > 0) else fill_price
        else:
            new_entry = (abs(position) * entry + amount * fill_price) / abs(after)
        amounts, entries = dict(self._amounts), dict(self._entries)
        self._set_position(amounts, entries, symbol, after, new_entry)
        cash_after = self._cash + realized - fee
        if amount > closed:  # exposure grows: the margin must carry it
            self._check_margin(symbol, cash_after, amounts, entries)
        self._cash, self._amounts, self._entries = cash_after, amounts, entries

    def _check_margin(self, symbol: str, cash: Decimal, amounts: dict[str, Decimal],
                      entries: dict[str, Decimal]) -> None:
        try:
            spot = sum((a * self._price(s) for s, a in amounts.items() if ":" not in s), Decimal(0))
            equity = cash + spot + self._unrealized(amounts, entries)
            gross = sum((abs(a) * self._price(s) for s, a in amounts.items() if ":" in s), Decimal(0))
        except DataError as error:
            raise OrderRejected(f"paper: cannot check margin for {symbol}: {error}") from None
        if equity <= 0 or gross > Decimal(repr(self._params.max_leverage)) * equity:
            raise OrderRejected(f"paper: {symbol} would take perp gross {gross:.2f} over "
                                f"{self._params.max_leverage}x equity {equity:.2f}")

    def _unrealized(self, amounts: Mapping[str, Decimal], entries: Mapping[str, Decimal]) -> Decimal:
        return sum(((self._price(s) - entries[s]) * a for s, a in amounts.items() if ":" in s), Decimal(0))

    def _price(self, symbol: str) -> Decimal:
        price = self._prices.get(symbol)
        if price is None:
            raise DataError(f"paper broker: no last price for held {symbol}; cannot value the account")
        return price

    @staticmethod
    def _set_position(amounts: dict[str, Decimal], entries: dict[str, Decimal], symbol: str, amount: Decimal,
                      entry: Decimal | None) -> None:
        if amount == 0:
            amounts.pop(symbol, None)
            entries.pop(symbol, None)
            return
        amounts[symbol] = amount
        if entry is not None:
            entries[symbol] = entry


def _exchange_order_id(client_order_id: str) -> str:
    return "paper-" + hashlib.sha256(client_order_id.encode()).hexdigest()[:16]


def _decimal(value: Any) -> Decimal:
    if not isinstance(value, str):
        raise TypeError(f"expected a decimal string, got {value!r}")
    return Decimal(value)


def _order_to_dict(result: OrderResult) -> dict[str, Any]:
    return {
        "client_order_id": result.client_order_id, "exchange_order_id": result.exchange_order_id,
        "symbol": result.symbol, "side": result.side, "status": result.status,
        "requested_amount_base": str(result.requested_amount_base),
        "filled_amount_base": str(result.filled_amount_base), "average_price": result.average_price,
        "fee_quote": result.fee_quote, "timestamp_ms": result.timestamp_ms,
        "fees_paid": {currency: str(amount) for currency, amount in result.fees_paid},
    }


def _order_from_dict(raw: Any) -> OrderResult:
    if raw["side"] not in ("buy", "sell") or raw["status"] not in ("open", "closed", "canceled", "rejected",
                                                                    "expired"):
        raise ValueError(f"order {raw.get('client_order_id')!r}: bad side/status")
    average = raw["average_price"]
    return OrderResult(
        client_order_id=str(raw["client_order_id"]), exchange_order_id=str(raw["exchange_order_id"]),
        symbol=str(raw["symbol"]), side=raw["side"], status=raw["status"],
        requested_amount_base=_decimal(raw["requested_amount_base"]),
        filled_amount_base=_decimal(raw["filled_amount_base"]),
        average_price=None if average is None else float(average), fee_quote=float(raw["fee_quote"]),
        timestamp_ms=int(raw["timestamp_ms"]),
        fees_paid=_fees_paid_from(raw.get("fees_paid", {})),  # snapshots before fees_paid: none
    )


def _fees_paid_from(raw: Any) -> tuple[tuple[str, Decimal], ...]:
    if not isinstance(raw, dict):
        raise TypeError(f"fees_paid must map currencies to decimal strings, got {raw!r}")
    return tuple(sorted((str(currency), _decimal(amount)) for currency, amount in raw.items()))
