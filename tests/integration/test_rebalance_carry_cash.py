"""rebalance of a standalone ``funding_carry`` book whose spot legs need more cash than the spot wallet has (README,
the funding-carry book, "Cash"), as a subprocess through real ccxt against FakeBinance: the futures wallet's excess
above its need comes back first (the hysteresis keeps it there only when no spot leg needs it), so no spot leg is
refused, no perp leg is unwound and (here) nothing is scaled; one transfer, idempotent across a lost reply.

Book (10,000 USDT: 6,000 on spot, 4,000 on the futures wallet, nothing held; targets BTC 0.35, ETH 0.30, the carry
sleeve's 0.65 of five coins x 0.13 in practice). At the fake's prices (BTC 77,827.27, ETH 7,113.24) the legs floor
to 0.044 BTC (3,424.40) and 0.42 ETH (2,987.56): 6,411.96 of spot buys, with the spot book's reserve (0.1 % taker +
25 bps slippage allowance) 6,411.96 x 1.0035 = 6,434.40 against 6,000: 434.40 short. The futures wallet needs 0.65
x 10,000 / 3 leverage x 1.5 buffer = 3,250 and holds 4,000, inside its hysteresis band (returned on its own only
beyond 1.5 x 3,250 = 4,875). Before this rule: no transfer; the first cash rule scaled each pair's growth by 6,000 /
6,434.40 = 0.9325 (0.041 BTC, 0.38 ETH, cash_short alerted) while 750 sat idle on the futures wallet; before that,
the exchange refused the ETH spot buy and the ETH short was bought back. Now: 434.40 comes back (futures 3,565.60 >=
3,250), and the legs are the targets' own: 0.044 BTC, then ETH on the equity after BTC's fees, 0.42 ETH."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal

import pytest

from lib.execution.carry_legs import transfer_id
from lib.execution.orders import client_order_id
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
    write_targets,
)

OVER = {"BTC/USDT": 0.35, "BTC/USDT:USDT": -0.35, "ETH/USDT": 0.30, "ETH/USDT:USDT": -0.30}


@pytest.fixture
def fake() -> Iterator[FakeBinance]:
    with carry_exchange(now_ms=FAKE_NOW_MS, spot_usdt=6_000, futures_quote=4_000) as server:
        yield server


def test_the_futures_wallets_idle_excess_pays_the_spot_legs_instead_of_scaling_them(
        project: Project, telegram: FakeTelegram, fake: FakeBinance) -> None:
    setup(project, telegram, fake, risk={"max_order_notional_quote": 10_000})
    write_targets(project, OVER)
    dry = project.run("rebalance", "--dry-run")
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "transfer: 434.40 futures -> spot" in dry.stdout and "cash_short" not in dry.stdout, dry.stdout[-3000:]
    assert fake.orders == [] and fake.wallet_transfers == [] and not (project.state / "orders.jsonl").exists()
    result = project.run("rebalance")
    assert result.returncode == 0, result.stderr[-3000:]
    assert all(o.accepted for o in fake.orders), [o.params for o in fake.orders if not o.accepted]
    assert [o.market for o in fake.orders] == ["futures", "spot", "futures", "spot"]  # no fix, no unwind
    assert legs(fake) == {"BTC/USDT": Decimal("0.044"), "BTC/USDT:USDT": Decimal("-0.044"),
                          "ETH/USDT": Decimal("0.42"), "ETH/USDT:USDT": Decimal("-0.42")}
    assert_hedged_or_flat(fake)
    events = journal(project)
    rebalance_id = events[0].rebalance_id or ""
    [moved] = [e for e in events if e.event == "transferred"]
    assert moved.transfer_id == transfer_id(rebalance_id, "futures", "spot", Decimal("434.40"))
    assert [(t["type"], Decimal(str(t["amount"]))) for t in fake.wallet_transfers] == [("UMFUTURE_MAIN",
                                                                                         Decimal("434.40"))]
    assert fake.spot_balances["USDT"] >= 0
    assert not [e for e in events if e.event == "leg_mismatch" or e.reason == "cash_short"]
    assert project.run("rebalance").returncode == 0  # a re-run: nothing sent again, nothing more comes back
    assert len(fake.wallet_transfers) == 1 and len(fake.orders) == 4
    assert_no_duplicates(project, fake)
    time.sleep(0.5)
    assert telegram.messages == []


def test_a_return_whose_reply_is_lost_is_found_not_sent_again(
        project: Project, telegram: FakeTelegram, fake: FakeBinance) -> None:
    """The same book; the 434.40 return is executed but its reply times out: the exchange's history finds it (one
    transfer, said once in the alert), the legs go as targeted, and a re-run sends no second return."""
    setup(project, telegram, fake, timeout_ms=3000, risk={"max_order_notional_quote": 10_000})
    write_targets(project, OVER)
    fake.lose_next_transfer_response(how="timeout", seconds=6.0)
    result = project.run("rebalance")
    assert result.returncode == 0, result.stderr[-3000:]
    assert [(t["type"], Decimal(str(t["amount"]))) for t in fake.wallet_transfers] == [("UMFUTURE_MAIN",
                                                                                         Decimal("434.40"))]
    assert legs(fake)["ETH/USDT"] == Decimal("0.42") and all(o.accepted for o in fake.orders)
    assert_hedged_or_flat(fake)
    assert project.run("rebalance").returncode == 0
    assert len(fake.wallet_transfers) == 1
    assert_no_duplicates(project, fake)
    assert len(telegram.wait_for_messages(1)) == 1 and "not sent again" in telegram.texts[0]


FITS = {"BTC/USDT": 0.35, "BTC/USDT:USDT": -0.35, "ETH/USDT": 0.25, "ETH/USDT:USDT": -0.25}


@pytest.fixture
def roomy() -> Iterator[FakeBinance]:
    with carry_exchange(now_ms=FAKE_NOW_MS, spot_usdt=10_000) as server:
        yield server


def test_a_carry_book_within_its_cash_sends_the_orders_and_transfer_it_always_did(
        project: Project, telegram: FakeTelegram, roomy: FakeBinance) -> None:
    """10,000 on spot, nothing elsewhere, BTC 0.35 and ETH 0.25: spot 6,000 x 1.0035 + collateral 6,000 / 3 x 1.5 =
    3,000 is 9,021 <= 10,000. The legs are the targets' own, as before this rule: BTC 3,500 / 77,827.27 = 0.04497 ->
    0.044; ETH, on the equity after BTC's fees (3.42 + 1.71), 2,498.71 / 7,113.24 = 0.3513 -> 0.35; the transfer
    3,000.00; client and transfer ids from (rebalance id, symbol, side, amount) alone; nothing journaled, no alert."""
    setup(project, telegram, roomy, risk={"max_order_notional_quote": 10_000})
    write_targets(project, FITS)
    dry = project.run("rebalance", "--dry-run")
    assert dry.returncode == 0 and "cash_short" not in dry.stdout, dry.stdout[-3000:] + dry.stderr[-3000:]
    result = project.run("rebalance")
    assert result.returncode == 0, result.stderr[-3000:]
    events = journal(project)
    rebalance_id = events[0].rebalance_id or ""
    expected = [(symbol, side, amount) for coin, amount in (("BTC", Decimal("0.044")), ("ETH", Decimal("0.35")))
                for symbol, side in ((f"{coin}/USDT:USDT", "sell"), (f"{coin}/USDT", "buy"))]
    assert [o.client_order_id for o in roomy.orders] == [
        client_order_id(rebalance_id, symbol, side, amount, prefix="cb", reduce_only=False)  # type: ignore[arg-type]
        for symbol, side, amount in expected]
    assert all(o.accepted for o in roomy.orders) and legs(roomy) == {
        "BTC/USDT": Decimal("0.044"), "BTC/USDT:USDT": Decimal("-0.044"), "ETH/USDT": Decimal("0.35"),
        "ETH/USDT:USDT": Decimal("-0.35")}
    [moved] = [e for e in events if e.event == "transferred"]
    assert moved.transfer_id == transfer_id(rebalance_id, "spot", "futures", Decimal("3000.00"))
    assert [Decimal(str(t["amount"])) for t in roomy.wallet_transfers] == [Decimal(3000)]
    assert not [e for e in events if e.reason == "cash_short"] and telegram.messages == []


@pytest.fixture
def banded() -> Iterator[FakeBinance]:
    with carry_exchange(now_ms=FAKE_NOW_MS, spot_usdt=7_000, futures_quote=4_000) as server:
        yield server


def test_a_futures_wallet_inside_its_band_with_no_shortfall_keeps_its_excess_as_before(
        project: Project, telegram: FakeTelegram, banded: FakeBinance) -> None:
    """7,000 on spot, 4,000 on futures, BTC 0.35 and ETH 0.25: the need 0.6 x 11,000 / 3 x 1.5 = 3,300, 4,000 inside
    the band (returned only beyond 4,950); spot buys 0.049 BTC (3,813.54) + 0.38 ETH (2,703.03) = 6,516.57 x 1.0035
    = 6,539.38 <= 7,000: nothing is short, so nothing moves (the hysteresis, as before this rule) and the orders are
    the targets' own with the same client ids (ETH on the equity after BTC's fees: 0.25 x ~10,994 / 7,113.24 = 0.386
    -> 0.38)."""
    setup(project, telegram, banded, risk={"max_order_notional_quote": 10_000})
    write_targets(project, FITS)
    dry = project.run("rebalance", "--dry-run")
    assert dry.returncode == 0 and "transfer: none" in dry.stdout and "cash_short" not in dry.stdout, dry.stdout
    result = project.run("rebalance")
    assert result.returncode == 0, result.stderr[-3000:]
    events = journal(project)
    rebalance_id = events[0].rebalance_id or ""
    expected = [(symbol, side, amount) for coin, amount in (("BTC", Decimal("0.049")), ("ETH", Decimal("0.38")))
                for symbol, side in ((f"{coin}/USDT:USDT", "sell"), (f"{coin}/USDT", "buy"))]
    assert [o.client_order_id for o in banded.orders] == [
        client_order_id(rebalance_id, symbol, side, amount, prefix="cb", reduce_only=False)  # type: ignore[arg-type]
        for symbol, side, amount in expected]
    assert all(o.accepted for o in banded.orders) and banded.wallet_transfers == []
    assert not [e for e in events if e.event in ("transfer_sent", "transferred") or e.reason == "cash_short"]
    assert telegram.messages == []
