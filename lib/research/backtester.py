"""Pure: the honest backtester: target weights -> fills at the NEXT bar's open, with costs.

Causality: a target row stamped t was computed from data up to the CLOSE of bar t; it is filled
at the OPEN of bar t+1, never at t (this module is the one place where t -> t+1 happens). A target
on the last bar is never filled.

Costs: taker fee on traded notional; slippage moves the fill price against us by
``slippage_bps`` plus ``slippage_vol_mult`` x the asset's per-bar volatility at the decision bar;
funding for perps (positive rate: longs pay, shorts receive) on the notional held; a no-trade
band; orders under ``min_notional_quote`` are skipped (so a small book keeps dust). Quantities
are fractional (exchange lot rounding lives in lib/execution/orders.py). Missing data: a missing close is
marked at the last close; a missing open blocks trading that asset on that bar. A held asset whose candles
stop before the last bar (delisting, data end) is sold at its last close (slippage and fee as any order; a
``data_ended`` trade stamped with that bar, and a warning in ``data_end_exits``), not held frozen.

Live risk (``params.model_live_risk`` and ``live_risk`` given): the drawdown halt, the daily-loss
reduce-only mode and the caps of ``[risk]``, applied at each tick as lib.research.live_risk describes; with
``daily_close`` also the pre-trade tail-risk scaling or refusal (lib.research.live_tail), its factors computed
for every tick before the walk (they depend on the targets and past daily closes only, not on the book).

Accounting: equity = cash + sum(units x price). For spot, cash is never negative (buys are scaled
down to the cash left after sells and fees) and weights are >= 0. For linear (USDT-margined)
perps the same identity holds with cash = collateral - sum(units x entry price), i.e.
equity = collateral + unrealized PnL; if equity reaches 0 at a close the book is liquidated and
stays flat (closes only: no intrabar high/low, so this is optimistic for leveraged books).
Between rebalance ticks units are constant, so equity is computed per segment with numpy; the
Python loop runs once per rebalance tick, except ticks where a flat book meets an all-zero target
(nothing held, nothing wanted: the flat segment simply runs on, its equity being the cash either way).
The same walk runs compiled (lib.research.sim_kernel without the live risk layer, always; lib.research.live_kernel
with it, on long histories where it pays), bit-identical; the Python walk here stays the reference
(``compiled=False``); ``run_backtest_sweep`` runs a grid of parameter sets on one alignment.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lib.core.errors import DataError
from lib.research.backtest_inputs import BPS_PER_UNIT, align_frames, schedule
from lib.research.backtest_inputs import SimInputs as _Inputs
from lib.research.backtest_params import BacktestParams
from lib.research.backtest_trades import TRADE_COLUMNS, TRADE_DTYPES, Order, trades_frame, trades_from_records
from lib.research.live_risk import LiveRiskLimits, LiveRiskReport, LiveRiskState, reduce_only_weights
from lib.research.live_tail import tail_scales
from lib.research.portfolio import apply_no_trade_band

__all__ = ["TRADE_COLUMNS", "TRADE_DTYPES", "BacktestResult", "run_backtest", "run_backtest_sweep"]

DUST_QUOTE = 1e-9  # a trade smaller than this (quote) is float noise, never an order
# The live-risk walk compiles by default where it pays: ~27 us a tick in Python against ~0.05 s to load the kernel
# once numba is loaded (lib.research.sleeves.book loads it from its COMPILED_MIN_ROWS = 8,000 rows; ~0.4 s more if not)
LIVE_COMPILED_MIN_BARS, LIVE_COMPILED_MIN_TICKS = 8_000, 2_000


@dataclass(frozen=True, slots=True)
class BacktestResult:
    """Output of one run. ``equity`` is marked at each bar's close; ``weights`` are the HELD
    weights at each close (units x close / equity); ``turnover`` = traded notional / mean equity
    over the whole run (not annualized; see lib.research.metrics.annualized_turnover)."""

    equity: pd.Series
    weights: pd.DataFrame
    trades: pd.DataFrame
    fees_paid_quote: float
    slippage_paid_quote: float
    funding_paid_quote: float
    turnover: float
    live_risk: LiveRiskReport | None = None  # None: the live risk layer was not modelled
    data_end_exits: tuple[str, ...] = ()  # one warning per held asset sold because its candles stopped


@dataclass(slots=True)
class _Ledger:
    """Mutable state of the walk (lives only inside one run_backtest call).

    ``fills`` keeps (bar, orders) per rebalance, an order being (asset position, side +1/-1,
    amount_base, fill price);
    ``segments`` keeps (first bar, units held from it) so held units are rebuilt once at the end.
    ``units`` is replaced, never mutated, when it changes: segments share it without copies.
    """

    cash: float
    units: np.ndarray
    fills: list[tuple[int, list[Order]]] = field(default_factory=list)
    exits: list[tuple[int, Order]] = field(default_factory=list)  # (bar of the last close, order)
    segments: list[tuple[int, np.ndarray]] = field(default_factory=list)
    funding: float = 0.0
    ruined_at: int = -1
    is_flat: bool = True  # every unit is 0


def run_backtest(
    *,
    open_wide: pd.DataFrame,
    close_wide: pd.DataFrame,
    target_weights: pd.DataFrame,
    params: BacktestParams,
    funding_wide: pd.DataFrame | None = None,
    volatility_wide: pd.DataFrame | None = None,
    live_risk: LiveRiskLimits | None = None,
    compiled: bool | None = None,
    daily_close: pd.DataFrame | None = None,
) -> BacktestResult:
    """Simulate trading ``target_weights`` over the bars of ``close_wide`` (see module docstring).

    ``target_weights``: rows = decision times (reindexed to the bars; a row that is all NaN, or off
    the ``rebalance_every_bars`` schedule, is "no decision"; a NaN inside a decision row = 0).
    ``funding_wide``: rate per settlement at its own timestamp (perp only); a settlement in
    [open_i, open_i + bar) is paid by the units held during bar i, on units x open_i. Symbols
    missing from it pay no funding. ``volatility_wide``: per-bar return volatility fraction, read
    at the decision bar for the volatility-scaled slippage. ``live_risk``: the ``[risk]`` limits, applied
    when ``params.model_live_risk`` (lib.research.live_risk). ``compiled``: run the walk compiled (same numbers);
    False runs the Python walk (the reference); None (default): compiled, with the live risk layer only from
    LIVE_COMPILED_MIN_BARS bars and LIVE_COMPILED_MIN_TICKS rebalance ticks on.
    ``daily_close``: complete days' closes (lib.research.live_tail.day_closes of the history up to the run's end,
    before its start too: live's VaR window reaches back) to model the tail-risk pass with the live risk layer.
    """
    frames = align_frames(open_wide, close_wide, target_weights, params, funding_wide, volatility_wide)
    inputs = schedule(frames, params)
    risk = None if live_risk is None or not params.model_live_risk else LiveRiskState(
        limits=live_risk, index=np.asarray(close_wide.index), is_perp=params.market == "perp",
        starting_capital_quote=float(params.starting_capital_quote), review_days=params.halt_review_days)
    if risk is not None and daily_close is not None and live_risk is not None and live_risk.tail_risk_action != "off":
        risk.tail_scale = _tail_factors(risk, inputs, close_wide, daily_close)
    pays = len(close_wide) >= LIVE_COMPILED_MIN_BARS and inputs.has_decision.sum() >= LIVE_COMPILED_MIN_TICKS
    if compiled or (compiled is None and (risk is None or pays)):
        return _compiled_run(close_wide, inputs, params, risk)
    n_bars, n_assets = inputs.mark.shape
    equity = np.zeros(n_bars)
    ledger = _Ledger(cash=float(params.starting_capital_quote), units=np.zeros(n_assets))
    fee_frac = params.fee_bps / BPS_PER_UNIT
    long_only = params.market == "spot"
    ends = inputs.last_close_bar
    exit_after = {int(bar) + 1 for bar in ends[(ends >= 0) & (ends < n_bars - 1)]}
    wants_position = inputs.wants_position
    segment_start = 0
    for bar in sorted(exit_after | set(np.flatnonzero(inputs.has_decision).tolist())):
        must_exit = bar in exit_after and bool(ledger.units[ends == bar - 1].any())
        is_fill = bool(inputs.has_decision[bar]) and not (
            ledger.is_flat and (not wants_position[bar - 1] or (risk is not None and risk.is_halted(bar))))
        # (a halted book that is not flat yet keeps ticking: its flatten is retried, as live)
        if not (must_exit or is_fill):
            continue  # a no-op tick (see module docstring)
        if not _walk_segment(ledger, inputs, equity, segment_start, bar, long_only=long_only):
            break
        segment_start = bar
        if must_exit:
            _exit_ended(ledger, inputs, bar - 1, ends == bar - 1, fee_frac)
        if is_fill:
            _risk_checked_rebalance(ledger, inputs, equity, bar, params, fee_frac, risk)
    else:
        _walk_segment(ledger, inputs, equity, segment_start, n_bars, long_only=long_only)
    return _result(close_wide, equity, inputs, ledger, fee_frac, risk)


def _risk_checked_rebalance(ledger: _Ledger, inputs: _Inputs, equity: np.ndarray, bar: int,
                            params: BacktestParams, fee_frac: float, risk: LiveRiskState | None) -> None:
    """Fill the decision of bar ``bar - 1`` at bar ``bar``'s open, through the live risk verdict if modelled."""
    wanted = inputs.target[bar - 1]
    if risk is None:
        _rebalance(ledger, inputs, bar, wanted, params, fee_frac)
        return
    held_value = ledger.units * inputs.reference[bar]
    equity_now = ledger.cash + float(held_value.sum())
    mode = risk.mode(bar, equity, equity_now)
    if mode in ("flatten_and_halt", "halted"):  # flatten (again, if an asset could not trade): no order cap
        _rebalance(ledger, inputs, bar, np.zeros_like(wanted), params, fee_frac)
        return
    wanted, refused = risk.fit_tail(bar, risk.clip(wanted))  # over the per-asset cap: clipped, as live; then tail
    if refused and mode == "trade" and (breach := risk.target_breach(wanted)):
        risk.block(breach)  # live: the verdict on the whole plan halts; the refusal keeps the halt
        return
    if mode == "reduce_only" or refused:
        wanted = reduce_only_weights(wanted, held_value / equity_now)
    elif breach := risk.target_breach(wanted):
        risk.block(breach)
        return
    if breach := _rebalance(ledger, inputs, bar, wanted, params, fee_frac, order_check=risk.order_breach):
        risk.block(breach)


def _tail_factors(risk: LiveRiskState, inputs: _Inputs, close_wide: pd.DataFrame,
                  daily_close: pd.DataFrame) -> np.ndarray:
    """Live's tail factor of each fill bar's clipped target (1 elsewhere), from the days ended by its open."""
    limits = risk.limits
    factors = np.ones(len(inputs.has_decision))
    bars = np.flatnonzero(inputs.has_decision[1:]) + 1
    if inputs.target[bars - 1].any():  # (all-cash books fit: 1; tail_scales fails on no book at all)
        factors[bars] = tail_scales(
            daily_close.reindex(columns=close_wide.columns), close_wide.index.to_numpy(dtype=np.int64)[bars],
            risk.clip_all(inputs.target[bars - 1]), max_var=limits.max_var_99_frac, max_cvar=limits.max_cvar_99_frac,
            lookback_days=limits.var_lookback_days)
    return factors


def _walk_segment(
    ledger: _Ledger, inputs: _Inputs, equity: np.ndarray, start: int, stop: int, *, long_only: bool
) -> bool:
    """Mark bars [start, stop) with constant units, paying funding; False if the book is wiped out.

    A book whose equity reaches <= 0 at a close is liquidated there: flat, worthless, no more trades.
    Long-only without funding, cash > 0 and marks >= 0 make every bar's equity > 0 (or NaN), so the
    scan for ruin is skipped.
    """
    units, cash = ledger.units, ledger.cash
    ledger.segments.append((start, units))
    segment_equity = inputs.mark[start:stop] @ units + cash
    funding = inputs.funding_per_unit
    if funding is None and long_only and cash > 0 and inputs.marks_non_negative:
        equity[start:stop] = segment_equity
        return True
    if funding is not None:
        funding = np.cumsum(funding[start:stop] @ units)
        segment_equity -= funding
    is_ruined = segment_equity.min() <= 0
    last = start + int(np.argmax(segment_equity <= 0)) if is_ruined else stop - 1
    if funding is not None:
        ledger.funding += float(funding[last - start])
        ledger.cash -= float(funding[last - start])
    if is_ruined:
        ledger.ruined_at = last
        equity[start:last] = segment_equity[: last - start]
        ledger.units, ledger.cash, ledger.is_flat = np.zeros_like(units), 0.0, True
        return False
    equity[start:stop] = segment_equity
    return True


def _rebalance(ledger: _Ledger, inputs: _Inputs, bar: int, wanted: np.ndarray, params: BacktestParams,
               fee_frac: float, order_check: Callable[[list[float]], str | None] | None = None) -> str | None:
    """Trade toward ``wanted`` at bar ``bar``'s open (few numpy calls: it is the hot loop).

    ``order_check(notionals)`` names a cap the orders break: then nothing is traded and that name returned.
    """
    reference, units = inputs.reference[bar], ledger.units
    held_value = units * reference
    book_equity = ledger.cash + float(held_value.sum())
    if book_equity <= 0:
        return None
    if params.no_trade_band_frac != 0:  # a zero band keeps every target as it is
        wanted = apply_no_trade_band(wanted, held_value / book_equity, params.no_trade_band_frac)
    delta_quote = (wanted * book_equity - held_value) * inputs.tradeable[bar]
    traded = (np.abs(delta_quote) >= max(params.min_notional_quote, DUST_QUOTE)).nonzero()[0]
    if traded.size == 0:
        return None
    orders = _price_orders(traded, delta_quote, wanted, units, reference, inputs.slip_frac[bar])
    if params.market == "spot":
        orders = _fit_buys_to_cash(ledger.cash, orders, fee_frac, params.min_notional_quote)
    if order_check is not None and (breach := order_check([amount * reference[a] for a, _, amount, _ in orders])):
        return breach
    units = units.copy()  # the old array stays with its segment
    cash = ledger.cash
    for asset, side, amount, fill_price in orders:
        units[asset] += side * amount
        notional = amount * fill_price
        cash -= side * notional + fee_frac * notional
    if params.market == "spot":  # only float dust can cross 0 after the cash fit
        np.maximum(units, 0.0, out=units)
        cash = max(cash, 0.0)
    ledger.units, ledger.cash, ledger.is_flat = units, cash, not units.any()
    ledger.fills.append((bar, orders))
    return None


def _exit_ended(ledger: _Ledger, inputs: _Inputs, last_bar: int, ended: np.ndarray, fee_frac: float) -> None:
    """Sell (or buy back) every held asset of ``ended`` at its last close, bar ``last_bar``: its candles stop."""
    units, cash = ledger.units.copy(), ledger.cash
    slip = inputs.slip_frac[min(last_bar + 1, len(inputs.slip_frac) - 1)]
    for asset in np.flatnonzero(ended & (units != 0)).tolist():
        side, amount = -float(np.sign(units[asset])), abs(float(units[asset]))
        fill_price = float(inputs.mark[last_bar, asset]) * (1.0 + side * float(slip[asset]))
        cash -= side * amount * fill_price + fee_frac * amount * fill_price
        units[asset] = 0.0
        ledger.exits.append((last_bar, (asset, side, amount, fill_price)))
    ledger.units, ledger.cash, ledger.is_flat = units, cash, not units.any()


def _price_orders(
    traded: np.ndarray,
    delta_quote: np.ndarray,
    wanted: np.ndarray,
    units: np.ndarray,
    reference: np.ndarray,
    slip_frac: np.ndarray,
) -> list[Order]:
    """(asset, side +1/-1, amount_base, fill price) per order; a full exit trades exactly what is held."""
    deltas, targets, helds = delta_quote.tolist(), wanted.tolist(), units.tolist()
    prices, slips = reference.tolist(), slip_frac.tolist()
    orders = []
    for asset in traded.tolist():
        delta, price = deltas[asset], prices[asset]
        side = 1.0 if delta > 0 else -1.0
        amount = abs(helds[asset]) if targets[asset] == 0 else abs(delta) / price
        orders.append((asset, side, amount, price * (1.0 + side * slips[asset])))
    return orders


def _fit_buys_to_cash(
    cash: float, orders: list[Order], fee_frac: float, min_notional_quote: float
) -> list[Order]:
    """Spot: sells settle first; buys are scaled down so that cash stays >= 0 after fees.

    A buy that the scaling pushes under the minimum notional is dropped (that only frees cash).
    """
    bought = sum(amount * fill for _, side, amount, fill in orders if side > 0)
    sold = sum(amount * fill for _, side, amount, fill in orders if side < 0)
    cost, available = bought * (1.0 + fee_frac), cash + sold * (1.0 - fee_frac)
    if cost <= available:
        return orders
    scale = max(available, 0.0) / cost
    fitted = [(a, side, amount * scale if side > 0 else amount, fill) for a, side, amount, fill in orders]
    return [order for order in fitted if order[1] < 0 or order[2] * order[3] >= min_notional_quote]


def run_backtest_sweep(
    *,
    open_wide: pd.DataFrame,
    close_wide: pd.DataFrame,
    target_weights: pd.DataFrame,
    grid: Sequence[BacktestParams],
    funding_wide: pd.DataFrame | None = None,
    volatility_wide: pd.DataFrame | None = None,
) -> list[BacktestResult]:
    """``run_backtest`` (without the live risk layer) at each parameter set of ``grid`` on the same frames: they
    are validated and aligned once, then each set only schedules and walks (compiled). One market per grid."""
    if len({params.market for params in grid}) > 1:
        raise DataError("a sweep runs one market: split spot and perp parameter sets")
    if not grid:
        return []
    frames = align_frames(open_wide, close_wide, target_weights, grid[0], funding_wide, volatility_wide)
    return [_compiled_run(close_wide, schedule(frames, params), params, None) for params in grid]


def _compiled_run(close_wide: pd.DataFrame, inputs: _Inputs, params: BacktestParams,
                  risk: LiveRiskState | None) -> BacktestResult:
    """The walk compiled: lib.research.sim_kernel, or lib.research.live_kernel with the live risk layer of ``risk``
    (imported here: numba loads late)."""
    n_assets = inputs.mark.shape[1]
    slip = inputs.slip_frac[:1] if inputs.slip_frac.strides[0] == 0 else inputs.slip_frac
    funding = inputs.funding_per_unit if inputs.funding_per_unit is not None else np.zeros((0, n_assets))
    fee_frac = params.fee_bps / BPS_PER_UNIT
    arrays = (inputs.mark, inputs.reference, inputs.tradeable, inputs.target, inputs.has_decision, slip, funding,
              inputs.wants_position, inputs.last_close_bar, inputs.marks_non_negative,
              float(params.starting_capital_quote), fee_frac, params.market == "spot", float(params.min_notional_quote),
              float(params.no_trade_band_frac))  # fmt: skip
    if risk is None:
        from lib.research import sim_kernel

        equity, held_units, records, funding_paid, _ = sim_kernel.simulate(*arrays)
    else:
        from lib.research import live_kernel

        equity, held_units, records, funding_paid, _ = live_kernel.simulate(*arrays, risk)
    index, columns = close_wide.index, close_wide.columns
    trades = trades_from_records(records, index, columns, fee_frac)
    exits = [(int(bar), (int(asset), side, amount, price)) for bar, asset, side, amount, price, _, _ in
             records[records[:, 5] > 0].tolist()]
    return _assemble(close_wide, equity, held_units, inputs.mark, trades, exits, funding_paid, risk)


def _result(
    close_wide: pd.DataFrame, equity: np.ndarray, inputs: _Inputs, ledger: _Ledger, fee_frac: float,
    risk: LiveRiskState | None,
) -> BacktestResult:
    index, columns = close_wide.index, close_wide.columns
    starts = [start for start, _ in ledger.segments] + [len(index)]
    held_units = np.repeat(np.array([units for _, units in ledger.segments]), np.diff(starts), axis=0)
    if ledger.ruined_at >= 0:
        held_units[ledger.ruined_at :] = 0.0
    trades = trades_frame(ledger.fills, ledger.exits, index, columns, inputs.reference, inputs.mark, fee_frac)
    return _assemble(close_wide, equity, held_units, inputs.mark, trades, ledger.exits, ledger.funding, risk)


def _assemble(
    close_wide: pd.DataFrame, equity: np.ndarray, held_units: np.ndarray, mark: np.ndarray, trades: pd.DataFrame,
    exit_orders: list[tuple[int, Order]], funding_paid: float, risk: LiveRiskState | None,
) -> BacktestResult:
    index, columns = close_wide.index, close_wide.columns
    with np.errstate(divide="ignore", invalid="ignore"):
        weights = np.where(equity[:, None] > 0, held_units * mark / equity[:, None], 0.0)
    exits = tuple(f"{columns[asset]}: candles stop after {index[bar]}; held {amount:.8g} sold at its last close "
                  f"{price:.8g}" for bar, (asset, _, amount, price) in exit_orders)
    mean_equity = float(equity.mean())
    return BacktestResult(
        equity=pd.Series(equity, index=index, name="equity"),
        weights=pd.DataFrame(weights, index=index, columns=columns),
        trades=trades,
        fees_paid_quote=float(trades["fee_quote"].sum()),
        slippage_paid_quote=float(trades["slippage_quote"].sum()),
        funding_paid_quote=funding_paid,
        turnover=float(trades["notional_quote"].sum()) / mean_equity if mean_equity > 0 else 0.0,
        live_risk=None if risk is None else risk.report(),
        data_end_exits=exits,
    )
