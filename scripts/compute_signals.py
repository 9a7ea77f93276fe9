"""Compute target weights from the stored candles into state/targets.json (fails closed on stale data).

Story: load the strategy timeframe's candles of every configured symbol -> cut them at the last
closed candle -> quarantine undecided price jumps (lib.data.quarantine) -> staleness gate, late symbols held
(lib.research.freshness) -> the strategy over the trailing window its parameters need (lib.research.live_window:
its last row is the full history's) -> the weights decided at the close of the last usable bar, with the
per-asset breakdown, the held symbols and a note for every non-fatal problem (each also logged) ->
targets.json, atomically. A failure leaves targets.json as it was. The data fingerprint is the window's.
"""

from __future__ import annotations

import sys

import pandas as pd
from loguru import logger

from lib.core import storage
from lib.core.errors import ConfigError
from lib.core.state import Targets
from lib.core.symbols import to_traded_symbols
from lib.core.timeframes import format_ms, last_closed_open_ms
from lib.data import quarantine
from lib.data.stored import LiveCandles, read_live_candles
from lib.ops.carry_signals import carry_signals_or
from lib.ops.combo_signals import targets_for
from lib.ops.runner import RunContext, base_parser, run_script
from lib.research import live_window
from lib.research.freshness import select_fresh_candles
from lib.research.sleeves.book import BookSettings, book_summary
from lib.research.strategy import (
    benchmark_column,
    compute_strategy,
    data_fingerprint,
    latest_targets,
    no_data_breakdown,
)

NO_DECISIONS: dict[str, set[int]] = {"confirm": set(), "reject": set()}


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--print", dest="print_table", action="store_true",
                        help="also print the weights table (symbol, weight, score, eligible) to stdout")
    return run_script("compute_signals", parser.parse_args(argv), carry_signals_or(_run))


def _run(ctx: RunContext) -> None:
    targets = targets_for(ctx, _targets)  # a combined book with funding_carry: + the carry legs (lib.ops.combo_signals)
    storage.write_json_atomic(ctx.paths.targets, targets.to_dict())
    if ctx.args.print_table:
        print(_weights_table(targets))


def _targets(ctx: RunContext) -> Targets:
    config, timeframe = ctx.config, ctx.config.strategy.timeframe
    symbols = to_traded_symbols(config.data.symbols, market_type=config.exchange.market_type)
    benchmark = benchmark_column(symbols, config.strategy.benchmark_symbol)
    if benchmark is None:
        raise ConfigError(
            f"strategy.benchmark_symbol {config.strategy.benchmark_symbol} must be one of data.symbols "
            "(regime filter, beta and the buy-and-hold benchmark need its candles)"
        )
    decisions = quarantine.parse_decisions(
        storage.read_json(ctx.paths.jump_decisions) if ctx.paths.jump_decisions.exists() else None)
    params = live_window.WindowParams(**{key: getattr(config, key) for key in live_window.WINDOW_SECTIONS})
    last_closed_ms = last_closed_open_ms(ctx.now_ms, timeframe)

    def load(keep_from_ms: int) -> dict[str, LiveCandles]:  # whole files checked, only the tail kept (memory)
        return {symbol: read_live_candles(
            ctx.paths.ohlcv(timeframe, symbol), symbol, timeframe, closed_until_ms=last_closed_ms,
            keep_from_ms=keep_from_ms, max_jump_frac=config.data.max_jump_frac,
            confirm_bars=config.data.jump_confirm_bars, decided=decisions.get((symbol, timeframe), NO_DECISIONS),
        ) for symbol in symbols}  # fmt: skip

    # the as-of bar is at most max_staleness_bars before the last closed one (lib.research.freshness)
    kept_from_ms = live_window.window_start_ms(as_of_ms=last_closed_ms, timeframe=timeframe, bars=live_window.
                                               required_history_bars(params) + config.data.max_staleness_bars)
    loaded = load(kept_from_ms)
    notes = [note for checked in loaded.values() for note in checked.notes]
    quarantined = {symbol: f"quarantined price jump at {format_ms(checked.cut_at_ms)}"
                   for symbol, checked in loaded.items() if checked.cut_at_ms is not None}
    fresh = select_fresh_candles(
        {symbol: checked.candles for symbol, checked in loaded.items()}, now_ms=ctx.now_ms, timeframe=timeframe,
        max_staleness_bars=config.data.max_staleness_bars, benchmark=benchmark, cut=set(quarantined),
    )
    notes += fresh.notes
    for note in notes:
        logger.warning("{}", note)
    hold = {**{symbol: "stale" for symbol in fresh.stale}, **{symbol: "late" for symbol in fresh.late},
            **quarantined}
    history_from_ms = min((c.first_ms for c in loaded.values() if c.first_ms is not None), default=fresh.as_of_ms)

    whole: dict[str, pd.DataFrame] = {}

    def window(bars: int) -> tuple[dict[str, pd.DataFrame], bool]:  # longer ones: the files read once more, whole
        start_ms = live_window.window_start_ms(as_of_ms=fresh.as_of_ms, timeframe=timeframe, bars=bars)
        if start_ms < kept_from_ms and not whole:
            whole.update({symbol: checked.candles[checked.candles["timestamp"] <= fresh.as_of_ms]
                          for symbol, checked in load(history_from_ms).items() if symbol in fresh.candles})
        return live_window.trailing_window(fresh.candles if start_ms >= kept_from_ms else whole, timeframe=timeframe,
                                           as_of_ms=fresh.as_of_ms, bars=bars), start_ms <= history_from_ms

    output, used = live_window.run_settled(window, lambda candles: compute_strategy(
        candles, strategy=config.strategy, signals=config.signals, ensemble=config.ensemble,
        universe=config.universe, spot=config.spot, perp=config.perp,
        book=BookSettings(trend=config.trend, sizing=config.sizing, combiner=config.combiner, turnover=config.turnover),
    ), params)
    weights, breakdown = latest_targets(output, as_of_ms=fresh.as_of_ms)
    for symbol in symbols:  # a symbol without any candle up to as-of is still reported, at weight 0
        weights.setdefault(symbol, 0.0)
        breakdown.setdefault(symbol, no_data_breakdown())
    targets = Targets(
        as_of_ms=fresh.as_of_ms, created_ms=ctx.now_ms, strategy=config.strategy.name,
        exchange=config.exchange.id, market_type=config.exchange.market_type, timeframe=timeframe,
        weights=weights, breakdown=breakdown, data_fingerprint=data_fingerprint(used),
        notes=tuple(notes), hold=dict(sorted(hold.items())),
        book={} if output.book is None else book_summary(output.book, fresh.as_of_ms),
    )
    held = {symbol: weight for symbol, weight in weights.items() if weight != 0.0}
    logger.info(
        "targets {} as of {}: {} of {} symbols held, gross {:.3f}, net {:.3f}, {} stale, {} kept as they are; "
        "computed over the last {} bars; fingerprint {}", config.strategy.name, format_ms(fresh.as_of_ms), len(held),
        len(weights), sum(abs(weight) for weight in held.values()), round(sum(held.values()), 9) + 0.0,
        len(fresh.stale), len(hold), len(output.target_weights), targets.data_fingerprint[:12],
    )
    return targets


def _weights_table(targets: Targets) -> str:
    """The product output of ``--print``: one line per symbol, largest |weight| first."""
    lines = [f"targets {targets.strategy} as of {format_ms(targets.as_of_ms)}",
             f"{'symbol':<16}{'weight':>10}{'score':>10}  eligible"]
    for symbol, weight in sorted(targets.weights.items(), key=lambda item: (-abs(item[1]), item[0])):
        entry = targets.breakdown.get(symbol, {})
        score = entry.get("score")
        score_text = "-" if score is None else f"{score:.3f}"
        lines.append(f"{symbol:<16}{weight:>10.4f}{score_text:>10}  {entry.get('eligible')}")
    return "\n".join(lines + [f"note: {note}" for note in targets.notes])


if __name__ == "__main__":
    sys.exit(main())
