"""Record a person's verdict on a quarantined price jump (state/jump_decisions.json), or list the verdicts.

compute_signals leaves a candle that jumped more than data.max_jump_frac out of the signals until later
candles decide it (lib.data.quarantine); when they cannot (or cannot soon enough), a person looks at the
exchange's chart and runs one of:
    python -m scripts.confirm_jump BTC/USDT 2025-09-01 --timeframe 1d            # the move was real: use it
    python -m scripts.confirm_jump BTC/USDT 2025-09-01 --timeframe 1d --reject   # a bad print: leave it out
TIME is the candle's OPEN time (ISO UTC or epoch ms), as in the alert and targets.json notes.
"""

from __future__ import annotations

import sys
from typing import Any

from loguru import logger

from lib.core import storage
from lib.core.errors import ConfigError
from lib.core.symbols import to_traded_symbols
from lib.core.timeframes import parse_time_ms, timeframe_ms
from lib.data.ohlcv import format_ms
from lib.data.quarantine import DECISIONS_SCHEMA_VERSION, parse_decisions
from lib.ops.runner import RunContext, base_parser, run_script


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("symbol", nargs="?", help="as in data.symbols, e.g. BTC/USDT (omit to list the verdicts)")
    parser.add_argument("time", nargs="?", help="open time of the jump candle (ISO UTC or epoch ms)")
    parser.add_argument("--timeframe", default=None, help="default: strategy.timeframe")
    parser.add_argument("--reject", action="store_true", help="a bad print: leave the candle out of the signals")
    return run_script("confirm_jump", parser.parse_args(argv), _run)


def _run(ctx: RunContext) -> None:
    path = ctx.paths.jump_decisions
    raw: Any = storage.read_json(path) if path.exists() else {"schema_version": DECISIONS_SCHEMA_VERSION,
                                                               "decisions": []}
    parse_decisions(raw)  # refuse to add to a file that does not validate
    if ctx.args.symbol is None:
        for entry in raw["decisions"]:
            print(f"{entry['symbol']} {entry['timeframe']} {format_ms(entry['open_ms'])}: {entry['decision']}")
        return
    if ctx.args.time is None:
        raise ConfigError("give the jump candle's open time after the symbol")
    timeframe = ctx.args.timeframe or ctx.config.strategy.timeframe
    traded = to_traded_symbols([ctx.args.symbol], market_type=ctx.config.exchange.market_type)[0]
    if traded not in to_traded_symbols(ctx.config.data.symbols, market_type=ctx.config.exchange.market_type):
        raise ConfigError(f"{ctx.args.symbol} is not in data.symbols")
    open_ms = parse_time_ms(ctx.args.time, what="TIME")
    if open_ms % timeframe_ms(timeframe):
        raise ConfigError(f"{ctx.args.time} is not the open time of a {timeframe} candle")
    decision = "reject" if ctx.args.reject else "confirm"
    entries = [e for e in raw["decisions"]
               if (e["symbol"], e["timeframe"], e["open_ms"]) != (traded, timeframe, open_ms)]
    entries.append({"symbol": traded, "timeframe": timeframe, "open_ms": open_ms, "decision": decision,
                    "decided_ms": ctx.now_ms})
    storage.write_json_atomic(path, {"schema_version": DECISIONS_SCHEMA_VERSION, "decisions": entries})
    logger.info("{} {} {}: {} (compute_signals {} it from its next run)", traded, timeframe, format_ms(open_ms),
                decision, "uses" if decision == "confirm" else "leaves out")


if __name__ == "__main__":
    sys.exit(main())
