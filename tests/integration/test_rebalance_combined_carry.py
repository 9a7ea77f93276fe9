"""rebalance of a combined book with the funding_carry sleeve as a subprocess, through real ccxt against FakeBinance's
spot (/api) and USD-M (/fapi) accounts: the directional spot part and the carry pairs traded in one run; a coin held
by both keeps its hedge (spot - directional target = -perp) whatever the directional part does; a rejected perp leg
ends hedged or flat with no duplicate order and exactly one alert; a re-run after a kill between the legs is safe."""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Iterator
from decimal import Decimal

import pytest

from lib.core.state import HaltRecord, Positions, Targets
from lib.core.storage import read_json, write_json_atomic
from lib.core.timeframes import MS_PER_HOUR
from tests.fakes.exchange_server import FakeBinance
from tests.fakes.telegram_server import FakeTelegram
from tests.integration.conftest import Project, carry_config_text
from tests.integration.test_rebalance_carry import KEYS, TELEGRAM, assert_no_duplicates, carry_exchange, journal, legs
from tests.integration.test_rebalance_carry import write_targets as carry_targets
from tests.integration.test_rebalance_carry_risk import PERP as PERP_VENUE
from tests.integration.test_rebalance_carry_risk import SPOT as SPOT_VENUE
from tests.integration.test_rebalance_carry_risk import write_hourly

FAKE_NOW_MS = 1_767_225_600_000 + 30 * 60_000
LOT_WEIGHT = 0.026  # one BTC lot step (0.001 BTC at ~25,000) of a 1,000 USDT book, plus fees
COMBINED = {"name": "combined", "timeframe": "1h"}
SLEEVES = '[combiner]\nsleeves = ["trend_core", "funding_carry"]\nbudgets = [0.5, 0.5]\n'
# BTC: directional 0.15 + carry leg 0.25; ETH: carry only; BNB: directional only (no perp leg at all)
BOTH = {"BTC/USDT": 0.40, "BTC/USDT:USDT": -0.25, "ETH/USDT": 0.15, "ETH/USDT:USDT": -0.15, "BNB/USDT": 0.10}


@pytest.fixture
def fake() -> Iterator[FakeBinance]:
    with carry_exchange(now_ms=FAKE_NOW_MS) as server:
        yield server


def setup(project: Project, telegram: FakeTelegram, fake: FakeBinance, *, timeout_ms: int = 5000,
          risk: dict[str, object] | None = None) -> None:
    project.write_config(carry_config_text(
        {"id": "binance", "market_type": "spot", "mode": "testnet", "rest_base_url": fake.base_url,
         "enable_rate_limit": False, "retry_base_delay_ms": 1, "timeout_ms": timeout_ms}, telegram.base_url,
        risk={"max_order_notional_quote": 1000, "tail_risk_action": "off", "max_liquidation_prob_24h": 1.0,
              "max_asset_weight_frac": 0.5, **(risk or {})},
        data={"symbols": ["BTC/USDT", "ETH/USDT", "BNB/USDT"]}, strategy=COMBINED, extra=SLEEVES))
    project.write_env(**TELEGRAM, **KEYS)
    write_targets(project, BOTH)


def write_targets(project: Project, weights: dict[str, float]) -> None:
    carry_targets(project, weights, strategy="combined")


def perp(fake: FakeBinance, coin: str) -> Decimal:
    return legs(fake).get(f"{coin}/USDT:USDT", Decimal(0))


def spot(fake: FakeBinance, coin: str) -> Decimal:
    return legs(fake).get(f"{coin}/USDT", Decimal(0))


def test_directional_and_carry_in_one_run_then_a_directional_exit_keeps_the_hedge(
        project: Project, telegram: FakeTelegram, fake: FakeBinance) -> None:
    setup(project, telegram, fake)
    dry = project.run("rebalance", "--dry-run")
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "+ directional 0.1500" in dry.stdout and "BNB/USDT: weight 0.0000" in dry.stdout
    assert fake.orders == [] and fake.wallet_transfers == [] and not (project.state / "orders.jsonl").exists()
    first = project.run("rebalance")
    assert first.returncode == 0, first.stderr[-3000:]
    btc_short, eth_short = -perp(fake, "BTC"), -perp(fake, "ETH")
    assert btc_short > 0 and eth_short > 0 and spot(fake, "BNB") > 0 and perp(fake, "BNB") == 0
    assert spot(fake, "ETH") == eth_short  # carry only: spot = short
    positions = Positions.from_dict(read_json(project.state / "positions.json"))
    price, equity = positions.marks["BTC/USDT"], positions.equity_quote
    # BTC held by both: the spot beyond the short is the directional part (0.15 of the book, within a lot step)
    assert float(spot(fake, "BTC") - btc_short) * price / equity == pytest.approx(0.15, abs=LOT_WEIGHT)
    assert float(btc_short) * price / equity == pytest.approx(0.25, abs=LOT_WEIGHT)
    accepted = [o for o in fake.orders if o.accepted]
    markets = [(o.market, o.params["symbol"]) for o in accepted]
    assert markets.index(("futures", "BTCUSDT")) < markets.index(("spot", "BTCUSDT"))  # perp leg first
    assert len(fake.wallet_transfers) == 1
    assert set(positions.wallets) == {"spot", "futures"} and positions.amounts_base["BNB/USDT"] > 0
    # the directional part leaves BTC and BNB; the carry pairs stay: a directional sale never unhedges a short
    write_targets(project, {"BTC/USDT": 0.25, "BTC/USDT:USDT": -0.25, "ETH/USDT": 0.15, "ETH/USDT:USDT": -0.15,
                            "BNB/USDT": 0.0})
    second = project.run("rebalance")
    assert second.returncode == 0, second.stderr[-3000:]
    assert perp(fake, "BTC") == -btc_short and spot(fake, "BTC") == btc_short  # sold down to the hedge, not below
    assert spot(fake, "BNB") == 0 and spot(fake, "ETH") == eth_short
    third = project.run("rebalance")  # nothing left to do: nothing sent
    assert third.returncode == 0, third.stderr[-3000:]
    assert len([o for o in fake.orders if o.accepted]) == len(accepted) + 2
    assert_no_duplicates(project, fake)
    assert telegram.messages == []


@pytest.mark.parametrize("rejections", [1, 2])
def test_a_rejected_perp_leg_ends_hedged_or_flat_with_the_directional_part_kept(
        project: Project, telegram: FakeTelegram, fake: FakeBinance, rejections: int) -> None:
    setup(project, telegram, fake)
    fake.reject_next_order(futures=True, times=rejections, match={"symbol": "BTCUSDT"})
    result = project.run("rebalance")
    assert result.returncode == 0, result.stderr[-3000:]
    short = -perp(fake, "BTC")
    assert (short > 0) == (rejections == 1)  # retried: hedged; refused again: the spot excess unwound
    positions = Positions.from_dict(read_json(project.state / "positions.json"))
    directional = spot(fake, "BTC") - short  # what stays above the hedge is the directional part, about 0.15
    assert float(directional) * positions.marks["BTC/USDT"] / positions.equity_quote == pytest.approx(
        0.15, abs=LOT_WEIGHT)
    assert spot(fake, "ETH") == -perp(fake, "ETH") > 0
    assert_no_duplicates(project, fake)
    mismatches = [e for e in journal(project) if e.event == "leg_mismatch"]
    assert len(mismatches) == 1 and mismatches[0].symbol == "BTC/USDT"
    assert len(telegram.wait_for_messages(1)) == 1 and "leg mismatch handled" in telegram.texts[0]
    time.sleep(0.5)
    assert len(telegram.messages) == 1


def test_a_kill_between_the_legs_then_a_rerun_completes_the_book(project: Project, telegram: FakeTelegram,
                                                                 fake: FakeBinance) -> None:
    """Killed with BTC's spot order (directional + carry leg, one order) held by the exchange after its perp leg
    executed: the re-run looks the order up by client id, sends nothing twice, and ends with the hedge in place."""
    setup(project, telegram, fake, timeout_ms=20_000)
    fake.delay_next("/api/v3/order", method="POST", seconds=15.0, match={"symbol": "BTCUSDT"})
    process = project.start("rebalance")
    deadline = time.monotonic() + 120
    while not [r for r in fake.requests("/api/v3/order") if r.method == "POST"]:
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    fake.clear_faults()
    assert perp(fake, "BTC") < 0
    second = project.run("rebalance")
    assert second.returncode == 0, second.stderr[-3000:]
    short = -perp(fake, "BTC")
    assert spot(fake, "BTC") > short > 0 and spot(fake, "ETH") == -perp(fake, "ETH") > 0 and spot(fake, "BNB") > 0
    assert_no_duplicates(project, fake)
    assert len([o for o in fake.orders if o.accepted and o.market == "futures"
                and o.params["symbol"] == "BTCUSDT"]) == 1
    assert len(telegram.wait_for_messages(1)) == 1


def test_a_drawdown_flattens_the_pairs_hedged_and_the_directional_part_then_halts(
        project: Project, telegram: FakeTelegram, fake: FakeBinance) -> None:
    setup(project, telegram, fake)
    assert project.run("rebalance").returncode == 0
    assert spot(fake, "BNB") > 0 and perp(fake, "BTC") < 0
    before = len([o for o in fake.orders if o.accepted])
    fake.spot_balances["USDT"] = Decimal(0)  # the spot cash and the futures wallet gone: a drawdown > 25 %
    fake.futures_wallet_quote = Decimal(0)
    halted = project.run("rebalance")
    assert halted.returncode != 0
    assert legs(fake) == {}  # both legs of every pair and the directional-only coin closed
    flatten = [(o.market, o.params["symbol"]) for o in [o for o in fake.orders if o.accepted][before:]]
    assert len(flatten) == 5  # 2 pairs x 2 legs + BNB
    assert flatten.index(("futures", "BTCUSDT")) < flatten.index(("spot", "BTCUSDT"))  # perp leg first
    assert HaltRecord.from_dict(read_json(project.state / "halt.json")).flattened
    assert_no_duplicates(project, fake)
    assert len(telegram.wait_for_messages(1)) == 1 and "drawdown" in telegram.texts[0]


def test_too_many_orders_over_both_parts_send_only_the_risk_reducing_ones(
        project: Project, telegram: FakeTelegram, fake: FakeBinance) -> None:
    setup(project, telegram, fake)
    assert project.run("rebalance").returncode == 0
    held = legs(fake)
    setup(project, telegram, fake, risk={"max_orders_per_run": 2})  # 5 risk-adding orders wanted
    write_targets(project, {"BTC/USDT": 0.5, "BTC/USDT:USDT": -0.4, "ETH/USDT": 0.35, "ETH/USDT:USDT": -0.35,
                            "BNB/USDT": 0.0, "XRP/USDT": 0.05})  # legs grow by >= 150 USDT: over the minimums
    refused = project.run("rebalance")
    assert refused.returncode != 0, refused.stderr[-6000:]
    after = legs(fake)
    assert "BNB/USDT" not in after and "XRP/USDT" not in after  # the directional exit went, the new coin did not
    for symbol in ("BTC/USDT:USDT", "ETH/USDT:USDT", "ETH/USDT"):  # no leg grew
        assert after[symbol] == held[symbol]
    assert after["BTC/USDT"] <= held["BTC/USDT"]  # its directional part (0.1 now) may only shrink
    assert any(e.event == "risk_rejected" and e.reason == "order_count" for e in journal(project))
    assert len(telegram.wait_for_messages(1)) == 1 and "only risk-reducing orders sent" in telegram.texts[0]
    assert_no_duplicates(project, fake)


def test_the_whole_book_over_the_var_limit_is_scaled_alike_and_stays_hedged(
        project: Project, telegram: FakeTelegram, fake: FakeBinance) -> None:
    """The carry legs move together (no basis risk); BNB, held by the directional part alone at 0.1, falls 40 % on
    the last day: the book loses 0.1 x 40 % = 4 % that day, its 99 % VaR = CVaR = 4 % (30 days, the worst) > 2 %:
    every part scaled by 2 / 4, each pair's legs alike."""
    for coin in ("BTC", "ETH"):
        write_hourly(project, SPOT_VENUE, f"{coin}/USDT", [0.0] * 30)
        write_hourly(project, PERP_VENUE, f"{coin}/USDT:USDT", [0.0] * 30)
    write_hourly(project, SPOT_VENUE, "BNB/USDT", [0.0] * 29 + [math.log(0.6)])
    setup(project, telegram, fake, risk={"tail_risk_action": "scale", "max_var_99_frac": 0.02,
                                         "max_cvar_99_frac": 0.05})
    result = project.run("rebalance")
    assert result.returncode == 0, result.stderr[-3000:]
    assert [(e.reason, e.symbol) for e in journal(project) if e.event == "risk_rejected"] == [
        ("tail_risk_scaled", None)]
    positions = Positions.from_dict(read_json(project.state / "positions.json"))
    equity = positions.equity_quote

    def lots(symbol: str, book_weight: float) -> tuple[Decimal, Decimal]:  # (wanted amount, its lot step)
        step = max(fake.market().market_rules(s).amount_step for s in (symbol, f"{symbol}:USDT"))
        return Decimal(repr(book_weight * equity / positions.marks[symbol])) // step * step, step

    for symbol, held, book_weight in (("BNB/USDT", spot(fake, "BNB"), 0.05),  # 0.1 x 0.5
                                      ("BTC/USDT", -perp(fake, "BTC"), 0.125),  # the short: 0.25 x 0.5
                                      ("BTC/USDT", spot(fake, "BTC") + perp(fake, "BTC"), 0.075)):  # directional
        wanted, step = lots(symbol, book_weight)
        assert abs(held - wanted) <= step, (symbol, held, wanted, result.stderr)
    assert spot(fake, "ETH") == -perp(fake, "ETH")
    assert_no_duplicates(project, fake)
    assert len(telegram.wait_for_messages(1)) == 1 and "tail_risk_scaled" in telegram.texts[0]


PAPER_NOW_MS = 1_767_225_600_000 + MS_PER_HOUR  # runs with --as-of on the built-in simulated market


def test_paper_mode_keeps_both_wallets_with_the_directional_part_on_the_spot_one(project: Project,
                                                                                telegram: FakeTelegram) -> None:
    project.write_config(carry_config_text(
        {"id": "simulated", "market_type": "spot", "mode": "paper"}, telegram.base_url,
        risk={"max_order_notional_quote": 1000, "tail_risk_action": "off", "max_liquidation_prob_24h": 1.0,
              "max_asset_weight_frac": 0.5},
        data={"symbols": ["BTC/USDT", "ETH/USDT", "BNB/USDT"]}, strategy=COMBINED, extra=SLEEVES))
    project.write_env(**TELEGRAM)
    as_of = PAPER_NOW_MS - 2 * MS_PER_HOUR
    write_json_atomic(project.state / "targets.json", Targets(
        as_of_ms=as_of, created_ms=as_of + MS_PER_HOUR, strategy="combined", exchange="simulated",
        market_type="spot", timeframe="1h", weights=BOTH).to_dict())
    first = project.run("rebalance", "--as-of", str(PAPER_NOW_MS))
    assert first.returncode == 0, first.stderr[-3000:]
    positions = Positions.from_dict(read_json(project.state / "positions.json"))
    assert positions.paper is not None and set(positions.paper) >= {"spot", "futures", "transfers"}
    held = positions.amounts_base
    assert held["ETH/USDT"] == -held["ETH/USDT:USDT"] > 0 and held["BTC/USDT"] > -held["BTC/USDT:USDT"] > 0
    assert held["BNB/USDT"] > 0 and "BNB/USDT:USDT" not in held
    assert positions.wallets["futures"] > 0 and positions.equity_quote == pytest.approx(1000, rel=0.01)
    events = journal(project)
    second = project.run("rebalance", "--as-of", str(PAPER_NOW_MS))
    assert second.returncode == 0, second.stderr[-3000:]
    assert [e for e in journal(project) if e.event in ("sent", "transfer_sent")] == [
        e for e in events if e.event in ("sent", "transfer_sent")]
    assert telegram.messages == []
