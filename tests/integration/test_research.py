"""scripts/research.py as a subprocess on a small synthetic --data-dir (4 coins, 3 with funding, 2018-2023):
the files, the trial count, nothing after the research end influencing anything, and --final-holdout that
evaluates the chosen configuration once without re-selecting. A real-data run (realdata marker) on 6 coins."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lib.core.errors import EXIT_CONFIG
from lib.ops.charts import PNG_SIGNATURE
from tests.integration.conftest import Project

COINS = {"BTC": 0.0010, "ETH": 0.0008, "SOL": 0.0012, "ADA": 0.0002}  # daily drift of the synthetic walks
FUNDED = ("BTC", "ETH", "ADA")
TRIALS = 12  # the legacy families: spot top_n (3, 5, 8) x rebalance (1, 7 days) + perp top_k (1, 2, 3) x (1, 7)
FAMILIES = ("--family", "spot_long_only", "--family", "perp_market_neutral")  # sleeve books: test_candidates.py
FAST = ("--train", "365D", "--test", "90D", "--resamples", "200", "--pbo-blocks", "8", *FAMILIES)
CONFIG = """
[exchange]
id = "simulated"
market_type = "spot"
[data]
timeframes = ["1d"]
[strategy]
timeframe = "1d"
[spot]
regime_filter = false  # so that the synthetic market's regime cannot leave the book empty
[universe]
min_history_bars = 120
"""


def write_market(root: Path, *, future_seed: int) -> Path:
    """Random-walk daily candles 2018-01-01 .. 2023-12-31 and 8-hourly funding; the days after 2022-12-31
    come from ``future_seed`` so two directories differ ONLY after the research end."""
    index = pd.date_range("2018-01-01", "2023-12-31", freq="D", tz="UTC")
    future = index > pd.Timestamp("2022-12-31", tz="UTC")
    (root / "market" / "1d").mkdir(parents=True)
    (root / "funding").mkdir()
    for number, (coin, drift) in enumerate(COINS.items()):
        past, later = np.random.default_rng(number), np.random.default_rng(future_seed * 100 + number)
        step = np.where(future, later.normal(-drift, 0.04, len(index)), past.normal(drift, 0.035, len(index)))
        close = 100.0 * np.exp(np.cumsum(step))
        open_ = np.concatenate([[close[0]], close[:-1]])
        frame = pd.DataFrame({
            "timestamp": index.asi8 // 1_000_000, "open": open_, "high": np.maximum(open_, close) * 1.01,
            "low": np.minimum(open_, close) * 0.99, "close": close, "volume": np.full(len(index), 1e6),
        })  # fmt: skip
        frame.to_parquet(root / "market" / "1d" / f"{coin}-USDT.parquet", index=False)
        if coin in FUNDED:
            settlements = pd.date_range("2018-06-01", "2023-12-31 16:00", freq="8h", tz="UTC")
            rate = np.random.default_rng(50 + number).normal(0.0001, 0.0002, len(settlements))
            pd.DataFrame({"timestamp": settlements.asi8 // 1_000_000, "rate": rate}).to_parquet(
                root / "funding" / f"{coin}-USDT.parquet", index=False)
    return root


def research(project: Project, data: Path, *args: str) -> Path:
    result = project.run("research", "--data-dir", str(data), *FAST, *args)
    assert result.returncode == 0, result.stderr
    return project.state / "research" / args[args.index("--run-id") + 1]


@pytest.fixture
def ready(project: Project) -> Project:
    project.write_config(CONFIG)
    return project


def test_research_report_trials_and_the_hold_out(ready: Project, tmp_path: Path) -> None:
    data = write_market(tmp_path / "data_a", future_seed=1)
    out = research(ready, data, "--run-id", "a")
    assert {p.name for p in out.iterdir()} == {"report.json", "report.md", "returns.parquet", "oos_equity.png",
                                               "distributions.png"}
    assert all((out / name).read_bytes().startswith(PNG_SIGNATURE) for name in ("oos_equity.png", "distributions.png"))
    report = json.loads((out / "report.json").read_text())
    protocol = report["protocol"]
    returns = pd.read_parquet(out / "returns.parquet")
    trial_columns = [column for column in returns.columns if column not in ("date", "btc_buy_and_hold")]
    assert protocol["trial_count"] == len(report["candidates"]) == len(trial_columns) == TRIALS
    assert len(protocol["trials"]) == TRIALS
    assert protocol["selection"]["deflated_sharpe"]["n_trials"] == TRIALS
    assert protocol["selection"]["chosen"] in trial_columns
    assert 0.0 <= protocol["pbo"]["pbo"] <= 1.0 and protocol["cpcv"]["splits"] == 15
    assert f"Trials: {TRIALS}" in (out / "report.md").read_text()

    # nothing after the research end was used: last candle, returns, and a different future changes nothing
    assert report["last_candle_used"] <= "2022-12-31T00:00Z"
    assert returns["date"].max() <= pd.Timestamp("2022-12-31", tz="UTC")
    other = research(ready, write_market(tmp_path / "data_b", future_seed=2), "--run-id", "b")
    pd.testing.assert_frame_equal(pd.read_parquet(other / "returns.parquet"), returns)
    assert json.loads((other / "report.json").read_text())["protocol"] == protocol

    assert json.loads((other / "report.json").read_text())["tried_in_all_runs"] == TRIALS  # same 12 names again
    assert len((ready.state / "research" / "trials.jsonl").read_text().splitlines()) == 2

    refused = ready.run("research", "--data-dir", str(data), "--research-end", "2023-06-30", "--run-id", "c")
    assert refused.returncode == EXIT_CONFIG and not (ready.state / "research" / "c").exists()

    # the hold-out refuses to test settings the research did not run with
    ready.write_config(CONFIG.replace("regime_filter = false", "regime_filter = true"))
    changed = ready.run("research", "--data-dir", str(data), "--final-holdout", str(out / "report.json"))
    assert changed.returncode == EXIT_CONFIG and "final_holdout" not in json.loads((out / "report.json").read_text())
    ready.write_config(CONFIG)

    # the hold-out: the chosen configuration only, appended once, the selection untouched
    held = ready.run("research", "--data-dir", str(data), "--final-holdout", str(out / "report.json"))
    assert held.returncode == 0, held.stderr
    after = json.loads((out / "report.json").read_text())
    assert after["protocol"] == protocol and after["candidates"] == report["candidates"]
    holdout = after["final_holdout"]
    assert holdout["chosen"] == protocol["selection"]["chosen"]
    assert holdout["start"] == "2023-01-02" and holdout["end"] == "2023-12-31"  # day 1 is the entry, from cash
    assert "Final hold-out" in (out / "report.md").read_text()
    again = ready.run("research", "--data-dir", str(data), "--final-holdout", str(out / "report.json"))
    assert again.returncode == EXIT_CONFIG
    assert json.loads((out / "report.json").read_text()) == after


@pytest.mark.realdata
def test_research_on_real_binance_data(ready: Project, shared_data_dir: Path) -> None:
    coins = ("BTC/USDT", "ETH/USDT", "ADA/USDT", "LTC/USDT", "XRP/USDT", "BNB/USDT")
    out = research(ready, shared_data_dir, "--symbols", *coins, "--run-id", "real")
    report = json.loads((out / "report.json").read_text())
    assert report["protocol"]["trial_count"] == TRIALS
    assert report["last_candle_used"] <= "2022-12-31T00:00Z"
    assert report["protocol"]["period"]["end"] == "2022-12-31"


@pytest.mark.realdata
def test_trend_carry_on_real_data_is_the_combined_backtest(ready: Project, shared_data_dir: Path) -> None:
    """Protocol v3's family (trend_core + funding_carry) as a subprocess on real data, research end 2021-12-31:
    its budget-0.5 returns are ``backtest --strategy combined``'s with budgets [0.5, 0.5], bit for bit."""
    ready.write_config(CONFIG + '[combiner]\nsleeves = ["trend_core", "funding_carry"]\nbudgets = [0.5, 0.5]\n')
    source = ("--data-dir", str(shared_data_dir), "--symbols", "BTC/USDT", "ETH/USDT", "ADA/USDT", "LTC/USDT",
              "XRP/USDT")
    result = ready.run("research", *source, "--family", "trend_carry", "--research-end", "2021-12-31", "--train",
                       "365D", "--test", "90D", "--resamples", "200", "--pbo-blocks", "8", "--run-id", "carry")
    assert result.returncode == 0, result.stderr
    out = ready.state / "research" / "carry"
    report = json.loads((out / "report.json").read_text())
    assert report["protocol"]["trial_count"] == 3 and report["families"] == ["trend_carry"]
    assert report["last_candle_used"] <= "2021-12-31T23:00Z"
    matrix = pd.read_parquet(out / "returns.parquet").set_index("date")
    first = matrix.index[0] - pd.Timedelta(days=1)  # the common first day: every candidate's starting equity
    result = ready.run("backtest", *source, "--start", f"{first:%Y-%m-%d}", "--end", "2021-12-31", "--run-id",
                       "combo", env={"COINBOT__STRATEGY__NAME": "combined"})
    assert result.returncode == 0, result.stderr
    written = pd.read_parquet(ready.state / "backtests" / "combo" / "equity.parquet")
    equity = pd.Series(written["strategy"].to_numpy(), index=pd.to_datetime(written["timestamp"], unit="ms", utc=True))
    expected = (equity / equity.shift(1) - 1.0).iloc[1:]
    assert expected.index.equals(matrix.index)
    np.testing.assert_array_equal(matrix["trend_carry[carry_budget=0.5]"].to_numpy(), expected.to_numpy())
