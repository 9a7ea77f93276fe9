"""Pure: the one map from (exchange, timeframe, symbol) to files under data/ and state/.

Spot and perpetual series of the same pair share a slug (BTC-USDT), so the venue directory carries the
market type: ``data/ohlcv/binance/1h/BTC-USDT.parquet`` vs ``data/ohlcv/binanceusdm_swap/1h/...``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from lib.core.symbols import to_slug

DEFAULT_CONFIG_FILE = "config.toml"
"""The config file a script reads when neither --config nor $COINBOT_CONFIG names one."""
CONFIG_FILE_ENV = "COINBOT_CONFIG"

_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,80}$")


def venue_dir_name(exchange_id: str, market_type: str) -> str:
    return exchange_id if market_type == "spot" else f"{exchange_id}_{market_type}"


@dataclass(frozen=True, slots=True)
class ProjectPaths:
    data_dir: Path
    state_dir: Path
    venue: str  # venue_dir_name(exchange id, market type)

    def ohlcv(self, timeframe: str, symbol: str) -> Path:
        return self.data_dir / "ohlcv" / self.venue / timeframe / f"{to_slug(symbol)}.parquet"

    def known_gaps(self, timeframe: str, symbol: str) -> Path:
        """Candle ranges the exchange confirmed it does not have (outages), so they are not re-requested."""
        return self.data_dir / "ohlcv" / self.venue / timeframe / f"{to_slug(symbol)}.gaps.parquet"

    def funding(self, symbol: str) -> Path:
        return self.data_dir / "funding" / self.venue / f"{to_slug(symbol)}.parquet"

    @property
    def targets(self) -> Path:
        return self.state_dir / "targets.json"

    @property
    def positions(self) -> Path:
        return self.state_dir / "positions.json"

    @property
    def journal(self) -> Path:
        return self.state_dir / "orders.jsonl"

    @property
    def equity_csv(self) -> Path:
        return self.state_dir / "equity.csv"

    @property
    def cashflows(self) -> Path:
        """Deposits and withdrawals recorded by a person (scripts/cashflow.py): append-only."""
        return self.state_dir / "cashflows.jsonl"

    @property
    def runs(self) -> Path:
        return self.state_dir / "runs.jsonl"

    @property
    def halt(self) -> Path:
        return self.state_dir / "halt.json"

    @property
    def kill_switch(self) -> Path:
        return self.state_dir / "KILL"

    @property
    def symbol_failures(self) -> Path:
        """fetch_prices: symbols failing since when (each is alerted once, when it starts failing)."""
        return self.state_dir / "symbol_failures.json"

    @property
    def jump_decisions(self) -> Path:
        """A person's verdicts on quarantined price jumps (scripts/confirm_jump.py), read by compute_signals."""
        return self.state_dir / "jump_decisions.json"

    @property
    def chart(self) -> Path:
        return self.state_dir / "report.png"

    def lock(self, script: str) -> Path:
        return self.state_dir / "locks" / f"{_checked(script)}.lock"

    def backtest_dir(self, run_id: str) -> Path:
        return self.state_dir / "backtests" / _checked(run_id)

    def research_dir(self, run_id: str) -> Path:
        """One research-protocol run (scripts/research.py): report.json, report.md, charts."""
        return self.state_dir / "research" / _checked(run_id)

    @property
    def research_ledger(self) -> Path:
        """Every research run's candidate names (JSONL): the count of configurations tried across runs."""
        return self.state_dir / "research" / "trials.jsonl"


def _checked(name: str) -> str:
    if not _SAFE_NAME.match(name) or name in {".", ".."}:
        raise ValueError(f"unsafe file name component {name!r}")
    return name
