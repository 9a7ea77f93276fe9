"""Integration harness: a temp project dir with its own config.toml, and the real scripts run as
subprocesses against fake servers on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.exchange_server import FakeBinance
from tests.fakes.telegram_server import FakeTelegram

SCRIPT_TIMEOUT_S = 300


@dataclass
class Project:
    """A throwaway project directory: config.toml, .env, data/ and state/ under ``root``."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.toml"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def data(self) -> Path:
        return self.root / "data"

    def write_config(self, text: str) -> None:
        self.config.write_text(text)

    def write_env(self, **values: str) -> None:
        env_file = self.root / ".env"
        env_file.write_text("".join(f"{key}={value}\n" for key, value in values.items()))
        env_file.chmod(0o600)

    def run(self, script: str, *args: str, env: dict[str, str] | None = None,
            timeout_s: float = SCRIPT_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        """Run ``python -m scripts.<script> --config <root>/config.toml [args]`` and wait for it."""
        return subprocess.run(
            [sys.executable, "-m", f"scripts.{script}", "--config", str(self.config), *args],
            cwd=self.root, env=script_env(env), capture_output=True, text=True, timeout=timeout_s, check=False,
        )

    def start(self, script: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", f"scripts.{script}", "--config", str(self.config), *args],
            cwd=self.root, env=script_env(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )

    def runs(self) -> list[dict[str, Any]]:
        path = self.state / "runs.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def script_env(extra: dict[str, str] | None) -> dict[str, str]:
    """The parent environment minus anything coinbot-specific, plus ``extra``; no proxies for loopback."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("COINBOT")}
    env.update({"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"})
    # research grids serially in-process unless a test asks for Dask (tests/unit/ops/test_fanout.py and
    # test_research_fanout.py cover the cluster paths; a LocalCluster per script run costs ~15 s on 2 cores)
    env["COINBOT__RESEARCH__WORKERS"] = "1"
    env.update(extra or {})
    return env


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    yield Project(tmp_path)


FAKE_NOW_MS = 1_767_225_600_000 + 30 * 60_000  # the fake exchange's clock (its prices): 2026-01-01T00:30Z


@pytest.fixture
def telegram() -> Iterator[FakeTelegram]:
    """A fake Telegram Bot API on loopback (the one alert path's destination in tests)."""
    with FakeTelegram() as server:
        yield server


@pytest.fixture
def fake() -> Iterator[FakeBinance]:
    """The fake Binance (spot + USD-M) with 1,000 USDT in each wallet; a test file may define its own."""
    with FakeBinance(now_ms=FAKE_NOW_MS, spot_balances={"USDT": 1000}, futures_wallet_quote=1000) as server:
        yield server


def carry_config_text(exchange: dict[str, Any], telegram_url: str, *, risk: dict[str, Any] | None = None,
                      data: dict[str, Any] | None = None, extra: str = "",
                      strategy: dict[str, Any] | None = None) -> str:
    """config.toml of a two-coin (BTC, ETH) hourly ``funding_carry`` book: the given [exchange] keys, [risk] keys
    when given, alerts to ``telegram_url``; ``extra`` is appended as TOML text; ``strategy`` replaces the [strategy]
    keys (e.g. a combined book with the funding_carry sleeve)."""
    def section(name: str, values: dict[str, Any]) -> str:
        return f"[{name}]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items())

    data_keys = {"symbols": ["BTC/USDT", "ETH/USDT"], "timeframes": ["1h"], **(data or {})}
    return (section("exchange", exchange) + section("data", data_keys)
            + section("strategy", strategy or {"name": "funding_carry", "timeframe": "1h"})
            + (section("risk", risk) if risk else "") + section("alerts", {"telegram_base_url": telegram_url}) + extra)
