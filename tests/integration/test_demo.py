"""The README quickstart's main job (`bash scripts/dev.sh pipeline` = scripts/demo.py): the whole path works on
any date: orders appear, the equity history moves, and a normal report without Telegram is not a WARNING."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from lib.core.storage import read_jsonl
from lib.execution.journal import parse_journal
from tests.integration.conftest import script_env


def run_demo(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scripts.demo", "--dir", str(root), "--steps", "2"],
                          cwd=Path(__file__).resolve().parents[2], env=script_env(None), capture_output=True,
                          text=True, timeout=600, check=False)


def filled(root: Path) -> list[str]:
    records, torn = read_jsonl(root / "state" / "orders.jsonl")
    assert not torn
    return [event.client_order_id or "" for event in parse_journal(records) if event.event == "filled"]


def test_the_demo_replay_trades_charts_and_is_idempotent(tmp_path: Path) -> None:
    first = run_demo(tmp_path / "demo")
    assert first.returncode == 0, first.stdout + first.stderr
    fills = filled(tmp_path / "demo")
    assert len(fills) >= 3 and len(set(fills)) == len(fills)
    rows = (tmp_path / "demo" / "state" / "equity.csv").read_text().splitlines()[1:]
    assert len(rows) == 2 and rows[0].split(",")[2] != rows[1].split(",")[2]  # the equity moved: not flat
    assert (tmp_path / "demo" / "state" / "report.png").read_bytes().startswith(b"\x89PNG")
    log = (tmp_path / "demo" / "state" / "logs" / "demo.log").read_text()
    assert "WARNING report" not in log and "Telegram not configured, log only" in log  # INFO, not an incident

    second = run_demo(tmp_path / "demo")
    assert second.returncode == 0, second.stdout + second.stderr
    assert second.stdout.count("already replayed") == 2
    assert filled(tmp_path / "demo") == fills  # nothing traded twice
