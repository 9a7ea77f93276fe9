"""rebalance with strategy funding_carry as a subprocess, through real ccxt against FakeBinance's spot (/api) and
USD-M (/fapi) accounts and its wallet transfers (/sapi/v1/asset/transfer). Each fault ends hedged or flat, with no
client order id accepted twice, no transfer executed twice, and exactly one Telegram alert."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

import pytest

from lib.core.state import Positions, Targets
from lib.core.storage import read_json, read_jsonl, write_json_atomic
from lib.core.timeframes import MS_PER_HOUR
from lib.execution.journal import JournalEvent, find_open_orders, find_problems, parse_journal
from tests.fakes.exchange_server import FakeBinance
from tests.fakes.telegram_server import FakeTelegram
from tests.integration.conftest import Project, carry_config_text

FAKE_NOW_MS = 1_767_225_600_000 + 30 * 60_000
KEYS = {"COINBOT_EXCHANGE_API_KEY": "fake-api-key-1234", "COINBOT_EXCHANGE_API_SECRET": "fake-api-secret-5678"}
TELEGRAM = {"COINBOT_TELEGRAM_BOT_TOKEN": "123:test-token", "COINBOT_TELEGRAM_CHAT_ID": "42"}
WEIGHTS = {"BTC/USDT": 0.3, "BTC/USDT:USDT": -0.3, "ETH/USDT": 0.2, "ETH/USDT:USDT": -0.2}


@contextmanager
def carry_exchange(*, now_ms: int = FAKE_NOW_MS, spot_usdt: float = 1000,
                   futures_quote: float = 0) -> Iterator[FakeBinance]:
    """The fake spot + USD-M exchange with these two wallets, its tickers on the wall clock (the bot's)."""
    with FakeBinance(now_ms=now_ms, spot_balances={"USDT": spot_usdt}, futures_wallet_quote=futures_quote) as server:
        server.ticker_clock = "wall"
        yield server


@pytest.fixture
def fake() -> Iterator[FakeBinance]:
    with carry_exchange() as server:
        yield server


def setup(project: Project, telegram: FakeTelegram, fake: FakeBinance, *, timeout_ms: int = 5000,
          risk: dict[str, object] | None = None, extra: str = "") -> None:
    """The carry book's config. These runs have no stored candles, so the tail-risk pass and the liquidation guard
    (which refuse an unknown risk) are off unless a test turns them on (test_rebalance_carry_risk.py)."""
    values = {"max_order_notional_quote": 1000, "tail_risk_action": "off", "max_liquidation_prob_24h": 1.0,
              **(risk or {})}
    project.write_config(carry_config_text(
        {"id": "binance", "market_type": "spot", "mode": "testnet", "rest_base_url": fake.base_url,
         "enable_rate_limit": False, "retry_base_delay_ms": 1, "timeout_ms": timeout_ms}, telegram.base_url,
        risk=values, extra=extra))
    project.write_env(**TELEGRAM, **KEYS)
    write_targets(project, WEIGHTS)


def write_targets(project: Project, weights: dict[str, float], *, strategy: str = "funding_carry") -> None:
    """targets.json of ``strategy`` decided at the last closed hour (wall clock): fresh for this run."""
    wall_ms = int(time.time() * 1000)
    as_of = wall_ms - wall_ms % MS_PER_HOUR - MS_PER_HOUR
    targets = Targets(as_of_ms=as_of, created_ms=as_of + MS_PER_HOUR, strategy=strategy, exchange="binance",
                      market_type="spot", timeframe="1h", weights=weights)
    write_json_atomic(project.state / "targets.json", targets.to_dict())


def journal(project: Project) -> list[JournalEvent]:
    records, torn = read_jsonl(project.state / "orders.jsonl")
    assert not torn
    return parse_journal(records)


def legs(fake: FakeBinance) -> dict[str, Decimal]:
    """What the exchange holds: spot coins and signed perp positions."""
    held = {f"{c}/USDT": a for c, a in fake.spot_balances.items() if c != "USDT" and a}
    held.update({s: p.amount for s, p in fake.positions.items() if p.amount})
    return held


def assert_hedged_or_flat(fake: FakeBinance, coins: tuple[str, ...] = ("BTC", "ETH")) -> None:
    held = legs(fake)
    for coin in coins:
        spot, perp = held.get(f"{coin}/USDT", Decimal(0)), held.get(f"{coin}/USDT:USDT", Decimal(0))
        assert spot + perp == 0, f"{coin}: spot {spot} perp {perp}"


def assert_no_duplicates(project: Project, fake: FakeBinance) -> None:
    accepted = [o.client_order_id for o in fake.orders if o.accepted]
    assert len(accepted) == len(set(accepted))
    events = journal(project)
    assert find_problems(events) == [] and find_open_orders(events) == []
    transferred = [e.transfer_id for e in events if e.event == "transferred"]
    assert len(transferred) == len(set(transferred)) == len(fake.wallet_transfers)


def test_both_legs_and_the_collateral_transfer_then_a_rerun_sends_nothing(project: Project, telegram: FakeTelegram,
                                                                           fake: FakeBinance) -> None:
    setup(project, telegram, fake)
    dry = project.run("rebalance", "--dry-run")
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "transfer: " in dry.stdout and "spot -> futures" in dry.stdout and "dry run: nothing sent" in dry.stdout
    assert fake.orders == [] and fake.wallet_transfers == [] and not (project.state / "orders.jsonl").exists()
    first = project.run("rebalance")
    assert first.returncode == 0, first.stderr[-3000:]
    held = legs(fake)
    assert held["BTC/USDT"] > 0 and held["ETH/USDT"] > 0
    assert_hedged_or_flat(fake)
    assert len(fake.wallet_transfers) == 1 and fake.wallet_transfers[0]["type"] == "MAIN_UMFUTURE"
    orders = [o for o in fake.orders if o.accepted]
    assert [o.market for o in orders] == ["futures", "spot", "futures", "spot"]  # perp leg first, pair by pair
    positions = Positions.from_dict(read_json(project.state / "positions.json"))
    assert set(positions.wallets) == {"spot", "futures"}
    assert positions.amounts_base["BTC/USDT"] == -positions.amounts_base["BTC/USDT:USDT"]
    second = project.run("rebalance")
    assert second.returncode == 0, second.stderr[-3000:]
    assert [o for o in fake.orders if o.accepted] == orders and len(fake.wallet_transfers) == 1
    assert_no_duplicates(project, fake)
    assert telegram.messages == []


def test_lost_perp_reply_with_no_lookup_hedges_then_the_rerun_finds_the_order(project: Project,
                                                                             telegram: FakeTelegram,
                                                                             fake: FakeBinance) -> None:
    setup(project, telegram, fake)
    fake.lose_next_order_response(futures=True, how="http_502")
    fake.fail_next("/fapi/v1/order", method="GET", status=503, times=5)  # the lookup right after fails too
    first = project.run("rebalance")
    assert first.returncode != 0
    assert_hedged_or_flat(fake)  # the perp short is known from the positions: its spot leg was bought
    assert any(e.event == "leg_mismatch" for e in journal(project))
    second = project.run("rebalance")
    assert second.returncode == 0, second.stderr[-3000:]
    assert_hedged_or_flat(fake)
    assert legs(fake)["ETH/USDT"] > 0
    assert_no_duplicates(project, fake)
    assert len([o for o in fake.orders if o.accepted and o.params["symbol"] == "BTCUSDT"
                and o.market == "futures"]) == 1
    assert len(telegram.wait_for_messages(1)) == 1 and "NOT hedged or outcome unknown" in telegram.texts[0]


@pytest.mark.parametrize("rejections", [1, 2])
def test_rejected_spot_leg_is_retried_else_the_perp_leg_unwound(project: Project, telegram: FakeTelegram,
                                                                 fake: FakeBinance, rejections: int) -> None:
    setup(project, telegram, fake)
    fake.reject_next_order(futures=False, times=rejections, match={"symbol": "BTCUSDT"})
    result = project.run("rebalance")
    assert result.returncode == 0, result.stderr[-3000:]
    assert_hedged_or_flat(fake)
    held = legs(fake)
    assert ("BTC/USDT" in held) == (rejections == 1)  # retried: hedged; refused again: the perp leg unwound
    assert held["ETH/USDT"] > 0
    assert_no_duplicates(project, fake)
    mismatches = [e for e in journal(project) if e.event == "leg_mismatch"]
    assert len(mismatches) == 1 and mismatches[0].symbol == "BTC/USDT"
    assert len(telegram.wait_for_messages(1)) == 1 and "leg mismatch handled" in telegram.texts[0]


def test_a_transfer_that_times_out_is_found_not_sent_again(project: Project, telegram: FakeTelegram,
                                                          fake: FakeBinance) -> None:
    setup(project, telegram, fake, timeout_ms=3000)
    fake.lose_next_transfer_response(how="timeout", seconds=6.0)  # executed; the reply comes after the timeout
    result = project.run("rebalance")
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(fake.wallet_transfers) == 1
    assert_hedged_or_flat(fake)
    assert project.run("rebalance").returncode == 0
    assert len(fake.wallet_transfers) == 1
    assert_no_duplicates(project, fake)
    assert len(telegram.wait_for_messages(1)) == 1 and "not sent again" in telegram.texts[0]
    time.sleep(0.5)
    assert len(telegram.messages) == 1


@pytest.mark.parametrize("held_at", ["/fapi/v1/userTrades", "/api/v3/order"])
def test_sigkill_between_the_legs_then_a_rerun_completes_the_pair(project: Project, telegram: FakeTelegram,
                                                                  fake: FakeBinance, held_at: str) -> None:
    """Killed after the perp leg executed: while reading its fee (the spot leg not sent yet), or with the spot
    leg's request held by the exchange (journaled sent; executed or not, the re-run asks by client id)."""
    setup(project, telegram, fake, timeout_ms=20_000)
    method = "GET" if held_at.endswith("userTrades") else "POST"
    fake.delay_next(held_at, method=method, seconds=15.0)
    process = project.start("rebalance")
    deadline = time.monotonic() + 120
    while not [r for r in fake.requests(held_at) if r.method == method]:
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=30)
    fake.clear_faults()
    assert legs(fake).get("BTC/USDT:USDT", Decimal(0)) < 0
    assert [e.event for e in journal(project) if e.client_order_id][-1] == "sent"  # the last line: a leg sent
    second = project.run("rebalance")
    assert second.returncode == 0, second.stderr[-3000:]
    assert_hedged_or_flat(fake)
    assert legs(fake)["ETH/USDT"] > 0
    assert_no_duplicates(project, fake)
    btc_perp = [o for o in fake.orders if o.accepted and o.market == "futures" and o.params["symbol"] == "BTCUSDT"]
    assert len(btc_perp) == 1
    assert len(telegram.wait_for_messages(1)) == 1


PAPER_NOW_MS = 1_767_225_600_000 + MS_PER_HOUR  # runs with --as-of on the built-in simulated market


def test_paper_mode_keeps_two_wallets_and_both_legs_on_the_simulated_market(project: Project,
                                                                            telegram: FakeTelegram) -> None:
    project.write_config(carry_config_text(
        {"id": "simulated", "market_type": "spot", "mode": "paper"}, telegram.base_url,
        risk={"max_order_notional_quote": 1000, "tail_risk_action": "off", "max_liquidation_prob_24h": 1.0}))
    project.write_env(**TELEGRAM)
    as_of = PAPER_NOW_MS - 2 * MS_PER_HOUR
    write_json_atomic(project.state / "targets.json", Targets(
        as_of_ms=as_of, created_ms=as_of + MS_PER_HOUR, strategy="funding_carry", exchange="simulated",
        market_type="spot", timeframe="1h", weights=WEIGHTS).to_dict())
    first = project.run("rebalance", "--as-of", str(PAPER_NOW_MS))
    assert first.returncode == 0, first.stderr[-3000:]
    positions = Positions.from_dict(read_json(project.state / "positions.json"))
    assert positions.paper is not None and set(positions.paper) >= {"spot", "futures", "transfers"}
    assert len(positions.paper["transfers"]) == 1
    for coin in ("BTC", "ETH"):
        assert positions.amounts_base[f"{coin}/USDT"] == -positions.amounts_base[f"{coin}/USDT:USDT"] > 0
    assert positions.wallets["futures"] > 0 and positions.wallets["spot"] > 0
    assert positions.cash_quote == pytest.approx(positions.wallets["spot"] + positions.wallets["futures"])
    assert positions.equity_quote == pytest.approx(1000, rel=0.01)  # fees and slippage only
    events = journal(project)
    second = project.run("rebalance", "--as-of", str(PAPER_NOW_MS))
    assert second.returncode == 0, second.stderr[-3000:]
    assert [e for e in journal(project) if e.event in ("sent", "transfer_sent")] == [
        e for e in events if e.event in ("sent", "transfer_sent")]
    assert find_problems(journal(project)) == [] and telegram.messages == []


def test_stale_live_prices_trade_nothing_and_fail_with_one_alert(project: Project, telegram: FakeTelegram,
                                                                 fake: FakeBinance) -> None:
    setup(project, telegram, fake)
    fake.ticker_clock = "exchange"  # the fake's frozen clock: its prices are months old to the bot
    result = project.run("rebalance")
    assert result.returncode != 0
    assert [o for o in fake.orders] == [] and fake.wallet_transfers == []
    assert {e.reason for e in journal(project) if e.event == "risk_rejected"} == {"staleness"}
    assert len(telegram.wait_for_messages(1)) == 1 and "carry book not traded" in telegram.texts[0]


def test_a_transfer_of_unknown_outcome_stops_the_run_and_the_rerun_finds_it(project: Project,
                                                                           telegram: FakeTelegram,
                                                                           fake: FakeBinance) -> None:
    setup(project, telegram, fake, timeout_ms=3000)
    fake.lose_next_transfer_response(how="timeout", seconds=6.0)
    fake.fail_next("/sapi/v1/asset/transfer", method="GET", status=503, times=5)  # the history cannot be read
    first = project.run("rebalance")
    assert first.returncode != 0
    assert fake.orders == [] and len(fake.wallet_transfers) == 1  # executed; nothing traded on an unknown wallet
    assert [e.event for e in journal(project) if e.transfer_id] == ["transfer_sent"]
    second = project.run("rebalance")
    assert second.returncode == 0, second.stderr[-3000:]
    assert len(fake.wallet_transfers) == 1
    assert_hedged_or_flat(fake)
    assert legs(fake)["BTC/USDT"] > 0
    assert_no_duplicates(project, fake)
    messages = telegram.wait_for_messages(2)
    time.sleep(0.5)
    assert len(telegram.messages) == len(messages) == 2  # the failed run's, then the re-run's "found, not sent again"


def test_targets_weighting_a_coin_in_another_quote_are_refused_before_the_exchange_is_touched(
        project: Project, telegram: FakeTelegram, fake: FakeBinance) -> None:
    # a USDC-quoted weight in a USDT carry book would be sized against the wrong price and never show in its holdings
    setup(project, telegram, fake)
    targets = Targets.from_dict(read_json(project.state / "targets.json"))
    foreign = Targets(as_of_ms=targets.as_of_ms, created_ms=targets.created_ms, strategy=targets.strategy,
                      exchange=targets.exchange, market_type=targets.market_type, timeframe=targets.timeframe,
                      weights={**targets.weights, "SOL/USDC": 0.1})
    write_json_atomic(project.state / "targets.json", foreign.to_dict())
    result = project.run("rebalance")
    assert result.returncode != 0
    assert fake.orders == [] and fake.wallet_transfers == []
    assert len(telegram.wait_for_messages(1)) == 1
    assert "SOL/USDC" in telegram.texts[0] and "not quoted in the book's USDT" in telegram.texts[0]
    assert not (project.state / "positions.json").exists()
