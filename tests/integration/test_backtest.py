"""backtest as a subprocess: candles (and funding) written by the real fetch_prices on the simulated exchange,
or real Binance data from ../shared/data -> state/backtests/<run_id>/; end-to-end look-ahead check."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lib.ops.charts import PNG_SIGNATURE
from lib.research.backtester import TRADE_COLUMNS
from tests.fakes.telegram_server import FakeTelegram
from tests.integration.conftest import Project

SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT", "XRP/USDT", "ADA/USDT")
AS_OF = "2024-12-05T00:10:00Z"
CUT_DAY = "2024-06-30"
CUT_MS = 1_719_705_600_000  # 2024-06-30T00:00Z, the last daily bar of a run with --end 2024-06-30
BENCHMARKS = ("btc_buy_and_hold", "equal_weight_buy_and_hold", "equal_weight_rebalanced")
ALWAYS = {"metrics.json", "equity.parquet", "trades.parquet", "weights.parquet", "chart.png"}
TOLERANCE = 1e-9


def config_text(*, market_type: str, telegram_url: str = "http://127.0.0.1:9") -> str:
    strategy = "perp_market_neutral" if market_type == "swap" else "spot_long_only"
    symbol_list = ", ".join(f'"{symbol}"' for symbol in SYMBOLS)
    return f"""
[exchange]
id = "simulated"
market_type = "{market_type}"
[data]
symbols = [{symbol_list}]
timeframes = ["1d"]
backfill_start = "2022-06-01"
[strategy]
name = "{strategy}"
timeframe = "1d"
[spot]
regime_filter = false  # so that the synthetic market's regime cannot leave the book empty
[walkforward]
train_days = 300
test_days = 120
[alerts]
telegram_base_url = "{telegram_url}"
"""


@pytest.fixture(scope="module", params=["spot", "swap"])
def fetched(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """Candles (+ funding on swap) fetched once per market type by the real fetch_prices."""
    template = Project(tmp_path_factory.mktemp(f"fetched_{request.param}"))
    template.write_config(config_text(market_type=request.param))
    result = template.run("fetch_prices", "--as-of", AS_OF)
    assert result.returncode == 0, result.stderr
    return request.param, template.data


@pytest.fixture(scope="module")
def plain(fetched: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Project, Path]:
    """The default backtest of each market type, run once: its outputs are read by every test that needs them."""
    project = Project(tmp_path_factory.mktemp(f"plain_{fetched[0]}"))
    project.write_config(config_text(market_type=fetched[0]))
    shutil.copytree(fetched[1], project.data)
    return project, backtest(project, "--run-id", "plain")


@pytest.fixture
def ready(project: Project, fetched: tuple[str, Path], telegram: FakeTelegram) -> Project:
    project.write_config(config_text(market_type=fetched[0], telegram_url=telegram.base_url))
    project.write_env(COINBOT_TELEGRAM_BOT_TOKEN="123:test-token", COINBOT_TELEGRAM_CHAT_ID="42")
    shutil.copytree(fetched[1], project.data)
    return project


def backtest(project: Project, *args: str) -> Path:
    result = project.run("backtest", *args)
    assert result.returncode == 0, result.stderr
    run_id = args[args.index("--run-id") + 1]
    assert result.stdout.startswith(f"backtest {run_id} (") and "\nstrategy " in result.stdout
    return project.state / "backtests" / run_id


def test_a_backtest_writes_valid_outputs(plain: tuple[Project, Path], fetched: tuple[str, Path]) -> None:
    project, out = plain
    assert {path.name for path in out.iterdir()} == ALWAYS
    document = json.loads((out / "metrics.json").read_text())
    is_perp = fetched[0] == "swap"
    assert document["strategy"] == ("perp_market_neutral" if is_perp else "spot_long_only")
    assert document["symbols"] == sorted(f"{s}:USDT" if is_perp else s for s in SYMBOLS)
    assert set(document["metrics"]) == {"strategy", *BENCHMARKS}
    strategy = document["metrics"]["strategy"]
    for key in ("cagr_frac", "volatility_annual_frac", "sharpe", "sortino", "max_drawdown_frac", "calmar",
                "turnover_annual", "fees_paid_quote", "funding_paid_quote", "gross_exposure_frac", "hit_rate_frac"):
        assert isinstance(strategy[key], float), key
    assert strategy["trade_count"] > 0 and strategy["fees_paid_quote"] > 0
    assert (strategy["funding_paid_quote"] != 0) == is_perp
    equity = pd.read_parquet(out / "equity.parquet")
    assert list(equity.columns) == ["timestamp", "strategy", *BENCHMARKS] and len(equity) == document["bars"]
    assert (equity.drop(columns="timestamp").iloc[0] == 1000.0).all()  # all start together, from cash
    assert equity["strategy"].iloc[-1] == pytest.approx(strategy["final_equity_quote"])
    trades = pd.read_parquet(out / "trades.parquet")
    assert tuple(trades.columns) == TRADE_COLUMNS and len(trades) == strategy["trade_count"]
    assert trades["timestamp"].min() > equity["timestamp"].iloc[0]  # decided at a close, filled at a LATER open
    weights = pd.read_parquet(out / "weights.parquet").set_index("timestamp")
    if is_perp:
        net = weights.sum(axis=1).abs()  # dollar-neutral at each fill; prices move it until the next one
        assert net.mean() < 0.03 and net.max() < 0.15 and weights.abs().sum(axis=1).max() > 0.5
    else:
        assert (weights >= -TOLERANCE).all().all() and weights.sum(axis=1).max() <= 1 + 1e-6
    assert (out / "chart.png").read_bytes().startswith(PNG_SIGNATURE)
    assert project.runs()[-1]["status"] == "ok"


@pytest.mark.parametrize("name", ["trend_core", "xsection_momentum", "combined"])
def test_each_sleeve_book_backtests_with_turnover_and_cost_drag(ready: Project, fetched, name: str) -> None:
    if fetched[0] == "swap":
        pytest.skip("the sleeve books are long-only spot")
    out = backtest(ready, "--strategy", name, "--run-id", name)
    assert {path.name for path in out.iterdir()} == ALWAYS
    document = json.loads((out / "metrics.json").read_text())
    assert document["strategy"] == name
    assert document["settings"]["combiner"]["sleeves"] == ["trend_core", "xsection_momentum"]
    metrics = document["metrics"]
    for curve in ("strategy", "btc_buy_and_hold"):
        assert all(isinstance(metrics[curve][key], float) for key in ("sharpe", "max_drawdown_frac", "calmar"))
    strategy = metrics["strategy"]
    assert strategy["trade_count"] > 0 and strategy["turnover_annual"] > 0
    risk = document["live_risk"]  # modelled by default, from the config's [risk]
    assert risk["modelled"] is True and risk["halted_bars"] == strategy["halted_bars"] >= 0
    tail = risk["tail_risk"]  # the live pre-trade VaR/CVaR pass, modelled too (risk.tail_risk_action = "scale")
    assert tail["tail_risk_action"] == "scale"
    assert tail["tail_scaled_bars"] == strategy["tail_scaled_bars"] >= 0 and strategy["tail_refused_bars"] >= 0
    assert isinstance(document["data_end_exits"], list)
    costs = strategy["fees_paid_quote"] + strategy["slippage_paid_quote"]
    years, mean_equity = (document["bars"] - 1) / 365, pd.read_parquet(out / "equity.parquet")["strategy"].mean()
    assert strategy["cost_drag_annual_frac"] == pytest.approx(costs / mean_equity / years)
    weights = pd.read_parquet(out / "weights.parquet").set_index("timestamp")
    assert (weights >= -TOLERANCE).all().all() and weights.sum(axis=1).max() <= 1 + 1e-6


def test_walk_forward_and_cost_sensitivity(ready: Project, fetched: tuple[str, Path]) -> None:
    # without the [risk] layer: its drawdown halt is path-dependent (a costlier run may halt earlier and dodge a
    # later fall), so only the bare accounting makes returns fall monotonically with the fee
    out = backtest(ready, "--run-id", "research", "--walk-forward", "--costs", "--progress", "--no-live-risk")
    assert {path.name for path in out.iterdir()} == ALWAYS | {
        "walkforward.json", "walkforward.parquet", "cost_sensitivity.json"}
    walk = json.loads((out / "walkforward.json").read_text())
    assert len(walk["windows"]) >= 2 and sum(walk["params_chosen"].values()) == len(walk["windows"])
    size = {"perp.top_k": [1, 2, 3]} if fetched[0] == "swap" else {"spot.top_n": [3, 5, 8]}
    assert walk["grid"] == size | {"strategy.rebalance_every_bars": [1, 7]}  # the built-in grid, daily bars
    assert walk["layout"]["train_days"] == 300 and set(walk["out_of_sample_metrics"]) == {"strategy", *BENCHMARKS}
    stitched = pd.read_parquet(out / "walkforward.parquet")
    assert stitched["timestamp"].iloc[0] == walk["windows"][0]["test_start_ms"]
    assert stitched["timestamp"].is_monotonic_increasing and stitched["timestamp"].is_unique
    costs = json.loads((out / "cost_sensitivity.json").read_text())["by_fee_bps"]
    assert list(costs) == ["0", "10", "25", "50"]
    returns = [costs[level]["total_return_frac"] for level in costs]
    assert returns == sorted(returns, reverse=True) and costs["0"]["fees_paid_quote"] == 0.0


def test_a_grid_from_the_command_line_is_used(ready: Project, fetched: tuple[str, Path]) -> None:
    key = "perp.top_k" if fetched[0] == "swap" else "spot.top_n"
    out = backtest(ready, "--run-id", "grid", "--walk-forward", "--grid", f"{key}=1,2")
    walk = json.loads((out / "walkforward.json").read_text())
    assert walk["grid"] == {key: [1, 2]}
    assert all(set(window["params"]) == {key} for window in walk["windows"])


def test_history_cut_at_t_gives_the_same_equity_up_to_t(ready: Project, plain: tuple[Project, Path]) -> None:
    """End-to-end look-ahead check: nothing after --end can change the curve before it."""
    full = plain[1]  # the same candles as ``ready``'s, uncut
    cut = backtest(ready, "--run-id", "cut", "--end", CUT_DAY)
    full_equity, cut_equity = (pd.read_parquet(path / "equity.parquet") for path in (full, cut))
    assert cut_equity["timestamp"].iloc[-1] == CUT_MS and len(full_equity) > len(cut_equity) + 100
    head = full_equity.iloc[: len(cut_equity)]
    assert head["timestamp"].tolist() == cut_equity["timestamp"].tolist()
    np.testing.assert_allclose(head.drop(columns="timestamp"), cut_equity.drop(columns="timestamp"), rtol=1e-12)
    full_trades, cut_trades = (pd.read_parquet(path / "trades.parquet") for path in (full, cut))
    early = full_trades[full_trades["timestamp"] <= CUT_MS].reset_index(drop=True)
    pd.testing.assert_frame_equal(early, cut_trades, rtol=1e-12)


def test_a_folder_laid_out_like_shared_data_gives_the_same_result(ready: Project, fetched, plain,
                                                                  tmp_path: Path) -> None:
    venue = "simulated_swap" if fetched[0] == "swap" else "simulated"
    shutil.copytree(ready.data / "ohlcv" / venue / "1d", tmp_path / "market" / "1d")
    if fetched[0] == "swap":
        shutil.copytree(ready.data / "funding" / venue, tmp_path / "funding")
    stored = plain[1]  # the same candles, read from data/
    copied = backtest(ready, "--run-id", "copied", "--data-dir", str(tmp_path))
    stored_metrics, copied_metrics = (json.loads((path / "metrics.json").read_text()) for path in (stored, copied))
    assert copied_metrics["source"] == str(tmp_path) and copied_metrics["symbols"] == stored_metrics["symbols"]
    for curve, values in stored_metrics["metrics"].items():  # columns come in another order: float sums may
        assert copied_metrics["metrics"][curve] == pytest.approx(values, rel=1e-9)  # differ in the last bit
    stored_equity, copied_equity = (pd.read_parquet(path / "equity.parquet") for path in (stored, copied))
    pd.testing.assert_frame_equal(stored_equity, copied_equity, rtol=1e-9)


@pytest.mark.parametrize(
    ("args", "exit_code", "message"),
    [(("--data-dir", "nowhere"), 1, "no candle files in nowhere"),
     (("--symbols", "DOGE/USDT"), 1, "no candles in"),
     (("--walk-forward", "--grid", "risk.max=1"), 2, "section must be one of"),
     (("--walk-forward", "--end", "2023-09-01"), 1, "walk-forward needs more than 300 + 1 days")],
)  # fmt: skip
def test_bad_inputs_fail_alert_and_write_nothing(ready: Project, telegram: FakeTelegram, args, exit_code, message):
    result = ready.run("backtest", "--run-id", "broken", *args)
    assert result.returncode == exit_code, result.stderr
    assert message in result.stderr
    assert not (ready.state / "backtests" / "broken").exists()
    assert ready.runs()[-1]["status"] == "failed"
    assert "backtest FAILED" in (telegram.wait_for_messages(1)[0].text or "")


@pytest.mark.realdata
def test_real_data_perp_backtest_trades_only_symbols_with_funding(shared_data_dir: Path, project: Project) -> None:
    project.write_config(config_text(market_type="spot"))
    out = backtest(project, "--run-id", "real", "--data-dir", str(shared_data_dir), "--strategy",
                   "perp_market_neutral", "--symbols", "BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT", "ADA/USDT",
                   "--end", "2021-12-31")
    document = json.loads((out / "metrics.json").read_text())
    assert document["dropped_symbols"] == ["SOL/USDT:USDT"]
    assert document["symbols"] == ["ADA/USDT:USDT", "BTC/USDT:USDT", "ETH/USDT:USDT", "XRP/USDT:USDT"]
    assert document["span"].startswith("2020-01-20")  # the first day every kept perpetual had funding
    assert document["metrics"]["strategy"]["funding_paid_quote"] != 0.0
    trades = pd.read_parquet(out / "trades.parquet")
    assert set(trades["symbol"]) <= set(document["symbols"])
    proxy = backtest(project, "--run-id", "real-proxy", "--data-dir", str(shared_data_dir), "--strategy",
                     "perp_market_neutral", "--symbols", "BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT", "ADA/USDT",
                     "--end", "2021-12-31", "--missing-funding", "proxy")
    proxied = json.loads((proxy / "metrics.json").read_text())
    assert proxied["dropped_symbols"] == [] and "SOL/USDT:USDT" in proxied["symbols"]
    assert proxied["missing_funding"] == "proxy" and proxied["span"].startswith("2020-01-20")


@pytest.mark.realdata
def test_real_data_tail_risk_is_modelled_and_the_flag_leaves_it_out(shared_data_dir: Path, project: Project) -> None:
    """The shipped config on real daily candles (development data, <= 2022): the live tail-risk pass scales some
    rebalances (counted in metrics.json and the summary); --no-live-risk reports the run without it."""
    project.write_config("[exchange]\nid = \"simulated\"\n")
    span = ("--data-dir", str(shared_data_dir), "--start", "2020-04-29", "--end", "2022-12-31")
    result = project.run("backtest", *span, "--run-id", "with")
    assert result.returncode == 0, result.stderr
    assert "tail risk (scale): " in result.stdout
    document = json.loads((project.state / "backtests" / "with" / "metrics.json").read_text())
    strategy = document["metrics"]["strategy"]
    assert document["live_risk"]["tail_risk"]["tail_risk_action"] == "scale" and strategy["tail_scaled_bars"] > 0
    assert 0 < strategy["tail_min_scale"] <= strategy["tail_mean_scale"] < 1
    result = project.run("backtest", *span, "--no-live-risk", "--run-id", "without")
    assert result.returncode == 0, result.stderr
    assert "not modelled" in result.stdout
    document = json.loads((project.state / "backtests" / "without" / "metrics.json").read_text())
    assert document["live_risk"] == {"modelled": False}
    assert document["metrics"]["strategy"]["tail_scaled_bars"] == 0
    assert document["metrics"]["strategy"]["tail_mean_scale"] == 1.0
