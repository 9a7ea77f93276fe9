"""rebalance as a subprocess: paper mode on the simulated exchange, and testnet/live through real ccxt against
FakeBinance (spot and USD-M perps). Every risk check tripping, faults on the order endpoint, SIGKILL mid-order
then a re-run, refusals of live mode, bad inputs. Invariants checked throughout: one accepted order per client
id on the exchange, a consistent journal (lib.execution.journal.find_problems), targets reached, nothing written on a
refusal.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from decimal import Decimal

import pandas as pd
import pytest

from lib.core.state import HaltRecord, Positions, Targets
from lib.core.storage import read_json, read_jsonl, write_json_atomic
from lib.core.timeframes import MS_PER_DAY, MS_PER_HOUR
from lib.execution.journal import JournalEvent, compute_fill_positions, find_open_orders, find_problems, parse_journal
from lib.execution.paper import PaperSnapshot
from tests.fakes.exchange_server import FakeBinance
from tests.fakes.telegram_server import FakeTelegram
from tests.integration.conftest import FAKE_NOW_MS, Project

PAPER_NOW_MS = 1_767_225_600_000 + MS_PER_HOUR  # 2026-01-01T01:00Z (paper runs use --as-of)
PAPER_AS_OF_MS = PAPER_NOW_MS - PAPER_NOW_MS % MS_PER_DAY - MS_PER_DAY  # the last closed daily candle
SPOT = {"BTC/USDT": 0.3, "ETH/USDT": 0.25, "SOL/USDT": 0.0}
KEYS = {"COINBOT_EXCHANGE_API_KEY": "fake-api-key-1234", "COINBOT_EXCHANGE_API_SECRET": "fake-api-secret-5678"}
TELEGRAM = {"COINBOT_TELEGRAM_BOT_TOKEN": "123:test-token", "COINBOT_TELEGRAM_CHAT_ID": "42"}
ORDER_PATH = "/api/v3/order"


# --- harness ------------------------------------------------------------------------------------------------


def config_text(telegram: FakeTelegram, *, fake: FakeBinance | None = None, exchange_id: str = "binance",
                market_type: str = "spot", mode: str = "testnet", extra: str = "") -> str:
    exchange = "" if fake is None else f"""[exchange]
id = "{exchange_id}"
market_type = "{market_type}"
mode = "{mode}"
rest_base_url = "{fake.base_url}"
enable_rate_limit = false
retry_base_delay_ms = 1  # backoff without the real waits
timeout_ms = 1000
"""
    strategy = f'[strategy]\nname = "{"perp_market_neutral" if market_type == "swap" else "spot_long_only"}"\n'
    return f"""{exchange}
[data]
symbols = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
timeframes = ["1d"]
[paper]
starting_cash_quote = 1000
fee_bps = 10
slippage_bps = 5
[alerts]
telegram_base_url = "{telegram.base_url}"
{strategy}{extra}
"""


def with_risk(extra: str = "", **risk: object) -> str:
    """A [risk] section: the fat-finger cap fits a 1000 USDT book unless a test says otherwise. These tests write
    targets without candle history, so the tail-risk pass (which refuses an unknown risk) is off unless a test
    turns it on (tests/integration/test_rebalance_tail_risk.py)."""
    values = {"max_order_notional_quote": 1000, "tail_risk_action": "off", "max_liquidation_prob_24h": 1.0, **risk}
    return "[risk]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items()) + extra


def setup(project: Project, telegram: FakeTelegram, *, fake: FakeBinance | None = None, keys: bool = True,
          risk: dict[str, object] | None = None, **options: str) -> None:
    project.write_config(config_text(telegram, fake=fake, extra=with_risk(**(risk or {})), **options))
    if fake is not None:  # testnet/live runs use the wall clock: the frozen fake's prices are current to them
        fake.ticker_clock = "wall"
    project.write_env(**TELEGRAM, **(KEYS if keys else {}))


def write_targets(project: Project, weights: dict[str, float], *, as_of_ms: int | None = None,
                  exchange: str = "simulated", market_type: str = "spot") -> None:
    """targets.json as compute_signals writes it; without ``as_of_ms``: the last closed daily candle by the wall
    clock (the fake exchange's clock follows it for prices)."""
    wall_ms = int(time.time() * 1000)
    as_of = as_of_ms if as_of_ms is not None else wall_ms - wall_ms % MS_PER_DAY - MS_PER_DAY
    targets = Targets(as_of_ms=as_of, created_ms=as_of + MS_PER_HOUR,
                      strategy="perp_market_neutral" if market_type == "swap" else "spot_long_only",
                      exchange=exchange, market_type=market_type, timeframe="1d", weights=weights)
    write_json_atomic(project.state / "targets.json", targets.to_dict())


def paper_run(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    return project.run("rebalance", "--as-of", str(PAPER_NOW_MS), *args)


def journal(project: Project) -> list[JournalEvent]:
    records, torn = read_jsonl(project.state / "orders.jsonl")
    assert not torn
    return parse_journal(records)


def positions(project: Project) -> Positions:
    return Positions.from_dict(read_json(project.state / "positions.json"))


def accepted_ids(fake: FakeBinance) -> list[str]:
    return [order.client_order_id for order in fake.orders if order.accepted]


def assert_consistent(project: Project, fake: FakeBinance | None = None) -> list[JournalEvent]:
    events = journal(project)
    assert find_problems(events) == [] and find_open_orders(events) == []
    if fake is not None:
        ids = accepted_ids(fake)
        assert len(ids) == len(set(ids)), "an order was placed twice"
        assert sorted(ids) == sorted(e.client_order_id for e in events if e.event == "filled")
    return events


def sent_symbols(project: Project) -> set[str]:
    """Symbols journaled ``sent`` so far, read while the script may be appending (a torn line is skipped)."""
    path = project.state / "orders.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    found = set()
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("event") == "sent":
            found.add(record["symbol"])
    return found


def assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stderr[-3000:]


def weights_on(project: Project) -> dict[str, float]:
    book = positions(project)
    return {s: a * book.marks[s] / book.equity_quote for s, a in book.amounts_base.items() if ":" not in s}


def price_frame(closes: list[float]) -> pd.DataFrame:
    """Hourly candles from 10 h before the fake's clock: close[i] is the price from hour i on."""
    start = FAKE_NOW_MS - FAKE_NOW_MS % MS_PER_HOUR - 10 * MS_PER_HOUR
    return pd.DataFrame({"timestamp": [start + i * MS_PER_HOUR for i in range(len(closes))],
                         "open": closes, "high": closes, "low": closes, "close": closes,
                         "volume": [1000.0] * len(closes)})


# --- paper mode on the simulated exchange -------------------------------------------------------------------


def test_paper_dry_run_then_full_rebalance_then_noop(project: Project, telegram: FakeTelegram) -> None:
    setup(project, telegram)
    write_targets(project, SPOT, as_of_ms=PAPER_AS_OF_MS)
    dry = paper_run(project, "--dry-run")
    assert_ok(dry)
    assert "BTC/USDT" in dry.stdout and "risk verdict: trade, 2 of 2" in dry.stdout
    assert sorted(p.name for p in project.state.iterdir()) == ["targets.json"]  # no run record, no lock file

    assert_ok(paper_run(project))
    events = assert_consistent(project)
    fills = [e for e in events if e.event == "filled"]
    assert sorted(e.symbol for e in fills) == ["BTC/USDT", "ETH/USDT"]
    for fill in fills:  # the paper cost model, exactly: last price x (1 + 5 bps), 10 bps fee on the notional
        assert fill.reference_price is not None and fill.filled_amount_base == fill.requested_amount_base
        assert fill.average_price == pytest.approx(fill.reference_price * 1.0005, rel=1e-12)
        assert fill.fee_quote == pytest.approx(float(fill.filled_amount_base) * fill.average_price * 0.001,
                                               rel=1e-12)
    book = positions(project)
    snapshot = PaperSnapshot.from_dict(book.paper)
    assert compute_fill_positions(events) == dict(snapshot.amounts_base)
    spent = sum(Decimal(repr(f.average_price)) * f.filled_amount_base + Decimal(repr(f.fee_quote)) for f in fills)
    assert snapshot.cash_quote == pytest.approx(Decimal(1000) - spent, abs=Decimal("1e-9"))
    assert snapshot.cash_quote > 0 and book.high_water_mark_quote == 1000.0
    assert book.fees_paid_quote == pytest.approx(sum(f.fee_quote or 0.0 for f in fills), rel=1e-12)
    assert all(abs(weights_on(project)[s] - w) < 0.02 for s, w in SPOT.items() if w)

    before = (project.state / "positions.json").read_bytes()
    assert_ok(paper_run(project))
    assert len([e for e in journal(project) if e.event == "sent"]) == 2  # no new orders
    assert (project.state / "positions.json").read_bytes() == before


@pytest.mark.parametrize(("risk", "weights", "as_of_ms", "kill", "check", "exit_code"), [
    ({"max_order_notional_quote": 100}, SPOT, PAPER_AS_OF_MS, False, "fat_finger", 1),
    ({"max_orders_per_run": 1}, SPOT, PAPER_AS_OF_MS, False, "order_count", 1),
    ({}, SPOT, PAPER_AS_OF_MS - 2 * MS_PER_DAY, False, "staleness", 1),
    ({}, SPOT, PAPER_AS_OF_MS, True, "kill_switch", 4),
], ids=["fat_finger", "order_count", "stale_targets", "kill_switch"])  # over the asset cap: clipped (book tests)
def test_a_risk_check_stops_everything_journals_and_alerts(
    project: Project, telegram: FakeTelegram, risk: dict[str, object], weights: dict[str, float],
    as_of_ms: int, kill: bool, check: str, exit_code: int,
) -> None:
    setup(project, telegram, risk={"max_order_notional_quote": 1000, **risk})
    write_targets(project, weights, as_of_ms=as_of_ms)
    if kill:
        (project.state / "KILL").touch()
    result = paper_run(project)
    assert result.returncode == exit_code, result.stderr[-2000:]
    events = journal(project)
    assert not [e for e in events if e.event == "sent"]
    assert check in [e.reason for e in events if e.event == "risk_rejected"]
    assert not (project.state / "positions.json").exists()
    assert check in telegram.wait_for_messages(1)[0].text  # type: ignore[operator]


@pytest.mark.parametrize("breakage", ["missing_targets", "malformed_targets", "nan_weight", "corrupt_positions"])
def test_bad_inputs_fail_closed_alert_and_change_nothing(project: Project, telegram: FakeTelegram,
                                                         breakage: str) -> None:
    setup(project, telegram)
    write_targets(project, SPOT, as_of_ms=PAPER_AS_OF_MS)
    targets = project.state / "targets.json"
    if breakage == "missing_targets":
        targets.unlink()
    elif breakage == "malformed_targets":
        targets.write_text('{"schema_version": 1, "weights": {"BTC/USDT": 0.3')
    elif breakage == "nan_weight":
        targets.write_text(targets.read_text().replace('"BTC/USDT": 0.3', '"BTC/USDT": NaN'))
    else:
        (project.state / "positions.json").write_text('{"schema_version": 1, "mode": "paper"')
    before = {p.name: p.read_bytes() for p in project.state.iterdir() if p.is_file()}
    result = paper_run(project)
    assert result.returncode == 1 and "StateError" in result.stderr
    after = {p.name: p.read_bytes() for p in project.state.iterdir() if p.is_file() and p.name != "runs.jsonl"}
    assert after == before
    assert "rebalance FAILED" in telegram.wait_for_messages(1)[0].text  # type: ignore[operator]


def test_an_unfinished_flatten_is_finished_by_the_next_run_and_nothing_else(project: Project,
                                                                          telegram: FakeTelegram) -> None:
    setup(project, telegram)
    write_targets(project, SPOT, as_of_ms=PAPER_AS_OF_MS)
    assert_ok(paper_run(project))
    halt = HaltRecord(created_ms=PAPER_NOW_MS, run_id="rebalance-x", reason="drawdown", detail="drawdown 30%",
                      equity_quote=700.0, high_water_mark_quote=1000.0)  # as left by a run killed mid-flatten
    write_json_atomic(project.state / "halt.json", halt.to_dict())
    dry = paper_run(project, "--dry-run")
    assert dry.returncode == 4  # exits as the real run will: halted
    assert "sell" in dry.stdout and "risk verdict: halt" in dry.stdout
    assert len([e for e in journal(project) if e.event == "sent"]) == 2  # the dry run sent nothing

    finished = paper_run(project)
    assert finished.returncode == 4 and "flatten complete" in finished.stderr
    assert HaltRecord.from_dict(read_json(project.state / "halt.json")).flattened
    assert positions(project).amounts_base == {}
    events = assert_consistent(project)
    assert [e.requested_side for e in events if e.event == "filled"] == ["buy", "buy", "sell", "sell"]
    again = paper_run(project)
    assert again.returncode == 4 and len(journal(project)) == len(events) + 1  # one risk_rejected: halt


# --- FakeBinance spot through real ccxt ---------------------------------------------------------------------


def test_spot_full_rebalance_from_cash_then_noop(project: Project, telegram: FakeTelegram,
                                                 fake: FakeBinance) -> None:
    setup(project, telegram, fake=fake)
    write_targets(project, SPOT, exchange="binance")
    assert_ok(project.run("rebalance"))
    events = assert_consistent(project, fake)
    assert len(accepted_ids(fake)) == 2
    assert all(e.exchange_order_id and e.status == "closed" for e in events if e.event == "filled")
    book = positions(project)
    assert book.paper is None and book.cash_quote == pytest.approx(float(fake.spot_balances["USDT"]))
    assert book.amounts_base == {s: float(fake.spot_balances[s.split("/")[0]]) for s in ("BTC/USDT", "ETH/USDT")}
    assert all(abs(weights_on(project)[s] - w) < 0.02 for s, w in SPOT.items() if w)
    assert_ok(project.run("rebalance"))
    assert len(fake.orders) == 2


def test_spot_rebalance_with_existing_positions_skips_dust(project: Project, telegram: FakeTelegram) -> None:
    with FakeBinance(now_ms=FAKE_NOW_MS) as fake:
        btc, eth = float(fake.last_price("BTC/USDT")), float(fake.last_price("ETH/USDT"))
        sol_step, sol_price = fake.rules("SOL/USDT").amount_step, fake.last_price("SOL/USDT")
        dust = sol_step * max(1, int(4 / (sol_price * sol_step)))  # a tradable amount worth < 5 USDT
        fake.spot_balances.update({"USDT": Decimal(300), "BTC": Decimal(repr(round(500 / btc, 5))),
                                   "ETH": Decimal(repr(round(200 / eth, 4))), "SOL": dust})
        setup(project, telegram, fake=fake)
        write_targets(project, {"BTC/USDT": 0.2, "ETH/USDT": 0.0, "SOL/USDT": 0.0, "ADA/USDT": 0.3},
                      exchange="binance")
        assert_ok(project.run("rebalance"))
        events = assert_consistent(project, fake)
    sent = [(e.symbol, e.requested_side) for e in events if e.event == "sent"]
    assert sent == [("BTC/USDT", "sell"), ("ETH/USDT", "sell"), ("ADA/USDT", "buy")]  # sells first
    dust = [e for e in events if e.event == "skipped" and e.symbol == "SOL/USDT"]
    assert [e.reason for e in dust] == ["below min notional"]
    weights = weights_on(project)
    assert abs(weights["BTC/USDT"] - 0.2) < 0.02 and abs(weights["ADA/USDT"] - 0.3) < 0.02
    assert "ETH/USDT" not in weights and "SOL/USDT" in weights  # sold out; the dust stays


# --- USD-M perpetuals ---------------------------------------------------------------------------------------


def test_perps_open_then_flip_with_reduce_only_closes(project: Project, telegram: FakeTelegram,
                                                      fake: FakeBinance) -> None:
    setup(project, telegram, fake=fake, exchange_id="binanceusdm", market_type="swap")
    long_short = {"BTC/USDT:USDT": 0.3, "ETH/USDT:USDT": -0.3}
    write_targets(project, long_short, exchange="binanceusdm", market_type="swap")
    assert_ok(project.run("rebalance"))
    assert fake.request_count("/fapi/v1/leverage", method="POST", leverage="2") == 2
    assert fake.request_count("/fapi/v1/marginType", method="POST", marginType="CROSSED") == 2
    book = positions(project)
    assert book.amounts_base["BTC/USDT:USDT"] > 0 > book.amounts_base["ETH/USDT:USDT"]

    write_targets(project, {s: -w for s, w in long_short.items()}, exchange="binanceusdm", market_type="swap")
    assert_ok(project.run("rebalance"))
    events = assert_consistent(project, fake)
    flips = [o for o in fake.orders[2:]]
    assert [o.params.get("reduceOnly") for o in flips] == ["true", "true", None, None]  # closes first
    flipped = positions(project).amounts_base
    assert flipped["BTC/USDT:USDT"] < 0 < flipped["ETH/USDT:USDT"]
    assert {e.reduce_only for e in events if e.event == "filled"} == {True, False}


# --- drawdown, daily loss -----------------------------------------------------------------------------------


def test_drawdown_flattens_halts_and_resumes_after_a_manual_clear(project: Project,
                                                                  telegram: FakeTelegram) -> None:
    prices = {"BTC/USDT": price_frame([100.0] * 10 + [50.0] * 5), "ETH/USDT": price_frame([10.0] * 10 + [5.0] * 5)}
    with FakeBinance(now_ms=FAKE_NOW_MS - 5 * MS_PER_HOUR, candles={(s, "1h"): f for s, f in prices.items()},
                     spot_balances={"USDT": 1000}) as fake:
        setup(project, telegram, fake=fake)
        write_targets(project, {"BTC/USDT": 0.3, "ETH/USDT": 0.3}, exchange="binance")
        assert_ok(project.run("rebalance"))
        fake.set_now_ms(FAKE_NOW_MS)  # prices halve: equity ~700 vs peak 1000
        halted = project.run("rebalance")
        assert halted.returncode == 4 and "drawdown" in halted.stderr
        halt = HaltRecord.from_dict(read_json(project.state / "halt.json"))
        assert halt.flattened and halt.high_water_mark_quote == pytest.approx(1000, rel=0.01)
        assert positions(project).amounts_base == {} and fake.spot_balances["BTC"] == 0
        assert any("drawdown" in text for text in [m.text or "" for m in telegram.wait_for_messages(1)])

        fake.reset_requests()
        still = project.run("rebalance")
        assert still.returncode == 4 and fake.requests() == []  # halted before touching the exchange

        (project.state / "halt.json").unlink()  # a person clears the halt ...
        resumed = project.run("rebalance", "--reset-high-water-mark")  # ... and accepts today's equity as peak
        assert_ok(resumed)
        events = assert_consistent(project, fake)
    assert [e.requested_side for e in events if e.event == "filled"] == ["buy", "buy", "sell", "sell", "buy", "buy"]
    assert positions(project).high_water_mark_quote == pytest.approx(700, rel=0.01)


def test_daily_loss_sends_only_risk_reducing_orders(project: Project, telegram: FakeTelegram) -> None:
    prices = {"BTC/USDT": price_frame([100.0] * 10 + [90.0] * 5), "ETH/USDT": price_frame([10.0] * 10 + [9.0] * 5)}
    with FakeBinance(now_ms=FAKE_NOW_MS - 5 * MS_PER_HOUR, candles={(s, "1h"): f for s, f in prices.items()},
                     spot_balances={"USDT": 1000}) as fake:
        setup(project, telegram, fake=fake)
        write_targets(project, {"BTC/USDT": 0.3, "ETH/USDT": 0.3}, exchange="binance")
        assert_ok(project.run("rebalance"))
        fake.set_now_ms(FAKE_NOW_MS)  # -10 %: equity ~940, down 6 % today
        write_targets(project, {"BTC/USDT": 0.1, "ETH/USDT": 0.35}, exchange="binance")
        result = project.run("rebalance")
        assert result.returncode == 1 and "reduce-only" in result.stderr
        events = assert_consistent(project, fake)
    assert [(e.symbol, e.requested_side) for e in events if e.event == "sent"][2:] == [("BTC/USDT", "sell")]
    assert any(e.reason == "daily_loss" and e.symbol == "ETH/USDT" for e in events if e.event == "risk_rejected")


# --- faults on the order endpoint ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 503])
def test_rejected_post_is_looked_up_then_sent_once_by_the_next_run(project: Project, telegram: FakeTelegram,
                                                                   fake: FakeBinance, status: int) -> None:
    setup(project, telegram, fake=fake)
    write_targets(project, SPOT, exchange="binance")
    fake.fail_next(ORDER_PATH, status=status, method="POST", times=1)
    failed = project.run("rebalance")
    assert failed.returncode == 1 and "unknown outcome" in failed.stderr
    [open_order] = find_open_orders(journal(project))
    assert fake.orders == [] and fake.request_count(ORDER_PATH, method="GET") == 1  # looked up, not resent
    assert_ok(project.run("rebalance"))
    events = assert_consistent(project, fake)
    first = [e.event for e in events if e.client_order_id == open_order.client_order_id]
    assert first == ["planned", "sent", "failed", "planned", "sent", "filled"]
    assert len(accepted_ids(fake)) == 2


@pytest.mark.parametrize("how", ["http_502", "timeout"])
def test_lost_order_response_is_found_by_client_id_not_resent(project: Project, telegram: FakeTelegram,
                                                              fake: FakeBinance, how: str) -> None:
    setup(project, telegram, fake=fake)
    write_targets(project, SPOT, exchange="binance")
    fake.lose_next_order_response(how=how, seconds=1.5)
    assert_ok(project.run("rebalance"))
    events = assert_consistent(project, fake)
    assert len(fake.orders) == 2 and all(order.accepted for order in fake.orders)  # exactly one per id
    assert [e.event for e in events if e.event in ("sent", "filled")] == ["sent", "filled"] * 2


@pytest.mark.parametrize("killed_symbol", ["BTC/USDT", "ETH/USDT"])
def test_sigkill_mid_order_then_rerun_places_nothing_twice(project: Project, telegram: FakeTelegram,
                                                           fake: FakeBinance, killed_symbol: str) -> None:
    project.write_config(config_text(telegram, fake=fake, extra=with_risk()).replace("timeout_ms = 1000",
                                                                                     "timeout_ms = 10000"))
    project.write_env(**TELEGRAM, **KEYS)
    fake.ticker_clock = "wall"
    write_targets(project, SPOT, exchange="binance")
    exchange_symbol = killed_symbol.replace("/", "")
    fake.delay_next(ORDER_PATH, seconds=1.5, method="POST", match={"symbol": exchange_symbol})
    process = project.start("rebalance")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not fake.request_count(ORDER_PATH, method="POST", symbol=exchange_symbol):
        time.sleep(0.02)
    assert killed_symbol in sent_symbols(project)  # journaled before it was sent
    os.kill(process.pid, signal.SIGKILL)  # the order request is in flight, held by the exchange
    process.communicate(timeout=10)
    while time.monotonic() < deadline and len(fake.orders) < (1 if killed_symbol == "BTC/USDT" else 2):
        time.sleep(0.05)  # the exchange still executes it
    assert len(find_open_orders(journal(project))) == 1 and not (project.state / "positions.json").exists()

    assert_ok(project.run("rebalance"))
    events = assert_consistent(project, fake)
    assert len(accepted_ids(fake)) == 2
    assert any("reconciled" in e.detail for e in events if e.event == "filled")
    assert all(abs(weights_on(project)[s] - w) < 0.02 for s, w in SPOT.items() if w)


# --- live mode ----------------------------------------------------------------------------------------------


def test_live_mode_needs_keys_and_an_explicit_opt_in(project: Project, telegram: FakeTelegram,
                                                     fake: FakeBinance) -> None:
    setup(project, telegram, fake=fake, keys=False, mode="live")
    write_targets(project, SPOT, exchange="binance")
    no_keys = project.run("rebalance", "--live")
    assert no_keys.returncode == 2 and "COINBOT_EXCHANGE_API_KEY" in no_keys.stderr
    setup(project, telegram, fake=fake, mode="live")
    no_opt_in = project.run("rebalance")
    assert no_opt_in.returncode == 2 and "pass --live" in no_opt_in.stderr
    assert fake.requests() == [] and not (project.state / "orders.jsonl").exists()
    assert_ok(project.run("rebalance", "--live"))
    assert len(accepted_ids(fake)) == 2 and journal(project)[0].mode == "live"


def test_live_mode_refuses_a_key_that_can_withdraw(project: Project, telegram: FakeTelegram,
                                                   fake: FakeBinance) -> None:
    fake.api_restrictions["enableWithdrawals"] = True
    setup(project, telegram, fake=fake, mode="live")
    write_targets(project, SPOT, exchange="binance")
    refused = project.run("rebalance", "--live")
    assert refused.returncode == 2 and "unsafe API key" in refused.stderr
    assert accepted_ids(fake) == []
    assert "unsafe API key" in (telegram.wait_for_messages(1)[0].text or "")
    fake.api_restrictions["enableWithdrawals"] = False
    assert_ok(project.run("rebalance", "--live"))
    assert len(accepted_ids(fake)) == 2
