"""compute_signals with strategy funding_carry as a subprocess on stored spot + USD-M hourly candles and funding:
targets with both legs per coin (readable by rebalance), stale funding refused (no targets, alert, exit != 0), and
the fetch_prices -> compute_signals -> rebalance chain against the fake exchange."""

from __future__ import annotations

import numpy as np
import pytest

from lib.core.state import Targets
from lib.core.storage import read_json, write_parquet_atomic
from tests.fakes.exchange_server import FakeBinance
from tests.fakes.telegram_server import FakeTelegram
from tests.integration.conftest import Project, carry_config_text
from tests.unit.research.carry.synthetic import START_MS, H, synthetic_frames

DAYS = 60
AS_OF_MS = START_MS + (DAYS * 24 - 1) * H  # the last stored bar
NOW_MS = AS_OF_MS + H + 5 * 60_000  # 5 minutes after it closed


def setup(project: Project, telegram: FakeTelegram, *, drop_last_prints: int = 0) -> None:
    project.write_config(carry_config_text({"id": "binance", "market_type": "spot", "mode": "paper"},
                                           telegram.base_url))
    project.write_env(COINBOT_TELEGRAM_BOT_TOKEN="123:test-token", COINBOT_TELEGRAM_CHAT_ID="42")
    write_carry_data(project, drop_last_prints=drop_last_prints)


def write_carry_data(project: Project, *, drop_last_prints: int = 0) -> None:
    """Synthetic spot + perp hourly candles (with a basis) and funding for BTC and ETH, in the project's data/;
    ``drop_last_prints``: the newest funding prints left out (stale funding)."""
    spot, perp, funding = synthetic_frames(days=DAYS)
    for coin in ("BTC", "ETH"):
        write_parquet_atomic(project.data / "ohlcv" / "binance" / "1h" / f"{coin}-USDT.parquet", spot[coin])
        write_parquet_atomic(project.data / "ohlcv" / "binanceusdm_swap" / "1h" / f"{coin}-USDT.parquet", perp[coin])
        prints = funding[coin].iloc[: len(funding[coin]) - drop_last_prints]
        write_parquet_atomic(project.data / "funding" / "binanceusdm_swap" / f"{coin}-USDT.parquet", prints)


def test_carry_targets_hold_both_legs_per_coin(project: Project, telegram: FakeTelegram) -> None:
    setup(project, telegram)
    result = project.run("compute_signals", "--as-of", str(NOW_MS))
    assert result.returncode == 0, result.stderr[-3000:]
    targets = Targets.from_dict(read_json(project.state / "targets.json"))
    assert (targets.strategy, targets.exchange, targets.market_type, targets.timeframe, targets.as_of_ms) == (
        "funding_carry", "binance", "spot", "1h", AS_OF_MS)
    assert set(targets.weights) == {"BTC/USDT", "BTC/USDT:USDT", "ETH/USDT", "ETH/USDT:USDT"}
    for coin in ("BTC", "ETH"):
        assert targets.weights[f"{coin}/USDT:USDT"] == -targets.weights[f"{coin}/USDT"]
        assert targets.breakdown[f"{coin}/USDT"]["leg"] == "spot"
    assert set(targets.signal_closes()) == set(targets.weights)
    assert telegram.messages == []


def test_stale_funding_writes_no_targets_and_alerts(project: Project, telegram: FakeTelegram) -> None:
    setup(project, telegram, drop_last_prints=2)  # the last print is 16+ hours old
    result = project.run("compute_signals", "--as-of", str(NOW_MS))
    assert result.returncode != 0
    assert not (project.state / "targets.json").exists()
    assert len(telegram.wait_for_messages(1)) == 1 and "stale" in telegram.texts[0]


def test_fetch_prices_then_compute_signals_then_rebalance_on_the_fake_exchange(project: Project,
                                                                             telegram: FakeTelegram) -> None:
    """The carry pipeline's wiring: fetch_prices fills the spot venue and the USD-M venue (perp candles, funding),
    compute_signals reads both, rebalance (paper on the fake's prices) takes the targets."""
    now_ms = 1_767_225_600_000 + 30 * 60_000
    stamps = np.arange(1_759_276_800_000, now_ms, 8 * H)
    funding = {s: np.column_stack([stamps, np.full(len(stamps), 0.0003)]) for s in ("BTC/USDT", "ETH/USDT")}
    with FakeBinance(now_ms=now_ms, funding=funding) as fake:
        project.write_config(carry_config_text(
            {"id": "binance", "market_type": "spot", "mode": "paper", "rest_base_url": fake.base_url,
             "enable_rate_limit": False, "retry_base_delay_ms": 1}, telegram.base_url,
            data={"backfill_start": "2025-10-15"}))
        project.write_env(COINBOT_TELEGRAM_BOT_TOKEN="123:test-token", COINBOT_TELEGRAM_CHAT_ID="42")
        for script, args in (("fetch_prices", ()), ("compute_signals", ("--as-of", str(now_ms))),
                             ("rebalance", ("--as-of", str(now_ms)))):
            result = project.run(script, *args)
            assert result.returncode == 0, f"{script}: {result.stderr[-3000:]}"
    for venue in ("binance", "binanceusdm_swap"):
        assert (project.data / "ohlcv" / venue / "1h" / "BTC-USDT.parquet").exists()
    assert (project.data / "funding" / "binanceusdm_swap" / "ETH-USDT.parquet").exists()
    targets = Targets.from_dict(read_json(project.state / "targets.json"))
    assert targets.as_of_ms == now_ms - now_ms % H - H
    assert targets.breakdown["BTC/USDT:USDT"]["funding_forecast"] == pytest.approx(0.0003)
    assert targets.weights["BTC/USDT:USDT"] == -targets.weights["BTC/USDT"]
    assert (project.state / "positions.json").exists() and telegram.messages == []


def test_a_coin_whose_perp_candle_is_a_bar_late_is_held_not_traded(project: Project, telegram: FakeTelegram) -> None:
    """Within data.max_staleness_bars the run goes on, but a pair without a candle of one leg at the decision bar
    has no price there (breakdown close None): it is held as it is, like a late symbol of the directional book."""
    setup(project, telegram)
    perp_path = project.data / "ohlcv" / "binanceusdm_swap" / "1h" / "ETH-USDT.parquet"
    perp = synthetic_frames(days=DAYS)[1]["ETH"]
    write_parquet_atomic(perp_path, perp[perp["timestamp"] < AS_OF_MS].reset_index(drop=True))  # one bar late
    result = project.run("compute_signals", "--as-of", str(NOW_MS))
    assert result.returncode == 0, result.stderr[-3000:]
    targets = Targets.from_dict(read_json(project.state / "targets.json"))
    assert targets.as_of_ms == AS_OF_MS and targets.breakdown["ETH/USDT:USDT"]["close"] is None
    assert set(targets.hold) == {"ETH/USDT"} and "perp" in targets.hold["ETH/USDT"]  # on the old code: traded
    assert any("ETH" in note and "held" in note for note in targets.notes)
