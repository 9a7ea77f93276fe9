"""Edge: the carry book's drawdown halt, as the spot book's (lib.execution.rebalance_engine.flatten): on a breach
state/halt.json is written BEFORE anything is sent, then every pair is closed pair by pair, perp leg first (a
reduce-only buy-back, then the spot sale), through the same leg path and mismatch rule, so the book ends flat and
hedged at every step; the halt is marked ``flattened`` once all pairs are flat. A run that died mid-flatten
finishes it on the next run and does nothing else. Always raises TradingHalted (the runner alerts once)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

from loguru import logger

from lib.core import errors
from lib.core.state import HaltRecord
from lib.core.symbols import to_perpetual, to_spot
from lib.execution.carry_legs import PairTarget
from lib.execution.carry_state import RunState, book_equity, live_prices, wallet_facts
from lib.execution.rebalance_engine import FLATTEN_SUFFIX, HOW_TO_RESUME
from lib.execution.risk import RiskRejection
from lib.execution.risk_baselines import roll_baselines
from lib.execution.state_files import write_halt

TradePair = Callable[[RunState, PairTarget], int]
WritePositions = Callable[..., None]


def write_new_halt(state: RunState, breach: RiskRejection, halt_path: Path) -> HaltRecord:
    """state/halt.json for a drawdown breach found this run (written before any order)."""
    held, spot_cash, futures_balance = wallet_facts(state)
    equity = book_equity(held, spot_cash, futures_balance, live_prices(state, set(held)))
    baselines = roll_baselines(state.previous, equity_quote=equity, now_ms=state.run.time_ms, reset=state.reset)
    halt = HaltRecord(created_ms=state.run.time_ms, run_id=state.run.run_id, reason="drawdown",
                      detail=f"{breach.check}: {breach.detail}", equity_quote=equity,
                      high_water_mark_quote=baselines.high_water_mark_quote)
    if state.journal.write:
        write_halt(halt_path, halt)
    return halt


def flatten(state: RunState, pairs: Mapping[str, PairTarget], halt: HaltRecord, halt_path: Path,
            trade_pair: TradePair, write_positions: WritePositions) -> None:
    """Close every pair (the targets' and every coin held), hedged; mark the halt flattened when all are flat."""
    state.run = replace(state.run, rebalance_id=f"{state.run.rebalance_id}-{FLATTEN_SUFFIX}")
    settings = state.settings  # every leg the exchange takes is closed: no carry.min_leg_quote dust left behind
    state.settings = replace(settings, carry=replace(settings.carry, min_leg_quote=Decimal(0)))
    held = wallet_facts(state)[0]
    closing = {s: replace(p, spot_weight=0.0) for s, p in pairs.items()}
    for symbol in held:
        spot = to_spot(symbol)
        if spot not in closing:
            closing[spot] = PairTarget(spot_symbol=spot, perp_symbol=to_perpetual(spot), spot_weight=0.0)
    filled = 0
    try:
        for pair in sorted(closing.values(), key=lambda p: p.spot_symbol):
            filled += trade_pair(state, pair)
            if state.failures:
                break
    finally:
        write_positions(state, final=True)
    left = {s: a for s, a in wallet_facts(state)[0].items() if a != Decimal(0)}
    complete = not state.failures and not _tradeable(state, left)
    if complete and state.journal.write:
        write_halt(halt_path, replace(halt, flattened=True, flattened_ms=state.run.time_ms))
    status = "complete" if complete else f"INCOMPLETE (the next run retries it): {'; '.join(state.failures) or left}"
    logger.warning("carry drawdown flatten {}: {} order(s) filled", status, filled)
    raise errors.TradingHalted(f"drawdown halt of the carry book: {halt.detail}; flatten of both legs {status}, "
                               f"{filled} order(s) filled; {HOW_TO_RESUME}")


def _tradeable(state: RunState, left: dict[str, Decimal]) -> list[str]:
    """Remainders the market could still trade (at or above its minimum amount and notional): the flatten is
    unfinished while any is left; dust below the minimums cannot be sold and does not hold the halt open."""
    if not left:
        return []
    prices = state.session.fetch_prices(set(left))
    markets = state.session.markets
    return [s for s, a in left.items() if s not in markets or s not in prices or (
        abs(a) >= markets[s].min_amount_base and abs(a) * Decimal(repr(prices[s])) >= markets[s].min_notional_quote)]
