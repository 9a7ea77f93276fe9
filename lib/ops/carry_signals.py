"""Edge: the carry book's data and targets. ``fetch_prices`` with ``strategy.name = "funding_carry"`` runs twice: the
spot venue (``exchange``), then the USD-M venue (``carry.futures_exchange_id``: perp candles and funding).
``compute_signals``: the stored spot and USD-M hourly candles and funding cut at the last closed bar -> the carry
sleeve's targets with both legs per coin -> state/targets.json, atomically. Stale inputs write nothing, fail the run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from loguru import logger

from lib.core import storage
from lib.core.errors import ConfigError, PartialFailure
from lib.core.paths import ProjectPaths, venue_dir_name
from lib.core.state import Targets
from lib.core.symbols import to_spot
from lib.core.timeframes import format_ms, last_closed_open_ms
from lib.execution.carry_legs import futures_section
from lib.ops.runner import RunContext
from lib.research.carry.combined import carry_split
from lib.research.carry.live import LiveCarryTargets, check_fresh, late_legs, live_targets
from lib.research.carry.run import TIMEFRAME, load_market, sources
from lib.research.carry.sleeve import CarryParams
from lib.research.strategy_params import CARRY_STRATEGY, PERP_STRATEGY


def run_carry_signals(ctx: RunContext) -> None:
    config = ctx.config
    if config.strategy.timeframe != TIMEFRAME or config.exchange.market_type != "spot":
        raise ConfigError(f"funding_carry needs strategy.timeframe = {TIMEFRAME!r} and exchange.market_type = 'spot'")
    as_of = last_closed_open_ms(ctx.now_ms, TIMEFRAME)
    found, notes, hold = carry_live_targets(ctx, sorted({to_spot(s) for s in config.data.symbols}), as_of_ms=as_of)
    targets = Targets(as_of_ms=as_of, created_ms=ctx.now_ms, strategy=CARRY_STRATEGY, exchange=config.exchange.id,
                      market_type=config.exchange.market_type, timeframe=TIMEFRAME, weights=found.weights,
                      breakdown=found.breakdown, notes=notes, book=found.book, hold=hold)
    storage.write_json_atomic(ctx.paths.targets, targets.to_dict())
    held = {s: w for s, w in found.weights.items() if w > 0}
    logger.info("targets funding_carry as of {}: {} pair(s) held, spot gross {:.3f}", format_ms(as_of), len(held),
                sum(held.values()))


def carry_live_targets(ctx: RunContext, symbols: list[str], *, as_of_ms: int
                       ) -> tuple[LiveCarryTargets, tuple[str, ...], dict[str, str]]:
    """The carry book's own weights decided at the close of the hourly bar ``as_of_ms`` from the stored spot and
    USD-M candles and funding of ``symbols`` (spot), the notes and the held coins (inputs missing: never closed
    on missing data). Stale inputs raise DataError (nothing is written)."""
    config = ctx.config
    swap = futures_context(ctx).paths
    market, skipped = load_market(sources(data_dir=None, paths_for=(ctx.paths, swap), symbols=symbols),
                                  end_ms=as_of_ms)
    check_fresh(market, as_of_ms=as_of_ms, now_ms=ctx.now_ms, max_staleness_bars=config.data.max_staleness_bars,
                max_funding_age_ms=config.carry.max_funding_age_ms)
    found = live_targets(market, CarryParams(leverage=float(config.carry.leverage)), as_of_ms=as_of_ms)
    late = late_legs(market, as_of_ms=as_of_ms)
    notes = tuple(f"{coin}: no spot, perp, funding or margin tiers: held as it is, not traded" for coin in skipped) + \
        tuple(f"{coin}: no {legs} candle at {format_ms(as_of_ms)} (late): held as it is, not traded"
              for coin, legs in sorted(late.items()))
    hold = {f"{coin}/USDT": "no spot, perp or funding data" for coin in skipped}  # never closed on missing data
    hold.update({f"{coin}/USDT": f"late: no {legs} candle at the decision bar" for coin, legs in late.items()})
    for note in notes:
        logger.warning("{}", note)
    return found, notes, hold


def carry_signals_or(body: Callable[[RunContext], None]) -> Callable[[RunContext], None]:
    """The compute_signals body for the configured strategy: the carry targets for ``funding_carry``."""
    def chosen(ctx: RunContext) -> None:
        (run_carry_signals if ctx.config.strategy.name == CARRY_STRATEGY else body)(ctx)
    return chosen


def futures_context(ctx: RunContext) -> RunContext:
    """The run context of the USD-M venue: its exchange section, its data directory (``<id>_swap``)."""
    config = ctx.config
    exchange = futures_section(config.exchange, config.carry)
    paths = ProjectPaths(data_dir=ctx.paths.data_dir, state_dir=ctx.paths.state_dir,
                         venue=venue_dir_name(exchange.id, exchange.market_type))
    return replace(ctx, paths=paths, config=replace(config, exchange=exchange,
                                                    strategy=replace(config.strategy, name=PERP_STRATEGY)))


def carry_fetch_or(body: Callable[[RunContext], None]) -> Callable[[RunContext], None]:
    """The fetch_prices body, run for the spot and then the USD-M venue for ``funding_carry`` and for a combined book
    with that sleeve (a partial failure of the first still fetches the second; it is raised after)."""
    def chosen(ctx: RunContext) -> None:
        config = ctx.config
        if config.strategy.name != CARRY_STRATEGY and carry_split(config.strategy.name, config.combiner) is None:
            return body(ctx)
        partial: PartialFailure | None = None
        for venue_ctx in (ctx, futures_context(ctx)):
            try:
                body(venue_ctx)
            except PartialFailure as error:
                partial = error
        if partial is not None:
            raise partial
    return chosen
