"""Edge: ``rebalance`` with ``strategy.name = "funding_carry"``, or a ``combined`` book whose ``combiner.sleeves``
include ``funding_carry`` (directional spot part + carry pairs, lib.execution.carry_combo): the config and run
context composed into lib.execution.carry_run (spot + USD-M legs, one book)."""

from __future__ import annotations

from collections.abc import Callable

from lib.core.symbols import quote_of
from lib.execution.carry_risk import CarryCandles
from lib.execution.carry_run import CARRY_STRATEGY, CarryPaths, CarrySettings, rebalance_carry
from lib.execution.risk_live_key import check_mode_allowed
from lib.ops.carry_signals import futures_context
from lib.ops.runner import RunContext
from lib.research.carry.combined import carry_split
from lib.research.carry.run import TIMEFRAME


def run_carry_rebalance(ctx: RunContext) -> None:
    """Both legs of every carry pair, the collateral transfer and the mismatch rule (lib.execution.carry_run)."""
    config, paths, args = ctx.config, ctx.paths, ctx.args
    check_mode_allowed(config.exchange, ctx.secrets, live_flag=args.live or args.dry_run)
    combined = carry_split(config.strategy.name, config.combiner) is not None
    settings = CarrySettings(exchange=config.exchange, carry=config.carry, orders=config.orders, risk=config.risk,
                             paper=config.paper, simulated=config.simulated, quote=quote_of(config.data.symbols[0]),
                             strategy=config.strategy.name if combined else CARRY_STRATEGY)
    carry_paths = CarryPaths(targets=paths.targets, positions=paths.positions, journal=paths.journal,
                             halt=paths.halt, kill_switch=paths.kill_switch, venue=paths.venue,
                             candles=CarryCandles(spot=paths, perp=futures_context(ctx).paths,
                                                  timeframe=TIMEFRAME if combined else config.strategy.timeframe))
    rebalance_carry(settings, carry_paths, ctx.secrets, now_ms=ctx.now_ms, run_id=ctx.run_id, alert=ctx.alert,
                    dry_run=args.dry_run, reset_high_water_mark=args.reset_high_water_mark,
                    interrupted=ctx.interrupted, show=print)  # the dry run's plan: the product, on stdout


def carry_or(body: Callable[[RunContext], None]) -> Callable[[RunContext], None]:
    """The rebalance body for the configured strategy: the carry path for ``funding_carry`` and for a combined book
    with the funding_carry sleeve, else ``body``."""
    def chosen(ctx: RunContext) -> None:
        config = ctx.config
        two_accounts = config.strategy.name == CARRY_STRATEGY or carry_split(config.strategy.name, config.combiner)
        (run_carry_rebalance if two_accounts else body)(ctx)
    return chosen
