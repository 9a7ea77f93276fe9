"""Pure: report.json of a research run and the frames its charts draw (scripts/research.py renders and writes)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import pandas as pd

from lib.core.errors import ConfigError, DataError
from lib.core.timeframes import format_ms
from lib.research.candidates import Candidate, ResearchData, benchmark_returns, evaluate_candidate, last_candle_ms
from lib.research.protocol.bootstrap import BootstrapParams
from lib.research.protocol.frame import equity_from_returns
from lib.research.protocol.run import ProtocolResult, holdout_section
from lib.research.study import history, json_values, sections

SCHEMA_VERSION = 1
type Panels = dict[str, tuple[list[float], dict[str, float]]]


def build_report(result: ProtocolResult, data: ResearchData, trials: Sequence[Candidate], *, run_id: str,
                 research_end: str, source: str, tried_in_all_runs: int) -> dict[str, Any]:
    """The JSON document: run metadata, what was read (up to which candle), every candidate, the protocol.
    ``tried_in_all_runs``: distinct configurations evaluated on research data by every run so far (this one
    included) — the multiple-testing burden across runs; the deflated Sharpe uses this run's trial count."""
    return json_values.json_safe({  # type: ignore[no-any-return]
        "schema_version": SCHEMA_VERSION, "run_id": run_id, "research_end": research_end,
        "last_candle_used": format_ms(last_candle_ms(data)), "source": source,
        "families": sorted({candidate.family for candidate in trials}), "tried_in_all_runs": tried_in_all_runs,
        "spot_symbols": sorted(data.spot_candles), "perp_symbols": sorted(data.perp_candles),
        "base_settings": sections.settings_document(data.base),
        "candidates": [dataclasses.asdict(candidate) for candidate in trials], "protocol": result.document,
    })  # fmt: skip


def final_holdout(report: dict[str, Any], data: ResearchData, *, holdout_end_ms: int,
                  bootstrap: BootstrapParams) -> dict[str, Any]:
    """The ONE evaluation of the configuration ``report`` chose, from the day after its research end (from
    cash, indicators warmed up on earlier history) to ``holdout_end_ms``; nothing is re-selected.

    Raises:
        ConfigError: the report already has its hold-out, or the config's settings differ from the ones the
            research ran with (the hold-out would then test something that was never selected).
        DataError: BTC lacks a candle on a hold-out day.
    """
    if report.get("final_holdout"):
        raise ConfigError("this report already has its final hold-out; it is evaluated exactly once")
    if sections.settings_document(data.base) != report["base_settings"]:
        raise ConfigError("the config's strategy settings differ from the research run's; restore them first")
    chosen = report["protocol"]["selection"]["chosen"]
    recorded = next(candidate for candidate in report["candidates"] if candidate["name"] == chosen)
    candidate = Candidate(chosen, recorded["family"], recorded["settings"])
    start_ms = history.parse_time_ms(report["research_end"], is_end=True) + 1
    run = evaluate_candidate(candidate, data, start_ms=start_ms, end_ms=holdout_end_ms)
    btc = benchmark_returns(data).reindex(run.returns.index)
    if btc.isna().any():
        raise DataError("BTC has no candle on some hold-out day of the chosen configuration")
    return json_values.json_safe(holdout_section(chosen, run.returns, btc, bootstrap))  # type: ignore[no-any-return]


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
