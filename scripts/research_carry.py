"""Run the funding-carry research grid on development data into state/backtests/carry-research-<run_id>/.

Story: parse the grid axes -> load spot + perp hourly candles and funding from --data-dir (the layout of
../shared/data), cut at --end, which may not be later than the research cutoff (the hold-out stays
untouched) -> one carry backtest per configuration (lib.research.carry.study.run_grid; one task each on a
local Dask cluster, --scheduler or --workers 1: lib.ops.fanout) -> grid.csv (one row of metrics per
configuration, every one tried) and returns.parquet (daily net returns, one column per configuration: the
research protocol's input) -> a markdown table on stdout.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pandas as pd

from lib.core import storage
from lib.core.errors import ConfigError
from lib.ops import fanout
from lib.ops.runner import RunContext, base_parser, run_script
from lib.research.carry import run as carry
from lib.research.carry.sleeve import CarryParams
from lib.research.carry.study import grid_configurations, run_grid
from lib.research.study.history import parse_time_ms

RESEARCH_CUTOFF = "2022-12-31"
DEFAULT_GRID = ("forecast_settlements=9,21,90", "holding_days=7,14,30", "enter_cost_multiple=1.0,2.0",
                "exit_cost_multiple=0.0,0.5")
COLUMNS = ("config", "return_2020", "return_2021", "return_2022", "cagr_frac", "sharpe", "max_drawdown_frac",
           "beta_to_btc", "funding_2022", "costs_2022", "funding_earned_quote", "price_pnl_quote", "fees_paid_quote",
           "worst_margin_ratio", "liquidations", "turnover_annual", "mean_holding_days", "time_in_market_frac",
           "kelly_binds_frac")


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="DIR/market/1h, DIR/futures/1h, DIR/funding")
    parser.add_argument("--start", default="2020-02-01", help="first bar of every backtest (ISO date, UTC)")
    parser.add_argument("--end", default=RESEARCH_CUTOFF, help=f"last day, at most {RESEARCH_CUTOFF}")
    parser.add_argument("--grid", action="append", default=[], metavar="FIELD=V1,V2",
                        help=f"a CarryParams axis, repeatable (default: {' '.join(DEFAULT_GRID)})")
    parser.add_argument("--run-id", default="grid", help="output folder: state/backtests/carry-research-RUN_ID/")
    fanout.add_arguments(parser)
    return run_script("research_carry", parser.parse_args(argv), _run)


def _run(ctx: RunContext) -> None:
    args, config = ctx.args, ctx.config
    axes = _parse_axes(args.grid or list(DEFAULT_GRID))
    end_ms = parse_time_ms(args.end, is_end=True)
    if end_ms > parse_time_ms(RESEARCH_CUTOFF, is_end=True):
        raise ConfigError(f"--end {args.end} is after the research cutoff {RESEARCH_CUTOFF}: the hold-out stays unseen")
    market, skipped = carry.load_market(carry.sources(data_dir=args.data_dir, paths_for=None, symbols=None),
                                        end_ms=end_ms)
    base = CarryParams(fee_rate=config.backtest.fee_bps / 10_000, slippage_rate=config.backtest.slippage_bps / 10_000)
    configs = grid_configurations(base, axes)
    with fanout.from_args(args, config.research) as map_tasks:
        table, returns = run_grid(market, configs, list(axes), start_ms=parse_time_ms(args.start, is_end=False),
                                  end_ms=end_ms, map_tasks=map_tasks)
    out = ctx.paths.backtest_dir(f"carry-research-{args.run_id}")
    storage.write_bytes_atomic(out / "grid.csv", table.to_csv(index=False).encode())
    storage.write_parquet_atomic(out / "returns.parquet", returns.rename_axis("day").reset_index())
    print(f"carry grid: {len(configs)} configurations, coins {market.coins}, skipped {skipped}, -> {out}")
    print(_markdown(table))


def _parse_axes(items: list[str]) -> dict[str, list[object]]:
    axes: dict[str, list[object]] = {}
    for item in items:
        name, _, values = item.partition("=")
        if name not in CarryParams.__dataclass_fields__ or not values:
            raise ConfigError(f"--grid {item!r}: expected FIELD=V1,V2 with FIELD a CarryParams field")
        axes[name] = [ast.literal_eval(value) for value in values.split(",")]
    return axes


def _markdown(table: pd.DataFrame) -> str:
    shown = table.reindex(columns=list(COLUMNS))
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for _, row in shown.iterrows():
        cells = [row["config"]] + [f"{value:.4g}" if isinstance(value, float) else str(value)
                                   for value in row.iloc[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
