"""Pure: report.md of a research-protocol run, rendered from report.json's document (nothing recomputed)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _num(value: Any, pattern: str = "{:.2f}") -> str:
    return "–" if value is None or value != value else pattern.format(value)


def _pct(value: Any) -> str:
    return _num(value, "{:.1%}")


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _summary_rows(curves: Mapping[str, Mapping[str, Any]]) -> list[str]:
    lines = [_row(["series", "Sharpe", "CAGR", "max DD", "Calmar", "vol", "days"]), _row(["---"] * 7)]
    for name, values in curves.items():
        lines.append(_row([name, _num(values.get("sharpe")), _pct(values.get("cagr_frac")),
                           _pct(values.get("max_drawdown_frac")), _num(values.get("calmar")),
                           _pct(values.get("volatility_annual_frac")), _num(values.get("days"), "{:.0f}")]))
    return lines


def _interval(boot: Mapping[str, Any] | None) -> str:
    if not boot:
        return "–"
    return (f"{boot['difference']:+.2f} (95 % interval {boot['low']:+.2f} … {boot['high']:+.2f}; strategy not better "
            f"in {boot['share_not_better']:.0%} of {boot['resamples']:.0f} paired stationary-bootstrap resamples, "
            f"mean block {boot['mean_block_days']:g} days)")


def _project_dsr(dsr: Mapping[str, Any] | None) -> list[str]:
    if not dsr:
        return []
    return [f"- Deflated Sharpe with every configuration the project tried (N = {dsr['n_trials']:.0f}, this run's "
            f"spread of trial Sharpes): **{_num(dsr['dsr'], '{:.3f}')}** (expected best of N unskilled trials: "
            f"Sharpe {dsr['sr0_annual']:.2f})."]


def render_markdown(report: Mapping[str, Any]) -> str:
    """The human-readable report: verdict first, then each step of the protocol, the trials, the caveats."""
    proto, walk, selection = report["protocol"], report["protocol"]["walk_forward"], report["protocol"]["selection"]
    dsr, pbo, cpcv = selection["deflated_sharpe"], proto["pbo"], proto["cpcv"]
    lines = [
        f"# Research report {report['run_id']}", "",
        f"Research period {proto['period']['start']} → {proto['period']['end']} ({proto['period']['days']} days; "
        f"nothing after {report['research_end']} was read). Data: {report['source']}. Families: "
        f"{', '.join(report['families'])}. **Trials: {proto['trial_count']}** (every configuration evaluated; "
        f"{report.get('tried_in_all_runs', '–')} distinct configurations across all research runs so far).", "",
        f"Selection rule (stated before the run): {proto['rule']}.", "",
        "## Verdict", "",
        f"- **Chosen: `{selection['chosen']}`** — {selection['reason']}.",
        f"- Deflated Sharpe ratio: **{_num(dsr['dsr'], '{:.3f}')}** (Sharpe {dsr['sharpe_annual']:.2f} vs "
        f"{dsr['sr0_annual']:.2f} expected from the best of {dsr['n_trials']:.0f} unskilled trials; skew "
        f"{dsr['skew']:.2f}, kurtosis {dsr['kurtosis']:.2f}, {dsr['n_obs']:.0f} days).",
        *_project_dsr(selection.get("deflated_sharpe_project_trials")),
        f"- Probability of backtest overfitting (CSCV, {('–' if pbo is None else f'{pbo['blocks']:.0f} blocks')}): "
        f"**{('–' if pbo is None else _num(pbo['pbo'], '{:.2f}'))}**.",
        f"- Walk-forward OOS Sharpe − BTC's: {_interval(walk['sharpe_minus_btc_bootstrap'])}.",
        f"- Chosen config Sharpe − BTC's over the research period (in-sample): "
        f"{_interval(selection['sharpe_minus_btc_bootstrap'])}.", "",
        "Done-when checks on the development data:", "",
        *[f"- {name.replace('_', ' ')}: **{'yes' if ok else 'no'}**" for name, ok in proto["done_when"].items()],
        "", "## Walk-forward (calendar time, purge + embargo)", "",
        f"Layout: train {proto['params']['walk_forward']['train']}, test {proto['params']['walk_forward']['test']}, "
        f"purge {proto['params']['walk_forward']['purge_days']} d, embargo "
        f"{proto['params']['walk_forward']['embargo_days']} d; {len(walk['windows'])} windows; OOS "
        f"{walk['oos_start']} → {walk['oos_end']}. Train-vs-test score rank correlation of the choices: "
        f"{_num(walk['train_test_score_rank_correlation'])}.", "",
        *_summary_rows({"walk-forward OOS (stitched)": walk["oos"], "BTC, same days": walk["btc_same_days"]}),
        "", _row(["window", "train", "test", "chosen", "train Sharpe/d", "test Sharpe/d"]), _row(["---"] * 6),
        *[_row([str(w["window"]), f"{w['train_start']} → {w['train_end']}", f"{w['test_start']} → {w['test_end']}",
                f"`{w['chosen']}`", _num(w["train_score"], "{:.3f}"), _num(w["test_score"], "{:.3f}")])
          for w in walk["windows"]],
        "", "## Combinatorial purged cross-validation (skfolio CombinatorialPurgedCV)", "",
        f"{cpcv['splits']} splits, {cpcv['paths']} paths of the in-sample-best choice. Path Sharpe: median "
        f"{cpcv['distribution']['median']:.2f}, quartiles {cpcv['distribution']['q25']:.2f} … "
        f"{cpcv['distribution']['q75']:.2f}, range {cpcv['distribution']['min']:.2f} … "
        f"{cpcv['distribution']['max']:.2f}; share of paths with Sharpe <= 0: "
        f"{cpcv['distribution']['share_not_positive']:.0%}. BTC over the period: {cpcv['btc_sharpe_annual']:.2f}.",
        "", "## Probability of backtest overfitting", "",
        ("only one trial: PBO undefined" if pbo is None else
         f"PBO {pbo['pbo']:.2f} over {pbo['combinations']:.0f} combinations; median logit "
         f"{pbo['logit_median']:.2f}; the in-sample winner's OOS Sharpe is <= 0 in "
         f"{pbo['prob_oos_sharpe_not_positive']:.0%} of them (median IS {pbo['is_sharpe_of_best_median']:.2f} → "
         f"OOS {pbo['oos_sharpe_of_best_median']:.2f}; degradation slope {_num(pbo['degradation_slope'])})."),
        "", "## Chosen configuration vs BTC over the research period (in-sample)", "",
        *_summary_rows({selection["chosen"]: selection["in_sample"], "BTC buy & hold": proto["benchmark"]}),
        "", "## Every trial", "",
        _row(["rank", "configuration", "median CPCV test Sharpe", "full-period Sharpe", "max DD", "DD / BTC's",
              "turnover/yr", "eligible"]), _row(["---"] * 8),
        *[_row([_num(t["rank"], "{:.0f}"), f"`{name}`", _num(t["median_cpcv_test_sharpe"]),
                _num(t["full_period_sharpe"]), _pct(t["max_drawdown_frac"]), _num(t["drawdown_vs_btc"]),
                _num(t["cost"], "{:.1f}"), "yes" if t["eligible"] else "no"])
          for name, t in sorted(proto["trials"].items(), key=lambda item: item[1]["rank"])],
        "", "## Caveats", "", *[f"- {text}" for text in proto["caveats"]],
    ]  # fmt: skip
    if holdout := report.get("final_holdout"):
        lines += ["", "## Final hold-out (evaluated once, the chosen configuration only; never re-selected)", "",
                  f"`{holdout['chosen']}` on {holdout['start']} → {holdout['end']}:", "",
                  *_summary_rows({"strategy": holdout["strategy"], "BTC buy & hold": holdout["btc_buy_and_hold"]}),
                  "", f"Sharpe − BTC's: {_interval(holdout['sharpe_minus_btc_bootstrap'])}.",
                  f"Sharpe above BTC's: **{holdout['sharpe_above_btc']}**; max drawdown at most half of BTC's: "
                  f"**{holdout['max_drawdown_at_most_half_btc']}**."]
    return "\n".join(lines) + "\n"
