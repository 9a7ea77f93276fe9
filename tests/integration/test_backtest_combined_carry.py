"""backtest --strategy combined with funding_carry among the sleeves, as a subprocess on a synthetic DIR/market/1h +
DIR/futures/1h + DIR/funding folder: the directional part is exactly the spot sleeve's own backtest, the book is the
two parts re-split to their budgets with the re-split costed, and metrics.json keeps the usual keys."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.integration.conftest import Project
from tests.integration.test_backtest_carry import write_layout

CONFIG = """
[exchange]
id = "simulated"
[strategy]
name = "combined"
timeframe = "1h"
[combiner]
sleeves = ["trend_core", "funding_carry"]
budgets = [0.6, 0.4]
[universe]
min_dollar_volume_quote = 0.0
[alerts]
telegram_base_url = "http://127.0.0.1:9"
"""


def test_the_combined_carry_backtest_is_its_two_parts_resplit(project: Project, tmp_path: Path) -> None:
    project.write_config(CONFIG)
    data = write_layout(tmp_path / "data")
    result = project.run("backtest", "--data-dir", str(data), "--run-id", "book", "--start", "2020-01-21")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "combined: trend_core 60% + funding_carry 40%" in result.stdout and "funding earned" in result.stdout
    alone = project.run("backtest", "--data-dir", str(data), "--run-id", "alone", "--start", "2020-01-21",
                        "--strategy", "trend_core")
    assert alone.returncode == 0, alone.stderr[-3000:]
    runs = project.state / "backtests"
    directional = pd.read_parquet(runs / "book-directional" / "equity.parquet")
    pd.testing.assert_frame_equal(directional, pd.read_parquet(runs / "alone" / "equity.parquet"))
    document = json.loads((runs / "book" / "metrics.json").read_text())
    assert document["split"] == {"funding_carry": pytest.approx(0.4), "trend_core": pytest.approx(0.6)}
    assert document["carry_coins"] == ["BTC", "ETH", "XRP"]
    metrics = document["metrics"]
    for name in ("strategy", "btc_buy_and_hold"):
        assert {"sharpe", "max_drawdown_frac", "calmar"} <= set(metrics[name])
    book = metrics["strategy"]
    assert book["funding_earned_quote"] > 0 and book["resplit_cost_quote"] > 0
    curves = pd.read_parquet(runs / "book" / "equity.parquet").set_index("timestamp")
    expected = (0.6 * curves["directional_return"] + 0.4 * curves["carry_return"] - curves["resplit_cost_frac"])
    pd.testing.assert_series_equal(curves["returns"], expected, check_names=False)
    assert curves["strategy"].iloc[-1] == pytest.approx(1000 * (1 + curves["returns"]).prod())
    assert book["final_equity_quote"] == pytest.approx(curves["strategy"].iloc[-1])
    # the directional part's returns are the sleeve's own run's, bar for bar over the combined span
    own = directional.set_index("timestamp")["strategy"].pct_change().reindex(curves.index).iloc[1:]
    pd.testing.assert_series_equal(curves["directional_return"].iloc[1:], own, check_names=False)
