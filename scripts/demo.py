"""Replay a window of the built-in simulated market through the whole daily chain, so a newcomer sees it trade.

Why: the main job on today's date may trade nothing at all (the synthetic market may be bearish today).
This writes demo/config.toml (simulated exchange, paper account, no keys, no network) and runs run_pipeline
--as-of for each replayed day, in order: candles -> targets -> orders -> positions -> one equity row per day
and a chart that moves. The window is fixed (a bullish stretch), so it works the same on any date: it buys
coins and re-weights them day by day. A re-run skips the days already replayed (the paper account has moved
on past them), so it trades nothing twice; delete demo/ to start over. Afterwards look at
demo/state/orders.jsonl, positions.json, targets.json, equity.csv and report.png; the stages' logs are in
demo/state/logs/demo.log.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from lib.core.errors import EXIT_FAILURE, EXIT_OK, EXIT_PARTIAL
from lib.core.timeframes import MS_PER_DAY, parse_time_ms
from lib.data.ohlcv import format_ms

FIRST_DAY = "2025-10-19"  # a bullish stretch of the synthetic market (seed 7): the book holds coins
CONFIG = """# Written by scripts/demo.py: the built-in simulated market, a paper account; see README "Quickstart".
[exchange]
id = "simulated"
mode = "paper"
[data]
symbols = ["BTC/USDT", "ETH/USDT", "BNB/USDT", "SOL/USDT", "XRP/USDT", "ADA/USDT", "DOGE/USDT", "LINK/USDT"]
timeframes = ["1d"]
backfill_start = "2024-06-01"
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="demo", help="the demo project directory (default: demo/)")
    parser.add_argument("--first-day", default=FIRST_DAY, help=f"first replayed day (default {FIRST_DAY})")
    parser.add_argument("--steps", type=int, default=6, help="how many days to replay (default 6)")
    parser.add_argument("--every-days", type=int, default=1, help="days between replayed days (default 1)")
    args = parser.parse_args(argv)
    root = Path(args.dir).resolve()
    (root / "state" / "logs").mkdir(parents=True, exist_ok=True)
    config = root / "config.toml"
    if not config.exists():
        config.write_text(CONFIG)
    first_ms = parse_time_ms(args.first_day, what="--first-day") + 30 * 60_000  # 00:30 UTC: the day's candle closed
    print(f"demo: replaying {args.steps} day(s) of the simulated market into {root} (logs: state/logs/demo.log)")
    with (root / "state" / "logs" / "demo.log").open("a") as log:
        done_ms = _last_replayed_ms(root / "state")
        for step in range(args.steps):
            as_of_ms = first_ms + step * args.every_days * MS_PER_DAY
            if as_of_ms <= done_ms:
                print(f"demo: {format_ms(as_of_ms)}  already replayed")
                continue
            exit_code = subprocess.call([sys.executable, "-m", "scripts.run_pipeline", "--config", str(config),
                                         "--as-of", str(as_of_ms)], stdout=log, stderr=log)
            print(f"demo: {format_ms(as_of_ms)}  exit {exit_code}  {_summary(root / 'state')}")
            if exit_code not in (EXIT_OK, EXIT_PARTIAL):
                print(f"demo: the chain failed; see {log.name}", file=sys.stderr)
                return EXIT_FAILURE
    print(f"demo: done. Orders: {root / 'state' / 'orders.jsonl'}; chart: {root / 'state' / 'report.png'}")
    return EXIT_OK


def _last_replayed_ms(state: Path) -> int:
    """The time of the last equity row (each replayed day ends with one), -1 when none."""
    rows = (state / "equity.csv").read_text().splitlines()[1:] if (state / "equity.csv").exists() else []
    return max((int(row.split(",")[0]) for row in rows if row.strip()), default=-1)


def _summary(state: Path) -> str:
    """Orders filled so far, what the book holds and its last equity row: the path, in one line."""
    journal = state / "orders.jsonl"
    lines = journal.read_text().splitlines() if journal.exists() else []
    filled = sum(1 for line in lines if line.strip() and json.loads(line).get("event") == "filled")
    positions = json.loads((state / "positions.json").read_text()) if (state / "positions.json").exists() else {}
    held = ", ".join(sorted(s.split("/")[0] for s, a in positions.get("amounts_base", {}).items() if a)) or "cash"
    rows = (state / "equity.csv").read_text().splitlines() if (state / "equity.csv").exists() else []
    equity = f"{float(rows[-1].split(',')[2]):.2f}" if len(rows) > 1 else "-"
    return f"filled orders so far {filled:>3}  equity {equity:>8}  holds {held}"


if __name__ == "__main__":
    sys.exit(main())
