"""compute_signals as a subprocess: candles written by the real fetch_prices (simulated exchange), or real
Binance candles from ../shared/data, -> state/targets.json; stale or broken data fail closed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lib.core.state import Targets
from lib.core.timeframes import MS_PER_DAY
from lib.research.signal_params import SIGNAL_NAMES
from tests.fakes.telegram_server import FakeTelegram
from tests.integration.conftest import Project

SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT", "XRP/USDT", "ADA/USDT")
AS_OF = "2024-12-05T00:10:00Z"  # the 2024-12-04 daily candle has closed
AS_OF_3_DAYS_LATER = "2024-12-08T00:10:00Z"
LAST_CLOSED_MS = 1_733_270_400_000  # 2024-12-04T00:00Z
TOLERANCE = 1e-9


def config_text(*, market_type: str = "spot", exchange_id: str = "simulated", telegram_url: str = "http://127.0.0.1:9",
                symbols: tuple[str, ...] = SYMBOLS) -> str:
    strategy = "perp_market_neutral" if market_type == "swap" else "spot_long_only"
    symbol_list = ", ".join(f'"{symbol}"' for symbol in symbols)
    return f"""
[exchange]
id = "{exchange_id}"
market_type = "{market_type}"
[data]
symbols = [{symbol_list}]
timeframes = ["1d"]
backfill_start = "2023-11-01"
fetch_funding = false
[strategy]
name = "{strategy}"
timeframe = "1d"
[spot]
regime_filter = false  # so that the happy path holds something whatever the synthetic regime
[perp]
beta_neutral = true
[alerts]
telegram_base_url = "{telegram_url}"
"""


@pytest.fixture(scope="module", params=["spot", "swap"])
def fetched(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """Candles fetched once per market type by the real fetch_prices, to be copied into each project."""
    template = Project(tmp_path_factory.mktemp(f"fetched_{request.param}"))
    template.write_config(config_text(market_type=request.param))
    result = template.run("fetch_prices", "--as-of", AS_OF)
    assert result.returncode == 0, result.stderr
    return request.param, template.data


@pytest.fixture
def ready(project: Project, fetched: tuple[str, Path], telegram: FakeTelegram) -> Project:
    market_type, data = fetched
    project.write_config(config_text(market_type=market_type, telegram_url=telegram.base_url))
    project.write_env(COINBOT_TELEGRAM_BOT_TOKEN="123:test-token", COINBOT_TELEGRAM_CHAT_ID="42")
    shutil.copytree(data, project.data)
    return project


def read_targets(project: Project) -> Targets:
    return Targets.from_dict(json.loads((project.state / "targets.json").read_text()))


def assert_valid_weights(targets: Targets, market_type: str) -> None:
    weights = list(targets.weights.values())
    if market_type == "spot":
        assert all(weight >= 0 for weight in weights)
        assert sum(weights) <= 1 + TOLERANCE
        assert max(weights) <= 0.25 + TOLERANCE  # spot.max_asset_weight_frac default
    else:
        assert abs(sum(weights)) <= TOLERANCE
        assert sum(abs(weight) for weight in weights) <= 1.0 + TOLERANCE  # perp.max_gross_leverage default
        assert max(abs(weight) for weight in weights) <= 0.25 + TOLERANCE


def test_targets_are_written_with_weights_within_limits_and_a_breakdown(ready: Project, fetched):
    market_type = fetched[0]
    result = ready.run("compute_signals", "--as-of", AS_OF, "--print")
    assert result.returncode == 0, result.stderr
    targets = read_targets(ready)
    expected_symbols = {f"{symbol}:USDT" if market_type == "swap" else symbol for symbol in SYMBOLS}
    assert set(targets.weights) == set(targets.breakdown) == expected_symbols
    assert targets.as_of_ms == LAST_CLOSED_MS and targets.timeframe == "1d"
    assert (targets.exchange, targets.market_type) == ("simulated", market_type)
    assert targets.strategy == ("perp_market_neutral" if market_type == "swap" else "spot_long_only")
    assert len(targets.data_fingerprint) == 64 and targets.notes == ()
    assert_valid_weights(targets, market_type)
    assert any(weight != 0 for weight in targets.weights.values())
    for explanation in targets.breakdown.values():
        assert explanation["eligible"] is True and explanation["score"] is not None
        assert set(explanation["contributions"]) == set(SIGNAL_NAMES) == set(explanation["signals"])
        assert explanation["volatility_annual_frac"] > 0
        assert (explanation["beta"] is not None) == (market_type == "swap")
    assert "targets" in result.stdout and "weight" in result.stdout  # the --print table
    assert "symbols held" in result.stderr
    assert ready.runs()[-1]["status"] == "ok"


@pytest.mark.parametrize("name", ["trend_core", "combined"])  # xsection_momentum: same code path as trend_core
def test_a_sleeve_book_writes_its_per_sleeve_breakdown(ready: Project, fetched, name: str):
    if fetched[0] == "swap":
        pytest.skip("the sleeve books are long-only spot")
    result = ready.run("compute_signals", "--as-of", AS_OF, env={"COINBOT__STRATEGY__NAME": name})
    assert result.returncode == 0, result.stderr
    document = json.loads((ready.state / "targets.json").read_text())
    assert document["schema_version"] == 2
    targets = read_targets(ready)
    assert targets.strategy == name and set(targets.weights) == set(SYMBOLS)
    weights = list(targets.weights.values())
    assert all(weight >= 0 for weight in weights) and sum(weights) <= 1 + TOLERANCE
    budgets = {"trend_core": 1.0} if name == "trend_core" else {"trend_core": 0.7, "xsection_momentum": 0.3}
    assert targets.book["sleeve_budgets"] == pytest.approx(budgets)
    assert targets.book["clusters"] >= 1
    for symbol, explanation in targets.breakdown.items():
        book = explanation["book"]
        assert explanation["weight"] == targets.weights[symbol] and explanation["close"] > 0
        assert set(book["sleeves"]) == set(budgets) and book["trend_conviction"] in (0.0, 1 / 3, 2 / 3, 1.0)
        assert sum(value for value in book["sleeves"].values()) == pytest.approx(book["raw_weight"], abs=1e-12)
        assert book["turnover_reason"] in ("unchanged", "entry", "exit", "resized", "kept_by_band")


def test_a_rerun_on_the_same_data_writes_the_same_file(ready: Project):
    assert ready.run("compute_signals", "--as-of", AS_OF).returncode == 0
    first = (ready.state / "targets.json").read_bytes()
    assert ready.run("compute_signals", "--as-of", AS_OF).returncode == 0
    assert (ready.state / "targets.json").read_bytes() == first


def test_stale_data_fail_closed_and_leave_the_previous_targets(ready: Project, telegram: FakeTelegram):
    assert ready.run("compute_signals", "--as-of", AS_OF).returncode == 0
    previous = (ready.state / "targets.json").read_bytes()
    result = ready.run("compute_signals", "--as-of", AS_OF_3_DAYS_LATER)  # nothing fetched since
    assert result.returncode != 0
    assert "stale benchmark" in result.stderr
    finish = ready.runs()[-1]
    assert (finish["event"], finish["status"]) == ("finish", "failed") and "stale" in finish["error"]
    assert (ready.state / "targets.json").read_bytes() == previous
    assert "compute_signals FAILED" in (telegram.wait_for_messages(1)[0].text or "")


def test_one_stale_symbol_gets_weight_zero_and_a_note(ready: Project, fetched):
    fresh = [symbol for symbol in SYMBOLS if symbol != "ADA/USDT"]
    update = ready.run("fetch_prices", "--as-of", AS_OF_3_DAYS_LATER, "--symbols", *fresh)
    assert update.returncode == 0, update.stderr
    result = ready.run("compute_signals", "--as-of", AS_OF_3_DAYS_LATER)
    assert result.returncode == 0, result.stderr
    targets = read_targets(ready)
    stale = "ADA/USDT:USDT" if fetched[0] == "swap" else "ADA/USDT"
    assert targets.as_of_ms == LAST_CLOSED_MS + 3 * MS_PER_DAY
    assert targets.weights[stale] == 0.0 and targets.breakdown[stale]["eligible"] is False
    assert len(targets.notes) == 1 and targets.notes[0].startswith(f"stale, weight 0: {stale}")
    assert targets.hold == {stale: "stale"}  # not sold on no data: kept as it is
    assert_valid_weights(targets, fetched[0])


def test_a_never_fetched_symbol_is_stale_held_and_noted_not_fatal(ready: Project, fetched):
    venue = "simulated_swap" if fetched[0] == "swap" else "simulated"
    (ready.data / "ohlcv" / venue / "1d" / "ETH-USDT.parquet").unlink()  # e.g. a symbol that never existed
    result = ready.run("compute_signals", "--as-of", AS_OF)
    assert result.returncode == 0, result.stderr
    targets = read_targets(ready)
    eth = "ETH/USDT:USDT" if fetched[0] == "swap" else "ETH/USDT"
    assert targets.weights[eth] == 0.0 and targets.hold == {eth: "stale"}
    assert any(note.startswith(f"{eth}: no candle file") for note in targets.notes)
    assert "no candle file ETH-USDT.parquet (never fetched)" in result.stderr


def test_an_unreadable_candle_file_fails_and_names_it(ready: Project, fetched):
    assert ready.run("compute_signals", "--as-of", AS_OF).returncode == 0
    previous = (ready.state / "targets.json").read_bytes()
    venue = "simulated_swap" if fetched[0] == "swap" else "simulated"
    broken = ready.data / "ohlcv" / venue / "1d" / "ETH-USDT.parquet"
    broken.write_bytes(b"PAR1 this is not a parquet file")
    result = ready.run("compute_signals", "--as-of", AS_OF)
    assert result.returncode != 0
    assert str(broken) in result.stderr
    assert ready.runs()[-1]["status"] == "failed"
    assert (ready.state / "targets.json").read_bytes() == previous


@pytest.mark.realdata
def test_real_binance_candles_produce_targets(project: Project, shared_data_dir: Path):
    venue_dir = project.data / "ohlcv" / "binance" / "1d"
    venue_dir.mkdir(parents=True)
    for symbol in SYMBOLS:
        slug = symbol.replace("/", "-")
        shutil.copy(shared_data_dir / "market" / "1d" / f"{slug}.parquet", venue_dir / f"{slug}.parquet")
    project.write_config(config_text(exchange_id="binance"))
    result = project.run("compute_signals", "--as-of", "2024-01-01T00:00:00Z")
    assert result.returncode == 0, result.stderr
    targets = read_targets(project)
    assert targets.as_of_ms == 1_703_980_800_000  # the 2023-12-31 daily candle
    assert targets.exchange == "binance" and set(targets.weights) == set(SYMBOLS)
    assert_valid_weights(targets, "spot")
    assert all(targets.breakdown[symbol]["eligible"] for symbol in SYMBOLS)
    # Real history holds real >50 % daily moves (BNB 2018 and 2021, XRP 2021 and 2023): settled market history,
    # they hold nothing back and are no note (the quarantine notes only jumps among the last candles)
    assert targets.notes == ()
    assert targets.hold == {}
