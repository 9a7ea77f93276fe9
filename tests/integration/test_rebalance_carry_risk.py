"""rebalance with strategy funding_carry as a subprocess, through real ccxt against FakeBinance's spot and USD-M
accounts: the carry book's pre-trade risk. A short leg near liquidation gets collateral from the spot wallet first
(one transfer, a re-run sends none); a hedged book over the VaR limit (its basis risk, from spot AND perp candles)
is scaled, journaled, alerted once; a drawdown breach flattens both legs hedged and halts."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from lib.core.state import HaltRecord, Positions
from lib.core.storage import read_json, write_json_atomic, write_parquet_atomic
from lib.core.symbols import to_slug
from lib.core.timeframes import MS_PER_DAY, MS_PER_HOUR
from lib.data.ohlcv import OHLCV_COLUMNS
from tests.fakes.exchange_server import FakeBinance
from tests.fakes.telegram_server import FakeTelegram
from tests.integration.conftest import Project
from tests.integration.test_rebalance_carry import (
    FAKE_NOW_MS,
    assert_hedged_or_flat,
    assert_no_duplicates,
    carry_exchange,
    journal,
    legs,
    setup,
)

SPOT, PERP = "binance", "binanceusdm_swap"


@pytest.fixture
def fake() -> Iterator[FakeBinance]:
    with carry_exchange(now_ms=FAKE_NOW_MS) as server:
        yield server


def write_hourly(project: Project, venue: str, symbol: str, log_returns: list[float]) -> None:
    """Hourly candles up to the last closed day (wall clock); each day's close follows ``log_returns``."""
    wall_ms = int(time.time() * 1000)
    last_day = wall_ms - wall_ms % MS_PER_DAY - MS_PER_DAY
    closes = 100.0 * np.exp(np.cumsum([0.0, *log_returns]))
    first_day = last_day - (len(closes) - 1) * MS_PER_DAY
    stamps = [first_day + h * MS_PER_HOUR for h in range(24 * len(closes))]
    values = np.repeat(closes, 24)
    frame = pd.DataFrame({"timestamp": stamps, "open": values, "high": values, "low": values, "close": values,
                          "volume": 1.0})[list(OHLCV_COLUMNS)]
    write_parquet_atomic(project.data / "ohlcv" / venue / "1h" / f"{to_slug(symbol)}.parquet", frame)


def write_targets(project: Project, weights: dict[str, float]) -> None:
    """targets.json as setup writes it (the last closed hour), with other weights."""
    path = project.state / "targets.json"
    write_json_atomic(path, {**read_json(path), "weights": weights})


def risk_events(project: Project) -> list[tuple[str | None, str | None]]:
    return [(e.reason, e.symbol) for e in journal(project) if e.event == "risk_rejected"]


def test_a_short_near_liquidation_gets_collateral_from_spot_first(project: Project, telegram: FakeTelegram,
                                                                 fake: FakeBinance) -> None:
    carry = "[carry]\nleverage = 10\n"  # futures wallet target = 500 / 10 x 1.5 = 75: a thin margin
    setup(project, telegram, fake, extra=carry)  # guard off: open the book
    assert project.run("rebalance").returncode == 0
    assert len(fake.wallet_transfers) == 1
    orders = [o for o in fake.orders if o.accepted]
    quantity = -legs(fake)["BTC/USDT:USDT"]
    notional, eth_notional = quantity * fake.last_price("BTC/USDT"), -legs(fake)["ETH/USDT:USDT"] * fake.last_price(
        "ETH/USDT")
    margin = fake.futures_wallet_quote - eth_notional * Decimal("0.005")  # what BTC's short may lose (cross margin)
    # BTC perp daily log returns +-0.15 (EWMA forecast 0.15): with ~75 of margin on a ~230 USDT short the liquidation
    # price is ln((M + QP) / (QP x 1.004)) ~ 0.27 away: P(24 h) = 2 (1 - Phi(0.27 / 0.15)) ~ 7 % > the 0.5 % limit
    write_hourly(project, PERP, "BTC/USDT:USDT", [0.15 if i % 2 else -0.15 for i in range(60)])
    write_hourly(project, PERP, "ETH/USDT:USDT", [0.01 if i % 2 else -0.01 for i in range(60)])
    setup(project, telegram, fake, extra=carry, risk={"max_liquidation_prob_24h": 0.005})
    guarded = project.run("rebalance")
    assert guarded.returncode == 0, guarded.stderr[-3000:]
    assert len(fake.wallet_transfers) == 2 and fake.wallet_transfers[1]["type"] == "MAIN_UMFUTURE"
    # 0.5 % needs L* = P exp(0.15 x Phi^-1(1 - 0.0025) = 2.807): collateral L* Q 1.004 - QP - M, x 1.5 (carry buffer)
    expected = (math.exp(0.15 * 2.807) * float(notional) * 1.004 - float(notional) - float(margin)) * 1.5
    assert float(fake.wallet_transfers[1]["amount"]) == pytest.approx(expected, rel=0.1)
    assert risk_events(project) == [("liquidation_risk_collateral", "BTC/USDT:USDT")]
    assert [o for o in fake.orders if o.accepted] == orders  # collateral was enough: no leg cut
    assert len(telegram.wait_for_messages(1)) == 1 and "liquidation_risk" in telegram.texts[0]
    rerun = project.run("rebalance")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert len(fake.wallet_transfers) == 2 and len(risk_events(project)) == 1
    assert_hedged_or_flat(fake)
    assert_no_duplicates(project, fake)
    time.sleep(0.5)
    assert len(telegram.messages) == 1

    # doctor: both wallets, the shorts' margin on the FUTURES wallet (within the limit now), the USD-M candles
    wallets = Positions.from_dict(read_json(project.state / "positions.json")).wallets
    rows = json.loads(project.run("doctor", "--json").stdout)["findings"]
    assert [r["detail"] for r in rows if r["check"] == "carry wallets"] == [
        f"spot {wallets['spot']:.2f} USDT free, futures {wallets['futures']:.2f} USDT margin balance (at "
        + next(r["detail"] for r in rows if r["check"] == "carry wallets").split("(at ")[1]]
    margin = {r["detail"].split(" ")[0]: r["status"] for r in rows if r["check"] == "perp margin"}
    assert margin == {"BTC/USDT:USDT": "ok", "ETH/USDT:USDT": "ok"}
    assert {r["detail"].split(" ")[0] for r in rows if r["check"] == "carry perp data"} == {"BTC/USDT:USDT",
                                                                                            "ETH/USDT:USDT"}
    report = project.run("report", "--dry-run")
    assert "carry sleeve" in report.stdout and "funding earned" in report.stdout, report.stderr[-2000:]
    assert "BTC/USDT: basis P&L" in report.stdout and "BTC/USDT:USDT short" in report.stdout


def test_a_short_near_liquidation_without_free_spot_cash_is_cut_both_legs_first(project: Project,
                                                                                telegram: FakeTelegram,
                                                                                fake: FakeBinance) -> None:
    carry = "[carry]\nleverage = 10\n"
    calm = {"max_drawdown_frac": 0.9, "daily_loss_limit_frac": 0.9}  # the cash taken away is not the point here
    setup(project, telegram, fake, extra=carry, risk=calm)
    assert project.run("rebalance").returncode == 0
    accepted = [o for o in fake.orders if o.accepted]
    fake.spot_balances["USDT"] = Decimal(0)  # no free quote on spot: no collateral can be added
    write_hourly(project, PERP, "BTC/USDT:USDT", [0.15 if i % 2 else -0.15 for i in range(60)])
    write_hourly(project, PERP, "ETH/USDT:USDT", [0.01 if i % 2 else -0.01 for i in range(60)])
    setup(project, telegram, fake, extra=carry, risk={**calm, "max_liquidation_prob_24h": 0.005})
    result = project.run("rebalance")
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(fake.wallet_transfers) == 1  # the first run's only
    # safe short at ~74 of margin: 74 / (P (e^(0.15 x 2.807) x 1.004 - 1)) = 74 / (77 827 x 0.529) = 0.0018 -> 0.001
    new = [(o.market, o.params["symbol"], o.params["side"], o.params.get("reduceOnly")) for o in
           fake.orders[len(accepted):] if o.accepted]
    assert new[:2] == [("futures", "BTCUSDT", "BUY", "true"), ("spot", "BTCUSDT", "SELL", None)]  # first, hedged
    assert legs(fake)["BTC/USDT"] == Decimal("0.001")  # (ETH re-sized to 0.2 of the smaller equity: 0.01)
    assert_hedged_or_flat(fake)
    assert risk_events(project) == [("liquidation_risk_collateral", "BTC/USDT:USDT"),
                                    ("liquidation_risk", "BTC/USDT:USDT")]
    assert_no_duplicates(project, fake)
    assert len(telegram.wait_for_messages(1)) == 1 and "cut to 0.001" in telegram.texts[0]
    time.sleep(0.5)
    assert len(telegram.messages) == 1


def set_up_a_9pct_basis_day(project: Project, telegram: FakeTelegram, fake: FakeBinance, *, action: str) -> None:
    """Spot flat 30 days; BTC's perp +30 % on the last one (the basis): at the targets (BTC 0.3, ETH 0.2 per leg)
    the hedged book loses 0.3 x 30 % = 9 % that day, its 99 % VaR = CVaR = 9 %, against limits of 3 % / 5 %."""
    for coin in ("BTC", "ETH"):
        write_hourly(project, SPOT, f"{coin}/USDT", [0.0] * 30)
    write_hourly(project, PERP, "BTC/USDT:USDT", [0.0] * 29 + [math.log(1.30)])
    write_hourly(project, PERP, "ETH/USDT:USDT", [0.0] * 30)
    setup(project, telegram, fake, risk={"tail_risk_action": action, "max_var_99_frac": 0.03,
                                         "max_cvar_99_frac": 0.05})


def test_a_hedged_book_over_the_var_limit_is_scaled_on_its_basis_risk(project: Project, telegram: FakeTelegram,
                                                                     fake: FakeBinance) -> None:
    # spot flat; BTC's perp jumps 30 % on the last day (the basis): the hedged book loses 0.3 x 30 % = 9 % that day
    # (ETH's legs move together: no risk). 99 % VaR = CVaR = 9 % (30 days, the worst) > 3 %: scaled by 3 / 9
    set_up_a_9pct_basis_day(project, telegram, fake, action="scale")
    result = project.run("rebalance")
    assert result.returncode == 0, result.stderr[-3000:]
    assert risk_events(project) == [("tail_risk_scaled", None)]
    for coin, weight in (("BTC", 0.3 / 3), ("ETH", 0.2 / 3)):  # per leg: weight x 1000 / price on the lot grid
        # (unscaled: BTC 0.003, ETH 0.02; scaled: BTC 0.001, ETH 0: 66.7 USDT is less than its 0.01 lot of ~71)
        step = max(fake.market().market_rules(s).amount_step for s in (f"{coin}/USDT", f"{coin}/USDT:USDT"))
        wanted = Decimal(repr(weight * 1000 / float(fake.last_price(f"{coin}/USDT")))) // step * step
        assert abs(legs(fake).get(f"{coin}/USDT", Decimal(0)) - wanted) <= step, coin
    assert_hedged_or_flat(fake)
    assert_no_duplicates(project, fake)
    assert len(telegram.wait_for_messages(1)) == 1 and "tail_risk_scaled" in telegram.texts[0]
    time.sleep(0.5)
    assert len(telegram.messages) == 1


def test_a_drawdown_flattens_both_legs_hedged_and_halts(project: Project, telegram: FakeTelegram,
                                                        fake: FakeBinance) -> None:
    setup(project, telegram, fake)
    assert project.run("rebalance").returncode == 0
    assert legs(fake)["BTC/USDT"] > 0
    fake.spot_balances["USDT"] = Decimal(0)  # ~425 of ~1000 gone: a 42 % drawdown > risk.max_drawdown_frac 25 %
    setup(project, telegram, fake, risk={"max_order_notional_quote": 100})  # the ~230 BTC legs: exits still go
    halted = project.run("rebalance")
    assert halted.returncode != 0
    assert legs(fake) == {}  # both legs of both pairs closed
    accepted = [o for o in fake.orders if o.accepted]
    flat = [(o.market, o.params["symbol"], o.params["side"]) for o in accepted[4:]]
    assert flat == [("futures", "BTCUSDT", "BUY"), ("spot", "BTCUSDT", "SELL"),
                    ("futures", "ETHUSDT", "BUY"), ("spot", "ETHUSDT", "SELL")]  # perp first, pair by pair
    halt = HaltRecord.from_dict(read_json(project.state / "halt.json"))
    assert halt.reason == "drawdown" and halt.flattened
    assert ("drawdown", None) in risk_events(project)
    assert len(telegram.wait_for_messages(1)) == 1 and "drawdown" in telegram.texts[0]
    assert project.run("rebalance").returncode != 0  # halted: nothing sent
    assert [o for o in fake.orders if o.accepted] == accepted
    (project.state / "halt.json").unlink()  # a person looked, and accepts today's equity as the new peak
    setup(project, telegram, fake)
    resumed = project.run("rebalance", "--reset-high-water-mark")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert legs(fake)["BTC/USDT"] > 0
    assert_hedged_or_flat(fake)
    assert_no_duplicates(project, fake)


def test_too_many_orders_send_only_the_risk_reducing_ones(project: Project, telegram: FakeTelegram,
                                                          fake: FakeBinance) -> None:
    setup(project, telegram, fake)
    assert project.run("rebalance").returncode == 0
    accepted = [o for o in fake.orders if o.accepted]
    setup(project, telegram, fake, risk={"max_orders_per_run": 1})
    write_targets(project, {"BTC/USDT": 0.0, "BTC/USDT:USDT": 0.0, "ETH/USDT": 0.4, "ETH/USDT:USDT": -0.4})
    refused = project.run("rebalance")  # ETH's two growing legs > 1: refused; BTC's exit (both legs) still goes
    assert refused.returncode != 0
    assert ("order_count", None) in risk_events(project)
    new = [(o.market, o.params["symbol"], o.params["side"]) for o in fake.orders[len(accepted):] if o.accepted]
    assert new == [("futures", "BTCUSDT", "BUY"), ("spot", "BTCUSDT", "SELL")]
    assert "BTC/USDT" not in legs(fake) and legs(fake)["ETH/USDT"] == Decimal("0.02")
    assert_hedged_or_flat(fake)
    assert len(telegram.wait_for_messages(1)) == 1 and "order_count" in telegram.texts[0]
    time.sleep(0.5)
    assert len(telegram.messages) == 1


def test_an_unknown_liquidation_risk_trades_nothing_that_grows(project: Project, telegram: FakeTelegram,
                                                              fake: FakeBinance) -> None:
    setup(project, telegram, fake, risk={"max_liquidation_prob_24h": 0.005})  # no perp candles: no volatility
    result = project.run("rebalance")
    assert result.returncode != 0
    assert [o for o in fake.orders if o.accepted] == [] and fake.wallet_transfers == []
    assert risk_events(project) == [("liquidation_risk", None)]
    assert len(telegram.wait_for_messages(1)) == 1 and "liquidation risk of the carry shorts unknown" in \
        telegram.texts[0]


def test_a_halt_whose_flatten_is_unfinished_is_finished_first(project: Project, telegram: FakeTelegram,
                                                               fake: FakeBinance) -> None:
    setup(project, telegram, fake)
    assert project.run("rebalance").returncode == 0
    halt = HaltRecord(created_ms=0, run_id="earlier", reason="drawdown", detail="drawdown: an earlier run died",
                      equity_quote=700.0, high_water_mark_quote=1000.0)  # written, the flatten never finished
    write_json_atomic(project.state / "halt.json", halt.to_dict())
    dry = project.run("rebalance", "--dry-run")  # shows the flatten, sends nothing, exits as the real run will
    assert dry.returncode != 0 and "weight 0.0000" in dry.stdout and len(legs(fake)) == 4
    assert "dry run: the drawdown halt's unfinished flatten would go on" in dry.stderr
    assert len(telegram.wait_for_messages(1)) == 1  # the dry run's failure, alerted once like any run's
    result = project.run("rebalance")
    assert result.returncode != 0 and "flatten of both legs complete" in result.stderr
    assert legs(fake) == {}
    assert HaltRecord.from_dict(read_json(project.state / "halt.json")).flattened
    assert len(telegram.wait_for_messages(2)) == 2 and "flatten" in telegram.texts[1]
