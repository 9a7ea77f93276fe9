"""compute_signals on a trailing window writes the targets of the full-history run (real Binance candles).

Two as-of hours on real hourly data (<= 2022, the research period): one where the first derived window
already holds a settled flat-book bar, and one in the late-2020 bull run where no such bar exists since the
data start, so the script reads the whole files again (the rare path) and its result is the full run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from lib.ops.config import load_config
from lib.research.sleeves.book import BookSettings
from lib.research.strategy import compute_strategy
from lib.research.strategy_params import StrategySection
from tests.integration.conftest import Project

TIMEFRAME = "1h"


def _config(symbols: list[str]) -> str:
    listed = ", ".join(f'"{symbol}"' for symbol in symbols)
    return f"""
[exchange]
id = "binance"
[data]
symbols = [{listed}]
timeframes = ["{TIMEFRAME}"]
[strategy]
timeframe = "{TIMEFRAME}"
[alerts]
telegram_base_url = "http://127.0.0.1:9"
"""


@pytest.mark.realdata
@pytest.mark.parametrize(("as_of", "whole_history"), [("2022-06-20T05:10:00Z", False), ("2020-11-16T09:10:00Z", True)])
def test_live_targets_are_the_full_history_targets(project: Project, shared_data_dir: Path, as_of: str,
                                                   whole_history: bool) -> None:
    venue_dir = project.data / "ohlcv" / "binance" / TIMEFRAME
    venue_dir.mkdir(parents=True)
    paths = sorted((shared_data_dir / "market" / TIMEFRAME).glob("*.parquet"))
    for path in paths:
        (venue_dir / path.name).symlink_to(path)
    symbols = [path.stem.replace("-", "/") for path in paths]
    project.write_config(_config(symbols))
    result = project.run("compute_signals", "--as-of", as_of)
    assert result.returncode == 0, result.stderr
    written = json.loads((project.state / "targets.json").read_text())
    bars = int(result.stderr.split("computed over the last ")[1].split(" bars")[0])

    config = load_config(project.config)
    as_of_ms = written["as_of_ms"]
    candles = {}
    for path, symbol in zip(paths, symbols, strict=True):
        frame = pd.read_parquet(path)
        frame = frame[frame["timestamp"] <= as_of_ms].reset_index(drop=True)
        if len(frame):
            candles[symbol] = frame
    full = compute_strategy(
        candles, strategy=StrategySection(name=config.strategy.name, timeframe=TIMEFRAME), signals=config.signals,
        ensemble=config.ensemble, universe=config.universe, spot=config.spot, perp=config.perp,
        book=BookSettings(trend=config.trend, sizing=config.sizing, combiner=config.combiner, turnover=config.turnover),
    ).target_weights.loc[as_of_ms]
    assert bars >= 5_000 if whole_history else bars < 1_000  # the rare path really read the whole files
    for symbol, weight in written["weights"].items():
        assert weight == pytest.approx(float(full.get(symbol, 0.0)), abs=1e-12), symbol
