"""backtest --strategy funding_carry as a subprocess, on a synthetic DIR/market/1h + DIR/futures/1h + DIR/funding
folder (and on ../shared/data when present): outputs, accounting, end-to-end look-ahead check, fail-closed inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.integration.conftest import Project
from tests.unit.research.carry.synthetic import synthetic_frames

CONFIG = """
[exchange]
id = "simulated"
[alerts]
telegram_base_url = "http://127.0.0.1:9"
"""
OUTPUTS = {"metrics.json", "equity.parquet", "daily_returns.parquet", "trades.parquet", "transfers.parquet",
           "weights.parquet"}


def write_layout(root: Path, *, days: int = 150) -> Path:
    spot, perp, funding = synthetic_frames(days=days, coins=("BTC", "ETH", "XRP"))
    for folder, frames in (("market/1h", spot), ("futures/1h", perp), ("funding", funding)):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for coin, frame in frames.items():
            frame.to_parquet(root / folder / f"{coin}-USDT.parquet", index=False)
    return root


def carry(project: Project, data: Path, run_id: str, *args: str) -> Path:
    result = project.run("backtest", "--strategy", "funding_carry", "--data-dir", str(data), "--run-id", run_id,
                         *args)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"backtest {run_id} (") and "funding_earned_quote" in result.stdout
    return project.state / "backtests" / run_id


def test_a_carry_backtest_writes_consistent_outputs(project: Project, tmp_path: Path) -> None:
    project.write_config(CONFIG)
    out = carry(project, write_layout(tmp_path / "data"), "carry", "--start", "2020-01-21")
    assert {path.name for path in out.iterdir()} == OUTPUTS
    document = json.loads((out / "metrics.json").read_text())
    assert document["strategy"] == "funding_carry" and document["coins"] == ["BTC", "ETH", "XRP"]
    assert document["span"].startswith("2020-01-21T00:00Z")
    metrics = document["metrics"]
    assert metrics["funding_earned_quote"] > 0 and metrics["fees_paid_quote"] > 0 and metrics["trade_count"] > 0
    assert abs(metrics["beta_to_btc"]) < 0.1 and 0 < metrics["worst_margin_ratio"] < 0.1
    equity = pd.read_parquet(out / "equity.parquet")
    assert equity["equity"].iloc[0] == 1000.0  # flat at the start: nothing is filled before the second bar
    assert equity["equity"].iloc[-1] == pytest.approx(metrics["final_equity_quote"])
    last = equity.iloc[-1]
    assert last["equity"] - 1000.0 == pytest.approx(last["price_pnl"] + last["funding"] - last["fees"]
                                                    - last["slippage"] - last["liquidation_loss"])
    trades = pd.read_parquet(out / "trades.parquet")
    assert trades["timestamp"].min() > equity["timestamp"].iloc[0]
    assert set(trades["leg"]) == {"spot", "perp"} and trades["fee_quote"].sum() == pytest.approx(last["fees"])
    daily = pd.read_parquet(out / "daily_returns.parquet")
    assert len(daily) == len(set(daily["day"])) and daily["net_return"].notna().all()
    compounded = (1 + daily["net_return"]).prod() * 1000.0
    assert compounded == pytest.approx(last["equity"])
    transfers = pd.read_parquet(out / "transfers.parquet")
    assert len(transfers) > 0 and set(transfers["coin"]) <= {"BTC", "ETH", "XRP"}
    assert project.runs()[-1]["status"] == "ok"


def test_data_after_end_cannot_change_the_curve_before_it(project: Project, tmp_path: Path) -> None:
    project.write_config(CONFIG)
    data = write_layout(tmp_path / "data")
    full = carry(project, data, "full", "--start", "2020-01-21")
    cut = carry(project, data, "cut", "--start", "2020-01-21", "--end", "2020-04-15")
    full_equity, cut_equity = (pd.read_parquet(path / "equity.parquet") for path in (full, cut))
    assert len(full_equity) > len(cut_equity) + 24 * 30
    pd.testing.assert_frame_equal(full_equity.iloc[: len(cut_equity)], cut_equity, rtol=1e-12)


def test_missing_perp_candles_fail_and_write_nothing(project: Project, tmp_path: Path) -> None:
    project.write_config(CONFIG)
    data = write_layout(tmp_path / "data", days=40)
    for path in (data / "futures" / "1h").iterdir():
        path.unlink()
    result = project.run("backtest", "--strategy", "funding_carry", "--data-dir", str(data), "--run-id", "broken")
    assert result.returncode == 1 and "no coin has spot, perpetual and funding data" in result.stderr
    assert not (project.state / "backtests" / "broken").exists()
    assert project.runs()[-1]["status"] == "failed"


@pytest.mark.realdata
def test_real_data_carry_on_development_years(shared_data_dir: Path, project: Project) -> None:
    """Development data only (<= 2022): the sleeve trades the five funding coins, stays market-neutral."""
    project.write_config(CONFIG)
    out = carry(project, shared_data_dir, "real", "--start", "2020-02-01", "--end", "2021-06-30")
    document = json.loads((out / "metrics.json").read_text())
    assert document["coins"] == ["ADA", "BTC", "ETH", "LTC", "XRP"] and document["skipped_coins"] == []
    metrics = document["metrics"]
    assert metrics["funding_earned_quote"] > 0 and abs(metrics["beta_to_btc"]) < 0.1
    assert pd.read_parquet(out / "equity.parquet")["timestamp"].max() <= 1_625_097_600_000 - 3_600_000 + 86_400_000
