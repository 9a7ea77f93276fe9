"""rebalance as a subprocess against FakeBinance over real ccxt HTTP: the pre-trade tail-risk pass
(lib.execution.tail_risk_checks). A target book whose 99 % 1-day VaR breaches ``risk.max_var_99_frac`` is
scaled to fit or refused (risk-reducing orders still go), journaled ``risk_rejected``, alerted exactly once;
a perp short whose 24 h liquidation probability is above ``risk.max_liquidation_prob_24h`` is cut first."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest

from lib.core.storage import write_parquet_atomic
from lib.core.symbols import to_slug
from lib.core.timeframes import MS_PER_DAY
from lib.data.ohlcv import OHLCV_COLUMNS
from tests.fakes.exchange_server import FakeBinance
from tests.fakes.telegram_server import FakeTelegram
from tests.integration.conftest import Project
from tests.integration.test_rebalance import (
    assert_consistent,
    assert_ok,
    journal,
    positions,
    setup,
    weights_on,
    write_targets,
)

CRASH = [0.01] * 29 + [-0.40]  # worst 99 % 1-day VaR / CVaR of a unit weight: the 40 % day (hand: historical)


def write_daily_candles(project: Project, venue: str, symbol: str, returns: list[float]) -> None:
    """Daily candles up to the last closed day (wall clock), closes following ``returns``."""
    wall_ms = int(time.time() * 1000)
    last = wall_ms - wall_ms % MS_PER_DAY - MS_PER_DAY
    closes = 100.0 * np.cumprod([1.0, *(1.0 + r for r in returns)])
    stamps = [last - (len(closes) - 1 - i) * MS_PER_DAY for i in range(len(closes))]
    frame = pd.DataFrame({"timestamp": stamps, "open": closes, "high": closes, "low": closes, "close": closes,
                          "volume": 1.0})[list(OHLCV_COLUMNS)]
    write_parquet_atomic(project.data / "ohlcv" / venue / "1d" / f"{to_slug(symbol)}.parquet", frame)


def risk_events(project: Project) -> list[tuple[str | None, str | None]]:
    return [(e.reason, e.symbol) for e in journal(project) if e.event == "risk_rejected"]


def test_a_breaching_target_book_is_scaled_to_the_var_limit(project: Project, telegram: FakeTelegram,
                                                            fake: FakeBinance) -> None:
    setup(project, telegram, fake=fake, risk={"tail_risk_action": "scale", "max_var_99_frac": 0.08})
    for symbol in ("BTC/USDT", "ETH/USDT"):
        write_daily_candles(project, "binance", symbol, CRASH)
    write_targets(project, {"BTC/USDT": 0.3, "ETH/USDT": 0.25}, exchange="binance")
    assert_ok(project.run("rebalance"))
    # book VaR = 0.55 x 40 % = 22 % (CVaR the same) > 8 %: every weight x 0.08 / 0.22 = 0.363636
    assert risk_events(project) == [("tail_risk_scaled", None)]
    assert len(telegram.messages) == 1 and "tail_risk_scaled" in (telegram.messages[0].text or "")
    weights = weights_on(project)
    assert weights["BTC/USDT"] == pytest.approx(0.3 * 0.08 / 0.22, abs=0.01)
    assert weights["ETH/USDT"] == pytest.approx(0.25 * 0.08 / 0.22, abs=0.01)
    assert_consistent(project, fake)


def test_a_refused_target_book_sends_only_risk_reducing_orders(project: Project, telegram: FakeTelegram,
                                                               fake: FakeBinance) -> None:
    setup(project, telegram, fake=fake, risk={"tail_risk_action": "refuse", "max_var_99_frac": 0.08})
    for symbol in ("BTC/USDT", "ETH/USDT"):
        write_daily_candles(project, "binance", symbol, CRASH)
    write_targets(project, {"BTC/USDT": 0.05, "ETH/USDT": 0.1}, exchange="binance")  # VaR 6 %: fits
    assert_ok(project.run("rebalance"))
    assert risk_events(project) == [] and len(telegram.messages) == 0
    orders_before = len(fake.orders)

    write_targets(project, {"BTC/USDT": 0.3}, exchange="binance")  # VaR 12 %: refused; the ETH exit still goes
    refused = project.run("rebalance")
    assert refused.returncode == 1, refused.stderr[-2000:]
    assert risk_events(project) == [("tail_risk", None)]
    new = [o for o in fake.orders[orders_before:] if o.accepted]
    assert [(o.params.get("symbol"), o.params.get("side")) for o in new] == [("ETHUSDT", "SELL")]
    assert "ETH/USDT" not in weights_on(project) and weights_on(project)["BTC/USDT"] < 0.06
    assert len(telegram.messages) == 1 and "tail" in (telegram.messages[0].text or "")
    assert_consistent(project, fake)


def test_a_swap_short_near_liquidation_is_reduced_first(project: Project, telegram: FakeTelegram,
                                                        fake: FakeBinance) -> None:
    long_short = {"BTC/USDT:USDT": 0.3, "ETH/USDT:USDT": -0.3}
    setup(project, telegram, fake=fake, exchange_id="binanceusdm", market_type="swap")  # guard off: open the book
    write_targets(project, long_short, exchange="binanceusdm", market_type="swap")
    assert_ok(project.run("rebalance"))
    short_before = -positions(project).amounts_base["ETH/USDT:USDT"]
    orders_before = len(fake.orders)

    # the same targets, now with ETH's stored daily closes swinging +-60 % (EWMA forecast ~0.47 / day in log terms):
    # the 300 USDT short on ~1 000 margin has a liquidation price ~4.3x away; P(24 h) = 2 (1 - Phi(ln 4.3 / 0.47))
    # is about 0.2 % > the 0.1 % limit, so the short is cut to its safe size before anything else
    swings = [0.6 if i % 2 else -0.375 for i in range(40)]
    write_daily_candles(project, "binanceusdm_swap", "ETH/USDT:USDT", swings)
    setup(project, telegram, fake=fake, exchange_id="binanceusdm", market_type="swap",
          risk={"max_liquidation_prob_24h": 0.001})
    assert_ok(project.run("rebalance"))
    new = fake.orders[orders_before:]
    assert new and new[0].params.get("symbol") == "ETHUSDT" and new[0].params.get("side") == "BUY"
    assert new[0].params.get("reduceOnly") == "true"
    assert [(reason, symbol) for reason, symbol in risk_events(project)] == [("liquidation_risk", "ETH/USDT:USDT")]
    assert 0 < -positions(project).amounts_base["ETH/USDT:USDT"] < short_before
    assert len(telegram.messages) == 1 and "liquidation_risk" in (telegram.messages[0].text or "")
    assert_consistent(project, fake)

    # doctor and report show the short's margin (at the marks / prices after the cut: within the limit again)
    rows = json.loads(project.run("doctor", "--json").stdout)["findings"]
    margin = [row for row in rows if row["check"] == "perp margin"]
    assert len(margin) == 1 and margin[0]["status"] == "ok" and "ETH/USDT:USDT short" in margin[0]["detail"]
    report = project.run("report", "--dry-run")
    assert "1-day VaR/CVaR" in report.stdout and "ETH/USDT:USDT short" in report.stdout, report.stderr[-2000:]
