"""Pure: ccxt's unified market structure -> ``MarketRules`` (lot and tick sizes, limits, taker fee).

The parsing the ccxt venue (``lib.execution.ccxt_venue``) applies to every market it loads; the order
planner only ever sees the resulting ``MarketRules``.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from lib.core.errors import DataError
from lib.core.venue import MarketRules

PRECISION_DECIMAL_PLACES = 2
"""ccxt ``DECIMAL_PLACES``: ``precision["amount"] == 3`` means a step of 0.001."""
PRECISION_SIGNIFICANT_DIGITS = 3
"""ccxt ``SIGNIFICANT_DIGITS``: not supported (no fixed lot size)."""
PRECISION_TICK_SIZE = 4
"""ccxt ``TICK_SIZE`` (Binance and most exchanges): ``precision["amount"]`` is the step itself, e.g. 0.001."""


def to_market_rules(market: Mapping[str, Any], *, precision_mode: int = PRECISION_TICK_SIZE) -> MarketRules:
    """ccxt unified market structure -> MarketRules (spot, or linear swap with ``contractSize`` 1 or more).

    Missing optional limits mean "no limit" (min 0, max None); a present but NaN/negative value, a missing
    step or taker fee, an inactive, inverse or dated-future market raise DataError naming market and field.
    """
    symbol = market.get("symbol")
    if not isinstance(symbol, str) or not symbol:
        raise DataError(f"market without a symbol: id={market.get('id')!r}")
    if market.get("active") is False:
        raise DataError(f"market {symbol}: not active (delisted or halted)")
    is_swap = market.get("type") == "swap" or market.get("swap") is True
    if not is_swap and not (market.get("type") == "spot" or market.get("spot") is True):
        raise DataError(f"market {symbol}: type {market.get('type')!r} is not supported (spot or swap only)")
    if is_swap and market.get("linear") is False:
        raise DataError(f"market {symbol}: inverse contracts are not supported")
    base, quote = market.get("base"), market.get("quote")
    if not isinstance(base, str) or not base or not isinstance(quote, str) or not quote:
        raise DataError(f"market {symbol}: missing base/quote")
    precision = _mapping(market, "precision", symbol)
    limits = _mapping(market, "limits", symbol, optional=True)
    amount_limits = _mapping(limits, "amount", symbol, optional=True)
    cost_limits = _mapping(limits, "cost", symbol, optional=True)
    min_amount = _number(amount_limits.get("min"), symbol, "limits.amount.min", optional=True) or Decimal(0)
    min_notional = _number(cost_limits.get("min"), symbol, "limits.cost.min", optional=True) or Decimal(0)
    max_amount = _number(amount_limits.get("max"), symbol, "limits.amount.max", optional=True)
    if max_amount is not None and max_amount < min_amount:
        raise DataError(f"market {symbol}: limits.amount.max {max_amount} < limits.amount.min {min_amount}")
    contract_size = Decimal(1)
    if is_swap:
        size = _number(market.get("contractSize"), symbol, "contractSize", positive=True)
        contract_size = size if size is not None else contract_size
    taker = _number(market.get("taker"), symbol, "taker")
    if taker is None or taker >= Decimal("0.05"):
        raise DataError(f"market {symbol}: taker fee {market.get('taker')!r} is not in [0, 0.05)")
    return MarketRules(
        symbol=symbol, base=base, quote=quote, is_perpetual=is_swap,
        amount_step=_step(precision.get("amount"), symbol, "precision.amount", precision_mode),
        price_step=_step(precision.get("price"), symbol, "precision.price", precision_mode),
        min_amount_base=min_amount, max_amount_base=max_amount,
        min_notional_quote=min_notional,
        contract_size=contract_size, taker_fee_frac=float(taker),
    )


def _mapping(container: Mapping[str, Any], key: str, symbol: str, *,
             optional: bool = False) -> Mapping[str, Any]:
    value = container.get(key)
    if value is None and optional:
        return {}
    if not isinstance(value, Mapping):
        raise DataError(f"market {symbol}: {key} is missing or not an object")
    return value


def _number(value: Any, symbol: str, field: str, *, optional: bool = False,
            positive: bool = False) -> Decimal | None:
    if value is None:
        if optional:
            return None
        raise DataError(f"market {symbol}: {field} is missing")
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise DataError(f"market {symbol}: {field} is not a number: {value!r}")
    try:
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except InvalidOperation:
        raise DataError(f"market {symbol}: {field} is not a number: {value!r}") from None
    if not number.is_finite() or number < 0 or (positive and number == 0):
        bound = "> 0" if positive else ">= 0"
        raise DataError(f"market {symbol}: {field} must be a finite number {bound}, got {value!r}")
    return number


def _step(value: Any, symbol: str, field: str, precision_mode: int) -> Decimal:
    number = _number(value, symbol, field)
    assert number is not None
    if precision_mode == PRECISION_TICK_SIZE:
        if number == 0:
            raise DataError(f"market {symbol}: {field} tick size must be > 0")
        return number
    if precision_mode == PRECISION_DECIMAL_PLACES:
        if number != number.to_integral_value():
            raise DataError(f"market {symbol}: {field} must be a whole number of decimal places, got {value}")
        return Decimal(1).scaleb(-int(number))
    raise DataError(f"market {symbol}: precision mode {precision_mode} is not supported "
                    "(TICK_SIZE or DECIMAL_PLACES only)")
