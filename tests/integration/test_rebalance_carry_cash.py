"""rebalance of a standalone ``funding_carry`` book whose spot legs need more cash than the spot wallet has (README,
the funding-carry book, "Cash"), as a subprocess through real ccxt against FakeBinance: every pair's new exposure is
scaled by one factor (both legs alike) to the spot cash, so no spot leg is refused and no perp leg is unwound
(journaled ``cash_short``, one alert); the dry run shows the scaling and writes nothing.

Book (10,000 USDT: 6,000 on spot, 4,000 on the futures wallet, nothing held; targets BTC 0.35, ETH 0.30, the carry
sleeve's 0.65 of five coins x 0.13 in practice). At the fake's prices (BTC 77,827.27, ETH 7,113.24) the legs floor
to 0.044 BTC (3,424.40) and 0.42 ETH (2,987.56): 6,411.96 of spot buys. Their collateral, 6,411.96 / 3 leverage x
1.5 buffer = 3,205.98, is within the futures wallet's 4,000 and its hysteresis (returned only beyond 1.5 x the
need): no transfer either way, so the 4,000 stays where the spot legs cannot use it. Before this rule: BTC's legs
filled, the ETH perp was shorted, the ETH spot buy refused (insufficient balance: 6,000 - 3,427.82 < 2,990.55),
refused again on retry, and the ETH short bought back (two futures taker fees, 2.99 USDT, for nothing; one alert).
Now: the spot buys with the spot book's reserve (0.1 % taker + 25 bps slippage allowance) are 6,411.96 x 1.0035 =
6,434.40 against 6,000: each pair's growth is scaled by 6,000 / 6,434.40 = 0.9325, both legs to 0.044 x 0.9325 =
0.04103 -> 0.041 BTC and 0.42 x 0.9325 = 0.3916 -> 0.39 ETH (floored to the common lot: 0.001 / 0.01), as the dry
run shows. The real run sizes each pair on the book's equity when it trades it, as every carry run does: after
BTC's two fees (3.19 + 1.60) ETH's weight 0.39 x 7,113.24 / 10,000 = 0.27742 of 9,995.21 is 0.3898 -> 0.38 ETH."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal

import pytest

from lib.core.state import Targets
from lib.core.storage import write_json_atomic
from lib.core.timeframes import MS_PER_HOUR
from lib.execution.carry_legs import transfer_id
from lib.execution.orders import client_order_id
from tests.fakes.exchange_server import FakeBinance
from tests.fakes.telegram_server import FakeTelegram
from tests.integration.conftest import Project
from tests.integration.test_rebalance_carry import (
    FAKE_NOW_MS,
    assert_hedged_or_flat,
    assert_no_duplicates,
    journal,
    legs,
    setup,
)

OVER = {"BTC/USDT": 0.35, "BTC/USDT:USDT": -0.35, "ETH/USDT": 0.30, "ETH/USDT:USDT": -0.30}


@pytest.fixture
def fake() -> Iterator[FakeBinance]:
    with FakeBinance(now_ms=FAKE_NOW_MS, spot_balances={"USDT": 6_000}, futures_wallet_quote=4_000) as server:
        server.ticker_clock = "wall"
        yield server


def write_targets(project: Project, weights: dict[str, float]) -> None:
    wall_ms = int(time.time() * 1000)
    as_of = wall_ms - wall_ms % MS_PER_HOUR - MS_PER_HOUR
    targets = Targets(as_of_ms=as_of, created_ms=as_of + MS_PER_HOUR, strategy="funding_carry", exchange="binance",
                      market_type="spot", timeframe="1h", weights=weights)
    write_json_atomic(project.state / "targets.json", targets.to_dict())


def test_an_over_committed_carry_book_scales_both_legs_of_every_pair_to_the_spot_cash(
        project: Project, telegram: FakeTelegram, fake: FakeBinance) -> None:
    setup(project, telegram, fake, risk={"max_order_notional_quote": 10_000})
    write_targets(project, OVER)
    dry = project.run("rebalance", "--dry-run")
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "cash_short" in dry.stdout and "scaled by 0.9325" in dry.stdout, dry.stdout[-3000:]
    assert fake.orders == [] and fake.wallet_transfers == [] and not (project.state / "orders.jsonl").exists()
    result = project.run("rebalance")
    assert result.returncode == 0, result.stderr[-3000:]
    assert all(o.accepted for o in fake.orders), [o.params for o in fake.orders if not o.accepted]
    assert [o.market for o in fake.orders] == ["futures", "spot", "futures", "spot"]  # no fix, no unwind
    assert fake.spot_balances["USDT"] >= 0 and fake.wallet_transfers == []
    assert_hedged_or_flat(fake)
    assert not [e for e in journal(project) if e.event == "leg_mismatch"]
    assert legs(fake) == {"BTC/USDT": Decimal("0.041"), "BTC/USDT:USDT": Decimal("-0.041"),
                          "ETH/USDT": Decimal("0.38"), "ETH/USDT:USDT": Decimal("-0.38")}
    cash = [e for e in journal(project) if e.event == "risk_rejected" and e.reason == "cash_short"]
    assert len(cash) == 1 and "short of 434.40" in (cash[0].detail or "") and "scaled by 0.9325" in cash[0].detail
    assert_no_duplicates(project, fake)
    texts = telegram.wait_for_messages(1)
    assert len(texts) == 1 and "cash_short" in telegram.texts[0]


FITS = {"BTC/USDT": 0.35, "BTC/USDT:USDT": -0.35, "ETH/USDT": 0.25, "ETH/USDT:USDT": -0.25}


@pytest.fixture
def roomy() -> Iterator[FakeBinance]:
    with FakeBinance(now_ms=FAKE_NOW_MS, spot_balances={"USDT": 10_000}, futures_wallet_quote=0) as server:
        server.ticker_clock = "wall"
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
