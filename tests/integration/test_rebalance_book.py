"""rebalance as a subprocess against FakeBinance over real ccxt HTTP: the book/risk side of issue 9.

Exits above the fat-finger cap and the order-count cap go out as journaled child orders (also in the daily-loss
reduce-only mode and in a drawdown flatten); targets over the asset cap are clipped per asset.
"""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from lib.core.state import Positions
from lib.core.storage import append_jsonl, exclusive_lock, write_json_atomic
from lib.core.timeframes import MS_PER_DAY, MS_PER_HOUR
from lib.execution.journal import RunInfo, find_open_orders, to_sent_event
from lib.execution.orders import PlannedOrder
from lib.execution.simulated import SimulatedMarket, SimulatedParams
from tests.fakes.exchange_server import FakeBinance, RecordedOrder
from tests.fakes.telegram_server import FakeTelegram
from tests.integration.conftest import Project
from tests.integration.test_rebalance import (
    FAKE_NOW_MS,
    KEYS,
    PAPER_AS_OF_MS,
    PAPER_NOW_MS,
    SPOT,
    TELEGRAM,
    accepted_ids,
    assert_consistent,
    assert_ok,
    config_text,
    journal,
    paper_run,
    positions,
    price_frame,
    setup,
    weights_on,
    with_risk,
    write_targets,
)


def held_book(fake: FakeBinance, quote: dict[str, float]) -> None:
    """Spot balances worth ``quote`` USDT per asset at the fake's prices, no USDT."""
    balances = {"USDT": Decimal(0)}
    for asset, value in quote.items():
        price = float(fake.last_price(f"{asset}/USDT"))
        balances[asset] = Decimal(repr(round(value / price, 4)))
    fake.spot_balances.update(balances)


def notional(fake: FakeBinance, order: RecordedOrder) -> Decimal:
    return Decimal(order.params["quantity"]) * fake.last_price(order.params["symbol"][:-4] + "/USDT")


# --- item 4: caps never block exits -------------------------------------------------------------------------


def test_exit_above_the_size_and_count_caps_goes_out_as_children(project: Project, telegram: FakeTelegram) -> None:
    with FakeBinance(now_ms=FAKE_NOW_MS, spot_balances={}) as fake:
        held_book(fake, {"BTC": 1000, "ETH": 200})
        setup(project, telegram, fake=fake, risk={"max_order_notional_quote": 300, "max_orders_per_run": 2})
        write_targets(project, {"BTC/USDT": 0.0, "ETH/USDT": 0.0}, exchange="binance")  # regime flip to cash
        assert_ok(project.run("rebalance"))
        events = assert_consistent(project, fake)
        sells = [o for o in fake.orders if o.accepted]
        assert len(sells) == 5 and {o.params["side"] for o in sells} == {"SELL"}  # 4 BTC children + 1 ETH
        assert all(notional(fake, o) <= 300 for o in sells)
        assert fake.spot_balances["BTC"] == 0 and fake.spot_balances["ETH"] == 0
        assert len(set(accepted_ids(fake))) == 5
    planned = [e.client_order_id for e in events if e.event == "planned"]
    assert sorted(planned) == sorted(accepted_ids(fake))  # every child journaled before it was sent


def test_reduce_only_day_exits_a_position_larger_than_the_cap(project: Project, telegram: FakeTelegram) -> None:
    frame = price_frame([100.0] * 10 + [90.0] * 5)
    with FakeBinance(now_ms=FAKE_NOW_MS - 5 * MS_PER_HOUR, candles={("BTC/USDT", "1h"): frame},
                     spot_balances={"USDT": 100, "BTC": 9}) as fake:
        setup(project, telegram, fake=fake, risk={"max_order_notional_quote": 300, "max_asset_weight_frac": 1.0})
        write_targets(project, {"BTC/USDT": 0.9}, exchange="binance")
        assert_ok(project.run("rebalance"))  # nothing to do: sets the start of the day at 1000
        assert fake.orders == []
        fake.set_now_ms(FAKE_NOW_MS)  # -10 %: equity 910, down 9 % today -> reduce only
        write_targets(project, {"BTC/USDT": 0.0}, exchange="binance")
        result = project.run("rebalance")
        assert result.returncode == 1 and "reduce-only" in result.stderr
        assert_consistent(project, fake)
        assert [o.params["side"] for o in fake.orders] == ["SELL"] * 3  # 810 USDT in children of 270
        assert fake.spot_balances["BTC"] == 0


def test_a_drawdown_flatten_sends_children_under_the_cap(project: Project, telegram: FakeTelegram) -> None:
    frame = price_frame([100.0] * 10 + [50.0] * 5)
    with FakeBinance(now_ms=FAKE_NOW_MS - 5 * MS_PER_HOUR, candles={("BTC/USDT", "1h"): frame},
                     spot_balances={"USDT": 100, "BTC": 9}) as fake:
        setup(project, telegram, fake=fake, risk={"max_order_notional_quote": 200, "max_asset_weight_frac": 1.0})
        write_targets(project, {"BTC/USDT": 0.9}, exchange="binance")
        assert_ok(project.run("rebalance"))
        fake.set_now_ms(FAKE_NOW_MS)  # -50 %: equity 550 vs peak 1000
        halted = project.run("rebalance")
        assert halted.returncode == 4 and "flatten complete" in halted.stderr
        assert_consistent(project, fake)
        assert len(fake.orders) == 3 and all(notional(fake, o) <= 200 for o in fake.orders)  # 450 in 3 children
        assert fake.spot_balances["BTC"] == 0


def test_a_target_over_the_asset_cap_is_clipped_and_the_rest_trades(project: Project, telegram: FakeTelegram) -> None:
    with FakeBinance(now_ms=FAKE_NOW_MS, spot_balances={"USDT": 1000}) as fake:
        setup(project, telegram, fake=fake, risk={"max_asset_weight_frac": 0.3})
        write_targets(project, {"BTC/USDT": 0.5, "ETH/USDT": 0.2}, exchange="binance")
        assert_ok(project.run("rebalance"))
        events = assert_consistent(project, fake)
    weights = weights_on(project)
    assert abs(weights["BTC/USDT"] - 0.3) < 0.01 and abs(weights["ETH/USDT"] - 0.2) < 0.01
    assert [(e.reason, e.symbol) for e in events if e.event == "risk_rejected"] == [("asset_weight_clipped",
                                                                                     "BTC/USDT")]
    assert positions(project).amounts_base.keys() == {"BTC/USDT", "ETH/USDT"}
    assert journal(project)


# --- item 8: lost state never resets the baselines or the fees ----------------------------------------------


def test_lost_positions_json_in_testnet_is_refused_unless_the_reset_is_asked_for(project: Project,
                                                                                telegram: FakeTelegram) -> None:
    with FakeBinance(now_ms=FAKE_NOW_MS, spot_balances={"USDT": 1000}) as fake:
        setup(project, telegram, fake=fake)
        write_targets(project, {"BTC/USDT": 0.3}, exchange="binance")
        assert_ok(project.run("rebalance"))
        write_targets(project, {"BTC/USDT": 0.3, "ETH/USDT": 0.2}, exchange="binance")
        assert_ok(project.run("rebalance"))
        (project.state / "positions.json").unlink()  # lost after two runs that traded (one would be a crash
        refused = project.run("rebalance")            # of the very first run: its re-run simply goes on)
        assert refused.returncode == 1 and "--reset-high-water-mark" in refused.stderr
        assert not (project.state / "positions.json").exists() and len(fake.orders) == 2
        assert_ok(project.run("rebalance", "--reset-high-water-mark"))  # a person accepts today's book
        assert positions(project).high_water_mark_quote == pytest.approx(positions(project).equity_quote)


def test_a_rotated_journal_keeps_the_fee_total(project: Project, telegram: FakeTelegram) -> None:
    setup(project, telegram)
    write_targets(project, SPOT, as_of_ms=PAPER_AS_OF_MS)
    assert_ok(paper_run(project))
    first_fees = positions(project).fees_paid_quote
    assert first_fees > 0
    (project.state / "orders.jsonl").rename(project.state / "orders.jsonl.1")  # rotated by a person
    write_targets(project, {"BTC/USDT": 0.1, "ETH/USDT": 0.25}, as_of_ms=PAPER_AS_OF_MS)
    assert_ok(paper_run(project))
    [sell] = [e for e in journal(project) if e.event == "filled"]
    assert positions(project).fees_paid_quote == pytest.approx(first_fees + (sell.fee_quote or 0.0), rel=1e-12)


# --- item 10: a stage skipped by a held lock is recorded and alerted ----------------------------------------


def test_a_held_lock_is_a_recorded_and_alerted_skip_of_the_chain(project: Project, telegram: FakeTelegram) -> None:
    setup(project, telegram)
    write_targets(project, SPOT, as_of_ms=PAPER_AS_OF_MS)
    with exclusive_lock(project.state / "locks" / "rebalance.lock"):  # e.g. a manual run still going
        result = project.run("run_pipeline", "--stages", "rebalance", "report", "--as-of", str(PAPER_NOW_MS))
    assert result.returncode == 3 and "rebalance SKIPPED" in result.stderr
    [record] = [r for r in project.runs() if r["script"] == "rebalance"]
    assert record["event"] == "finish" and record["status"] == "skipped" and record["exit_code"] == 3
    assert not [r for r in project.runs() if r["script"] == "report"]  # the chain stopped there
    [message] = telegram.wait_for_messages(1)
    assert "rebalance SKIPPED" in (message.text or "")
    assert not (project.state / "orders.jsonl").exists()


# --- item 2: external cash flows are not P&L ----------------------------------------------------------------


def test_a_recorded_withdrawal_is_neither_a_drawdown_nor_a_daily_loss(project: Project,
                                                                      telegram: FakeTelegram) -> None:
    with FakeBinance(now_ms=FAKE_NOW_MS, spot_balances={"USDT": 1000}) as fake:
        setup(project, telegram, fake=fake)
        write_targets(project, {"BTC/USDT": 0.3}, exchange="binance")
        assert_ok(project.run("rebalance"))
        before = positions(project)
        fake.spot_balances["USDT"] -= 300  # a person takes 300 USDT out (30 % of the book)
        assert_ok(project.run("cashflow", "--note", "rent", "--", "-300"))
        assert_ok(project.run("rebalance"))  # without the record: a 30 % drawdown, flatten and halt
        assert not (project.state / "halt.json").exists()
        after = positions(project)
        assert after.high_water_mark_quote == pytest.approx(before.high_water_mark_quote - 300)
        assert after.day_start_equity_quote == pytest.approx(before.day_start_equity_quote - 300)
        assert after.inception_equity_quote == pytest.approx(before.inception_equity_quote - 300)
        assert abs(weights_on(project)["BTC/USDT"] - 0.3) < 0.02  # sized on the smaller book
        late = project.run("cashflow", "--time", str(before.updated_ms), "--", "-50")  # before the last run
        assert late.returncode == 1 and "--reset-high-water-mark" in late.stderr


# --- item 14: tests that kill money-losing mutations --------------------------------------------------------


def test_drawdown_is_measured_from_a_peak_set_on_an_earlier_day(project: Project, telegram: FakeTelegram) -> None:
    """Yesterday's peak 1000, yesterday's last equity 850 (today's start), now 700: 30 % below the peak
    (flatten) but only 17.6 % below the start of the day (a daily loss: reduce only)."""
    wall_ms = int(time.time() * 1000)
    yesterday = wall_ms - wall_ms % MS_PER_DAY - MS_PER_DAY
    with FakeBinance(now_ms=FAKE_NOW_MS, spot_balances={"USDT": 700}) as fake:
        setup(project, telegram, fake=fake)
        write_json_atomic(project.state / "positions.json", Positions(
            mode="testnet", venue="binance", updated_ms=yesterday + 20 * MS_PER_HOUR, cash_quote=850.0,
            amounts_base={}, marks={}, equity_quote=850.0, high_water_mark_quote=1000.0, day_start_ms=yesterday,
            day_start_equity_quote=1000.0, inception_ms=yesterday, inception_equity_quote=1000.0).to_dict())
        write_targets(project, {"BTC/USDT": 0.3}, exchange="binance")
        result = project.run("rebalance")
        assert result.returncode == 4 and "drawdown 30.00%" in result.stderr
        assert (project.state / "halt.json").exists() and fake.orders == []


@pytest.mark.parametrize(("close_age_h", "trades"), [(24, True), (26, False)])
def test_target_age_is_counted_from_the_signal_candle_close(project: Project, telegram: FakeTelegram,
                                                            close_age_h: int, trades: bool) -> None:
    """max_target_age 25 h: a daily candle that closed 24 h ago is fresh (its open, 48 h ago, is not); one that
    closed 26 h ago is stale (one bar later, 2 h, would be fresh)."""
    setup(project, telegram)
    write_targets(project, SPOT, as_of_ms=PAPER_NOW_MS - MS_PER_DAY - close_age_h * MS_PER_HOUR)
    result = paper_run(project)
    assert result.returncode == (0 if trades else 1), result.stderr[-2000:]
    sent = [e for e in journal(project) if e.event == "sent"]
    assert bool(sent) == trades and ("staleness" in result.stderr) != trades


def test_an_order_the_venue_still_reports_open_stops_the_run(project: Project, telegram: FakeTelegram) -> None:
    with FakeBinance(now_ms=FAKE_NOW_MS, spot_balances={"USDT": 1000}) as fake:
        setup(project, telegram, fake=fake)
        write_targets(project, {"BTC/USDT": 0.3}, exchange="binance")
        stuck = PlannedOrder(symbol="BTC/USDT", side="buy", amount_base=Decimal("0.001"), reference_price=1.0,
                             notional_quote=Decimal("0.001"), reduce_only=False, client_order_id="cb-stuck-1",
                             target_weight=0.3, current_weight=0.0)
        run = RunInfo(time_ms=int(time.time() * 1000), run_id="rebalance-crashed", rebalance_id="r-0",
                      mode="testnet", venue="binance")
        append_jsonl(project.state / "orders.jsonl", to_sent_event(stuck, run).to_dict())  # a crash after "sent"
        fake.add_resting_spot_order("BTC/USDT", "buy", Decimal("0.001"), "cb-stuck-1")
        result = project.run("rebalance")
        assert result.returncode == 1 and "still open" in result.stderr
        assert fake.orders == []  # nothing planned or sent while an order is working
        [still] = find_open_orders(journal(project))
        assert still.client_order_id == "cb-stuck-1"


# --- item 3: the bot's own capital and managed set ----------------------------------------------------------


def test_only_the_bots_capital_and_coins_are_traded(project: Project, telegram: FakeTelegram) -> None:
    with FakeBinance(now_ms=FAKE_NOW_MS, spot_balances={"USDT": 1000, "BNB": "2", "XRP": "500"}) as fake:
        project.write_config(config_text(telegram, fake=fake, extra=with_risk("[book]\ncapital_quote = 500\n")))
        fake.ticker_clock = "wall"  # as setup() does: a testnet run's prices are stamped by the wall clock
        project.write_env(**TELEGRAM, **KEYS)  # BNB kept for fees and an XRP bag: not in data.symbols
        write_targets(project, {"BTC/USDT": 0.3, "ETH/USDT": 0.0}, exchange="binance")
        assert_ok(project.run("rebalance"))
        assert_consistent(project, fake)
        [buy] = [o for o in fake.orders if o.accepted]
        assert buy.params["symbol"] == "BTCUSDT" and buy.params["side"] == "BUY"
        assert 145 <= notional(fake, buy) <= 150  # 0.3 of the 500 capital, not of the 1000+ account
        assert fake.spot_balances["BNB"] == 2 and fake.spot_balances["XRP"] == 500  # never sold
        book = positions(project)
        assert set(book.amounts_base) == {"BTC/USDT"} and set(book.ignored_base) == {"BNB/USDT", "XRP/USDT"}
        assert book.equity_quote < 1001  # the bag is not the bot's equity
        doctor = project.run("doctor", "--json")  # the table cuts long details
        assert "ignored (not the bot's, never traded): BNB/USDT 2, XRP/USDT 500" in doctor.stdout


# --- item 11: smaller ones ----------------------------------------------------------------------------------


def test_a_dry_run_whose_verdict_is_halt_exits_non_zero(project: Project, telegram: FakeTelegram) -> None:
    setup(project, telegram, risk={"max_order_notional_quote": 100})  # 300-USDT buys: fat finger
    write_targets(project, SPOT, as_of_ms=PAPER_AS_OF_MS)
    dry = paper_run(project, "--dry-run")
    assert dry.returncode == 1 and "risk verdict: halt" in dry.stdout and "fat_finger" in dry.stderr
    assert not (project.state / "positions.json").exists() and not (project.state / "orders.jsonl").exists()
    setup(project, telegram)
    assert_ok(paper_run(project, "--dry-run"))  # a verdict that trades: exit 0


def test_paper_perps_accrue_funding_between_runs(project: Project, telegram: FakeTelegram) -> None:
    def configure(band: float) -> None:
        project.write_config('[exchange]\nmarket_type = "swap"\n' + config_text(
            telegram, market_type="swap", extra=with_risk(f"[orders]\nno_trade_band_frac = {band}\n")))

    configure(0.02)
    project.write_env(**TELEGRAM)
    book = {"BTC/USDT:USDT": 0.3, "ETH/USDT:USDT": -0.3}
    write_targets(project, book, as_of_ms=PAPER_AS_OF_MS, market_type="swap")
    assert_ok(paper_run(project))
    before = positions(project)
    configure(0.9)  # the next day trades nothing: the cash moves by funding only
    write_targets(project, book, as_of_ms=PAPER_AS_OF_MS + MS_PER_DAY, market_type="swap")
    assert_ok(project.run("rebalance", "--as-of", str(PAPER_NOW_MS + MS_PER_DAY)))
    after = positions(project)
    assert after.amounts_base == before.amounts_base and not [e for e in journal(project) if e.event == "sent"][2:]
    market = SimulatedMarket(SimulatedParams(), now_ms=PAPER_NOW_MS + MS_PER_DAY)
    expected = sum(Decimal(repr(amount)) * Decimal(repr(after.marks[symbol])) * Decimal(repr(float(rate)))
                   for symbol, amount in after.amounts_base.items()
                   for _, rate in market.funding_rates(symbol, PAPER_NOW_MS + 1, PAPER_NOW_MS + MS_PER_DAY + 1))
    assert len(market.funding_rates("BTC/USDT:USDT", PAPER_NOW_MS + 1, PAPER_NOW_MS + MS_PER_DAY + 1)) == 3
    cash = {p.updated_ms: Decimal(p.paper["cash_quote"]) for p in (before, after) if p.paper}
    assert cash[after.updated_ms] == cash[before.updated_ms] - expected and expected != 0


def test_flows_in_the_exchange_history_shift_the_baselines(project: Project, telegram: FakeTelegram) -> None:
    with FakeBinance(spot_balances={"USDT": 1000}) as fake:  # the wall clock: its history and the runs agree
        project.write_config(config_text(telegram, fake=fake, extra=with_risk("[book]\nexchange_cashflows = true\n")))
        project.write_env(**TELEGRAM, **KEYS)
        write_targets(project, {"BTC/USDT": 0.3}, exchange="binance")
        assert_ok(project.run("rebalance"))
        before = positions(project)
        time.sleep(1.1)  # Binance reports a withdrawal's time to the second
        fake.move_capital("USDT", Decimal(-300), fee=Decimal(1))  # 301 leave the account
        fake.move_capital("USDT", Decimal(50))
        assert_ok(project.run("rebalance"))  # without them: a 25 % drawdown, flatten and halt
        after = positions(project)
    assert not (project.state / "halt.json").exists()
    assert after.high_water_mark_quote == pytest.approx(before.high_water_mark_quote - 251, abs=2)
    assert after.inception_equity_quote == pytest.approx(before.inception_equity_quote - 251)
