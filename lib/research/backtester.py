"""Pure: the honest backtester: target weights -> fills at the NEXT bar's open, with costs.

Causality: a target row stamped t was computed from data up to the CLOSE of bar t; it is filled
at the OPEN of bar t+1, never at t (this module is the one place where t -> t+1 happens). A target
on the last bar is never filled.

Costs: taker fee on traded notional; slippage moves the fill price against us by
``slippage_bps`` plus ``slippage_vol_mult`` x the asset's per-bar volatility at the decision bar;
funding for perps (positive rate: longs pay, shorts receive) on the notional held; a no-trade
band; orders under ``min_notional_quote`` are skipped (so a small book keeps dust). Quantities
are fractional (exchange lot rounding lives in lib/execution/orders.py). Missing data: a missing close is
marked at the last close; a missing open blocks trading that asset on that bar.

Accounting: equity = cash + sum(units x price). For spot, cash is never negative (buys are scaled
down to the cash left after sells and fees) and weights are >= 0. For linear (USDT-margined)
perps the same identity holds with cash = collateral - sum(units x entry price), i.e.
equity = collateral + unrealized PnL; if equity reaches 0 at a close the book is liquidated and
stays flat (closes only: no intrabar high/low, so this is optimistic for leveraged books).
Between rebalance ticks units are constant, so equity is computed per segment with numpy; the
Python loop runs once per rebalance tick, except ticks where a flat book meets an all-zero target
(nothing held, nothing wanted: the flat segment simply runs on, its equity being the cash either way).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lib.core.errors import DataError
from lib.research.backtest_params import BacktestParams
from lib.research.portfolio import apply_no_trade_band

BPS_PER_UNIT = 10_000.0  # 1 = 10,000 basis points
TRADE_DTYPES = {
    "timestamp": "int64",  # open time (ms) of the bar whose open filled the order
    "symbol": "object",
    "side": "object",  # "buy" | "sell"
    "amount_base": "float64",
    "price": "float64",  # fill price, slippage included
    "notional_quote": "float64",  # amount_base x price
    "fee_quote": "float64",
    "slippage_quote": "float64",  # amount_base x |price - open|: the cost hidden in the price
}
"""Schema of BacktestResult.trades."""
TRADE_COLUMNS = tuple(TRADE_DTYPES)
WEIGHT_SUM_TOLERANCE = 1e-9  # spot targets may sum to 1 + this (float noise), not more
DUST_QUOTE = 1e-9  # a trade smaller than this (quote) is float noise, never an order


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


@dataclass(slots=True)
class _Inputs:
    """Input frames as aligned float arrays (time x symbol), precomputed per FILL bar."""

    mark: np.ndarray  # close, forward-filled, 0 before the first price
    reference: np.ndarray  # price of bar i's open, or the last mark where the open is missing
    tradeable: np.ndarray  # 1.0 where bar i has a usable open, else 0.0 (no trade)
    target: np.ndarray  # target decided at bar i (NaN -> 0), filled at bar i + 1's open
    has_decision: np.ndarray  # bar i - 1 holds a decision on the schedule: bar i's open fills it
    slip_frac: np.ndarray  # slippage fraction for a fill at bar i's open (may be a broadcast view)
    funding_per_unit: np.ndarray | None  # sum of funding rates settled in bar i x funding price
    wants_position: np.ndarray  # the target of bar i holds a non-zero weight
    marks_non_negative: bool  # no mark < 0: a long-only book with cash > 0 cannot reach equity <= 0


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
    fills: list[tuple[int, list[tuple[int, float, float, float]]]] = field(default_factory=list)
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
) -> BacktestResult:
    """Simulate trading ``target_weights`` over the bars of ``close_wide`` (see module docstring).

    ``target_weights``: rows = decision times (reindexed to the bars; a row that is all NaN, or off
    the ``rebalance_every_bars`` schedule, is "no decision"; a NaN inside a decision row = 0).
    ``funding_wide``: rate per settlement at its own timestamp (perp only); a settlement in
    [open_i, open_i + bar) is paid by the units held during bar i, on units x open_i. Symbols
    missing from it pay no funding. ``volatility_wide``: per-bar return volatility fraction, read
    at the decision bar for the volatility-scaled slippage.
    """
    inputs = _prepare(open_wide, close_wide, target_weights, params, funding_wide, volatility_wide)
    n_bars, n_assets = inputs.mark.shape
    equity = np.zeros(n_bars)
    ledger = _Ledger(cash=float(params.starting_capital_quote), units=np.zeros(n_assets))
    fee_frac = params.fee_bps / BPS_PER_UNIT
    long_only = params.market == "spot"
    wants_position = inputs.wants_position
    segment_start = 0
    for fill_bar in np.flatnonzero(inputs.has_decision).tolist():
        if ledger.is_flat and not wants_position[fill_bar - 1]:
            continue  # a no-op tick (see module docstring)
        if not _walk_segment(ledger, inputs, equity, segment_start, fill_bar, long_only=long_only):
            break
        _rebalance(ledger, inputs, fill_bar, params, fee_frac)
        segment_start = fill_bar
    else:
        _walk_segment(ledger, inputs, equity, segment_start, n_bars, long_only=long_only)
    return _result(close_wide, equity, inputs, ledger, fee_frac)


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


def _rebalance(ledger: _Ledger, inputs: _Inputs, bar: int, params: BacktestParams, fee_frac: float) -> None:
    """Fill the decision of bar ``bar - 1`` at bar ``bar``'s open (few numpy calls: it is the hot loop)."""
    reference, units = inputs.reference[bar], ledger.units
    held_value = units * reference
    book_equity = ledger.cash + float(held_value.sum())
    if book_equity <= 0:
        return
    wanted = inputs.target[bar - 1]
    if params.no_trade_band_frac != 0:  # a zero band keeps every target as it is
        wanted = apply_no_trade_band(wanted, held_value / book_equity, params.no_trade_band_frac)
    delta_quote = (wanted * book_equity - held_value) * inputs.tradeable[bar]
    traded = (np.abs(delta_quote) >= max(params.min_notional_quote, DUST_QUOTE)).nonzero()[0]
    if traded.size == 0:
        return
    orders = _price_orders(traded, delta_quote, wanted, units, reference, inputs.slip_frac[bar])
    if params.market == "spot":
        orders = _fit_buys_to_cash(ledger.cash, orders, fee_frac, params.min_notional_quote)
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


def _price_orders(
    traded: np.ndarray,
    delta_quote: np.ndarray,
    wanted: np.ndarray,
    units: np.ndarray,
    reference: np.ndarray,
    slip_frac: np.ndarray,
) -> list[tuple[int, float, float, float]]:
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
    cash: float, orders: list[tuple[int, float, float, float]], fee_frac: float, min_notional_quote: float
) -> list[tuple[int, float, float, float]]:
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


def _prepare(
    open_wide: pd.DataFrame,
    close_wide: pd.DataFrame,
    target_weights: pd.DataFrame,
    params: BacktestParams,
    funding_wide: pd.DataFrame | None,
    volatility_wide: pd.DataFrame | None,
) -> _Inputs:
    """Validate and align the inputs to ``close_wide``'s bars and symbols."""
    index, columns = close_wide.index, close_wide.columns
    if not (open_wide.index.equals(index) and open_wide.columns.equals(columns)):
        raise DataError("open_wide and close_wide must have the same index and columns")
    if not (index.is_monotonic_increasing and index.is_unique) or len(index) == 0:
        raise DataError("close_wide index must be non-empty, increasing and unique")
    unknown = target_weights.columns.difference(columns)
    if len(unknown):
        raise DataError(f"target_weights has symbols without prices: {list(unknown)}")
    if not target_weights.index.equals(index) and len(target_weights.index.difference(index)):
        raise DataError("target_weights has timestamps that are not bars of close_wide")
    target = target_weights.reindex(index=index, columns=columns).to_numpy(dtype=float)
    _check_targets(target, params, index)
    mark = np.nan_to_num(close_wide.ffill().to_numpy(dtype=float))
    reference = open_wide.to_numpy(dtype=float, copy=True)
    blocked = ~(np.isfinite(reference) & (reference > 0))
    blocked_after_first = blocked[1:]
    reference[1:][blocked_after_first] = mark[:-1][blocked_after_first]  # value at the last mark
    reference[0][blocked[0]] = mark[0][blocked[0]]
    slip_frac = np.broadcast_to(np.full(len(columns), params.slippage_bps / BPS_PER_UNIT), target.shape)
    if volatility_wide is not None and params.slippage_vol_mult > 0:
        vol = volatility_wide.reindex(index=index, columns=columns).to_numpy(dtype=float)
        slip_frac = slip_frac.copy()
        slip_frac[1:] += params.slippage_vol_mult * np.nan_to_num(vol[:-1])
    has_decision = np.zeros(len(index), dtype=bool)
    on_schedule = np.arange(len(index) - 1) % params.rebalance_every_bars == 0
    has_decision[1:] = np.isfinite(target[:-1]).any(axis=1) & on_schedule
    funding = None
    if funding_wide is not None:
        if params.market != "perp":
            raise DataError("funding_wide is only meaningful for backtest.market = 'perp'")
        funding = _funding_per_unit(funding_wide, index, columns, reference)
    target = np.nan_to_num(target)
    return _Inputs(
        mark=mark,
        reference=reference,
        tradeable=(~blocked).astype(float),
        target=target,
        has_decision=has_decision,
        slip_frac=slip_frac,
        funding_per_unit=funding,
        wants_position=target.any(axis=1),
        marks_non_negative=not (mark < 0).any(),
    )


def _check_targets(target: np.ndarray, params: BacktestParams, index: pd.Index) -> None:
    if np.isinf(target).any():
        raise DataError("target_weights contains inf")
    if params.market != "spot":
        return
    if (target < 0).any():
        row = int(np.flatnonzero((target < 0).any(axis=1))[0])
        raise DataError(f"spot target_weights must be >= 0; negative weight at {index[row]}")
    over = np.nansum(target, axis=1) > 1.0 + WEIGHT_SUM_TOLERANCE
    if over.any():
        row = index[int(np.argmax(over))]
        raise DataError(f"spot target_weights must sum to <= 1 (no leverage); row {row}")


def _funding_per_unit(
    funding_wide: pd.DataFrame, index: pd.Index, columns: pd.Index, funding_price: np.ndarray
) -> np.ndarray:
    """Quote paid per unit held during each bar: sum of rates settled in the bar x the bar's open.

    Settlements outside [first open, last open + bar length) are ignored; the bar length is the
    smallest step of the index, so a run on truncated data charges the same settlements.
    """
    unknown = funding_wide.columns.difference(columns)
    if len(unknown):
        raise DataError(f"funding_wide has symbols without prices: {list(unknown)}")
    bar_opens = np.asarray(index)
    bar_length = np.diff(bar_opens).min() if len(bar_opens) > 1 else 1
    settled = np.asarray(funding_wide.index)
    bar = np.searchsorted(bar_opens, settled, side="right") - 1
    inside = (bar >= 0) & (settled < bar_opens[np.maximum(bar, 0)] + bar_length)
    rates = np.zeros(funding_price.shape)
    col_pos = columns.get_indexer(funding_wide.columns)
    values = np.nan_to_num(funding_wide.to_numpy(dtype=float))
    for source_col, target_col in enumerate(col_pos):
        np.add.at(rates[:, target_col], bar[inside], values[inside, source_col])
    return rates * funding_price


def _result(
    close_wide: pd.DataFrame, equity: np.ndarray, inputs: _Inputs, ledger: _Ledger, fee_frac: float
) -> BacktestResult:
    index, columns = close_wide.index, close_wide.columns
    starts = [start for start, _ in ledger.segments] + [len(index)]
    held_units = np.repeat(np.array([units for _, units in ledger.segments]), np.diff(starts), axis=0)
    if ledger.ruined_at >= 0:
        held_units[ledger.ruined_at :] = 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        weights = np.where(equity[:, None] > 0, held_units * inputs.mark / equity[:, None], 0.0)
    trades = _trades_frame(ledger.fills, index, columns, inputs.reference, fee_frac)
    mean_equity = float(equity.mean())
    return BacktestResult(
        equity=pd.Series(equity, index=index, name="equity"),
        weights=pd.DataFrame(weights, index=index, columns=columns),
        trades=trades,
        fees_paid_quote=float(trades["fee_quote"].sum()),
        slippage_paid_quote=float(trades["slippage_quote"].sum()),
        funding_paid_quote=ledger.funding,
        turnover=float(trades["notional_quote"].sum()) / mean_equity if mean_equity > 0 else 0.0,
    )


def _trades_frame(
    fills: list[tuple[int, list[tuple[int, float, float, float]]]],
    index: pd.Index,
    columns: pd.Index,
    reference: np.ndarray,
    fee_frac: float,
) -> pd.DataFrame:
    """The trade log (TRADE_COLUMNS), one row per filled order."""
    rows = [(bar, *order) for bar, orders in fills for order in orders]
    if not rows:
        return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in TRADE_DTYPES.items()})
    bars, assets, sides, amounts, prices = (np.array(column) for column in zip(*rows, strict=True))
    notionals = amounts * prices
    return pd.DataFrame(
        {
            "timestamp": np.asarray(index)[bars],
            "symbol": np.asarray(columns, dtype=object)[assets],
            "side": np.where(sides > 0, "buy", "sell").astype(object),
            "amount_base": amounts,
            "price": prices,
            "notional_quote": notionals,
            "fee_quote": notionals * fee_frac,
            "slippage_quote": amounts * np.abs(prices - reference[bars, assets]),
        }
    )
