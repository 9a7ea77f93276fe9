"""Run the research protocol over every candidate configuration into state/research/<run_id>/ (report, charts).

Story: daily candles (+ funding) from --data-dir or data/, cut at the research end (default 2022-12-31; a later
end is refused and later candles are never used) -> every candidate of lib.research.candidates through the existing
backtester (a Dask task each, lib.ops.fanout), all from cash on their common first tradeable day (--own-starts: each
from its own, protocol v1) -> the returns matrix -> lib.research.protocol (calendar walk-forward, CPCV, PBO, deflated
Sharpe, paired bootstrap, the stated selection rule) -> report.json/.md, returns.parquet, charts, written atomically.
--final-holdout REPORT: evaluates ONLY the configuration REPORT chose on the hold-out (to --holdout-end), once, and
appends the result to REPORT; it never re-selects.
"""

from __future__ import annotations

import hashlib
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from lib.core import storage
from lib.core.errors import ConfigError
from lib.data import stored
from lib.ops import charts, datasets, fanout, research_inputs
from lib.ops.runner import RunContext, base_parser, run_script
from lib.research import candidates as registry
from lib.research.protocol.bootstrap import BootstrapParams
from lib.research.protocol.cpcv import CpcvParams
from lib.research.protocol.markdown import render_markdown
from lib.research.protocol.report import build_report, distribution_panels, final_holdout, oos_curves
from lib.research.protocol.run import ProtocolParams, run_protocol
from lib.research.protocol.walkforward import CalendarLayout
from lib.research.study import candidate_runs, history, sections

RESEARCH_END = "2022-12-31"  # 2023 is the untouched hold-out (docs: research on data <= 2022 only)


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    add = parser.add_argument
    add("--data-dir", type=Path, help="read DIR/market/1d/*.parquet and DIR/funding/ (the layout of ../shared/data)")
    add("--symbols", nargs="+", help="only these (default: data.symbols; with --data-dir every file there)")
    add("--family", action="append", help="only these candidate families (repeatable; default: all registered)")
    add("--start", help="first day considered (default: the latest first tradeable day of all candidates)")
    add("--own-starts", action="store_true", help="protocol v1: each candidate from its own first tradeable day "
        "(default, v2: every candidate from cash on the common first day)")
    add("--research-end", default=RESEARCH_END, help=f"last research day, at most {RESEARCH_END} (default)")
    add("--train", default="730D", help="walk-forward train span (730D, 24M, ...)")
    add("--test", default="180D", help="walk-forward test span")
    for flag, default, text in (("--purge-days", 1, "purge, days"), ("--embargo-days", 5, "embargo, days"),
                                ("--folds", 6, "CPCV folds"), ("--test-folds", 2, "CPCV test folds per split"),
                                ("--pbo-blocks", 16, "CSCV blocks for PBO (even)"),
                                ("--resamples", 2000, "bootstrap resamples"), ("--seed", 20221231, "bootstrap seed")):
        add(flag, type=int, default=default, help=f"{text} (default {default})")
    add("--project-trials", type=int, help="every configuration the project tried (this run + research logs): "
        "the deflated Sharpe is also reported with this N")
    add("--run-id", help="output folder name (default: research-UTCtime-inputhash)")
    add("--final-holdout", type=Path, metavar="REPORT_JSON", help="evaluate REPORT's chosen config on the hold-out")
    add("--holdout-end", default="2023-12-31", help="last hold-out day (with --final-holdout)")
    fanout.add_arguments(parser)  # the candidates' backtests: a local Dask cluster, --scheduler, or --workers 1
    return run_script("research", parser.parse_args(argv), _run)


def _load(ctx: RunContext, end_ms: int, *, carry: bool = False) -> registry.ResearchData:
    """Spot + perp candles, funding (``carry``: the hourly carry market), cut at ``end_ms`` right after reading."""
    config, timeframe = ctx.config, ctx.config.strategy.timeframe
    if timeframe != "1d":
        raise ConfigError("the research protocol runs on daily bars: set strategy.timeframe = \"1d\"")
    spot_files, perp_files = (datasets.series_files(ctx, timeframe, is_perp=perp) for perp in (False, True))
    read = {path: stored.read_valid_candles(path, timeframe, max_jump_frac=config.data.max_jump_frac)
            for path, _ in spot_files.values()}
    base = sections.settings_from(config, config.strategy)
    return registry.research_data(
        {symbol: read[files[0]] for symbol, files in spot_files.items()},
        {symbol: read[files[0]] for symbol, files in perp_files.items()},
        {symbol: stored.read_funding_until(files[1], end_ms) for symbol, files in perp_files.items()},
        end_ms=end_ms, base=base, study_params=sections.StudyParams(), carry_leverage=float(config.carry.leverage),
        carry_market=research_inputs.carry_market(ctx, end_ms=end_ms) if carry else None)


def _run(ctx: RunContext) -> None:
    args = ctx.args
    end_ms = history.parse_time_ms(args.research_end, is_end=True)
    if end_ms > history.parse_time_ms(RESEARCH_END, is_end=True):
        raise ConfigError(f"--research-end {args.research_end} is after {RESEARCH_END}: 2023 is the hold-out; "
                          "it is read only by --final-holdout")
    if args.final_holdout:
        return _final_holdout(ctx, args.final_holdout)
    families = tuple(args.family) if args.family else None
    data = _load(ctx, end_ms, carry=registry.TREND_CARRY in (families or ()))
    trials = registry.candidates(data, families)
    start_ms = history.parse_time_ms(args.start, is_end=False) if args.start else 0
    with fanout.from_args(args, ctx.config.research) as map_tasks:  # both phases: first days, then the runs
        if not args.own_starts:
            start_ms = candidate_runs.common_start(trials, data, start_ms=start_ms, map_tasks=map_tasks)
        runs = candidate_runs.candidate_runs(trials, candidate_runs.CandidateShared(
            data=data, start_ms=start_ms, end_ms=end_ms), map_tasks=map_tasks)
    matrix, btc = registry.returns_matrix(runs, registry.benchmark_returns(data))
    purge, embargo = args.purge_days, args.embargo_days
    params = ProtocolParams(
        walk_forward=CalendarLayout(train=args.train, test=args.test, purge_days=purge, embargo_days=embargo),
        cpcv=CpcvParams(n_folds=args.folds, n_test_folds=args.test_folds, purged_size=purge, embargo_size=embargo),
        pbo_blocks=args.pbo_blocks, bootstrap=BootstrapParams(resamples=args.resamples, seed=args.seed))
    turnover = pd.Series({name: run.turnover_annual for name, run in runs.items()})
    result = run_protocol(matrix, btc, params, cost=turnover,
                          families=pd.Series({trial.name: trial.family for trial in trials}),
                          project_trials=args.project_trials)
    digest = hashlib.sha256(repr((sorted(runs), matrix.shape, float(matrix.to_numpy().sum()))).encode()).hexdigest()
    run_id = args.run_id or f"research-{datetime.fromtimestamp(ctx.now_ms / 1000, UTC):%Y%m%dT%H%M%SZ}-{digest[:8]}"
    earlier = {name for record in storage.read_jsonl(ctx.paths.research_ledger)[0] for name in record["candidates"]}
    report = build_report(result, data, trials, run_id=run_id, research_end=args.research_end,
                          source=str(args.data_dir or ctx.config.data_dir), tried_in_all_runs=len(earlier | set(runs)))
    oos = result.walk_forward_oos
    outputs: dict[str, Any] = {
        "returns.parquet": matrix.assign(btc_buy_and_hold=btc).reset_index(names="date"),
        "oos_equity.png": charts.render_equity_chart(*oos_curves(result, matrix, btc), quote="growth of 1", title=(
            f"walk-forward OOS {oos.index[0]:%Y-%m-%d} → {oos.index[-1]:%Y-%m-%d}, net of costs")),
        "distributions.png": charts.render_distribution_chart(
            distribution_panels(result, report), title=f"{report['protocol']['trial_count']} trials"),
        "report.json": report, "report.md": render_markdown(report).encode(),
    }  # fmt: skip
    _write(ctx.paths.research_dir(run_id), outputs)
    storage.append_jsonl(ctx.paths.research_ledger, {"run_id": run_id, "candidates": sorted(runs)})
    protocol = report["protocol"]
    print(f"research {run_id}: {matrix.shape[1]} trials over {len(matrix)} days; chosen {result.chosen}; PBO "
          f"{(protocol['pbo'] or {}).get('pbo')}; DSR {protocol['selection']['deflated_sharpe']['dsr']}")


def _final_holdout(ctx: RunContext, report_path: Path) -> None:
    """The ONE evaluation of the already chosen configuration after the research end; appended, never re-selected."""
    report = storage.read_json(report_path)
    data = _load(ctx, holdout_end_ms := history.parse_time_ms(ctx.args.holdout_end, is_end=True),
                 carry=str(report["protocol"]["selection"]["chosen"]).startswith(registry.TREND_CARRY))
    report["final_holdout"] = final_holdout(report, data, holdout_end_ms=holdout_end_ms, bootstrap=BootstrapParams(
        resamples=ctx.args.resamples, seed=ctx.args.seed))
    _write(report_path.parent, {"report.json": report, "report.md": render_markdown(report).encode()})
    print(f"final hold-out of {report['final_holdout']['chosen']}: {report['final_holdout']['strategy']} vs BTC "
          f"{report['final_holdout']['btc_buy_and_hold']}")


def _write(out: Path, outputs: dict[str, Any]) -> None:
    """Each file atomically, only once everything is computed (a failed run writes nothing)."""
    writers = {pd.DataFrame: storage.write_parquet_atomic, bytes: storage.write_bytes_atomic}
    for name, content in outputs.items():
        writers.get(type(content), storage.write_json_atomic)(out / name, content)


if __name__ == "__main__":
    sys.exit(main())
