"""The main job end to end on the simulated exchange in paper mode (what the README quickstart runs):
fetch_prices → compute_signals → rebalance → report, twice; the second run must not trade again."""

from __future__ import annotations

from lib.core.state import Positions, Targets
from lib.core.storage import read_json, read_jsonl
from lib.execution.journal import parse_journal
from tests.integration.conftest import Project

AS_OF = "2025-09-01T00:30:00Z"  # a day on which the simulated market is in a bullish regime
CONFIG = """
[data]
symbols = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "BNB/USDT", "XRP/USDT", "ADA/USDT"]
timeframes = ["1d"]
backfill_start = "2024-06-01"
"""


def filled_orders(project: Project) -> list[str]:
    records, torn = read_jsonl(project.state / "orders.jsonl")
    assert not torn
    return [event.client_order_id or "" for event in parse_journal(records) if event.event == "filled"]


def test_pipeline_end_to_end_twice(project: Project) -> None:
    project.write_config(CONFIG)
    first = project.run("run_pipeline", "--as-of", AS_OF)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "run_pipeline: all stages ok" in first.stderr

    targets = Targets.from_dict(read_json(project.state / "targets.json"))
    held = {symbol: weight for symbol, weight in targets.weights.items() if weight > 0}
    assert held and 0 < sum(held.values()) <= 1
    fills = filled_orders(project)
    assert len(fills) == len(held) and len(set(fills)) == len(fills)
    positions = Positions.from_dict(read_json(project.state / "positions.json"))
    assert set(positions.amounts_base) == set(held)
    assert positions.cash_quote >= 0
    assert (project.state / "report.png").read_bytes().startswith(b"\x89PNG")
    equity_rows = (project.state / "equity.csv").read_text().splitlines()
    assert len(equity_rows) == 2  # header + one row
    assert {record["script"] for record in project.runs()} == {"fetch_prices", "compute_signals", "rebalance",
                                                                "report"}

    second = project.run("run_pipeline", "--as-of", AS_OF)
    assert second.returncode == 0, second.stderr[-3000:]
    assert filled_orders(project) == fills  # no new orders
    assert Positions.from_dict(read_json(project.state / "positions.json")).amounts_base == positions.amounts_base
    assert (project.state / "equity.csv").read_text().splitlines() == equity_rows  # same time: no new row


def test_pipeline_stops_at_the_first_failing_stage(project: Project) -> None:
    project.write_config(CONFIG)
    result = project.run("run_pipeline", "--as-of", AS_OF, "--stages", "compute_signals", "rebalance")
    assert result.returncode == 1  # no candles yet: compute_signals fails
    assert "compute_signals exited 1; later stages skipped" in result.stderr
    assert [r["script"] for r in project.runs()] == ["compute_signals", "compute_signals"]
    assert not (project.state / "targets.json").exists()
