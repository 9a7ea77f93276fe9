"""Backtest the strategy over stored history into state/backtests/<run_id>/ (metrics, equity, trades, chart).

Story: candles (+ funding for perps) from data/ or --data-dir, cut at --end -> the SAME lib.research.strategy
composition over all of it, once (causal) -> lib.research.backtester from the first tradeable bar >= --start (close
of t -> open of t+1; fees, slippage, funding) -> metrics vs buy-and-hold BTC and equal-weight baskets ->
optional walk-forward and fee sensitivity (independent tasks: a local Dask cluster, --scheduler, or --workers 1
serially; lib.ops.fanout) -> every file written atomically at the end -> summary on stdout.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from loguru import logger

from lib.core import storage
from lib.core.timeframes import format_ms
from lib.data import stored
from lib.ops import charts, datasets, fanout
from lib.ops.runner import RunContext, base_parser, run_script
from lib.research.carry.combined import carry_split
from lib.research.strategy import data_fingerprint
from lib.research.strategy_params import CARRY_STRATEGY, PERP_STRATEGY, STRATEGY_NAMES
from lib.research.study import (
    benchmark_curves,
    chart_data,
    cost_grid,
    funding_coverage,
    grids,
    history,
    json_values,
    reports,
    run_ids,
    sections,
    simulation,
    walk_forward,
)

GRID_MODULES = ("lib.research.study.walk_forward", "lib.research.study.cost_grid", "lib.research.sim_kernel")


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    add = parser.add_argument
    add("--strategy", choices=(*STRATEGY_NAMES, CARRY_STRATEGY), help="override strategy.name")
    add("--data-dir", type=Path, help="read DIR/market/<timeframe>/<BASE>-<QUOTE>.parquet and DIR/funding/ "
        "(the layout of ../shared/data) instead of data/")
    add("--symbols", nargs="+", help="only these (default: data.symbols; with --data-dir every file there)")
    add("--start", help="ISO date/time UTC or epoch ms (default and floor: the first tradeable bar)")
    add("--end", help="last bar, inclusive (a bare date = that whole day); later data are never read")
    add("--walk-forward", action="store_true", help="walk-forward ([walkforward] layout) over a grid")
    add("--grid", action="append", default=[], metavar="SECTION.FIELD=V1,V2",
        help="a walk-forward grid axis, repeatable (default: the built-in top_n/top_k x rebalance grid)")
    add("--costs", action="store_true", help="also run at each fee of walkforward.cost_levels_bps")
    add("--missing-funding", choices=("drop", "proxy", "zero"), help="perps: symbols without funding history "
        "are dropped, charged the others' mean rate, or charged nothing (default: study.missing_funding)")
    add("--no-live-risk", action="store_true", help="leave out the [risk] layer (drawdown halt, daily-loss "
        "reduce-only, caps, VaR/CVaR tail scaling) that runs live, modelled by default (backtest.model_live_risk)")
    add("--run-id", help="output folder name (default: strategy-timeframe-UTCtime-inputhash)")
    add("--progress", action="store_true", help="show progress bars even when not on a terminal")
    fanout.add_arguments(parser)
    return run_script("backtest", parser.parse_args(argv), _run)


def _run(ctx: RunContext) -> None:
    args, config = ctx.args, ctx.config
    if args.strategy == CARRY_STRATEGY:  # its own two-wallet book (spot + perp legs); imported only when used
        from lib.research.carry.run import backtest_script
        return print(backtest_script(args, config, ctx.paths, now_ms=ctx.now_ms))
    if (split := carry_split(args.strategy or config.strategy.name, config.combiner)) is not None:
        from lib.ops.combo_backtest import backtest_combined
        return print(backtest_combined(ctx, split, _run))  # the spot sleeves' run + the carry book
    with fanout.from_args(args, config.research, progress=args.progress) as map_tasks:
        if args.walk_forward or args.costs:  # the workers start and import while this process runs the base
            map_tasks.start_early(GRID_MODULES)
        _backtest(ctx, map_tasks)


def _backtest(ctx: RunContext, map_tasks: fanout.Fanout) -> None:
    args, config = ctx.args, ctx.config
    strategy = dataclasses.replace(config.strategy, name=args.strategy or config.strategy.name)
    settings = sections.settings_from(config, strategy)
    research, params = config.study, sections.to_backtest_params(settings)
    params = dataclasses.replace(params, model_live_risk=params.model_live_risk and not args.no_live_risk)
    research = dataclasses.replace(research, missing_funding=args.missing_funding or research.missing_funding)
    timeframe, is_perp, jump = strategy.timeframe, strategy.name == PERP_STRATEGY, config.data.max_jump_frac
    end_ms = history.parse_time_ms(args.end, is_end=True) if args.end else None
    sources = datasets.series_files(ctx, timeframe, is_perp=is_perp)
    read = {symbol: stored.read_valid_candles(candle_file, timeframe, max_jump_frac=jump)
            for symbol, (candle_file, _) in sources.items()}
    candles = history.cut_candles(read, end_ms=end_ms)
    funding = {symbol: stored.read_funding_until(sources[symbol][1], end_ms) for symbol in candles} if is_perp else {}
    funding_wide, dropped = funding_coverage.build_funding_wide(funding, policy=research.missing_funding)
    if dropped:
        logger.warning("no funding history, so not traded (study.missing_funding = drop): {}", dropped)
        candles = {symbol: frame for symbol, frame in candles.items() if symbol not in dropped}
    inputs = simulation.build_simulation_inputs(candles, settings, funding_wide=funding_wide)
    floor_ms = max(history.parse_time_ms(args.start, is_end=False) if args.start else 0,
                   funding_coverage.first_funding_ms({symbol: funding.get(symbol) for symbol in candles}))
    start_ms = history.default_start_ms(inputs, not_before_ms=floor_ms)
    result = simulation.simulate(inputs, params, start_ms=start_ms, end_ms=end_ms, live_risk=settings.live_risk)
    for warning in result.data_end_exits:
        logger.warning("data ended: {}", warning)
    benchmarks = benchmark_curves.benchmark_equity(inputs.close.loc[start_ms:], inputs.benchmark, timeframe=timeframe,
                                        study=research, capital_quote=params.starting_capital_quote)
    run_inputs = [data_fingerprint(candles), str(start_ms), str(end_ms), str(sorted(vars(args).items()))]
    run_id = args.run_id or run_ids.build_run_id(settings, now_ms=ctx.now_ms, inputs=run_inputs)
    equity_frame = benchmark_curves.to_equity_frame(result.equity, benchmarks)
    outputs: dict[str, object] = {"equity.parquet": equity_frame, "trades.parquet": result.trades,
                                  "weights.parquet": result.weights.reset_index(names="timestamp")}
    if args.walk_forward:
        grid = grids.parse_grid(args.grid, settings) or grids.default_grid(settings, research)
        outputs["walkforward.json"], outputs["walkforward.parquet"] = walk_forward.walk_forward_study(
            candles, settings, inputs, benchmarks, grid=grid, layout=config.walkforward, study=research,
            map_tasks=map_tasks)
    if args.costs:
        shared = cost_grid.CostShared(inputs=inputs, params=params, start_ms=start_ms, end_ms=end_ms,
                                      live_risk=settings.live_risk)
        outputs["cost_sensitivity.json"] = reports.cost_report(cost_grid.cost_table(
            shared, timeframe=timeframe, fee_levels_bps=config.walkforward.cost_levels_bps, map_tasks=map_tasks))
    span = f"{format_ms(int(result.equity.index[0]))} → {format_ms(int(result.equity.index[-1]))}"
    outputs["chart.png"] = charts.render_backtest_chart(*chart_data.chart_frames(equity_frame, result.weights),
                                                        title=f"{strategy.name} {timeframe} {span}, net of costs")
    metrics = reports.metrics_report(result, benchmarks, timeframe=timeframe)
    outputs["metrics.json"] = json_values.json_safe({
        "schema_version": reports.SCHEMA_VERSION, "run_id": run_id, "strategy": strategy.name, "span": span,
        "timeframe": timeframe, "bars": len(result.equity), "symbols": sorted(candles), "dropped_symbols": dropped,
        "missing_funding": research.missing_funding, "source": str(args.data_dir or config.data_dir),
        "backtest_params": dataclasses.asdict(params), "settings": sections.settings_document(settings),
        "metrics": metrics, "live_risk": reports.live_risk_report(result),
        "data_end_exits": list(result.data_end_exits),
    })  # fmt: skip
    out = ctx.paths.backtest_dir(run_id)
    writers: dict[type, Callable[[Path, Any], None]] = {
        pd.DataFrame: storage.write_parquet_atomic, bytes: storage.write_bytes_atomic}
    for name, content in outputs.items():  # only once everything is computed: a failed run writes nothing
        writers.get(type(content), storage.write_json_atomic)(out / name, content)
    logger.info("backtest {} {}: {} bars, {} trades, {} symbols -> {}", strategy.name, span,
                len(result.equity), len(result.trades), len(candles), out)
    print(reports.summary_table(f"backtest {run_id} ({span}, net of costs)", metrics))
    print(reports.tail_risk_line(result))


if __name__ == "__main__":
    sys.exit(main())
