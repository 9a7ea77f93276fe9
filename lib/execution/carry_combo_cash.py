"""Edge: the carry books planned within the spot cash they have (lib.execution.carry_combo.fit_cash): every coin's
one spot order as the run would plan it now (lib.execution.carry_plan, the same code the run sends with), the
collateral transfer the pairs need (lib.execution.carry_guard.plan_collateral) and the spot wallet's free cash.

Why: the spot parts plus the carry collateral (notional / carry.leverage x (1 + carry.collateral_buffer_frac)) can
exceed the book; without this the exchange refused the last directional buys. The pairs keep priority (sized
first, never scaled here, so they stay hedged); sales are never scaled; the directional part of every buy is scaled
by one factor to the cash left, with the spot book's reserve (taker fee + orders.slippage_allowance_bps on each
buy and sale). Journaled ``risk_rejected`` ``cash_short`` with the amounts; named in the run's one alert only when
the shortfall is at least ``carry.min_leg_quote`` (below it: rounding, fees; journaled and logged only).

The standalone ``funding_carry`` book (``fit_pair_cash``) has only pairs: their growth is what is scaled, both legs
of a pair by the same factor (each pair stays hedged), with the collateral that growth needs; without this the
exchange refused the last spot leg and the mismatch rule bought its perp short back.

Both books first take back the futures wallet's excess above its need when the spot buys are short (its hysteresis
holds only while nothing needs the cash): the shortfall at no transfer back is the ``release`` the guard's one
transfer returns (lib.execution.carry_legs.plan_transfer), counted here, so only what is still missing is scaled."""

from __future__ import annotations

from decimal import Decimal

from loguru import logger

from lib.execution import carry_guard
from lib.execution import journal as records
from lib.execution.carry_combo import (
    CASH_SHORT,
    CashFit,
    CoinCash,
    buy_parts,
    fit_cash,
    pair_growth,
    scaled_directional,
    scaled_pair,
)
from lib.execution.carry_legs import PairTarget, common_step
from lib.execution.carry_plan import plan_coin, traded_legs
from lib.execution.carry_risk import CarryCandles
from lib.execution.carry_state import RunState, book_equity, journal_risk, live_prices, wallet_facts
from lib.execution.risk import RiskRejection

BPS = Decimal(10_000)
UNLIMITED = Decimal("1e18")
"""The spot cash the collateral plan may take when asked what the pairs need (not what the wallet has)."""


def collateral_to_futures(state: RunState, pairs: dict[str, PairTarget], candles: CarryCandles, *,
                          release: Decimal = Decimal(0)) -> Decimal:
    """The quote the run moves to the futures wallet for its pairs (< 0: collateral coming back to spot), from the
    guard's own plan, not limited by the spot cash now (sales come first). Unknown risk: no transfer (0).
    ``release``: the spot wallet's shortfall, paid from the futures wallet's excess above its need."""
    plan = carry_guard.plan_collateral(state, pairs, candles, spot_free=UNLIMITED, release=release)
    if plan.unknown is not None or plan.transfer is None:
        return Decimal(0)
    return plan.transfer.amount_quote * (1 if plan.transfer.to_wallet == "futures" else -1)


def fit_combined_cash(state: RunState, pairs: dict[str, PairTarget], spot_only: dict[str, PairTarget],
                      candles: CarryCandles) -> tuple[dict[str, PairTarget], dict[str, PairTarget], CashFit | None,
                                                      Decimal]:
    """``fit_spot_cash`` with the pairs' collateral transfer, and (last) the spot shortfall the futures wallet's
    excess above its need pays (0 when nothing is short or the wallet is topped up): the hysteresis keeps collateral
    on the futures wallet only when no planned buy needs the cash. Pass it to the guard's transfer
    (lib.execution.carry_guard.move_collateral) so the run sends what was fitted."""
    to_futures, release = collateral_to_futures(state, pairs, candles), Decimal(0)
    if to_futures <= 0:  # the futures wallet holds at least its need: its excess pays what the spot buys lack
        release = _spot_fit(state, pairs, spot_only, to_futures=Decimal(0))[0].shortfall
        if release > 0:
            to_futures = collateral_to_futures(state, pairs, candles, release=release)
    return *fit_spot_cash(state, pairs, spot_only, to_futures=to_futures), release


def _spot_fit(state: RunState, pairs: dict[str, PairTarget], spot_only: dict[str, PairTarget], *,
              to_futures: Decimal) -> tuple[CashFit, dict[str, tuple[Decimal, Decimal]], dict[str, float], float]:
    """(the fit, each coin's (directional amount, directional part of its buy), prices, equity); nothing written."""
    held, spot_cash, futures_balance = wallet_facts(state)
    every = {**spot_only, **pairs}
    prices = live_prices(state, {s for p in every.values() for s in traded_legs(state, p, held)} | set(held))
    equity = book_equity(held, spot_cash, futures_balance, prices)
    allowance = Decimal(repr(state.settings.orders.slippage_allowance_bps)) / BPS
    coins, parts = [], {}
    for symbol, pair in sorted(every.items()):
        orders = plan_coin(state, pair, held, prices, equity)
        spot_order = next((o for o in orders[2] if o.symbol == pair.spot_symbol), None)
        if spot_order is None:
            continue
        price = Decimal(repr(spot_order.reference_price))
        carry_part, directional_part = buy_parts(
            spot_order.side, spot_order.amount_base, spot_held=held.get(symbol, Decimal(0)),
            short_held=-min(held.get(pair.perp_symbol, Decimal(0)), Decimal(0)), directional=orders[1])
        haircut = Decimal(repr(state.session.markets[symbol].taker_fee_frac)) + allowance
        coins.append(CoinCash(symbol=symbol, haircut=haircut, carry_buy=carry_part * price,
                              directional_buy=directional_part * price,
                              sale=spot_order.notional_quote if spot_order.side == "sell" else Decimal(0)))
        parts[symbol] = (orders[1], directional_part)
    return fit_cash(coins, spot_cash=spot_cash, to_futures=to_futures), parts, prices, equity


def fit_spot_cash(state: RunState, pairs: dict[str, PairTarget], spot_only: dict[str, PairTarget], *,
                  to_futures: Decimal) -> tuple[dict[str, PairTarget], dict[str, PairTarget], CashFit | None]:
    """(pairs, directional-only coins, the fit when it scaled): the directional buys scaled pro rata when the
    planned spot buys and ``to_futures`` do not fit the spot cash after the sales; unchanged (the same objects)
    when they fit. Journaled and logged when scaled (the dry run's journal writes nothing)."""
    fit, parts, prices, equity = _spot_fit(state, pairs, spot_only, to_futures=to_futures)
    every = {**spot_only, **pairs}
    if fit.scale >= 1:
        return pairs, spot_only, None

    def scaled(target: PairTarget) -> PairTarget:
        directional, part = parts.get(target.spot_symbol, (Decimal(0), Decimal(0)))
        return scaled_directional(target, directional=directional, buy_part=part, scale=fit.scale,
                                  price=prices[target.spot_symbol], equity=equity)

    pairs = {s: scaled(p) for s, p in pairs.items()}
    spot_only = {s: scaled(p) for s, p in spot_only.items()}
    changed = ", ".join(f"{s} {every[s].directional_weight:.4f} -> {p.directional_weight:.4f}"
                        for s, p in sorted({**spot_only, **pairs}.items())
                        if p.directional_weight != every[s].directional_weight)
    _journal(state, fit, f"directional weights {changed or 'unchanged'}")
    return pairs, spot_only, fit


def fit_pair_cash(state: RunState, pairs: dict[str, PairTarget], candles: CarryCandles
                  ) -> tuple[dict[str, PairTarget], CashFit | None, Decimal]:
    """A standalone carry book within its spot cash: (pairs, the fit when it scaled, the spot shortfall the futures
    wallet's excess above its need pays: pass it to lib.execution.carry_guard.move_collateral so the run sends what
    was fitted; 0 when nothing is short or the wallet is being topped up). Each pair's growth (its legs
    above the short it holds) is scaled by one factor, both legs alike, when the spot buys (with the spot book's
    reserve) and the collateral transfer do not fit the spot wallet's free cash after the run's sales; what shrinks
    is never scaled. The same objects, nothing journaled, when they fit or nothing grows.

    The collateral scaled with the growth is the transfer at the full plan less the one at no growth (each the
    guard's own plan): the transfer at a scale in between is at most that share of it (it is convex in the scale:
    max(needed - futures wallet, 0), the needed collateral linear in it), so the scaled book fits. The cash must
    fit after each pair in the order the run trades them (symbol order): a sale of a pair traded later does not pay
    for an earlier pair's buy. The futures wallet's hysteresis keeps collateral there only when nothing is short:
    when the growth does not fit, its excess above the need comes back first (the guard may refuse it) and only
    what is still missing is scaled."""
    held, spot_cash, futures_balance = wallet_facts(state)
    prices = live_prices(state, {s for p in pairs.values() for s in (p.spot_symbol, p.perp_symbol)} | set(held))
    equity = book_equity(held, spot_cash, futures_balance, prices)
    allowance = Decimal(repr(state.settings.orders.slippage_allowance_bps)) / BPS
    markets = state.session.markets
    coins, sizes = [], {}
    for symbol, pair in sorted(pairs.items()):
        amount, _, orders, _ = plan_coin(state, pair, held, prices, equity)
        short = -min(held.get(pair.perp_symbol, Decimal(0)), Decimal(0))
        sizes[symbol] = amount, short, common_step(markets[symbol].amount_step, markets[pair.perp_symbol].amount_step)
        spot_order = next((o for o in orders if o.symbol == symbol), None)
        if spot_order is None:
            continue
        price = Decimal(repr(spot_order.reference_price))
        buy = spot_order.amount_base if spot_order.side == "buy" else Decimal(0)
        growth = min(pair_growth(amount, short), buy)
        coins.append(CoinCash(symbol=symbol, haircut=Decimal(repr(markets[symbol].taker_fee_frac)) + allowance,
                              carry_buy=(buy - growth) * price, directional_buy=growth * price,
                              sale=spot_order.notional_quote if spot_order.side == "sell" else Decimal(0)))
    if not any(pair_growth(amount, short) for amount, short, _ in sizes.values()):
        return pairs, None, Decimal(0)

    def at(scale: Decimal) -> dict[str, PairTarget]:
        return {s: scaled_pair(p, amount=sizes[s][0], short_held=sizes[s][1], scale=scale, step=sizes[s][2],
                               price=prices[s], equity=equity) for s, p in pairs.items()}

    def fits(to_futures: Decimal, scaled_collateral: Decimal) -> list[CashFit]:
        return [fit_cash(coins[:k], spot_cash=spot_cash, to_futures=to_futures, scaled_collateral=scaled_collateral,
                         kept="other buys and collateral", scaled="the pairs' growth (spot buys and its collateral)"
                         + ("" if k == len(coins) else f" up to {coins[k - 1].symbol}, in trading order"))
                for k in range(1 if coins else 0, len(coins) + 1)]

    full, release = collateral_to_futures(state, pairs, candles), Decimal(0)
    if full <= 0:  # the futures wallet holds at least its need: its excess pays what the spot legs lack
        release = max((f.shortfall for f in fits(Decimal(0), Decimal(0))), default=Decimal(0))
        if release > 0:
            full = collateral_to_futures(state, pairs, candles, release=release)
    none = collateral_to_futures(state, at(Decimal(0)), candles) if full > 0 else full
    scaled_collateral = full - min(max(none, Decimal(0)), full) if full > 0 else Decimal(0)
    fit = min(fits(full, scaled_collateral), key=lambda f: f.scale)  # the first pair short of cash binds: one factor
    if fit.scale >= 1:
        return pairs, None, release
    scaled = at(fit.scale)
    changed = ", ".join(f"{s} {pairs[s].spot_weight:.4f} -> {p.spot_weight:.4f}" for s, p in sorted(scaled.items())
                        if p is not pairs[s])
    _journal(state, fit, f"carry weights, both legs, {changed or 'unchanged'}")
    return scaled, fit, release


def _journal(state: RunState, fit: CashFit, changed: str) -> None:
    """``risk_rejected`` ``cash_short``; named in the run's one alert only beyond carry.min_leg_quote."""
    rejection = RiskRejection(check=CASH_SHORT, symbol=None, detail=f"{fit.describe()} ({changed})")
    if fit.shortfall >= state.settings.carry.min_leg_quote:
        journal_risk(state, [rejection])  # journaled, logged and named in the run's one alert
    else:
        logger.info("{}: {} (within carry.min_leg_quote: not alerted)", CASH_SHORT, rejection.detail)
        state.journal.append(records.to_risk_rejected_event(rejection, state.run))
