"""Pure: the whole research protocol over one returns matrix, as one JSON-ready document.

Order (the rule is fixed before anything is measured): trial statistics -> calendar walk-forward of
"pick the train-best" (stitched OOS) -> CPCV of the same selection (distribution of path Sharpes, and
each configuration's median test Sharpe) -> PBO over ALL configurations -> the selection rule -> the
deflated Sharpe of the chosen configuration given the trial count -> paired block-bootstrap intervals of
Sharpe(strategy) - Sharpe(BTC) for the walk-forward OOS series and for the chosen configuration.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from lib.research.protocol.bootstrap import BootstrapParams, sharpe_difference_interval
from lib.research.protocol.cpcv import CpcvParams, run_cpcv
from lib.research.protocol.frame import check_returns_matrix, sharpe_annual, summary
from lib.research.protocol.overfitting import deflated_sharpe_report, probability_of_backtest_overfitting
from lib.research.protocol.selection import SelectionRule, select
from lib.research.protocol.walkforward import CalendarLayout, walk_forward

CAVEATS = (
    "The walk-forward and CPCV out-of-sample series stitch each chosen configuration's returns from its own "
    "continuous backtest: the cost of switching the book between configurations at a boundary is not in them.",
    "The chosen configuration's full-period numbers are IN-SAMPLE (it was chosen on them); the walk-forward "
    "series, the CPCV paths, PBO and the deflated Sharpe are the out-of-sample / selection-aware evidence.",
    "Sharpe: daily simple returns, risk-free 0, annualized by sqrt(365).",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProtocolParams:
    walk_forward: CalendarLayout = field(default_factory=CalendarLayout)
    cpcv: CpcvParams = field(default_factory=CpcvParams)
    pbo_blocks: int = 16
    bootstrap: BootstrapParams = field(default_factory=BootstrapParams)
    rule: SelectionRule = field(default_factory=SelectionRule)


@dataclass(frozen=True, slots=True)
class ProtocolResult:
    """``document``: report.json's protocol part; the rest feeds the charts."""

    document: dict[str, Any]
    chosen: str
    walk_forward_oos: pd.Series
    cpcv_path_sharpe_annual: pd.Series
    trial_sharpe_annual: pd.Series
    pbo_logits: np.ndarray


def run_protocol(
    returns: pd.DataFrame, benchmark: pd.Series, params: ProtocolParams, *, cost: pd.Series | None = None,
    families: pd.Series | None = None, project_trials: int | None = None,
) -> ProtocolResult:  # fmt: skip
    """Every step of the module docstring on ``returns`` (one column per trial) vs ``benchmark`` (BTC).

    ``cost``: per column, annual turnover (the rule's tie-break); ``families``: per column, for the table;
    ``project_trials``: every configuration the project tried (this run's and the research logs'): the
    deflated Sharpe is then also reported with that N (V still this run's spread of trial Sharpes).
    """
    check_returns_matrix(returns, benchmark)
    trial_sharpe = sharpe_annual(returns)
    assert isinstance(trial_sharpe, pd.Series)
    walk = walk_forward(returns, params.walk_forward)  # no cost tie-break: turnover spans the test days too
    cpcv = run_cpcv(returns, params.cpcv)
    median_test = cpcv.config_test_sharpe_annual.median(axis=0)
    pbo = probability_of_backtest_overfitting(returns, blocks=params.pbo_blocks) if returns.shape[1] > 1 else None
    selection = select(returns, benchmark, median_test, params.rule, cost=cost)
    chosen = returns[selection.chosen]
    oos = walk.oos_returns
    btc_oos = benchmark.loc[oos.index]
    trials = selection.table.assign(
        family=families.reindex(returns.columns) if families is not None else None,
        full_period_sharpe=trial_sharpe, cagr_frac=[summary(returns[name])["cagr_frac"] for name in returns.columns])
    chosen_summary, btc_summary = summary(chosen), summary(benchmark)
    oos_summary, btc_oos_summary = summary(oos), summary(btc_oos)
    document = {
        "trial_count": int(returns.shape[1]),
        "period": {"start": _day(returns.index[0]), "end": _day(returns.index[-1]), "days": len(returns)},
        "params": dataclasses.asdict(params),
        "rule": params.rule.text(),
        "benchmark": {"name": "btc_buy_and_hold", **btc_summary},
        "walk_forward": {
            "windows": [_window_row(row) for row in walk.table.to_dict("records")],
            "chosen_counts": walk.table["chosen"].value_counts().to_dict(),
            "oos_start": _day(oos.index[0]), "oos_end": _day(oos.index[-1]),
            "oos": oos_summary, "btc_same_days": btc_oos_summary,
            "sharpe_minus_btc_bootstrap": sharpe_difference_interval(oos, btc_oos, params.bootstrap),
            "train_test_score_rank_correlation": _rank_correlation(walk.table),
        },
        "cpcv": {
            "splits": int(len(cpcv.splits)), "paths": int(cpcv.path_returns.shape[1]),
            "path_sharpe_annual": cpcv.path_sharpe_annual.to_dict(), "distribution": cpcv.distribution(),
            "btc_sharpe_annual": float(sharpe_annual(benchmark)),
            "chosen_per_split": cpcv.splits.to_dict("records"),
        },
        "pbo": pbo.summary() if pbo is not None else None,
        "selection": {
            "chosen": selection.chosen, "drawdown_condition_met": selection.eligible, "reason": selection.reason,
            "in_sample": chosen_summary, "deflated_sharpe": deflated_sharpe_report(chosen, returns),
            "deflated_sharpe_project_trials": None if project_trials is None else deflated_sharpe_report(
                chosen, returns, n_trials=project_trials),
            "sharpe_minus_btc_bootstrap": sharpe_difference_interval(chosen, benchmark, params.bootstrap),
        },
        "done_when": _done_when(oos_summary, btc_oos_summary, chosen_summary, btc_summary),
        "trials": {name: {key: _plain(value) for key, value in row.items()}
                   for name, row in trials.to_dict("index").items()},
        "caveats": [*CAVEATS, *_data_caveats(returns, walk.table)],
    }  # fmt: skip
    return ProtocolResult(document=document, chosen=selection.chosen, walk_forward_oos=oos,
                          cpcv_path_sharpe_annual=cpcv.path_sharpe_annual, trial_sharpe_annual=trial_sharpe,
                          pbo_logits=pbo.logits if pbo is not None else np.array([]))


def holdout_section(chosen: str, returns: pd.Series, benchmark: pd.Series, params: BootstrapParams) -> dict[str, Any]:
    """The final hold-out of the ALREADY chosen configuration: its numbers and BTC's, as they come."""
    mine, btc = summary(returns), summary(benchmark)
    interval = sharpe_difference_interval(returns, benchmark, params) if len(returns) >= 2 * params.mean_block_days \
        else None
    return {
        "chosen": chosen, "start": _day(returns.index[0]), "end": _day(returns.index[-1]),
        "strategy": mine, "btc_buy_and_hold": btc, "sharpe_minus_btc_bootstrap": interval,
        "sharpe_above_btc": bool(mine["sharpe"] > btc["sharpe"]),
        "max_drawdown_at_most_half_btc": bool(mine["max_drawdown_frac"] <= 0.5 * btc["max_drawdown_frac"]),
    }  # fmt: skip


def _data_caveats(returns: pd.DataFrame, windows: pd.DataFrame) -> list[str]:
    """Warnings that depend on this run's data: too few walk-forward windows, duplicate trial columns."""
    notes = []
    if len(windows) < 4:
        notes.append(f"Only {len(windows)} walk-forward windows: the stitched OOS series is too short to judge on "
                     "its own; weigh the CPCV paths and PBO more.")
    if duplicates := int(returns.T.duplicated().sum()):
        notes.append(f"{duplicates} configuration(s) produced returns identical to an earlier one (a setting "
                     "without effect on this data); they are still counted as trials.")
    return notes


def _done_when(oos: dict[str, float], btc_oos: dict[str, float], chosen: dict[str, float],
               btc: dict[str, float]) -> dict[str, bool]:
    """The issue's bar on the development data: Sharpe above BTC's and max drawdown <= half of BTC's."""
    half_btc_oos = 0.5 * btc_oos["max_drawdown_frac"]
    return {
        "walk_forward_oos_sharpe_above_btc": bool(oos["sharpe"] > btc_oos["sharpe"]),
        "walk_forward_oos_drawdown_at_most_half_btc": bool(oos["max_drawdown_frac"] <= half_btc_oos),
        "chosen_sharpe_above_btc": bool(chosen["sharpe"] > btc["sharpe"]),
        "chosen_drawdown_at_most_half_btc": bool(chosen["max_drawdown_frac"] <= 0.5 * btc["max_drawdown_frac"]),
    }  # fmt: skip


def _rank_correlation(table: pd.DataFrame) -> float:
    """Spearman correlation of the chosen configuration's train and test scores across windows."""
    if len(table) < 3:
        return float("nan")
    return float(table["train_score"].rank().corr(table["test_score"].rank()))


def _window_row(row: dict[str, Any]) -> dict[str, Any]:
    return {key: _day(value) if isinstance(value, pd.Timestamp) else value for key, value in row.items()}


def _day(stamp: Any) -> str:
    return pd.Timestamp(stamp).strftime("%Y-%m-%d")


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
