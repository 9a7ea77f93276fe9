"""Issue 9 item 6: a held position in a symbol the exchange no longer prices (delisted: unknown to its markets, no
ticker) is valued at its last stored close, alerted, never ordered, and the healthy symbols trade. Before: the
whole rebalance failed (fetch_tickers: BadSymbol), every day, exits included."""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal
from subprocess import CompletedProcess

import pandas as pd

from lib.core.state import FlaggedHolding, Positions, Targets
from lib.core.storage import read_json, write_json_atomic, write_parquet_atomic
from lib.core.symbols import to_slug
from lib.core.timeframes import MS_PER_DAY, MS_PER_HOUR
from lib.data.ohlcv import OHLCV_COLUMNS
from tests.fakes.exchange_server import FakeBinance
from tests.fakes.telegram_server import FakeTelegram
from tests.integration.conftest import Project
from tests.integration.test_rebalance import (
    PAPER_AS_OF_MS,
    PAPER_NOW_MS,
    TELEGRAM,
    assert_ok,
    config_text,
    journal,
    paper_run,
    with_risk,
)

DEAD = "LUNA/USDT"  # not listed by the fake exchange
DEAD_CLOSE = 0.5


def run_with_dead_holding(project: Project, fake: FakeBinance, telegram: FakeTelegram) -> CompletedProcess[str]:
    """A paper account that holds 100 LUNA (configured, delisted since; its last stored close 0.5) rebalanced once."""
    config = config_text(telegram, fake=fake, mode="paper", extra=with_risk())
    project.write_config(config.replace('"SOL/USDT"]', f'"SOL/USDT", "{DEAD}"]'))  # configured, delisted since
    project.write_env(**TELEGRAM)
    targets = Targets(as_of_ms=PAPER_AS_OF_MS, created_ms=PAPER_AS_OF_MS + 1, strategy="spot_long_only",
                      exchange="binance", market_type="spot", timeframe="1d", weights={"BTC/USDT": 0.2})
    write_json_atomic(project.state / "targets.json", targets.to_dict())
    assert_ok(paper_run(project))  # opens the paper account
    book = read_json(project.state / "positions.json")  # the account also holds 100 LUNA (bought long ago)
    book["paper"]["amounts_base"][DEAD] = "100"
    write_json_atomic(project.state / "positions.json", book)
    candles = pd.DataFrame({"timestamp": [PAPER_AS_OF_MS - MS_PER_DAY], "open": [DEAD_CLOSE], "high": [DEAD_CLOSE],
                            "low": [DEAD_CLOSE], "close": [DEAD_CLOSE], "volume": [1.0]})[list(OHLCV_COLUMNS)]
    write_parquet_atomic(project.data / "ohlcv" / "binance" / "1d" / f"{to_slug(DEAD)}.parquet", candles)
    held = replace(targets, weights={"BTC/USDT": 0.2, "ETH/USDT": 0.2}, hold={DEAD: "stale"})  # no fresh bar
    write_json_atomic(project.state / "targets.json", held.to_dict())
    return paper_run(project)


def test_a_held_dead_symbol_is_valued_at_its_last_close_and_the_rest_trades(project: Project) -> None:
    with FakeBinance(now_ms=PAPER_NOW_MS) as fake, FakeTelegram() as telegram:
        run = run_with_dead_holding(project, fake, telegram)
        assert_ok(run)
        sent = [e.symbol for e in journal(project) if e.event == "sent"]
        assert "ETH/USDT" in sent and DEAD not in sent  # the healthy symbols trade, the dead one never
        after = Positions.from_dict(read_json(project.state / "positions.json"))
        assert after.paper is not None and Decimal(after.paper["amounts_base"][DEAD]) == 100
        assert f"{DEAD} has no live price" in run.stderr  # flagged to a person: logged and alerted
        assert any(DEAD in text and "no live price" in text for text in telegram.texts)


def test_a_dead_holding_is_flagged_in_positions_json_and_by_doctor(project: Project) -> None:
    """Durable, not only a log line: positions.json names it (amount, the close it is valued at, since when), the
    next run keeps its first date, and doctor shows it as a WARN row that says what a person must do."""
    with FakeBinance(now_ms=PAPER_NOW_MS) as fake, FakeTelegram() as telegram:
        assert_ok(run_with_dead_holding(project, fake, telegram))
        first = Positions.from_dict(read_json(project.state / "positions.json"))
        assert set(first.unpriced) == {DEAD} and first.unpriced[DEAD] == FlaggedHolding(
            amount_base=100.0, last_close=DEAD_CLOSE, since_ms=PAPER_NOW_MS)
        assert first.amounts_base[DEAD] == 100.0 and first.marks[DEAD] == DEAD_CLOSE
        assert_ok(project.run("rebalance", "--as-of", str(PAPER_NOW_MS + MS_PER_HOUR)))  # a later run
        later = Positions.from_dict(read_json(project.state / "positions.json"))
        assert later.updated_ms == PAPER_NOW_MS + MS_PER_HOUR and later.unpriced[DEAD].since_ms == PAPER_NOW_MS
        doctor = project.run("doctor", "--json", "--as-of", str(PAPER_NOW_MS + MS_PER_HOUR))
    report = json.loads(doctor.stdout)
    [row] = [f for f in report["findings"] if f["check"] == "delisted holdings"]
    assert row["status"] == "warn" and f"{DEAD} 100 (last close 0.5" in row["detail"]
    assert "sell it by hand" in row["what_to_do"] and "book.ignored_assets" in row["what_to_do"]
    assert doctor.returncode == (1 if report["counts"]["fail"] else 0)  # a WARN alone never fails doctor
