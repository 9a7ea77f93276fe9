"""Edge: ``backtest --strategy combined`` when ``combiner.sleeves`` include ``funding_carry``: the directional part
through the script's own spot path (its run in state/backtests/<run_id>-directional/, exactly ``--strategy`` of
those sleeves), the carry part through the carry book on the same span (spot + perp candles and funding, as
``--strategy funding_carry`` reads them, its targets decided at the directional closes), the two combined with the
capital re-split each bar and its trades costed (lib.research.carry.combined_book) -> state/backtests/<run_id>/
(metrics.json, equity.parquet, returns.parquet) written once everything is computed; returns the summary."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from lib.core import storage
from lib.core.errors import DataError
from lib.core.paths import ProjectPaths, venue_dir_name
from lib.core.timeframes import format_ms
from lib.ops.runner import RunContext
from lib.research import metrics
from lib.research.carry.combined import CarrySplit
from lib.research.carry.combined_book import CombinedBook
from lib.research.carry.report import beta_to
from lib.research.carry.run import load_market, sources
from lib.research.carry.sleeve import CarryParams
from lib.research.study import reports
from lib.research.study.benchmark_curves import BTC_BENCHMARK, STRATEGY_COLUMN
from lib.research.study.combined_carry import combine_with_carry
from lib.research.study.history import parse_time_ms
from lib.research.study.json_values import json_safe

DIRECTIONAL_SUFFIX = "-directional"


def backtest_combined(ctx: RunContext, split: CarrySplit, run_spot: Callable[[RunContext], None]) -> str:
    args, config = ctx.args, ctx.config
    timeframe = config.strategy.timeframe
    digest = hashlib.sha256(repr((sorted(vars(args).items()), split)).encode()).hexdigest()[:8]
    stamp = datetime.fromtimestamp(ctx.now_ms / 1000, UTC).strftime("%Y%m%dT%H%M%SZ")
    run_id = args.run_id or f"combined-carry-{timeframe}-{stamp}-{digest}"
    sub = replace(ctx, args=argparse.Namespace(**{**vars(args), "strategy": split.directional_name,
                                                  "run_id": run_id + DIRECTIONAL_SUFFIX}),
                  config=replace(config, combiner=split.directional,
                                 strategy=replace(config.strategy, name=split.directional_name)))  # type: ignore[arg-type]
    run_spot(sub)  # prints the directional part's own summary
    spot_dir = ctx.paths.backtest_dir(run_id + DIRECTIONAL_SUFFIX)
    equity_frame, held = (_read_written(spot_dir / name) for name in ("equity.parquet", "weights.parquet"))
    if equity_frame is None or held is None:
        raise DataError(f"the directional run wrote no equity/weights in {spot_dir}")
    equity_frame = equity_frame.set_index("timestamp")
    directional = equity_frame[STRATEGY_COLUMN]
    gross = held.set_index("timestamp").abs().sum(axis=1)

    end_ms = parse_time_ms(args.end, is_end=True) if args.end else None
    spot = ProjectPaths(config.data_dir, config.state_dir, venue_dir_name(config.exchange.id, "spot"))
    swap = ProjectPaths(config.data_dir, config.state_dir, venue_dir_name(config.exchange.id, "swap"))
    market, skipped = load_market(sources(data_dir=args.data_dir, paths_for=(spot, swap), symbols=args.symbols),
                                  end_ms=end_ms)
    fee, slippage = config.backtest.fee_bps / 10_000, config.backtest.slippage_bps / 10_000
    params = CarryParams(fee_rate=fee, slippage_rate=slippage, leverage=float(config.carry.leverage))
    capital = config.backtest.starting_capital_quote
    book, carry = combine_with_carry(directional, gross, market, split, params, timeframe=timeframe,
                                     capital_quote=capital)
    found = _metrics(book, equity_frame, timeframe=timeframe)
    span = f"{format_ms(int(book.equity.index[0]))} → {format_ms(int(book.equity.index[-1]))}"
    document = json_safe({
        "schema_version": reports.SCHEMA_VERSION, "run_id": run_id, "strategy": config.strategy.name, "span": span,
        "timeframe": timeframe, "bars": len(book.equity), "carry_coins": market.coins, "skipped_coins": skipped,
        "split": {"funding_carry": split.carry_frac, split.directional_name: split.directional_frac},
        "directional_run": run_id + DIRECTIONAL_SUFFIX, "carry_params": dataclasses.asdict(params),
        "source": str(args.data_dir or config.data_dir), "metrics": found,
    })  # fmt: skip
    curves = pd.DataFrame({STRATEGY_COLUMN: book.equity, "returns": book.returns,
                           "resplit_cost_frac": book.resplit_cost_frac, "directional_return": book.directional_returns,
                           "carry_return": book.carry_returns, **{f"carry_{c}_quote": book.carry_flows[c]
                                                                  for c in book.carry_flows.columns}})
    out = ctx.paths.backtest_dir(run_id)
    storage.write_parquet_atomic(out / "equity.parquet", curves.rename_axis("timestamp").reset_index())
    storage.write_json_atomic(out / "metrics.json", document)
    extra = found[STRATEGY_COLUMN]
    lines = [reports.summary_table(f"backtest {run_id} ({span}, combined: {split.directional_name} "
                                   f"{split.directional_frac:.0%} + funding_carry {split.carry_frac:.0%}, net of "
                                   "costs, funding and basis)", {k: v for k, v in found.items() if k != "carry"}),
             f"beta to BTC {extra['beta_to_btc']:.3f}, funding earned {extra['funding_earned_quote']:.2f}, basis P&L "
             f"{extra['basis_pnl_quote']:.2f}, re-split costs {extra['resplit_cost_quote']:.2f} (quote)"]
    return "\n".join(lines)


def _read_written(path: Path) -> pd.DataFrame | None:
    """A file the directional run just wrote, with whatever columns it has (its symbols, its benchmarks)."""
    return storage.read_parquet(path, columns=pq.read_schema(path).names) if path.exists() else None


def _metrics(book: CombinedBook, equity_frame: pd.DataFrame, *, timeframe: str) -> dict[str, Any]:
    """The book, its two parts and the benchmarks over the combined span, plus beta and the carry's flows."""
    index = book.equity.index
    curves = {STRATEGY_COLUMN: book.equity,
              "directional_part": (1.0 + book.directional_returns).cumprod(),
              "funding_carry_part": (1.0 + book.carry_returns).cumprod(),
              **{name: equity_frame[name].reindex(index) for name in equity_frame.columns if name != STRATEGY_COLUMN}}
    found: dict[str, Any] = {name: metrics.summary_metrics(curve.dropna(), timeframe=timeframe)
                             for name, curve in curves.items() if curve.notna().sum() >= 2}
    flows = book.carry_flows.sum()
    btc = metrics.returns_from_equity(curves[BTC_BENCHMARK]) if BTC_BENCHMARK in curves else None
    for name, returns in (("directional_part", book.directional_returns), ("funding_carry_part", book.carry_returns)):
        found[name]["beta_to_btc"] = float("nan") if btc is None else beta_to(returns.iloc[1:], btc)
    before = book.equity.shift(1).fillna(book.equity.iloc[0] / (1.0 + book.returns.iloc[0]))
    found[STRATEGY_COLUMN] |= {
        "beta_to_btc": float("nan") if btc is None else beta_to(book.returns.iloc[1:], btc),
        "funding_earned_quote": float(flows["funding"]), "basis_pnl_quote": float(flows["price_pnl"]),
        "carry_fees_quote": float(flows["fees"] + flows["slippage"]),
        "liquidation_loss_quote": float(flows["liquidation_loss"]),
        "resplit_cost_quote": float((book.resplit_cost_frac * before).sum()),
        "final_equity_quote": float(book.equity.iloc[-1]),
    }
    return found
