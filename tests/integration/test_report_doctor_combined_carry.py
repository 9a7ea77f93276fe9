"""report and doctor of a combined book with the funding_carry sleeve, as subprocesses after two rebalance runs
through real ccxt against FakeBinance's spot (/api) and USD-M (/fapi) accounts (funding settled in between): report
sends ONE message with the whole book's VaR/CVaR, the directional part (holdings, P&L) and the carry part (funding
earned from the exchange's records, basis P&L gross and net of fees, margin rows), hand-checked against what the fake
holds and filled; report --dry-run sends and appends nothing; doctor shows the margin, wallet, USD-M data and hedge
rows, and fails on a broken hedge."""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lib.core.state import Positions, RunRecord
from lib.core.storage import append_jsonl, read_json, write_json_atomic, write_parquet_atomic
from lib.core.symbols import to_slug
from lib.core.timeframes import MS_PER_HOUR
from lib.data.ohlcv import OHLCV_COLUMNS
from tests.fakes.exchange_server import FakeBinance, RecordedOrder
from tests.fakes.telegram_server import FakeTelegram
from tests.integration.conftest import Project, carry_config_text
from tests.integration.test_compute_signals_combined_carry import AS_OF_NOW_MS, DAYS, SLEEVES, stored_setup
from tests.integration.test_doctor import write_fake_crontab
from tests.integration.test_rebalance_combined_carry import FAKE_NOW_MS, perp, setup, spot
from tests.unit.research.carry.synthetic import synthetic_frames

SPOT_VENUE, PERP_VENUE = "binance", "binanceusdm_swap"
FUTURES_FEE = Decimal("0.0005")  # the fake's USD-M taker fee (its spot fee is in each fill's commission)


@pytest.fixture
def fake_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``crontab`` on PATH that says the user has none (as tests/integration/test_doctor.py)."""
    directory = tmp_path_factory.mktemp("bin")
    write_fake_crontab(directory, 'echo "no crontab for tester" >&2; exit 1')
    return directory


@pytest.fixture
def fake() -> Iterator[FakeBinance]:
    with FakeBinance(now_ms=FAKE_NOW_MS, spot_balances={"USDT": 1000}, futures_wallet_quote=0) as server:
        server.ticker_clock = "wall"
        yield server


def write_candles(project: Project, fake: FakeBinance) -> None:
    """Hourly candles of every leg up to the last closed wall-clock hour, a 60-day daily random walk ending at the
    fake's price (so the report marks the book where the rebalance did, and VaR has returns)."""
    wall_ms = int(time.time() * 1000)
    last = wall_ms - wall_ms % MS_PER_HOUR - MS_PER_HOUR
    stamps = np.arange(last - 60 * 24 * MS_PER_HOUR + MS_PER_HOUR, last + 1, MS_PER_HOUR, dtype="int64")
    rng = np.random.default_rng(7)
    walk = rng.normal(0.0, 0.003, len(stamps)).cumsum()
    for venue, symbols in ((SPOT_VENUE, ["BTC/USDT", "ETH/USDT", "BNB/USDT"]),
                           (PERP_VENUE, ["BTC/USDT:USDT", "ETH/USDT:USDT"])):
        for symbol in symbols:
            basis = rng.normal(0.0, 0.001, len(stamps)) if venue == PERP_VENUE else np.zeros(len(stamps))
            close = float(fake.last_price(symbol)) * np.exp(walk - walk[-1] + basis - basis[-1])
            frame = pd.DataFrame({"timestamp": stamps, "open": close, "high": close, "low": close, "close": close,
                                  "volume": 1.0})[list(OHLCV_COLUMNS)]
            write_parquet_atomic(project.data / "ohlcv" / venue / "1h" / f"{to_slug(symbol)}.parquet", frame)


def write_runs(project: Project) -> None:
    """fetch_prices and compute_signals succeeded just now (rebalance records its own runs)."""
    now = int(time.time() * 1000)
    for script in ("fetch_prices", "compute_signals"):
        for event, status in (("start", "running"), ("finish", "ok")):
            record = RunRecord(script=script, run_id=f"{script}-1", event=event,  # type: ignore[arg-type]
                               now_ms=now, wall_ms=now, host="test", status=status,
                               exit_code=0 if event == "finish" else None)
            append_jsonl(project.state / "runs.jsonl", record.to_dict())


def fills(fake: FakeBinance, coin: str) -> list[tuple[str, Decimal, Decimal, Decimal]]:
    """(market, signed amount, price, fee in quote) of every order the fake filled for ``coin``."""
    out = []
    for order in fake.orders:
        if not order.accepted or order.params["symbol"] != f"{coin}USDT" or order.order is None:
            continue
        out.append(fill_of(order))
    return out


def fill_of(order: RecordedOrder) -> tuple[str, Decimal, Decimal, Decimal]:
    assert order.order is not None
    sign = Decimal(1) if order.params["side"] == "BUY" else Decimal(-1)
    if order.market == "spot":
        (trade,) = order.order["_fills"]
        return "spot", sign * Decimal(trade["qty"]), Decimal(trade["price"]), Decimal(trade["commission"])
    quote = Decimal(order.order["cumQuote"])
    return "futures", sign * Decimal(order.order["cumQty"]), Decimal(order.order["avgPrice"]), quote * FUTURES_FEE


def pnl(trades: list[tuple[str, Decimal, Decimal, Decimal]], market: str, held: Decimal, mark: float) -> float:
    """A leg's trading P&L: its fills' cash flows (buy -, sell +) + what it holds at its mark."""
    flows = sum((-amount * price for m, amount, price, _ in trades if m == market), Decimal(0))
    return float(flows) + float(held) * mark


def fees(trades: list[tuple[str, Decimal, Decimal, Decimal]], market: str) -> float:
    return float(sum((fee for m, _, _, fee in trades if m == market), Decimal(0)))


def line(text: str, start: str) -> str:
    return next(x for x in text.splitlines() if x.startswith(start))


def traded_and_settled(project: Project, telegram: FakeTelegram, fake: FakeBinance) -> Positions:
    """Two rebalance runs with 16 h in between (two settlements on both shorts, prices moved); candles, run records."""
    setup(project, telegram, fake)
    first = project.run("rebalance")
    assert first.returncode == 0, first.stderr[-3000:]
    fake.advance_ms(16 * MS_PER_HOUR)
    fake.settle_funding()
    assert len(fake.funding_income) == 4
    second = project.run("rebalance")
    assert second.returncode == 0, second.stderr[-3000:]
    write_candles(project, fake)
    write_runs(project)
    return Positions.from_dict(read_json(project.state / "positions.json"))


def test_report_shows_each_part_from_what_the_exchange_filled_and_paid(project: Project, telegram: FakeTelegram,
                                                                      fake: FakeBinance) -> None:
    positions = traded_and_settled(project, telegram, fake)
    marks = positions.marks
    assert telegram.messages == []
    dry = project.run("report", "--dry-run")
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert telegram.messages == [] and not (project.state / "equity.csv").exists()  # nothing sent, no row

    result = project.run("report")
    assert result.returncode == 0, result.stderr[-3000:]
    sent = telegram.wait_for_messages(1)
    time.sleep(0.5)
    # one report: the chart with the summary as its caption, or (too long for a caption) followed by the whole text
    assert [m.method for m in sent][:1] == ["sendPhoto"] and len(telegram.messages) <= 2
    text = telegram.texts[-1]
    block = [x for x in text.splitlines() if x.startswith(("1-day", "  ", "directional", "carry"))]
    assert block == [x for x in dry.stdout.splitlines() if x.startswith(("1-day", "  ", "directional", "carry"))]
    assert len((project.state / "equity.csv").read_text().splitlines()) == 2  # header + one row
    # the candles end at the fake's prices = the rebalance marks: the report's equity is the rebalance's book
    assert f"equity {positions.equity_quote:,.2f} USDT" in text

    # funding: the exchange's FUNDING_FEE records, per coin and in all
    funding: dict[str, Decimal] = defaultdict(Decimal)
    for record in fake.funding_income:
        funding[str(record["symbol"]).removesuffix("USDT")] += Decimal(record["income"])
    carry = line(text, "carry part (at the marks of the last rebalance)")
    assert f"funding earned {sum(funding.values()):+.4f} USDT" in carry

    # ETH: carry only. Spot leg and perp leg from the fake's fills; the fake fills both venues at one price: basis 0
    eth = fills(fake, "ETH")
    eth_spot = pnl(eth, "spot", spot(fake, "ETH"), marks["ETH/USDT"])
    eth_perp = pnl(eth, "futures", perp(fake, "ETH"), marks["ETH/USDT:USDT"])
    eth_fees = fees(eth, "spot") + fees(eth, "futures")
    assert line(text, "  ETH/USDT: basis P&L") == (
        f"  ETH/USDT: basis P&L {eth_spot + eth_perp:+.2f} gross / {eth_spot + eth_perp - eth_fees:+.2f} net of fees "
        f"{eth_fees:.2f} (spot leg {eth_spot:+.2f} fee {fees(eth, 'spot'):.2f}, perp leg {eth_perp:+.2f} fee "
        f"{fees(eth, 'futures'):.2f}); funding earned {funding['ETH']:+.4f}; carry net "
        f"{eth_spot + eth_perp - eth_fees + float(funding['ETH']):+.2f} USDT; holds {spot(fake, 'ETH'):g} / "
        f"{perp(fake, 'ETH'):g}")
    assert abs(eth_spot + eth_perp) < 1e-6 and eth_spot != 0

    # BNB: directional only (no perp): all its spot P&L and fees are the directional part's
    bnb = fills(fake, "BNB")
    bnb_pnl, bnb_fee = pnl(bnb, "spot", spot(fake, "BNB"), marks["BNB/USDT"]), fees(bnb, "spot")
    assert line(text, "  BNB/USDT: holds") == (
        f"  BNB/USDT: holds {spot(fake, 'BNB'):g} = {float(spot(fake, 'BNB')) * marks['BNB/USDT']:.2f} USDT; P&L "
        f"{bnb_pnl:+.2f} gross / {bnb_pnl - bnb_fee:+.2f} net of fees {bnb_fee:.2f} USDT")

    # BTC: both parts. The carry leg holds the short's amount, the directional part the spot beyond it; with the
    # basis at 0 on this fake the carry spot leg's P&L is minus the perp's, so the directional P&L is the coin's
    btc = fills(fake, "BTC")
    short = -perp(fake, "BTC")
    directional = spot(fake, "BTC") - short
    btc_pnl = (pnl(btc, "spot", spot(fake, "BTC"), marks["BTC/USDT"])
               + pnl(btc, "futures", perp(fake, "BTC"), marks["BTC/USDT:USDT"]))
    btc_line = line(text, "  BTC/USDT: holds")
    assert btc_line.startswith(f"  BTC/USDT: holds {directional:g} = "
                               f"{float(directional) * marks['BTC/USDT']:.2f} USDT; P&L {btc_pnl:+.2f} gross / ")
    assert line(text, "  BTC/USDT: basis P&L").endswith(f"holds {short:g} / {-short:g}")
    assert f"funding earned {funding['BTC']:+.4f}; carry net" in line(text, "  BTC/USDT: basis P&L")
    header = line(text, "directional part (at the marks of the last rebalance)")
    value = float(directional) * marks["BTC/USDT"] + float(spot(fake, "BNB")) * marks["BNB/USDT"]
    assert f"holds {value:.2f} USDT ({value / positions.equity_quote:.1%} of equity)" in header
    assert f"futures wallet {positions.wallets['futures']:.2f} USDT" in carry

    # VaR/CVaR of the whole book, each part, and each short's margin on the futures wallet: numbers, not n/a
    for name in ("book (both parts, both venues, held)", "directional part (held)",
                 "carry part (held, both legs: the basis)"):
        assert f"  {name} 95%: hist " in text and f"  {name} 99%: hist " in text, name
    for coin in ("BTC", "ETH"):
        assert "margin ratio" in line(text, f"  {coin}/USDT:USDT short")
    assert "carry sleeve: n/a" not in text and "n/a" not in carry
    assert "(held, both legs: the basis) 99%: hist 0.00%/0.00%" not in text  # the candles' basis moves a little


def doctor_rows(project: Project, bin_dir: Path, *args: str) -> tuple[int, list[dict[str, str]]]:
    result = project.run("doctor", "--json", *args, env={"PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"})
    return result.returncode, json.loads(result.stdout)["findings"]


def test_doctor_shows_margin_and_hedges_and_fails_on_a_broken_hedge(project: Project, telegram: FakeTelegram,
                                                                    fake: FakeBinance, fake_bin: Path) -> None:
    traded_and_settled(project, telegram, fake)
    code, rows = doctor_rows(project, fake_bin)
    by_check: dict[str, dict[str, str]] = defaultdict(dict)
    for row in rows:
        by_check[row["check"]][row["detail"].split(" ")[0].rstrip(":")] = row["status"]
    assert by_check["perp margin"] == {"BTC/USDT:USDT": "ok", "ETH/USDT:USDT": "ok"}
    assert by_check["carry hedge"] == {"BTC/USDT": "ok", "ETH/USDT": "ok"}
    assert set(by_check["carry perp data"]) == {"BTC/USDT:USDT", "ETH/USDT:USDT"}
    assert set(by_check["carry perp data"].values()) == {"ok"} and list(by_check["carry wallets"].values()) == ["ok"]
    assert code == 0, [r for r in rows if r["status"] == "fail"]

    # one BTC lot (the larger of its spot and perp markets' amount steps, read over ccxt from the fake's markets) is
    # worth more than carry.max_unhedged_quote: half a lot less spot in positions.json cannot be traded away and
    # counts as covered; a lot and a half less is a real gap
    lot = max(fake.rules("BTC/USDT").amount_step, fake.rules("BTC/USDT:USDT").amount_step)
    positions = Positions.from_dict(read_json(project.state / "positions.json"))
    assert lot == Decimal("0.001") and float(lot) / 2 * positions.marks["BTC/USDT"] > 25
    for cut, status in ((lot / 2, "ok"), (lot * 3 / 2, "fail")):
        btc = float(Decimal(repr(positions.amounts_base["BTC/USDT"])) - cut)
        amounts = {**positions.amounts_base, "BTC/USDT": btc}
        write_json_atomic(project.state / "positions.json", replace(positions, amounts_base=amounts).to_dict())
        _, rows = doctor_rows(project, fake_bin)
        row = next(r for r in rows if r["check"] == "carry hedge" and r["detail"].startswith("BTC/USDT:"))
        assert row["status"] == status, row
        within = "within one lot (0.001 = the larger amount step of BTC/USDT and BTC/USDT:USDT)" in row["detail"]
        assert within == (status == "ok") and "per positions.json" in row["detail"], row
    write_json_atomic(project.state / "positions.json", positions.to_dict())

    # a person sells BTC's hedge on spot; the next rebalance cannot buy it back (every order refused): it fails,
    # and positions.json says what the exchange holds
    held = spot(fake, "BTC") + perp(fake, "BTC") / 2  # half the short left uncovered
    price = fake.last_price("BTC/USDT")
    fake.spot_balances["USDT"] += (fake.spot_balances["BTC"] - held) * price
    fake.spot_balances["BTC"] = held
    fake.reject_next_order(times=None)
    fake.reject_next_order(futures=True, times=None)
    broken = project.run("rebalance")
    assert broken.returncode != 0
    code, rows = doctor_rows(project, fake_bin)
    hedge = [r for r in rows if r["check"] == "carry hedge"]
    assert [(r["detail"].split(":")[0], r["status"]) for r in hedge] == [("BTC/USDT", "fail"), ("ETH/USDT", "ok")]
    # the same gap the failed run measured (its directional amount floored to the lot step: a hair less)
    assert "of the short uncovered > carry.max_unhedged_quote 25" in hedge[0]["detail"]
    assert code == 1 and {r["check"] for r in rows if r["status"] == "fail"} == {"carry hedge", "last rebalance"}


def test_after_compute_signals_and_a_paper_rebalance_report_and_doctor_see_both_parts(
        project: Project, telegram: FakeTelegram, fake_bin: Path) -> None:
    """The chain in paper mode: stored synthetic spot + perp candles (with a basis) and rich funding, so the carry
    sleeve holds pairs -> compute_signals -> rebalance (both paper wallets, prices from the fake serving the same
    candles) -> report and doctor."""
    stored_setup(project, telegram)
    spot_frames, _, _ = synthetic_frames(days=DAYS)
    candles = {(f"{coin}/USDT", "1h"): frame.to_numpy() for coin, frame in spot_frames.items()}
    with FakeBinance(now_ms=AS_OF_NOW_MS, candles=candles) as server:
        project.write_config(carry_config_text(
            {"id": "binance", "market_type": "spot", "mode": "paper", "rest_base_url": server.base_url,
             "enable_rate_limit": False, "retry_base_delay_ms": 1}, telegram.base_url,
            risk={"tail_risk_action": "off", "max_liquidation_prob_24h": 1.0, "max_order_notional_quote": 10_000},
            strategy={"name": "combined", "timeframe": "1h"}, extra=SLEEVES))
        for script in ("compute_signals", "rebalance"):
            result = project.run(script, "--as-of", str(AS_OF_NOW_MS))
            assert result.returncode == 0, f"{script}: {result.stderr[-3000:]}"
    for event, status in (("start", "running"), ("finish", "ok")):  # the candles were stored by hand: as fetched
        append_jsonl(project.state / "runs.jsonl", RunRecord(
            script="fetch_prices", run_id="fetch-1", event=event, now_ms=AS_OF_NOW_MS,  # type: ignore[arg-type]
            wall_ms=AS_OF_NOW_MS, host="test", status=status, exit_code=0 if event == "finish" else None).to_dict())
    positions = Positions.from_dict(read_json(project.state / "positions.json"))
    shorts = {s: -a for s, a in positions.amounts_base.items() if s.endswith(":USDT") and a < 0}
    assert shorts, positions.amounts_base  # the synthetic funding is rich at the end: at least one pair is held
    report = project.run("report", "--as-of", str(AS_OF_NOW_MS))
    assert report.returncode == 0, report.stderr[-3000:]
    text = telegram.wait_for_messages(1) and telegram.texts[-1]
    assert "  book (both parts, both venues, held) 99%: hist " in text
    assert line(text, "carry part").startswith("carry part (at the marks of the last rebalance): spot wallet "
                                                f"{positions.wallets['spot']:.2f} / futures wallet ")
    for perp_symbol, short in shorts.items():
        coin = perp_symbol.split(":")[0]
        assert line(text, f"  {coin}: basis P&L").endswith(f"holds {short:g} / {-short:g}")
        directional = positions.amounts_base.get(coin, 0.0) - short
        if directional > 1e-12:
            assert line(text, f"  {coin}: holds").startswith(f"  {coin}: holds {directional:g} = ")
        assert "margin ratio" in line(text, f"  {perp_symbol} short")
    code, rows = doctor_rows(project, fake_bin, "--as-of", str(AS_OF_NOW_MS))
    hedges = {r["detail"].split(":")[0]: r["status"] for r in rows if r["check"] == "carry hedge"}
    assert hedges == {s.split(":")[0]: "ok" for s in shorts}
    assert all(r["status"] == "ok" for r in rows if r["check"] in ("perp margin", "carry perp data")), rows
