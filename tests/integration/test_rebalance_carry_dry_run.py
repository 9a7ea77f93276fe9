"""rebalance --dry-run of the funding-carry book as a subprocess, through real ccxt against FakeBinance's spot and
USD-M accounts: it shows everything the real run then does (the risk verdict with the hedged book's VaR/CVaR, the
liquidation guard's collateral transfer or its cut of a pair, the leg orders) and sends and writes nothing: no
order, no transfer, no leverage call, no alert, orders.jsonl and positions.json byte-unchanged."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from decimal import Decimal

import pytest

from tests.fakes.exchange_server import FakeBinance
from tests.fakes.telegram_server import FakeTelegram
from tests.integration.conftest import Project
from tests.integration.test_rebalance_carry import FAKE_NOW_MS, carry_exchange, legs, setup
from tests.integration.test_rebalance_carry_risk import PERP, risk_events, set_up_a_9pct_basis_day, write_hourly

CARRY = "[carry]\nleverage = 10\n"  # futures wallet target = 500 / 10 x 1.5 = 75: a thin margin


@pytest.fixture
def fake() -> Iterator[FakeBinance]:
    with carry_exchange(now_ms=FAKE_NOW_MS) as server:
        yield server


def state_bytes(project: Project) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(project.state.iterdir())
            if p.is_file() and p.name != "runs.jsonl"}


def posts(fake: FakeBinance) -> int:
    return sum(1 for r in fake.requests() if r.method == "POST")


def open_book_then_make_btc_wild(project: Project, telegram: FakeTelegram, fake: FakeBinance,
                                 risk: dict[str, object]) -> None:
    """A first run opens both pairs (guard off), then BTC's perp swings +-15 % a day: ~7 % P(24 h) > 0.5 %."""
    setup(project, telegram, fake, extra=CARRY, risk=risk)
    assert project.run("rebalance").returncode == 0
    write_hourly(project, PERP, "BTC/USDT:USDT", [0.15 if i % 2 else -0.15 for i in range(60)])
    write_hourly(project, PERP, "ETH/USDT:USDT", [0.01 if i % 2 else -0.01 for i in range(60)])
    setup(project, telegram, fake, extra=CARRY, risk={**risk, "max_liquidation_prob_24h": 0.005})


def test_a_dry_run_shows_the_guards_transfer_and_writes_and_sends_nothing(project: Project, telegram: FakeTelegram,
                                                                          fake: FakeBinance) -> None:
    open_book_then_make_btc_wild(project, telegram, fake, {})
    before, posted, orders = state_bytes(project), posts(fake), len(fake.orders)
    assert {"orders.jsonl", "positions.json"} <= set(before)
    dry = project.run("rebalance", "--dry-run")
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "guard would add collateral to BTC/USDT:USDT" in dry.stdout
    shown = re.search(r"transfer: ([0-9.]+) spot -> futures \((tr-[0-9a-f]+)\)", dry.stdout)
    assert shown is not None, dry.stdout
    assert "risk verdict: allowed" in dry.stdout and "guard would cut" not in dry.stdout
    assert dry.stdout.rstrip().endswith("dry run: nothing sent, nothing written")
    assert state_bytes(project) == before  # the journal and positions.json byte-unchanged, nothing new in state/
    assert posts(fake) == posted and len(fake.orders) == orders and len(fake.wallet_transfers) == 1
    time.sleep(0.5)
    assert telegram.messages == []

    real = project.run("rebalance")  # the real run sends what the dry run showed
    assert real.returncode == 0, real.stderr[-3000:]
    assert len(fake.wallet_transfers) == 2 and fake.wallet_transfers[1]["type"] == "MAIN_UMFUTURE"
    assert Decimal(fake.wallet_transfers[1]["amount"]) == Decimal(shown.group(1))
    assert risk_events(project) == [("liquidation_risk_collateral", "BTC/USDT:USDT")]


def test_a_dry_run_shows_the_guards_cut_of_both_legs_first(project: Project, telegram: FakeTelegram,
                                                          fake: FakeBinance) -> None:
    calm = {"max_drawdown_frac": 0.9, "daily_loss_limit_frac": 0.9}
    open_book_then_make_btc_wild(project, telegram, fake, calm)
    fake.spot_balances["USDT"] = Decimal(0)  # no free quote on spot: no collateral can be added
    before, posted = state_bytes(project), posts(fake)
    dry = project.run("rebalance", "--dry-run")
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "guard would cut BTC/USDT:USDT" in dry.stdout and "cut to 0.001 per leg" in dry.stdout
    assert "transfer: none" in dry.stdout
    lines = dry.stdout.splitlines()
    first_pair = next(i for i, line in enumerate(lines) if line.startswith(("BTC/USDT:", "ETH/USDT:")))
    assert lines[first_pair].startswith("BTC/USDT: weight") and "cut by the guard" in lines[first_pair]
    shown_ids = [line.split()[-1] for line in lines[first_pair + 1:first_pair + 3]]
    assert "BTC/USDT:USDT   buy" in lines[first_pair + 1] and "reduce-only" in lines[first_pair + 1]
    assert state_bytes(project) == before and posts(fake) == posted

    accepted = len([o for o in fake.orders if o.accepted])
    real = project.run("rebalance")
    assert real.returncode == 0, real.stderr[-3000:]
    sent = [o.params["newClientOrderId"] for o in fake.orders if o.accepted][accepted:]
    assert sent[:2] == shown_ids  # the same two orders, first, under the same client ids
    assert legs(fake)["BTC/USDT"] == Decimal("0.001")


def test_a_dry_run_shows_the_var_verdict_of_the_hedged_book(project: Project, telegram: FakeTelegram,
                                                            fake: FakeBinance) -> None:
    # spot flat, BTC's perp +30 % on the last day: the hedged book's worst day is 0.3 x 30 % = 9 % (99 % VaR = CVaR
    # = 9 % over 30 days) > the 3 % limit: scaled by 3 / 9, to 3 %
    set_up_a_9pct_basis_day(project, telegram, fake, action="scale")
    dry = project.run("rebalance", "--dry-run")
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "risk verdict: scaled/clipped" in dry.stdout
    assert "changed by tail_risk_scaled: 99 % 1-day VaR 9.00% / CVaR 9.00%" in dry.stdout
    assert "hedged book 99 % 1-day VaR 3.00% / CVaR 3.00% of equity (limits 3.00% / 5.00%, 30 days)" in dry.stdout
    assert fake.orders == [] and fake.wallet_transfers == [] and not (project.state / "orders.jsonl").exists()
    assert not (project.state / "positions.json").exists()


def test_a_dry_run_of_a_refused_book_shows_it_and_fails_like_the_real_run(project: Project, telegram: FakeTelegram,
                                                                         fake: FakeBinance) -> None:
    # the same 9 % VaR against a 3 % limit, but tail_risk_action = "refuse": the real run sends only what reduces
    # risk and fails; the dry run shows the refusal, sends and writes nothing, and exits non-zero like it
    set_up_a_9pct_basis_day(project, telegram, fake, action="refuse")
    dry = project.run("rebalance", "--dry-run")
    assert dry.returncode != 0 and "risk verdict: refused" in dry.stdout
    assert "dry run: the carry book would be refused" in dry.stderr
    assert fake.orders == [] and fake.wallet_transfers == [] and not (project.state / "orders.jsonl").exists()
    real = project.run("rebalance")
    assert real.returncode != 0 and "carry book refused" in real.stderr
