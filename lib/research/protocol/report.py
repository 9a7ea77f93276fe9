"""Pure: report.json of a research run and the frames its charts draw (scripts/research.py renders and writes)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import pandas as pd

from lib.research import backtest_study as study
from lib.research.candidates import Candidate, ResearchData, last_candle_ms
from lib.research.protocol.frame import equity_from_returns
from lib.research.protocol.run import ProtocolResult

SCHEMA_VERSION = 1
type Panels = dict[str, tuple[list[float], dict[str, float]]]


def build_report(result: ProtocolResult, data: ResearchData, trials: Sequence[Candidate], *, run_id: str,
                 research_end: str, source: str) -> dict[str, Any]:
    """The JSON document: run metadata, what was read (up to which candle), every candidate, the protocol."""
    return study.json_safe({  # type: ignore[no-any-return]
        "schema_version": SCHEMA_VERSION, "run_id": run_id, "research_end": research_end,
        "last_candle_used": study.to_iso(last_candle_ms(data)), "source": source,
        "families": sorted({candidate.family for candidate in trials}),
        "spot_symbols": sorted(data.spot_candles), "perp_symbols": sorted(data.perp_candles),
        "candidates": [dataclasses.asdict(candidate) for candidate in trials], "protocol": result.document,
    })  # fmt: skip


def oos_curves(result: ProtocolResult, matrix: pd.DataFrame, benchmark: pd.Series) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Equity (from 1) and drawdowns over the walk-forward OOS days: the stitched OOS series, the chosen
    configuration on the same days, and BTC buy-and-hold."""
    days = result.walk_forward_oos.index
    curves = pd.DataFrame({
        "walk-forward OOS": equity_from_returns(result.walk_forward_oos),
        f"chosen: {result.chosen}": equity_from_returns(matrix.loc[days, result.chosen]),
        "BTC buy & hold": equity_from_returns(benchmark.loc[days]),
    })  # fmt: skip
    return curves, curves / curves.cummax() - 1.0


def distribution_panels(result: ProtocolResult, report: dict[str, Any]) -> Panels:
    """Histogram panels: every trial's Sharpe, the CPCV path Sharpes (with BTC's), the PBO logits (with 0)."""
    protocol = report["protocol"]
    pbo = (protocol["pbo"] or {}).get("pbo")
    return {
        "Sharpe of every trial (full research period)": (
            result.trial_sharpe_annual.tolist(), {"BTC": protocol["benchmark"]["sharpe"]}),
        "CPCV path Sharpe of the in-sample-best choice": (
            result.cpcv_path_sharpe_annual.tolist(), {"BTC": protocol["cpcv"]["btc_sharpe_annual"]}),
        f"PBO logits (PBO = {'–' if pbo is None else f'{pbo:.2f}'})": (result.pbo_logits.tolist(), {"0": 0.0}),
    }  # fmt: skip
