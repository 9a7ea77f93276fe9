"""Edge: the funding-carry market the research protocol's ``trend_carry`` family reads (hourly spot + perpetual
candles and funding of the coins with margin tiers), loaded as ``backtest --strategy combined`` loads it
(lib.research.carry.run) and cut at the research end on read: later rows never enter the research."""

from __future__ import annotations

from lib.core.paths import ProjectPaths, venue_dir_name
from lib.ops.runner import RunContext
from lib.research.carry.market import CarryMarket
from lib.research.carry.run import load_market, sources


def carry_market(ctx: RunContext, *, end_ms: int) -> CarryMarket:
    """``--data-dir``'s market/1h, futures/1h and funding/ (or the project's data/ venues), rows <= ``end_ms``."""
    config = ctx.config
    spot = ProjectPaths(config.data_dir, config.state_dir, venue_dir_name(config.exchange.id, "spot"))
    swap = ProjectPaths(config.data_dir, config.state_dir, venue_dir_name(config.exchange.id, "swap"))
    found = sources(data_dir=ctx.args.data_dir, paths_for=(spot, swap), symbols=ctx.args.symbols)
    return load_market(found, end_ms=end_ms)[0]
