"""Issue 9 item 6: a held position in a symbol the exchange no longer prices (delisted: unknown to its markets, no
ticker) is valued at its last stored close, alerted, never ordered, and the healthy symbols trade. Before: the
whole rebalance failed (fetch_tickers: BadSymbol), every day, exits included."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pandas as pd

from lib.core.state import Positions, Targets
from lib.core.storage import read_json, write_json_atomic, write_parquet_atomic
from lib.core.symbols import to_slug
from lib.core.timeframes import MS_PER_DAY
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


def test_a_held_dead_symbol_is_valued_at_its_last_close_and_the_rest_trades(project: Project) -> None:
    with FakeBinance(now_ms=PAPER_NOW_MS) as fake, FakeTelegram() as telegram:
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
        run = paper_run(project)
        assert_ok(run)
        sent = [e.symbol for e in journal(project) if e.event == "sent"]
        assert "ETH/USDT" in sent and DEAD not in sent  # the healthy symbols trade, the dead one never
        after = Positions.from_dict(read_json(project.state / "positions.json"))
        assert after.paper is not None and Decimal(after.paper["amounts_base"][DEAD]) == 100
        assert f"{DEAD} has no live price" in run.stderr  # flagged to a person: logged and alerted
        assert any(DEAD in text and "no live price" in text for text in telegram.texts)
