"""Pure: research glue of the backtest script: strategy + backtester as one walk-forward evaluate(),
parameter grids, benchmarks, funding coverage and result tables.

Targets come from ``lib.research.strategy.compute_strategy`` (what compute_signals runs) and fills from
``lib.research.backtester.run_backtest`` (close of t -> open of t+1). Signals are computed once over the loaded
history and sliced per window: they are causal (tests/unit/test_lookahead.py), so a slice equals a
recomputation on history cut at the window's end. The caller cuts the candles at ``--end``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import pandas as pd

from lib.core import timeframes
from lib.core.errors import ConfigError, DataError
from lib.core.timeframes import MS_PER_DAY, periods_per_year, timeframe_ms
from lib.research.backtester import BacktestParams, BacktestResult, run_backtest
from lib.research.ensemble import EnsembleParams
from lib.research.metrics import (
    buy_and_hold_equity,
    drawdown_series,
    equal_weight_equity,
    summary_metrics,
    years_covered,
)
from lib.research.portfolio import PerpParams, SpotParams
from lib.research.signals import SignalParams
from lib.research.sleeves.book import BOOK_STRATEGIES, BookSettings
from lib.research.sleeves.combiner import CombinerParams
from lib.research.sleeves.sizing import SizingParams
from lib.research.sleeves.trend import TrendParams
from lib.research.sleeves.turnover import TurnoverParams
from lib.research.strategy import PERP_STRATEGY, SPOT_STRATEGY, STRATEGY_NAMES, compute_strategy
from lib.research.universe import UniverseParams
from lib.research.walkforward import Evaluate, WalkForwardParams, build_windows, expand_grid, run_walk_forward

STRATEGY_COLUMN = "strategy"
BTC_BENCHMARK = "btc_buy_and_hold"
EQUAL_WEIGHT_BENCHMARK = "equal_weight_buy_and_hold"  # the basket priced at the first bar, never rebalanced
EQUAL_WEIGHT_REBALANCED_BENCHMARK = "equal_weight_rebalanced"  # reset every N days; new listings join
GRID_SECTIONS = ("strategy", "signals", "ensemble", "universe", "spot", "perp", "backtest",
                 "trend", "sizing", "combiner", "turnover")  # grid keys
PARAM_SECTIONS = tuple(name for name in GRID_SECTIONS if name != "strategy")  # config sections = StudySettings fields
MARKET_BY_STRATEGY: Mapping[str, Literal["spot", "perp"]] = {
    SPOT_STRATEGY: "spot", PERP_STRATEGY: "perp", **dict.fromkeys(BOOK_STRATEGIES, "spot")}
BOOK_TARGET_VOL_GRID = (0.3, 0.4, 0.6)  # the sleeve books' built-in walk-forward axis
SCHEMA_VERSION = 1  # of metrics.json / walkforward.json / cost_sensitivity.json
MAX_CHART_POINTS = 3000  # more points than pixels only slows the PNG down (hourly runs have ~35k bars)
SUMMARY_COLUMNS = (
    ("cagr_frac", "CAGR", True), ("volatility_annual_frac", "vol", True), ("sharpe", "Sharpe", False),
    ("sortino", "Sortino", False), ("max_drawdown_frac", "maxDD", True), ("calmar", "Calmar", False),
    ("turnover_annual", "turn/yr", False), ("cost_drag_annual_frac", "costs/yr", True),
)  # fmt: skip
"""(metric, header, shown as percent) of the stdout summary table."""

type Frame = pd.DataFrame
type Grid = dict[str, tuple[Any, ...]]
MissingFunding = Literal["drop", "proxy", "zero"]


@dataclass(frozen=True, slots=True, kw_only=True)
class StudyParams:
    """Research defaults of the backtest script (TOML section ``study``).

    ``missing_funding`` (perps, symbols without a funding history): ``drop`` them from the universe
    (honest, the default), ``proxy`` = charge the mean rate of the symbols that have one at each
    settlement, ``zero`` = charge nothing (optimistic).
    """

    spot_top_n_grid: tuple[int, ...] = (3, 5, 8)
    perp_top_k_grid: tuple[int, ...] = (1, 2, 3)
    rebalance_days_grid: tuple[int, ...] = (1, 7)
    equal_weight_rebalance_days: int = 30
    missing_funding: MissingFunding = "drop"

    def __post_init__(self) -> None:
        for key in ("spot_top_n_grid", "perp_top_k_grid", "rebalance_days_grid"):
            values = getattr(self, key)
            if not values or any(value < 1 for value in values):
                raise ConfigError(f"study.{key} must be a non-empty list of ints >= 1, got {values}")
        if (days := self.equal_weight_rebalance_days) < 1:
            raise ConfigError(f"study.equal_weight_rebalance_days must be >= 1, got {days}")
        if self.missing_funding not in ("drop", "proxy", "zero"):
            raise ConfigError(f"study.missing_funding must be drop/proxy/zero, got {self.missing_funding!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class StudySettings:
    """Every config section the strategy and the simulation read (one grid point = one of these)."""

    strategy: Any  # lib.ops.config.StrategySection: lib.research.strategy.StrategySpec + rebalance_every_bars
    signals: SignalParams
    ensemble: EnsembleParams
    universe: UniverseParams
    spot: SpotParams
    perp: PerpParams
    backtest: BacktestParams
    trend: TrendParams = dataclasses.field(default_factory=TrendParams)  # the sleeve book's sections
    sizing: SizingParams = dataclasses.field(default_factory=SizingParams)
    combiner: CombinerParams = dataclasses.field(default_factory=CombinerParams)
    turnover: TurnoverParams = dataclasses.field(default_factory=TurnoverParams)

    @property
    def book(self) -> BookSettings:
        return BookSettings(trend=self.trend, sizing=self.sizing, combiner=self.combiner, turnover=self.turnover)


def with_overrides(settings: StudySettings, overrides: Mapping[str, Any]) -> StudySettings:
    """``settings`` with each ``section.field`` of ``overrides`` replaced; ConfigError on an unknown
    key or a value the section rejects."""
    changed: dict[str, dict[str, Any]] = {}
    for key, value in overrides.items():
        section, field_name = _split_key(settings, key)
        changed.setdefault(section, {})[field_name] = value
    replaced = {name: dataclasses.replace(getattr(settings, name), **kw) for name, kw in changed.items()}
    return dataclasses.replace(settings, **replaced)


def _split_key(settings: StudySettings, key: str) -> tuple[str, str]:
    section, _, field_name = key.partition(".")
    if section not in GRID_SECTIONS:
        raise ConfigError(f"grid key {key!r}: section must be one of {', '.join(GRID_SECTIONS)}")
    names = {f.name for f in dataclasses.fields(getattr(settings, section))}
    if field_name not in names:
        raise ConfigError(f"grid key {key!r}: {section} has no field {field_name!r} (known: {sorted(names)})")
    return section, field_name


def to_backtest_params(settings: StudySettings) -> BacktestParams:
    """The simulation parameters: market from ``strategy.name``; the schedule from
    ``backtest.rebalance_every_bars`` when set (not 1), else ``strategy.rebalance_every_bars``.

    Raises:
        ConfigError: both schedules are set and differ, or the strategy name is unknown.
    """
    name = settings.strategy.name
    if name not in MARKET_BY_STRATEGY:
        raise ConfigError(f"strategy.name must be one of {', '.join(STRATEGY_NAMES)}, got {name!r}")
    in_backtest, in_strategy = settings.backtest.rebalance_every_bars, settings.strategy.rebalance_every_bars
    if 1 != in_backtest != in_strategy != 1:
        raise ConfigError(f"backtest.rebalance_every_bars ({in_backtest}) and strategy.rebalance_every_bars "
                          f"({in_strategy}) disagree; set only strategy.rebalance_every_bars")
    every_bars = in_backtest if in_backtest != 1 else in_strategy
    market = MARKET_BY_STRATEGY[name]
    if settings.backtest.market not in (market, BacktestParams().market):
        raise ConfigError(f"backtest.market = {settings.backtest.market!r} disagrees with strategy.name = {name!r}; "
                          "leave backtest.market unset (it follows the strategy)")
    return dataclasses.replace(settings.backtest, market=market, rebalance_every_bars=every_bars)


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulationInputs:
    """What the simulation needs of one strategy run (the rest of StrategyOutput is let go).

    Frames are time x symbol on the candle panel's index (int64 ms). ``bar_volatility_frac``:
    per-bar return volatility (volatility-scaled slippage). ``is_tradeable``: bars at which at least
    one symbol is in the point-in-time universe. ``funding``: rates per settlement (perps).
    """

    open: Frame
    close: Frame
    target_weights: Frame
    bar_volatility_frac: Frame
    is_tradeable: pd.Series
    benchmark: str | None
    funding: Frame | None


def build_simulation_inputs(
    candles_by_symbol: Mapping[str, Frame], settings: StudySettings, *, funding_wide: Frame | None
) -> SimulationInputs:
    """Run the strategy composition over the whole history once (causal: row t uses bars <= t)."""
    output = compute_strategy(
        candles_by_symbol, strategy=settings.strategy, signals=settings.signals, ensemble=settings.ensemble,
        universe=settings.universe, spot=settings.spot, perp=settings.perp, book=settings.book,
    )  # fmt: skip
    scale = math.sqrt(periods_per_year(settings.strategy.timeframe))
    traded = None if funding_wide is None else funding_wide.columns.isin(output.panel.close.columns)
    return SimulationInputs(
        open=output.panel.open, close=output.panel.close, target_weights=output.target_weights,
        bar_volatility_frac=output.volatility_annual_frac / scale, is_tradeable=output.eligible.any(axis=1),
        benchmark=output.benchmark, funding=None if funding_wide is None else funding_wide.loc[:, traded],
    )  # fmt: skip


def simulate(
    inputs: SimulationInputs, params: BacktestParams, *, start_ms: int | None = None,
    end_ms: int | None = None,
) -> BacktestResult:  # fmt: skip
    """Backtest the bars in [start_ms, end_ms] (inclusive; None = open-ended), from cash at start_ms.

    Raises:
        DataError: fewer than 2 bars in the range.
    """
    bars = slice(start_ms, end_ms)
    close = inputs.close.loc[bars]
    if len(close) < 2:
        raise DataError(f"backtest range [{start_ms}, {end_ms}] holds {len(close)} bar(s); need >= 2")
    return run_backtest(
        open_wide=inputs.open.loc[bars], close_wide=close, target_weights=inputs.target_weights.loc[bars],
        params=params, funding_wide=inputs.funding if params.market == "perp" else None,
        volatility_wide=inputs.bar_volatility_frac.loc[bars] if params.slippage_vol_mult > 0 else None,
    )  # fmt: skip


def make_evaluate(
    candles_by_symbol: Mapping[str, Frame], settings: StudySettings, *,
    computed: SimulationInputs | None = None, funding_wide: Frame | None = None,
) -> Evaluate:  # fmt: skip
    """``evaluate(overrides, start_ms, end_ms) -> equity`` for lib.research.walkforward.run_walk_forward.

    The strategy is computed once per distinct strategy-side setting (cached in the closure), so a
    grid over backtest-only keys such as the rebalance schedule reuses one run. ``computed``: the run
    of ``settings`` itself, if the caller has it (its funding is then reused).
    """
    cache: dict[tuple[Any, ...], SimulationInputs] = {}
    if computed is not None:
        cache[_strategy_key(settings)] = computed
        funding_wide = computed.funding

    def evaluate(overrides: Mapping[str, Any], start_ms: Any, end_ms: Any) -> pd.Series:
        point = with_overrides(settings, overrides)
        key = _strategy_key(point)
        if key not in cache:
            cache[key] = build_simulation_inputs(candles_by_symbol, point, funding_wide=funding_wide)
        params = to_backtest_params(point)
        return simulate(cache[key], params, start_ms=int(start_ms), end_ms=int(end_ms)).equity

    return evaluate


def _strategy_key(settings: StudySettings) -> tuple[Any, ...]:
    """The settings compute_strategy depends on (the rebalance schedule is the backtester's)."""
    strategy = dataclasses.replace(settings.strategy, rebalance_every_bars=1)
    return (strategy, settings.signals, settings.ensemble, settings.universe, settings.spot, settings.perp,
            settings.book)


def default_grid(settings: StudySettings, study: StudyParams) -> Grid:
    """The small built-in grid: how many names to hold (sleeve books: volatility target) x how often to
    rebalance (days -> bars)."""
    bar_ms = timeframe_ms(settings.strategy.timeframe)
    every_bars = tuple(dict.fromkeys(max(1, day * MS_PER_DAY // bar_ms) for day in study.rebalance_days_grid))
    if settings.strategy.name == PERP_STRATEGY:
        return {"perp.top_k": study.perp_top_k_grid, "strategy.rebalance_every_bars": every_bars}
    if settings.strategy.name in BOOK_STRATEGIES:  # spot.top_n means nothing to a sleeve book
        return {"sizing.target_vol_annual_frac": BOOK_TARGET_VOL_GRID, "strategy.rebalance_every_bars": every_bars}
    return {"spot.top_n": study.spot_top_n_grid, "strategy.rebalance_every_bars": every_bars}


def parse_grid(items: Sequence[str], settings: StudySettings) -> Grid:
    """``["spot.top_n=3,5,8", ...]`` -> ``{"spot.top_n": (3, 5, 8)}``, values typed like the field.

    Raises:
        ConfigError: malformed item, unknown key, or a value that does not parse as the field's type.
    """
    grid: Grid = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not text:
            raise ConfigError(f"--grid {item!r} must look like section.field=value1,value2")
        section, field_name = _split_key(settings, key.strip())
        current = getattr(getattr(settings, section), field_name)
        grid[f"{section}.{field_name}"] = tuple(_typed(value, current, key) for value in text.split(","))
    return grid


def _typed(text: str, like: Any, key: str) -> Any:
    text = text.strip()
    try:
        if isinstance(like, bool):
            if text.lower() not in ("true", "false"):
                raise ValueError(text)
            return text.lower() == "true"
        if isinstance(like, int | float | str):
            return type(like)(text)
    except ValueError:
        raise ConfigError(f"--grid {key}: {text!r} is not a {type(like).__name__}") from None
    raise ConfigError(f"--grid {key}: fields of type {type(like).__name__} cannot be gridded")


def walk_forward_study(
    candles_by_symbol: Mapping[str, Frame], settings: StudySettings, inputs: SimulationInputs,
    benchmarks: Frame, *, grid: Grid, layout: WalkForwardParams,
    progress: Callable[[], object] | None = None
) -> tuple[dict[str, Any], Frame]:  # fmt: skip
    """Walk-forward over ``benchmarks``' bars: choose a grid point on each train window by
    ``layout.metric``, trade it on the next test window, stitch (lib.research.walkforward). Returns the
    walkforward.json document and the stitched out-of-sample equity frame (benchmarks rebased).

    ``progress()`` is called once per evaluation (windows x (grid points + 1) in all).
    """
    points, windows = expand_grid(grid), build_windows(benchmarks.index, layout)
    evaluate = make_evaluate(candles_by_symbol, settings, computed=inputs)
    timeframe = settings.strategy.timeframe

    def counted(overrides: Mapping[str, Any], start_ms: Any, end_ms: Any) -> pd.Series:
        if progress is not None:
            progress()
        return evaluate(overrides, start_ms, end_ms)

    walk = run_walk_forward(counted, points, windows, timeframe=timeframe, metric=layout.metric,
                            starting_capital_quote=settings.backtest.starting_capital_quote)
    equity = walk.equity
    oos = benchmarks.reindex(equity.index)
    oos = oos / oos.iloc[0] * float(equity.iloc[0])
    rows = [{
        "window": int(row.window),
        "test_start": to_iso(int(row.test_start_ts)), "test_end": to_iso(int(row.test_end_ts)),
        "train_start_ms": int(row.train_start_ts), "train_end_ms": int(row.train_end_ts),
        "test_start_ms": int(row.test_start_ts), "test_end_ms": int(row.test_end_ts),
        "params": dict(row.params), "train_metric": row.train_metric, "test_metric": row.test_metric,
    } for row in walk.table.itertuples(index=False)]  # fmt: skip
    chosen = Counter(", ".join(f"{k}={v}" for k, v in sorted(dict(row["params"]).items())) for row in rows)
    metrics = {name: summary_metrics(curve, timeframe=timeframe) for name, curve in
               [(STRATEGY_COLUMN, equity), *oos.items()]}
    document = {
        "schema_version": SCHEMA_VERSION, "grid": grid, "layout": dataclasses.asdict(layout), "windows": rows,
        "params_chosen": dict(chosen.most_common()), "out_of_sample_metrics": metrics,
        "out_of_sample_start": to_iso(int(equity.index[0])),
        "out_of_sample_end": to_iso(int(equity.index[-1])),
    }  # fmt: skip
    return json_safe(document), to_equity_frame(equity, oos)


def build_funding_wide(
    funding_by_symbol: Mapping[str, Frame | None], *, policy: MissingFunding
) -> tuple[Frame | None, list[str]]:
    """Funding rates as a wide frame (settlement time x symbol) and the symbols to drop.

    ``funding_by_symbol`` has every traded symbol; None or empty = no funding history. Policies: see
    ``StudyParams.missing_funding`` (``proxy``: the mean rate of the others at each settlement).
    """
    known = {symbol: frame for symbol, frame in funding_by_symbol.items() if frame is not None and len(frame)}
    missing = sorted(set(funding_by_symbol) - set(known))
    dropped = missing if policy == "drop" else []
    if not known:
        return None, dropped
    wide = pd.DataFrame({symbol: frame.set_index("timestamp")["rate"] for symbol, frame in known.items()})
    wide = wide.sort_index()
    if policy == "proxy" and missing:
        wide = wide.assign(**dict.fromkeys(missing, wide.mean(axis=1, skipna=True)))
    wide.index = wide.index.astype("int64")
    return wide, dropped


def first_funding_ms(funding_by_symbol: Mapping[str, Frame | None]) -> int:
    """The first settlement at which EVERY symbol with a funding history has one, 0 if none (why: a
    perpetual without any funding print yet was not listed, so a backtest must not trade it)."""
    frames = [frame for frame in funding_by_symbol.values() if frame is not None and len(frame)]
    return max((int(frame["timestamp"].iloc[0]) for frame in frames), default=0)


def default_start_ms(inputs: SimulationInputs, *, not_before_ms: int = 0) -> int:
    """The first bar at or after ``not_before_ms`` at which the universe is non-empty: benchmarks
    then start with the strategy, not during its indicator warm-up. DataError if there is none."""
    tradeable = inputs.is_tradeable[inputs.is_tradeable.index >= not_before_ms]
    if not tradeable.any():
        raise DataError("no bar has a tradeable symbol (universe.min_history_bars too long for the data?)")
    return int(tradeable.idxmax())


def benchmark_equity(
    close_wide: Frame, benchmark: str | None, *, timeframe: str, study: StudyParams, capital_quote: float
) -> Frame:
    """Buy-and-hold equity curves over ``close_wide``'s bars (no costs), one column per benchmark;
    BTC (``benchmark``) is left out when it is not in the data."""
    every_bars = max(1, study.equal_weight_rebalance_days * MS_PER_DAY // timeframe_ms(timeframe))
    curves: dict[str, pd.Series] = {}
    if benchmark is not None:
        btc_close = close_wide[benchmark]
        curves[BTC_BENCHMARK] = buy_and_hold_equity(btc_close, starting_capital_quote=capital_quote)
    curves[EQUAL_WEIGHT_BENCHMARK] = equal_weight_equity(close_wide, starting_capital_quote=capital_quote)
    curves[EQUAL_WEIGHT_REBALANCED_BENCHMARK] = equal_weight_equity(
        close_wide, starting_capital_quote=capital_quote, rebalance_every_bars=every_bars)
    return pd.DataFrame(curves, index=close_wide.index)


def to_equity_frame(equity: pd.Series, benchmarks: Frame) -> Frame:
    """``timestamp`` (int64 ms) + strategy + benchmark columns: the equity.parquet schema."""
    frame = benchmarks.reindex(equity.index).assign(**{STRATEGY_COLUMN: equity})
    return frame[[STRATEGY_COLUMN, *benchmarks.columns]].rename_axis("timestamp").reset_index()


def metrics_report(result: BacktestResult, benchmarks: Frame, *, timeframe: str) -> dict[str, Any]:
    """Headline metrics of the strategy and of each benchmark (JSON-safe: undefined = None)."""
    traded_quote = float(result.trades["notional_quote"].sum())
    years, mean_equity = years_covered(result.equity, timeframe=timeframe), float(result.equity.mean())
    costs_quote = result.fees_paid_quote + result.slippage_paid_quote
    report = {STRATEGY_COLUMN: summary_metrics(
        result.equity, timeframe=timeframe, weights=result.weights, traded_notional_quote=traded_quote) | {
        "net_exposure_frac": float(result.weights.sum(axis=1).mean()),
        "fees_paid_quote": result.fees_paid_quote, "slippage_paid_quote": result.slippage_paid_quote,
        "funding_paid_quote": result.funding_paid_quote,
        "trade_count": len(result.trades), "final_equity_quote": float(result.equity.iloc[-1]),
        "cost_drag_annual_frac": costs_quote / mean_equity / years if years > 0 and mean_equity > 0 else math.nan,
    }}  # fmt: skip
    for name in benchmarks.columns:
        curve = benchmarks[name].reindex(result.equity.index)
        final = {"final_equity_quote": float(curve.iloc[-1])}
        report[name] = summary_metrics(curve, timeframe=timeframe) | final
    return json_safe(report)  # type: ignore[no-any-return]


def cost_report(table: Frame) -> dict[str, Any]:
    """lib.research.walkforward.cost_sensitivity's table (one row per fee_bps) as JSON."""
    rows = {f"{float(fee_bps):g}": row.to_dict() for fee_bps, row in table.iterrows()}
    varied = "backtest.fee_bps (slippage unchanged)"
    return json_safe({"schema_version": SCHEMA_VERSION, "varied": varied, "by_fee_bps": rows})  # type: ignore[no-any-return]


def summary_table(title: str, metrics: Mapping[str, Mapping[str, Any]]) -> str:
    """The script's stdout: one line per curve (strategy first), SUMMARY_COLUMNS; '-' = undefined."""
    lines = [title, f"{'':<28}" + "".join(f"{header:>9}" for _, header, _ in SUMMARY_COLUMNS)]
    for name, values in metrics.items():
        cells = [_cell(values.get(key), as_percent=as_percent) for key, _, as_percent in SUMMARY_COLUMNS]
        lines.append(f"{name:<28}" + "".join(cells))
    return "\n".join(lines)


def _cell(value: float | None, *, as_percent: bool) -> str:
    return f"{'-':>9}" if value is None else f"{value:>9.1%}" if as_percent else f"{value:>9.2f}"


def chart_frames(equity_frame: Frame, weights: Frame) -> tuple[Frame, Frame, Frame]:
    """What the backtest chart draws, indexed by UTC time: equity curves, their drawdowns (<= 0),
    and the strategy's gross and net exposure (fractions of equity).

    Long runs are thinned to ~MAX_CHART_POINTS blocks (last value; worst drawdown; mean exposure).
    """
    time = pd.DatetimeIndex(pd.to_datetime(equity_frame["timestamp"], unit="ms", utc=True))
    curves = equity_frame.drop(columns="timestamp").set_axis(time)
    drawdowns = curves.apply(drawdown_series)
    held = weights.reindex(equity_frame["timestamp"].to_numpy()).fillna(0.0)
    exposure = pd.DataFrame({"gross": held.abs().sum(axis=1).to_numpy(), "net": held.sum(axis=1).to_numpy()})
    exposure.index = time
    step = math.ceil(len(time) / MAX_CHART_POINTS)
    if step <= 1:
        return curves, drawdowns, exposure
    blocks = np.arange(len(time)) // step
    at = pd.DatetimeIndex(pd.Series(time).groupby(blocks).last())
    return (curves.groupby(blocks).last().set_axis(at), drawdowns.groupby(blocks).min().set_axis(at),
            exposure.groupby(blocks).mean().set_axis(at))


def cut_candles(candles_by_symbol: Mapping[str, Frame], *, end_ms: int | None) -> dict[str, Frame]:
    """Candles cut at ``end_ms`` (inclusive); symbols left without any are dropped (DataError if all)."""
    cut = {symbol: frame if end_ms is None else frame[frame["timestamp"] <= end_ms].reset_index(drop=True)
           for symbol, frame in candles_by_symbol.items()}
    kept = {symbol: frame for symbol, frame in cut.items() if len(frame)}
    if not kept:
        raise DataError(f"no candles at or before {end_ms}; check --end and the data directory")
    return kept


def parse_time_ms(text: str, *, is_end: bool) -> int:
    """ISO date/time (UTC) or epoch ms -> ms (ConfigError otherwise). A bare date as an END means the
    whole day (its last ms)."""
    time_ms = timeframes.parse_time_ms(text, what="--end" if is_end else "--start")
    return time_ms + MS_PER_DAY - 1 if is_end and len(text) == len("2024-01-01") else time_ms


def build_run_id(settings: StudySettings, *, now_ms: int, inputs: Sequence[str]) -> str:
    """``<strategy>-<timeframe>-<UTC time>-<8 hex of sha256(settings, inputs)>``: sortable, and two
    runs on different inputs in the same second do not share a directory."""
    digest = hashlib.sha256("\n".join([repr(settings), *inputs]).encode()).hexdigest()[:8]
    stamp = datetime.fromtimestamp(now_ms / 1000, UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{settings.strategy.name}-{settings.strategy.timeframe}-{stamp}-{digest}"


def settings_document(settings: StudySettings) -> dict[str, Any]:
    """Every section as plain JSON (tuples -> lists), for metrics.json."""
    return json_safe({name: dataclasses.asdict(getattr(settings, name)) for name in GRID_SECTIONS})  # type: ignore[no-any-return]


def to_iso(time_ms: int) -> str:
    return datetime.fromtimestamp(time_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%MZ")


def json_safe(value: Any) -> Any:
    """Nested dicts/lists/tuples with numpy scalars -> plain JSON values; NaN/inf -> None."""
    if isinstance(value, Mapping):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value
