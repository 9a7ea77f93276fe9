"""Edge: ``backtest --strategy funding_carry``: read spot + perpetual hourly candles and funding, run the sleeve,
write state/backtests/<run_id>/ (metrics.json, equity.parquet, daily_returns.parquet, trades.parquet,
transfers.parquet, weights.parquet) atomically once everything is computed, return the summary text.

Layout with ``--data-dir DIR`` (that of ../shared/data): DIR/market/1h/<BASE>-USDT.parquet (spot),
DIR/futures/1h/<BASE>-USDT.parquet (the USDT-M perpetual's own candles), DIR/funding/<BASE>-USDT.parquet.
Without it, the project's data/: spot under the exchange's spot venue, perp candles and funding under
its swap venue. Only coins with all three inputs and margin tiers are traded; BTC spot is the beta benchmark.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from lib.core import storage
from lib.core.errors import DataError
from lib.core.paths import ProjectPaths, venue_dir_name
from lib.core.perp_margin import MARGIN_TIERS
from lib.core.symbols import base_of, from_slug, to_perpetual, to_slug
from lib.core.timeframes import format_ms
from lib.data import ohlcv
from lib.data.funding import FUNDING_COLUMNS
from lib.research.carry.market import CarryMarket, build_market
from lib.research.carry.sleeve import CarryParams
from lib.research.carry.study import STRATEGY_NAME, run_carry
from lib.research.study.history import parse_time_ms
from lib.research.study.json_values import json_safe

TIMEFRAME = "1h"
BENCHMARK = "BTC"
MAX_JUMP_FRAC = 0.5  # only flags; fatal candle problems still raise
SUMMARY_KEYS = ("cagr_frac", "sharpe", "max_drawdown_frac", "beta_to_btc", "funding_earned_quote",
                "price_pnl_quote", "fees_paid_quote", "worst_margin_ratio", "turnover_annual")


@dataclasses.dataclass(frozen=True, slots=True)
class CarrySources:
    """Per base asset: (spot candles, perp candles, funding) files; ``benchmark`` = BTC spot candles."""

    files: dict[str, tuple[Path, Path, Path]]
    benchmark: Path


def sources(*, data_dir: Path | None, paths_for: tuple[ProjectPaths, ProjectPaths] | None,
            symbols: Sequence[str] | None) -> CarrySources:
    """Where each coin's three inputs live: ``data_dir`` (shared layout) or (spot paths, swap paths)."""
    if data_dir is not None:
        market, futures, rates = data_dir / "market" / TIMEFRAME, data_dir / "futures" / TIMEFRAME, data_dir / "funding"
        slugs = ([to_slug(symbol) for symbol in symbols] if symbols
                 else sorted(path.stem for path in futures.glob("*.parquet") if "." not in path.stem))
        files = {base_of(from_slug(slug)): (market / f"{slug}.parquet", futures / f"{slug}.parquet",
                                            rates / f"{slug}.parquet") for slug in slugs}
        return CarrySources(files, market / f"{BENCHMARK}-USDT.parquet")
    if paths_for is None:
        raise DataError("carry backtest needs --data-dir or the project's data paths")
    spot, swap = paths_for
    chosen = list(symbols) if symbols else [f"{base}/USDT" for base in MARGIN_TIERS]
    files = {base_of(symbol): (spot.ohlcv(TIMEFRAME, symbol), swap.ohlcv(TIMEFRAME, to_perpetual(symbol)),
                               swap.funding(to_perpetual(symbol))) for symbol in chosen}
    return CarrySources(files, spot.ohlcv(TIMEFRAME, f"{BENCHMARK}/USDT"))


def _candles(path: Path, end_ms: int | None) -> pd.DataFrame | None:
    frame = storage.read_parquet(path, columns=ohlcv.OHLCV_COLUMNS, dtypes=ohlcv.OHLCV_DTYPES)
    if frame is None or frame.empty:
        return None
    frame = frame[frame["timestamp"] <= end_ms] if end_ms is not None else frame
    if fatal := [p for p in ohlcv.validate(frame, TIMEFRAME, max_jump_frac=MAX_JUMP_FRAC) if ohlcv.is_fatal(p)]:
        raise DataError(f"{path}: {ohlcv.describe_problems(fatal)}")
    return frame.reset_index(drop=True)


def load_market(found: CarrySources, *, end_ms: int | None) -> tuple[CarryMarket, list[str]]:
    """The aligned market cut at ``end_ms`` (later rows are dropped on read) and the coins left out."""
    spot, perp, funding, skipped = {}, {}, {}, []
    for base, (spot_path, perp_path, funding_path) in sorted(found.files.items()):
        rates = storage.read_parquet(funding_path, columns=FUNDING_COLUMNS)
        legs = _candles(spot_path, end_ms), _candles(perp_path, end_ms)
        if base not in MARGIN_TIERS or rates is None or rates.empty or legs[0] is None or legs[1] is None:
            skipped.append(base)
            continue
        spot[base], perp[base] = legs
        funding[base] = rates[rates["timestamp"] <= end_ms] if end_ms is not None else rates
    benchmark = _candles(found.benchmark, end_ms)
    if benchmark is None:
        raise DataError(f"no {BENCHMARK} spot candles at {found.benchmark} (the beta benchmark)")
    return build_market(spot, perp, funding, benchmark=BENCHMARK, benchmark_spot=benchmark), skipped


def backtest(*, data_dir: Path | None, paths_for: tuple[ProjectPaths, ProjectPaths] | None,
             symbols: Sequence[str] | None, start: str | None, end: str | None, run_id: str | None,
             now_ms: int, out_dir: ProjectPaths, fee_bps: float, slippage_bps: float, capital_quote: float) -> str:
    """Run and write one carry backtest; returns the stdout summary."""
    end_ms = parse_time_ms(end, is_end=True) if end else None
    start_ms = parse_time_ms(start, is_end=False) if start else None
    market, skipped = load_market(sources(data_dir=data_dir, paths_for=paths_for, symbols=symbols), end_ms=end_ms)
    params = CarryParams(fee_rate=fee_bps / 10_000, slippage_rate=slippage_bps / 10_000)
    run = run_carry(market, params, start_ms=start_ms, end_ms=end_ms, capital_quote=capital_quote)
    ledger = run.book.ledger
    span = f"{format_ms(int(ledger.index[0]))} → {format_ms(int(ledger.index[-1]))}"
    digest = hashlib.sha256(repr((params, market.coins, start_ms, end_ms, str(data_dir))).encode()).hexdigest()[:8]
    stamp = datetime.fromtimestamp(now_ms / 1000, UTC).strftime("%Y%m%dT%H%M%SZ")
    run_id = run_id or f"{STRATEGY_NAME}-{TIMEFRAME}-{stamp}-{digest}"
    daily = run.daily_net_returns
    document = json_safe({
        "strategy": STRATEGY_NAME, "run_id": run_id, "span": span, "timeframe": TIMEFRAME, "bars": len(ledger),
        "coins": market.coins, "skipped_coins": skipped, "source": str(data_dir) if data_dir else "data/",
        "params": dataclasses.asdict(params), "metrics": run.metrics,
    })  # fmt: skip
    outputs = {
        "equity.parquet": ledger.rename_axis("timestamp").reset_index(),
        "daily_returns.parquet": pd.DataFrame({"day": daily.index.strftime("%Y-%m-%d"), "net_return": daily.values}),
        "trades.parquet": run.book.trades, "transfers.parquet": run.book.transfers,
        "weights.parquet": run.book.spot_weights.rename_axis("timestamp").reset_index(),
    }
    out = out_dir.backtest_dir(run_id)
    for name, frame in outputs.items():
        storage.write_parquet_atomic(out / name, frame)
    storage.write_json_atomic(out / "metrics.json", document)
    lines = [f"backtest {run_id} ({span}, {STRATEGY_NAME}, net of costs, funding and basis)",
             *(f"{key:<24} {run.metrics[key]:>12.4f}" for key in SUMMARY_KEYS),
             f"{'yearly_returns':<24} " + ", ".join(f"{y} {r:.2%}" for y, r in run.metrics["yearly_returns"].items())]
    return "\n".join(lines)


def backtest_script(args: argparse.Namespace, config: Any, paths: ProjectPaths, *, now_ms: int) -> str:
    """The backtest script's carry branch: its arguments and config (lib.ops.config.Config) -> ``backtest``."""
    spot = ProjectPaths(config.data_dir, config.state_dir, venue_dir_name(config.exchange.id, "spot"))
    swap = ProjectPaths(config.data_dir, config.state_dir, venue_dir_name(config.exchange.id, "swap"))
    return backtest(data_dir=args.data_dir, paths_for=(spot, swap), symbols=args.symbols, start=args.start,
                    end=args.end, run_id=args.run_id, now_ms=now_ms, out_dir=paths, fee_bps=config.backtest.fee_bps,
                    slippage_bps=config.backtest.slippage_bps, capital_quote=config.backtest.starting_capital_quote)
