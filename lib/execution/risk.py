"""Pure: the risk checks every order plan passes before anything is sent, and the verdict they add up to.

Each ``check_*`` returns a list of ``RiskRejection`` (empty = pass). They fail closed: a NaN, a missing price
or a missing time is a rejection (check ``"invalid_input"``), never a pass. Nothing here journals or alerts;
the rebalance script does both for every rejection.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from lib.core.errors import ConfigError
from lib.core.venue import Holdings
from lib.execution.orders import OrderPlan, PlannedOrder

Decision = Literal["trade", "reduce_only", "flatten_and_halt", "halt"]

INVALID_INPUT = "invalid_input"
"""Check name for NaN / missing / non-positive inputs: always halts the run."""
WEIGHT_TOLERANCE = 1e-9
"""Float slack when comparing weights with limits (a target of exactly the cap passes)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RiskLimits:
    """TOML section ``risk``. Exposures are fractions of equity; perps' gross is capped separately."""

    max_asset_weight_frac: float = 0.35
    max_gross_exposure_frac: float = 1.0  # sum of |spot weights| (1.0 = no borrowing)
    max_gross_leverage: float = 2.0  # sum of |perp weights|
    max_net_exposure_frac: float = 1.0  # |sum of all weights|; a market-neutral book sets e.g. 0.1
    max_order_notional_quote: Decimal = Decimal("500")
    max_orders_per_run: int = 40
    daily_loss_limit_frac: float = 0.05
    max_drawdown_frac: float = 0.25
    max_target_age_ms: int = 25 * 3_600_000  # since the CLOSE of the candle the targets were computed from
    max_price_age_ms: int = 2 * 3_600_000
    max_clock_skew_ms: int = 60_000  # a time this far in the future is a broken clock or feed
    max_price_deviation_frac: float = 0.5  # a live price this far from the targets' candle close is not trusted
    # tail risk of the TARGET book and margin of perp shorts (lib.execution.tail_risk_checks, margin_guard)
    var_lookback_days: int = 365  # daily returns of the stored candles the 1-day VaR/CVaR is estimated from
    max_var_99_frac: float = 0.08  # 99 % 1-day VaR (worst of historical and Gaussian), fraction of equity
    max_cvar_99_frac: float = 0.12  # 99 % 1-day CVaR (worst of historical and Gaussian)
    tail_risk_action: Literal["scale", "refuse", "off"] = "scale"
    max_liquidation_prob_24h: float = 0.005  # above it a perp short is reduced first
    fallback_maintenance_rate: float = 0.05  # perps without known margin tiers (lib.core.perp_margin)

    def __post_init__(self) -> None:
        for key, value, upper in (
            ("max_asset_weight_frac", self.max_asset_weight_frac, 1.0),
            ("max_gross_exposure_frac", self.max_gross_exposure_frac, 1.0),
            ("max_gross_leverage", self.max_gross_leverage, 10.0),
            ("max_net_exposure_frac", self.max_net_exposure_frac, 10.0),
            ("daily_loss_limit_frac", self.daily_loss_limit_frac, 1.0),
            ("max_drawdown_frac", self.max_drawdown_frac, 1.0),
            ("max_price_deviation_frac", self.max_price_deviation_frac, 10.0),
            ("max_var_99_frac", self.max_var_99_frac, 1.0), ("max_cvar_99_frac", self.max_cvar_99_frac, 1.0),
            ("max_liquidation_prob_24h", self.max_liquidation_prob_24h, 1.0),  # 1 = off
            ("fallback_maintenance_rate", self.fallback_maintenance_rate, 0.5),
        ):
            if not 0 < value <= upper:
                raise ConfigError(f"risk.{key} must be in (0, {upper}], got {value}")
        if not self.max_order_notional_quote.is_finite() or self.max_order_notional_quote <= 0:
            raise ConfigError(
                f"risk.max_order_notional_quote must be > 0, got {self.max_order_notional_quote}")
        for key, count in (("max_orders_per_run", self.max_orders_per_run),
                           ("max_target_age_ms", self.max_target_age_ms),
                           ("max_price_age_ms", self.max_price_age_ms)):
            if count <= 0:
                raise ConfigError(f"risk.{key} must be > 0, got {count}")
        if not 21 <= self.var_lookback_days <= 3650:  # >= lib.core.tail_risk.MIN_OBSERVATIONS + 1 days
            raise ConfigError(f"risk.var_lookback_days must be in [21, 3650], got {self.var_lookback_days}")
        if self.max_clock_skew_ms < 0:
            raise ConfigError(f"risk.max_clock_skew_ms must be >= 0, got {self.max_clock_skew_ms}")


@dataclass(frozen=True, slots=True, kw_only=True)
class RiskRejection:
    check: str
    symbol: str | None
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RiskVerdict:
    """What the rebalance may do.

    - ``trade``: send ``allowed_orders`` (the whole plan).
    - ``reduce_only``: daily loss limit hit; send ``allowed_orders`` (the risk-reducing part), then fail.
    - ``flatten_and_halt``: drawdown breach; write the halt file, send a flatten plan, then fail the run.
    - ``halt``: send nothing (kill switch, halt file, stale/invalid data, or a plan that breaks a limit).
    """

    decision: Decision
    rejections: tuple[RiskRejection, ...]
    allowed_orders: tuple[PlannedOrder, ...]


def _bad(value: object) -> bool:
    return isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value)


def _invalid(detail: str, symbol: str | None = None) -> RiskRejection:
    return RiskRejection(check=INVALID_INPUT, symbol=symbol, detail=detail)


# --- one check each ----------------------------------------------------------------------------------------


def check_asset_weights(weights: Mapping[str, float], limits: RiskLimits, *,
                        baseline: Mapping[str, float] | None = None) -> list[RiskRejection]:
    """|weight| per asset <= max_asset_weight_frac; no spot weight below 0.

    With ``baseline`` (weights before the trades), a weight over the cap is only rejected when the plan made
    it larger: a price move that pushed an asset over the cap must not block the orders that cut it.
    """
    rejections = []
    for symbol, weight in sorted(weights.items()):
        if _bad(weight):
            rejections.append(_invalid(f"weight {weight!r} is not a finite number", symbol))
            continue
        if ":" not in symbol and weight < -WEIGHT_TOLERANCE:
            rejections.append(RiskRejection(check="asset_weight", symbol=symbol,
                                            detail=f"spot weight {weight:.4f} < 0 (spot cannot be short)"))
        before = -math.inf if baseline is None else abs(baseline.get(symbol, 0.0))
        if abs(weight) > limits.max_asset_weight_frac + WEIGHT_TOLERANCE and abs(weight) > before:
            rejections.append(RiskRejection(
                check="asset_weight", symbol=symbol,
                detail=f"|weight| {abs(weight):.4f} > max_asset_weight_frac {limits.max_asset_weight_frac}"))
    return rejections


def check_exposure(weights: Mapping[str, float], limits: RiskLimits, *,
                   baseline: Mapping[str, float] | None = None) -> list[RiskRejection]:
    """Spot gross (sum |w|) <= max_gross_exposure_frac, perp gross <= max_gross_leverage, |net| <= max_net.

    With ``baseline``, a breach only counts when the plan made that exposure larger (see check_asset_weights).
    """
    if any(_bad(weight) for weight in weights.values()):
        return [_invalid("a weight is not a finite number")]

    def exposures(book: Mapping[str, float]) -> dict[str, float]:
        return {
            "gross_spot": sum(abs(w) for s, w in book.items() if ":" not in s),
            "gross_perp": sum(abs(w) for s, w in book.items() if ":" in s),
            "net": abs(sum(book.values())),
        }

    caps = {"gross_spot": ("max_gross_exposure_frac", limits.max_gross_exposure_frac),
            "gross_perp": ("max_gross_leverage", limits.max_gross_leverage),
            "net": ("max_net_exposure_frac", limits.max_net_exposure_frac)}
    after = exposures(weights)
    before = exposures(baseline) if baseline is not None and not any(map(_bad, baseline.values())) else None
    rejections = []
    for name, (key, cap) in caps.items():
        grew = before is None or after[name] > before[name] + WEIGHT_TOLERANCE
        if after[name] > cap + WEIGHT_TOLERANCE and grew:
            rejections.append(RiskRejection(check="exposure", symbol=None,
                                            detail=f"{name} {after[name]:.4f} > {key} {cap}"))
    return rejections


def check_fat_finger(orders: Iterable[PlannedOrder], limits: RiskLimits) -> list[RiskRejection]:
    """No single order's notional above max_order_notional_quote (a unit or price bug, not a strategy)."""
    return [
        RiskRejection(check="fat_finger", symbol=order.symbol,
                      detail=f"{order.side} {order.amount_base} notional {order.notional_quote:.2f} > "
                             f"max_order_notional_quote {limits.max_order_notional_quote}")
        for order in orders
        if not order.notional_quote.is_finite() or order.notional_quote > limits.max_order_notional_quote
    ]


def check_order_count(orders: Iterable[PlannedOrder], limits: RiskLimits) -> list[RiskRejection]:
    count = sum(1 for _ in orders)
    if count <= limits.max_orders_per_run:
        return []
    return [RiskRejection(check="order_count", symbol=None,
                          detail=f"{count} orders > max_orders_per_run {limits.max_orders_per_run}")]


def check_daily_loss(*, equity_quote: float, start_of_day_equity_quote: float,
                     limits: RiskLimits) -> list[RiskRejection]:
    """Loss since the start of the (UTC) day >= daily_loss_limit_frac -> only risk-reducing orders today."""
    if _bad(equity_quote) or _bad(start_of_day_equity_quote) or start_of_day_equity_quote <= 0:
        return [_invalid(f"daily loss: equity {equity_quote!r}, start of day {start_of_day_equity_quote!r}")]
    loss_frac = 1 - equity_quote / start_of_day_equity_quote
    if loss_frac < limits.daily_loss_limit_frac:
        return []
    detail = (f"down {loss_frac:.2%} today (equity {equity_quote:.2f} vs {start_of_day_equity_quote:.2f}) "
              f">= daily_loss_limit_frac {limits.daily_loss_limit_frac:.2%}: only risk-reducing orders today")
    return [RiskRejection(check="daily_loss", symbol=None, detail=detail)]


def check_drawdown(*, equity_quote: float, high_water_mark_quote: float,
                   limits: RiskLimits) -> list[RiskRejection]:
    """Drawdown from the high-water mark >= max_drawdown_frac -> flatten and halt until a person clears it."""
    if _bad(equity_quote) or _bad(high_water_mark_quote) or high_water_mark_quote <= 0:
        return [_invalid(f"drawdown: equity {equity_quote!r}, high-water mark {high_water_mark_quote!r}")]
    drawdown_frac = 1 - equity_quote / high_water_mark_quote
    if drawdown_frac < limits.max_drawdown_frac:
        return []
    detail = (f"drawdown {drawdown_frac:.2%} (equity {equity_quote:.2f} vs peak {high_water_mark_quote:.2f}) "
              f">= max_drawdown_frac {limits.max_drawdown_frac:.2%}: flatten and halt")
    return [RiskRejection(check="drawdown", symbol=None, detail=detail)]


def check_staleness(*, targets_as_of_ms: int | None, price_times_ms: Mapping[str, int | None],
                    required_symbols: Iterable[str] = (), now_ms: int,
                    limits: RiskLimits) -> list[RiskRejection]:
    """Targets and every price younger than their limits, none from the future, none missing.

    ``targets_as_of_ms`` is when the targets' data ends: the close of the last candle they used.
    """
    rejections = []

    def check(what: str, symbol: str | None, time_ms: int | None, max_age_ms: int) -> None:
        if time_ms is None or isinstance(time_ms, bool) or not isinstance(time_ms, numbers.Integral):
            rejections.append(RiskRejection(check="staleness", symbol=symbol,
                                            detail=f"{what}: no time ({time_ms!r})"))
        elif time_ms > now_ms + limits.max_clock_skew_ms:
            rejections.append(RiskRejection(check="staleness", symbol=symbol,
                                            detail=f"{what} is {time_ms - now_ms} ms in the future"))
        elif now_ms - time_ms > max_age_ms:
            rejections.append(RiskRejection(check="staleness", symbol=symbol,
                                            detail=f"{what} is {(now_ms - time_ms) / 3_600_000:.2f} h old "
                                                   f"(limit {max_age_ms / 3_600_000:.2f} h)"))

    check("targets", None, targets_as_of_ms, limits.max_target_age_ms)
    for symbol in sorted(set(price_times_ms) | set(required_symbols)):
        check("price", symbol, price_times_ms.get(symbol), limits.max_price_age_ms)
    return rejections


def check_kill_switch(kill_switch_present: bool) -> list[RiskRejection]:
    """A person created the kill-switch file: no orders at all, not even flattening."""
    if not kill_switch_present:
        return []
    return [RiskRejection(check="kill_switch", symbol=None, detail="kill switch file present: all trading stopped")]


def check_halt(halt_active: bool) -> list[RiskRejection]:
    """A drawdown halt is in force (halt file present) until a person clears it."""
    if not halt_active:
        return []
    return [RiskRejection(check="halt", symbol=None, detail="drawdown halt in force: a person must clear it")]


def check_reduces_risk(orders: Iterable[PlannedOrder], holdings: Holdings) -> list[RiskRejection]:
    """Every order moves its position toward zero without crossing it (perps must also be reduce_only).

    Use it on a flatten plan before sending it. Orders are applied in sequence, so two orders on one symbol
    together may not exceed the position.
    """
    return [rejection for _, rejection in _classify_reducing(orders, holdings) if rejection is not None]


def reducing_orders(orders: Iterable[PlannedOrder], holdings: Holdings) -> list[PlannedOrder]:
    """The orders proven risk-reducing (see check_reduces_risk): no size or count cap ever blocks them."""
    return [order for order, rejection in _classify_reducing(orders, holdings) if rejection is None]


def _classify_reducing(orders: Iterable[PlannedOrder],
                       holdings: Holdings) -> list[tuple[PlannedOrder, RiskRejection | None]]:
    remaining = {symbol: Decimal(repr(amount)) for symbol, amount in holdings.amounts_base.items()
                 if not _bad(amount)}
    classified: list[tuple[PlannedOrder, RiskRejection | None]] = []
    for order in orders:
        position = remaining.get(order.symbol, Decimal(0))
        is_perp = ":" in order.symbol
        if order.side == "sell":
            reduces = 0 < order.amount_base <= position
        else:
            reduces = is_perp and 0 < order.amount_base <= -position
        if not reduces or (is_perp and not order.reduce_only):
            classified.append((order, RiskRejection(
                check="reduce_only", symbol=order.symbol,
                detail=f"{order.side} {order.amount_base} (reduce_only={order.reduce_only}) does not move "
                       f"position {position} toward zero")))
            continue
        remaining[order.symbol] = position - order.amount_base if order.side == "sell" \
            else position + order.amount_base
        classified.append((order, None))
    return classified


# --- the verdict -------------------------------------------------------------------------------------------


def compute_weights(holdings: Holdings, prices: Mapping[str, float], equity_quote: float, *,
                    orders: Iterable[PlannedOrder] = ()) -> dict[str, float]:
    """Signed weights of the holdings (after ``orders``, if given) at ``prices``; NaN without a price.

    Fees and slippage are ignored: equity is taken as unchanged by the trades.
    """
    amounts = {symbol: float(amount) for symbol, amount in holdings.amounts_base.items()}
    for order in orders:
        signed = float(order.amount_base) if order.side == "buy" else -float(order.amount_base)
        amounts[order.symbol] = amounts.get(order.symbol, 0.0) + signed
    weights = {}
    for symbol, amount in amounts.items():
        price = prices.get(symbol, math.nan)
        valid = not (_bad(price) or price <= 0 or _bad(equity_quote) or equity_quote <= 0)
        weights[symbol] = amount * price / equity_quote if valid else math.nan
    return weights


def check_price_sanity(prices: Mapping[str, float], reference_prices: Mapping[str, float],
                       limits: RiskLimits) -> list[RiskRejection]:
    """Every live price within ``max_price_deviation_frac`` of the close the targets were computed from.

    An absurd quote (a broken feed, a fat-fingered print, a wrong market) must neither be traded on nor
    value the book into a fake drawdown; a missing price is check_staleness's business.
    """
    rejections = []
    for symbol in sorted(set(prices) & set(reference_prices)):
        price, reference = prices[symbol], reference_prices[symbol]
        if _bad(reference) or reference <= 0:
            continue
        if _bad(price) or price <= 0 or abs(price / reference - 1) > limits.max_price_deviation_frac:
            rejections.append(RiskRejection(
                check="price_sanity", symbol=symbol,
                detail=f"price {price!r} is more than {limits.max_price_deviation_frac:.0%} away from the signal "
                       f"candle's close {reference!r}"))
    return rejections


def check_all(*, plan: OrderPlan, target_weights: Mapping[str, float], holdings: Holdings,
              prices: Mapping[str, float], equity_quote: float, start_of_day_equity_quote: float,
              high_water_mark_quote: float, targets_as_of_ms: int | None,
              price_times_ms: Mapping[str, int | None], now_ms: int, kill_switch_present: bool,
              halt_active: bool, limits: RiskLimits,
              reference_prices: Mapping[str, float] | None = None,
              input_prices: Mapping[str, float] | None = None, unpriced: Iterable[str] = (),
              held: Iterable[str] = ()) -> RiskVerdict:
    """Run every check and decide, most severe first:

    kill switch / halt file -> halt; stale, absurd or invalid inputs -> halt; drawdown -> flatten_and_halt;
    daily loss -> reduce_only (non-reducing orders rejected); then any breach by the (remaining) orders of
    weight, exposure, fat-finger or order-count limits -> halt; otherwise trade. Risk-reducing orders do not
    count toward max_orders_per_run (lib.execution.order_split keeps each under the fat-finger cap).

    ``input_prices``: live prices of the other symbols whose candles moved the weights (the benchmark above all),
    sanity-checked like the traded ones. ``unpriced``: held symbols the venue cannot price, valued at their last
    stored close: not checked for age, never ordered; they and ``held`` are out of the targets' gross/net exposure.
    """
    orders = plan.orders

    def verdict(decision: Decision, rejections: list[RiskRejection],
                allowed: tuple[PlannedOrder, ...] = ()) -> RiskVerdict:
        return RiskVerdict(decision=decision, rejections=tuple(rejections), allowed_orders=allowed)

    gate = check_kill_switch(kill_switch_present) + check_halt(halt_active)
    if gate:
        return verdict("halt", gate)
    symbols = set(target_weights) | {s for s, a in holdings.amounts_base.items() if a != 0} | {
        order.symbol for order in orders}
    drawdown = check_drawdown(equity_quote=equity_quote, high_water_mark_quote=high_water_mark_quote,
                              limits=limits)
    daily = check_daily_loss(equity_quote=equity_quote, start_of_day_equity_quote=start_of_day_equity_quote,
                             limits=limits)
    dead, kept = set(unpriced), set(unpriced) | set(held)
    inputs = check_staleness(targets_as_of_ms=targets_as_of_ms,
                             price_times_ms={s: t for s, t in price_times_ms.items() if s not in dead},
                             required_symbols=symbols - dead, now_ms=now_ms, limits=limits)
    inputs += [_invalid("no live price: never traded", o.symbol) for o in orders if o.symbol in dead]
    inputs += check_price_sanity({**(input_prices or {}), **prices}, reference_prices or {}, limits)
    current = compute_weights(holdings, prices, equity_quote)
    inputs += [_invalid("no valid price or equity to value the holding", s) for s, w in current.items()
               if math.isnan(w) and holdings.amounts_base.get(s)]
    inputs += [r for r in drawdown + daily if r.check == INVALID_INPUT]
    if inputs:
        return verdict("halt", inputs)
    if drawdown:
        return verdict("flatten_and_halt", drawdown + daily)
    rejections: list[RiskRejection] = []
    allowed = orders
    if daily:
        classified = _classify_reducing(orders, holdings)
        allowed = tuple(order for order, rejection in classified if rejection is None)
        rejections = daily + [RiskRejection(check="daily_loss", symbol=r.symbol,
                                            detail=f"blocked: {r.detail}")
                              for _, r in classified if r is not None]
    reducing = {id(order) for order in reducing_orders(allowed, holdings)}  # exits are split, never counted
    breaches = check_fat_finger(allowed, limits)
    breaches += check_order_count([order for order in allowed if id(order) not in reducing], limits)
    if not daily:
        after = compute_weights(holdings, prices, equity_quote, orders=allowed)
        breaches += check_asset_weights(target_weights, limits, baseline=current)  # a held coin risen over it: ok
        breaches += check_exposure({s: w for s, w in target_weights.items() if s not in kept}, limits)
        breaches += check_asset_weights(after, limits, baseline=current) + check_exposure(after, limits,
                                                                                          baseline=current)
    if breaches:
        return verdict("halt", rejections + breaches)
    return verdict("reduce_only" if daily else "trade", rejections, allowed)
