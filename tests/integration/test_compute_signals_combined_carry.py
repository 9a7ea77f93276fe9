"""The combined book with the funding_carry sleeve end to end as subprocesses: fetch_prices (spot and USD-M venues)
-> compute_signals (ONE targets.json: each spot weight = directional part + carry spot leg, each perp = minus the
carry leg, with the breakdown) -> rebalance in paper mode on both simulated wallets, against the fake exchange."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lib.core.state import Positions, Targets
from lib.core.storage import read_json, write_parquet_atomic
from tests.fakes.exchange_server import FakeBinance
from tests.fakes.telegram_server import FakeTelegram
from tests.integration.conftest import Project, carry_config_text
from tests.integration.test_compute_signals_carry import write_carry_data
from tests.unit.research.carry.synthetic import START_MS, synthetic_frames

H = 3_600_000
NOW_MS = 1_767_225_600_000 + 30 * 60_000
SLEEVES = '[combiner]\nsleeves = ["trend_core", "funding_carry"]\nbudgets = [0.6, 0.4]\n'


def test_fetch_then_combined_targets_then_paper_rebalance_of_both_parts(project: Project,
                                                                        telegram: FakeTelegram) -> None:
    stamps = np.arange(1_759_276_800_000, NOW_MS, 8 * H)
    funding = {s: np.column_stack([stamps, np.full(len(stamps), 0.0003)]) for s in ("BTC/USDT", "ETH/USDT")}
    with FakeBinance(now_ms=NOW_MS, funding=funding) as fake:
        project.write_config(carry_config_text(
            {"id": "binance", "market_type": "spot", "mode": "paper", "rest_base_url": fake.base_url,
             "enable_rate_limit": False, "retry_base_delay_ms": 1}, telegram.base_url,
            data={"backfill_start": "2025-10-15", "symbols": ["BTC/USDT", "ETH/USDT", "BNB/USDT"]},
            risk={"tail_risk_action": "off", "max_liquidation_prob_24h": 1.0, "max_order_notional_quote": 1000},
            strategy={"name": "combined", "timeframe": "1h"}, extra=SLEEVES))
        project.write_env(COINBOT_TELEGRAM_BOT_TOKEN="123:test-token", COINBOT_TELEGRAM_CHAT_ID="42")
        for script, args in (("fetch_prices", ()), ("compute_signals", ("--as-of", str(NOW_MS), "--print")),
                             ("rebalance", ("--as-of", str(NOW_MS)))):
            result = project.run(script, *args)
            assert result.returncode == 0, f"{script}: {result.stderr[-3000:]}"
    assert (project.data / "funding" / "binanceusdm_swap" / "BTC-USDT.parquet").exists()
    targets = Targets.from_dict(read_json(project.state / "targets.json"))
    assert (targets.strategy, targets.timeframe, targets.as_of_ms) == ("combined", "1h", NOW_MS - NOW_MS % H - H)
    assert targets.book["funding_carry"]["capital_frac"] == pytest.approx(0.4)
    assert targets.book["directional"]["strategy"] == "trend_core"
    assert "BNB/USDT:USDT" not in targets.weights  # no margin tiers: never a carry pair
    for coin in ("BTC", "ETH"):
        spot, perp = targets.breakdown[f"{coin}/USDT"], targets.breakdown[f"{coin}/USDT:USDT"]
        assert spot["carry"]["funding_forecast"] == pytest.approx(0.0003)
        carry_part = 0.4 * spot["carry"]["pair_weight"]  # the carry book's own weight on 40 % of the capital
        assert spot["parts"]["funding_carry"] == pytest.approx(carry_part)  # 0 here: the fake's perp = spot
        assert targets.weights[f"{coin}/USDT:USDT"] == pytest.approx(-carry_part) == perp["weight"]
        assert targets.weights[f"{coin}/USDT"] == pytest.approx(spot["parts"]["directional"] + carry_part)
        directional = spot["book"]["raw_weight"]  # the trend sleeve's own book is there too
        assert directional is not None
    positions = Positions.from_dict(read_json(project.state / "positions.json"))
    assert set(positions.wallets) == {"spot", "futures"}
    assert any(weight > 0.02 for weight in targets.weights.values())
    for symbol, weight in targets.weights.items():  # the directional part was bought on the paper spot wallet
        assert (positions.amounts_base.get(symbol, 0) > 0) == (weight > 0.02), symbol
    for coin in ("BTC", "ETH"):
        short = -positions.amounts_base.get(f"{coin}/USDT:USDT", 0)
        assert positions.amounts_base.get(f"{coin}/USDT", 0) >= short  # hedged, directional part on top
    assert telegram.messages == []


DAYS = 60
AS_OF_MS = START_MS + (DAYS * 24 - 1) * H  # the last stored bar
AS_OF_NOW_MS = AS_OF_MS + H + 5 * 60_000


def stored_setup(project: Project, telegram: FakeTelegram, *, drop_last_prints: int = 0) -> None:
    """Stored synthetic spot + perp candles (with a basis) and funding, so the carry sleeve holds pairs."""
    project.write_config(carry_config_text({"id": "binance", "market_type": "spot", "mode": "paper"},
                                           telegram.base_url, strategy={"name": "combined", "timeframe": "1h"},
                                           extra=SLEEVES))
    project.write_env(COINBOT_TELEGRAM_BOT_TOKEN="123:test-token", COINBOT_TELEGRAM_CHAT_ID="42")
    write_carry_data(project, drop_last_prints=drop_last_prints)


def test_one_targets_file_with_both_parts_and_why(project: Project, telegram: FakeTelegram) -> None:
    stored_setup(project, telegram)
    result = project.run("compute_signals", "--as-of", str(AS_OF_NOW_MS))
    assert result.returncode == 0, result.stderr[-3000:]
    targets = Targets.from_dict(read_json(project.state / "targets.json"))
    assert (targets.strategy, targets.as_of_ms) == ("combined", AS_OF_MS)
    assert targets.book["funding_carry"]["as_of_ms"] == AS_OF_MS  # the same close as the directional part
    held = 0
    for coin in ("BTC", "ETH"):
        spot = targets.breakdown[f"{coin}/USDT"]
        carry_part = 0.4 * spot["carry"]["pair_weight"]
        directional = 0.6 * (spot["book"]["raw_weight"] if spot["book"]["turnover_reason"] is None
                             else spot["parts"]["directional"] / 0.6)
        assert spot["parts"] == {"directional": pytest.approx(directional), "funding_carry": pytest.approx(carry_part)}
        assert targets.weights[f"{coin}/USDT"] == pytest.approx(directional + carry_part)
        assert targets.weights[f"{coin}/USDT:USDT"] == pytest.approx(-carry_part)
        held += carry_part > 0
    assert held >= 1  # the synthetic funding is rich at the end: the carry sleeve holds at least one pair
    assert telegram.messages == []


def test_stale_funding_writes_no_combined_targets_and_alerts(project: Project, telegram: FakeTelegram) -> None:
    stored_setup(project, telegram, drop_last_prints=2)
    result = project.run("compute_signals", "--as-of", str(AS_OF_NOW_MS))
    assert result.returncode != 0
    assert not (project.state / "targets.json").exists()
    assert len(telegram.wait_for_messages(1)) == 1 and "stale" in telegram.texts[0]


def daily(frame: pd.DataFrame) -> pd.DataFrame:
    """Daily candles from hourly ones (UTC days)."""
    days = frame.assign(day=frame["timestamp"] - frame["timestamp"] % (24 * H)).groupby("day")
    return pd.DataFrame({"timestamp": days["timestamp"].first().index.astype("int64"),
                         "open": days["open"].first().to_numpy(), "high": days["high"].max().to_numpy(),
                         "low": days["low"].min().to_numpy(), "close": days["close"].last().to_numpy(),
                         "volume": days["volume"].sum().to_numpy()})


def test_daily_spot_sleeves_and_the_hourly_carry_decided_at_the_same_close(project: Project,
                                                                           telegram: FakeTelegram) -> None:
    """strategy.timeframe = "1d": the spot sleeve on daily candles, the carry part at the 23:00 hourly bar, which
    closes at the same midnight as the daily bar; targets.json's timeframe is the daily one."""
    stored_setup(project, telegram)
    project.write_config(carry_config_text(
        {"id": "binance", "market_type": "spot", "mode": "paper"}, telegram.base_url,
        data={"timeframes": ["1d", "1h"]}, strategy={"name": "combined", "timeframe": "1d"},
        extra=SLEEVES + "[trend]\nhorizons_bars = [5, 10]\n[sizing]\nwindow_bars = 10\n"
                        "[universe]\nmin_history_bars = 20\nmin_dollar_volume_quote = 0.0\n"))
    spot, _, _ = synthetic_frames(days=DAYS)
    for coin in ("BTC", "ETH"):
        write_parquet_atomic(project.data / "ohlcv" / "binance" / "1d" / f"{coin}-USDT.parquet", daily(spot[coin]))
    now_ms = START_MS + DAYS * 24 * H + 5 * 60_000  # 5 minutes after the last day closed
    result = project.run("compute_signals", "--as-of", str(now_ms))
    assert result.returncode == 0, result.stderr[-3000:]
    targets = Targets.from_dict(read_json(project.state / "targets.json"))
    last_day = START_MS + (DAYS - 1) * 24 * H
    assert (targets.timeframe, targets.as_of_ms) == ("1d", last_day)
    assert targets.book["funding_carry"]["as_of_ms"] == last_day + 23 * H
    for coin in ("BTC", "ETH"):
        parts = targets.breakdown[f"{coin}/USDT"]["parts"]
        assert targets.weights[f"{coin}/USDT"] == pytest.approx(parts["directional"] + parts["funding_carry"])
        assert targets.weights[f"{coin}/USDT:USDT"] == pytest.approx(-parts["funding_carry"])
    assert any(p > 0 for p in (targets.breakdown[f"{c}/USDT"]["parts"]["funding_carry"] for c in ("BTC", "ETH")))
