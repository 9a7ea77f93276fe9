"""Edge: the product of ``rebalance --dry-run`` for the carry book: everything the real run would do, from what the
exchange holds now, with nothing sent and nothing written.

In the order the real run does it: the risk pass's verdict (the hedged book's 99 % 1-day VaR / CVaR at the
targets against its limits; what was clipped, scaled or refused), the liquidation guard (lib.execution.carry_guard:
the one collateral transfer, with any guard top-up for a short over the limit, and the pairs it would cut, both
legs, assessed on the futures wallet as it will be after that transfer), then each pair's leg orders (perp first),
cut pairs first. Only reads: wallets, prices and the stored candles.
"""

from __future__ import annotations

from decimal import Decimal

from lib.core.daily_returns import daily_returns
from lib.core.errors import CoinbotError
from lib.core.tail_limits import fit_to_limits
from lib.execution import carry_guard, carry_risk
from lib.execution.carry_combo import CASH_SHORT, CashFit
from lib.execution.carry_legs import PairTarget, collateral_needed, plan_transfer
from lib.execution.carry_plan import plan_coin, traded_legs
from lib.execution.carry_risk import CarryCandles, CarryRisk, leg_closes
from lib.execution.carry_state import RunState, book_equity, live_prices, wallet_facts
from lib.execution.risk import RiskRejection

NOTHING_DONE = "dry run: nothing sent, nothing written"


def plan_text(state: RunState, pairs: dict[str, PairTarget], *, checked: CarryRisk | None = None,
              candles: CarryCandles | None = None, spot_only: dict[str, PairTarget] | None = None,
              cash: CashFit | None = None, release: Decimal = Decimal(0)) -> str:
    """The dry run's text. ``checked``: the risk pass's result (its ``pairs`` are ``pairs``); ``candles``: both legs'
    stored candles (the VaR figures and the guard). Without them (a flatten) only the transfer and the legs.
    ``spot_only``: a combined book's coins traded on spot alone (no collateral, listed with the pairs); ``cash``:
    the cash fit that scaled their directional buys (lib.execution.carry_combo_cash), shown before the legs;
    ``release``: its spot shortfall, paid from the futures wallet's excess (in the guard's transfer)."""
    held, spot_cash, futures_balance = wallet_facts(state)
    every = {**(spot_only or {}), **pairs}
    prices = live_prices(state, {s for p in every.values() for s in traded_legs(state, p, held)} | set(held))
    equity = book_equity(held, spot_cash, futures_balance, prices)
    lines = [f"carry rebalance {state.run.rebalance_id} ({state.run.mode}): equity {equity:.2f}, spot cash "
             f"{spot_cash:.2f}, futures wallet {futures_balance:.2f}"]
    first: set[str] = set()
    if checked is not None and candles is not None:
        lines += verdict_lines(state, checked, candles)
        guard = carry_guard.plan_collateral(state, pairs, candles, release=release)
        lines += guard_lines(guard)
        if guard.unknown is not None:
            pairs, first = guard.pairs, set(guard.pairs)
        else:
            cut, cuts = carry_guard.cuts_at(guard, state.settings.risk, guard.balance_after_transfer())
            lines += [f"guard would cut {c.symbol}: {c.detail}" for c in cuts]
            pairs, first = {**pairs, **cut}, set(cut)
    else:
        notionals = {p.perp_symbol: max(p.spot_weight * equity, float(abs(held.get(p.perp_symbol, Decimal(0))))
                                        * prices[p.perp_symbol]) for p in pairs.values() if p.perp_symbol in prices}
        needed = collateral_needed(notionals, state.settings.carry)
        transfer = plan_transfer(futures_balance_quote=futures_balance, needed_quote=needed, spot_free_quote=spot_cash,
                                 params=state.settings.carry, rebalance_id=state.run.rebalance_id)
        lines.append(f"collateral: futures wallet needs {needed}")
        lines.append("transfer: none" if transfer is None else f"transfer: {transfer.amount_quote} "
                     f"{transfer.from_wallet} -> {transfer.to_wallet} ({transfer.transfer_id})")
    lines += [] if cash is None else [f"{CASH_SHORT}: {cash.describe()}"]
    lines += leg_lines(state, {**(spot_only or {}), **pairs}, held=held, prices=prices, equity=equity, first=first)
    return "\n".join([*lines, NOTHING_DONE])


def verdict_lines(state: RunState, checked: CarryRisk, candles: CarryCandles) -> list[str]:
    """The hedged target book's 99 % VaR / CVaR against the limits, then what the pass changed or refused."""
    limits = state.settings.risk
    decision = "refused: only risk-reducing orders, then the run fails" if checked.refusals else \
        "scaled/clipped" if checked.changed else "allowed"
    lines = [f"risk verdict: {decision}"]
    if limits.tail_risk_action == "off":
        lines.append("  tail risk: off (risk.tail_risk_action)")
    else:
        weights = {s: w for s, w in carry_risk.leg_weights(checked.pairs).items() if w}
        try:
            returns = daily_returns({s: c for s, c in leg_closes(candles, weights).items()},
                                    lookback_days=limits.var_lookback_days)
            tail = fit_to_limits(weights, returns, max_var=limits.max_var_99_frac, max_cvar=limits.max_cvar_99_frac)
            lines.append(f"  hedged book 99 % 1-day VaR {tail.var_99:.2%} / CVaR {tail.cvar_99:.2%} of equity (limits "
                         f"{limits.max_var_99_frac:.2%} / {limits.max_cvar_99_frac:.2%}, {len(returns)} days)")
        except CoinbotError as error:
            lines.append(f"  hedged book VaR/CVaR: n/a ({error})" if weights else "  hedged book: no position")
    lines += [f"  {_kind(r, checked)} {r.check}{' ' + r.symbol if r.symbol else ''}: {r.detail}"
              for r in (*checked.changed, *checked.refusals)]
    return lines


def _kind(rejection: RiskRejection, checked: CarryRisk) -> str:
    return "refused by" if rejection in checked.refusals else "changed by"


def guard_lines(guard: carry_guard.GuardPlan) -> list[str]:
    """The liquidation guard's collateral: the transfer it would send and the shorts that get collateral."""
    if guard.unknown is not None:
        return [f"guard: {guard.unknown.check}: {guard.unknown.detail}", "transfer: none (risk unknown)"]
    transfer = guard.transfer
    lines = [f"collateral: futures wallet needs {guard.needed}" + (f", guard top-up {guard.top_up}"
                                                                   if guard.top_up > 0 else "")]
    lines += [f"guard would add collateral to {r.symbol}: {r.detail}" for r in guard.collateral_added]
    lines.append("transfer: none" if transfer is None else f"transfer: {transfer.amount_quote} {transfer.from_wallet}"
                 f" -> {transfer.to_wallet} ({transfer.transfer_id}); futures wallet after it "
                 f"{guard.balance_after_transfer()}")
    return lines


def leg_lines(state: RunState, pairs: dict[str, PairTarget], *, held: dict[str, Decimal], prices: dict[str, float],
              equity: float, first: set[str]) -> list[str]:
    """Every pair's leg orders as the real run would plan them now (cut pairs first, perp leg first)."""
    lines = []
    for pair in sorted(pairs.values(), key=lambda p: (p.spot_symbol not in first, p.spot_symbol)):
        amount, directional, orders, skipped = plan_coin(state, pair, held, prices, equity)
        lines.append(f"{pair.spot_symbol}: weight {pair.spot_weight:.4f}, {amount} per leg"
                     + (f" + directional {pair.directional_weight:.4f} ({directional} spot)" if state.settings.combined
                        else "") + (" (cut by the guard: traded first)" if pair.spot_symbol in first else ""))
        lines += [f"  {o.symbol:<16}{o.side:<5}{o.amount_base:>14} {float(o.notional_quote):>10.2f}"
                  f"{'  reduce-only' if o.reduce_only else ''}  {o.client_order_id}" for o in orders]
        lines += [f"  skipped {s.symbol} {s.side}: {s.reason} ({s.detail})" for s in skipped]
    return lines
