"""Edge: compute_signals for a ``combined`` book whose sleeves include ``funding_carry``
(lib.research.carry.combined): the spot sleeves' targets (the script's own path, run as the directional book),
then the carry book's targets at the same close from the stored spot and USD-M candles and funding, merged into
ONE state/targets.json with the per-sleeve and per-asset breakdown. Stale carry inputs fail the run: nothing is
written (the file is left as it was)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from loguru import logger

from lib.core.errors import ConfigError
from lib.core.perp_margin import MARGIN_TIERS
from lib.core.state import Targets
from lib.core.symbols import base_of, to_perpetual, to_spot
from lib.core.timeframes import format_ms
from lib.ops.carry_signals import carry_live_targets
from lib.ops.runner import RunContext
from lib.research.carry.combined import CarrySplit, carry_decision_ms, carry_split, combine_breakdown, combine_weights

Compute = Callable[[RunContext], Targets]


def targets_for(ctx: RunContext, compute: Compute) -> Targets:
    """``compute(ctx)`` for every book; the merged directional + carry targets for a combined carry book."""
    split = carry_split(ctx.config.strategy.name, ctx.config.combiner)
    return compute(ctx) if split is None else combined_targets(ctx, split, compute)


def carry_coins(symbols: tuple[str, ...] | list[str]) -> list[str]:
    """The spot symbols the carry sleeve may pair: those whose perpetual has Binance margin tiers."""
    return sorted({to_spot(s) for s in symbols if base_of(s) in MARGIN_TIERS})


def combined_targets(ctx: RunContext, split: CarrySplit, compute: Compute) -> Targets:
    config = ctx.config
    if config.exchange.market_type != "spot":
        raise ConfigError("a combined book with funding_carry needs exchange.market_type = 'spot' (the carry "
                          "shorts trade on the USD-M account of [carry])")
    coins = carry_coins(config.data.symbols)
    if not coins:
        raise ConfigError(f"combiner.sleeves has funding_carry but no data.symbols coin has a USD-M perpetual with "
                          f"margin tiers ({sorted(MARGIN_TIERS)})")
    directional_config = replace(config, combiner=split.directional,
                                 strategy=replace(config.strategy, name=split.directional_name))  # type: ignore[arg-type]
    directional = compute(replace(ctx, config=directional_config))
    carry_as_of = carry_decision_ms(directional.as_of_ms, directional.timeframe)
    found, notes, hold = carry_live_targets(ctx, coins, as_of_ms=carry_as_of)
    spot_part = {s: w for s, w in directional.weights.items()}
    weights = combine_weights(spot_part, found.weights, split)
    breakdown = combine_breakdown(spot_part, found.weights, split, directional_breakdown=directional.breakdown,
                                  carry_breakdown=found.breakdown)
    book = {"directional": {"strategy": split.directional_name, "capital_frac": split.directional_frac,
                            **directional.book},
            "funding_carry": {"capital_frac": split.carry_frac, "as_of_ms": carry_as_of, **found.book["carry"]}}
    targets = replace(directional, strategy=config.strategy.name, weights=weights, breakdown=breakdown, book=book,
                      notes=directional.notes + notes,
                      hold=dict(sorted({**directional.hold, **hold,
                                        **{to_perpetual(s): why for s, why in hold.items()}}.items())))
    pairs = {s: w for s, w in weights.items() if s.endswith(":USDT") and w < 0}
    logger.info("targets combined as of {} (carry at {}): directional {:.0%} of the book, funding_carry {:.0%} "
                "({} pair(s), perp gross {:.3f})", format_ms(directional.as_of_ms), format_ms(carry_as_of),
                split.directional_frac, split.carry_frac, len(pairs), -sum(pairs.values()))
    return targets
