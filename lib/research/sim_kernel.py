"""Pure: the backtester's walk compiled with numba, for runs without the live risk layer.

The same walk as the Python one in lib.research.backtester (that one stays the reference; lib.research.live_kernel
builds the walk with the live risk layer from these parts), operation for operation in the same order, so that
its equity, trades and fees equal the reference's (tests/unit/research/test_sim_kernel.py): sums over assets use
numpy's own pairwise summation (``_numpy_sum``), the segment marks use the same BLAS product, and the order loop
adds in the Python walk's order. Imported lazily by lib.research.backtester (numba loads in ~0.3 s); compiled code is
cached next to this file on first use.

``simulate`` returns (equity per bar, units held per bar, fill records (count x 7, F-ordered), funding paid,
ruined bar or -1). A fill record is (bar, asset, side +1/-1, amount_base, fill price, is_exit, price before
slippage: the open, or the last close for an exit) in the order the reference's trade log lists them: by bar,
rebalance fills before data-end exits of the same bar.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from lib.research import numba_blas

COMPILED_FROM_SHA256 = "a4c261e71001b75ab69c11a797bb00fbcb7dde9aed12d93205c8c3c916670ad0"  # see test_kernel_cache.py

numba_blas.preload()  # before numba's first compile or cache load: its BLAS without scipy.linalg's package

DUST_QUOTE = 1e-9  # as lib.research.backtester.DUST_QUOTE
PAIRWISE_BLOCK = 128  # numpy's PW_BLOCKSIZE
UNROLL = 8  # numpy's pairwise sum keeps 8 partial sums
FAT_FINGER, ORDER_COUNT = 3, 4  # the order caps _rebalance can report (codes of lib.research.live_kernel.BREACHES)


@njit(cache=True, error_model="numpy")
def _block_sum(values: np.ndarray, lo: int, n: int) -> float:  # pragma: no cover (compiled)
    """numpy's ``pairwise_sum`` on one block of <= 128 float64 (8 partial sums; a plain loop under 8)."""
    if n < UNROLL:
        total = 0.0
        for i in range(lo, lo + n):
            total += values[i]
        return total
    r0, r1, r2, r3 = values[lo], values[lo + 1], values[lo + 2], values[lo + 3]
    r4, r5, r6, r7 = values[lo + 4], values[lo + 5], values[lo + 6], values[lo + 7]
    i = UNROLL
    while i < n - (n % UNROLL):
        r0 += values[lo + i]
        r1 += values[lo + i + 1]
        r2 += values[lo + i + 2]
        r3 += values[lo + i + 3]
        r4 += values[lo + i + 4]
        r5 += values[lo + i + 5]
        r6 += values[lo + i + 6]
        r7 += values[lo + i + 7]
        i += UNROLL
    total = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        total += values[lo + i]
        i += 1
    return total


@njit(cache=True, error_model="numpy")
def _pairwise(values: np.ndarray) -> float:  # pragma: no cover (compiled)
    """numpy's ``pairwise_sum`` for float64: blocks of <= 128, halves (multiples of 8) above, left + right.

    Iterative (an explicit stack): numba's cache cannot reload a recursive function."""
    n_values = values.size
    if n_values <= PAIRWISE_BLOCK:
        return _block_sum(values, 0, n_values)
    stack = np.empty((128, 3), np.int64)  # (lo, n, children done); depth ~ 2 log2(n)
    sums = np.empty(128)
    stack[0, 0], stack[0, 1], stack[0, 2] = 0, n_values, 0
    top, n_sums = 1, 0
    while top > 0:
        top -= 1
        lo, n, done = stack[top, 0], stack[top, 1], stack[top, 2]
        if n <= PAIRWISE_BLOCK:
            sums[n_sums] = _block_sum(values, lo, n)
            n_sums += 1
        elif done:
            sums[n_sums - 2] = sums[n_sums - 2] + sums[n_sums - 1]
            n_sums -= 1
        else:
            half = n // 2
            half -= half % UNROLL
            stack[top, 2] = 1
            stack[top + 1, 0], stack[top + 1, 1], stack[top + 1, 2] = lo + half, n - half, 0
            stack[top + 2, 0], stack[top + 2, 1], stack[top + 2, 2] = lo, half, 0
            top += 3
    return sums[0]


@njit(cache=True, error_model="numpy")
def _numpy_sum(values: np.ndarray) -> float:  # pragma: no cover (compiled)
    """``float(values.sum())`` bit for bit (numpy adds the pairwise sum to the identity 0)."""
    return 0.0 + _pairwise(values)


@njit(cache=True, error_model="numpy")
def _python_sum(values: np.ndarray, n: int) -> float:  # pragma: no cover (compiled)
    """Python 3.12's built-in ``sum`` of floats from the int 0 (Neumaier-compensated), bit for bit."""
    if n == 0:
        return 0.0
    total, compensation = values[0], 0.0
    for i in range(1, n):
        value = values[i]
        added = total + value
        if abs(total) >= abs(value):
            compensation += (total - added) + value
        else:
            compensation += (value - added) + total
        total = added
    if compensation != 0 and np.isfinite(compensation):
        total += compensation
    return total


@njit(cache=True, error_model="numpy")
def _record(records: np.ndarray, count: int, bar: int, asset: int, side: float, amount: float, price: float,
            is_exit: float, unslipped: float) -> None:  # pragma: no cover (compiled)
    """Write the (bar, asset, side, amount, price, is_exit, unslipped price) column ``count`` of the 7 x capacity
    buffer (``simulate`` sizes it for the most orders a run can place: one per asset per decision, plus one data-end
    exit per asset; one field per row, so the returned records' columns are contiguous for the trade log)."""
    records[0, count], records[1, count], records[2, count] = bar, asset, side
    records[3, count], records[4, count], records[5, count] = amount, price, is_exit
    records[6, count] = unslipped


@njit(cache=True, error_model="numpy")
def _marks_times_units(values: np.ndarray, units: np.ndarray, start: int, stop: int) -> np.ndarray:  # pragma: no cover
    """``values[start:stop] @ units`` as numpy computes it: BLAS gemv, or the dot product for a single row."""
    if stop - start == 1:
        out = np.empty(1)
        out[0] = np.dot(values[start], units)
        return out
    return np.dot(values[start:stop], units)


@njit(cache=True, error_model="numpy")
def _walk_one_bar(mark: np.ndarray, funding: np.ndarray, equity: np.ndarray, held: np.ndarray, units: np.ndarray,
                  cash: float, bar: int, long_only: bool,
                  marks_non_negative: bool) -> tuple[float, float, int]:  # pragma: no cover (compiled)
    """``_walk_segment`` on the single bar ``bar`` (numpy computes a one-row product as a dot product)."""
    value = np.dot(mark[bar], units) + cash
    has_funding = funding.shape[0] > 0
    if not has_funding and long_only and cash > 0 and marks_non_negative:
        equity[bar] = value
        return cash, 0.0, -1
    paid = 0.0
    if has_funding:
        paid = np.dot(funding[bar], units)
        value -= paid
        cash -= paid
    if not np.isnan(value) and value <= 0:
        held[bar] = 0.0
        return 0.0, paid, bar
    equity[bar] = value
    return cash, paid, -1


@njit(cache=True, error_model="numpy")
def _walk_segment(mark: np.ndarray, funding: np.ndarray, equity: np.ndarray, held: np.ndarray,
                  units: np.ndarray, cash: float, start: int, stop: int, long_only: bool,
                  marks_non_negative: bool) -> tuple[float, float, int]:  # pragma: no cover (compiled)
    """Mark bars [start, stop) with constant units; (cash after funding, funding paid, ruined bar or -1)."""
    for bar in range(start, stop):
        for asset in range(units.size):
            held[bar, asset] = units[asset]
    if stop - start == 1:  # a decision every bar: the same steps on one scalar, without temporary arrays
        return _walk_one_bar(mark, funding, equity, held, units, cash, start, long_only, marks_non_negative)
    segment_equity = _marks_times_units(mark, units, start, stop) + cash
    has_funding = funding.shape[0] > 0
    if not has_funding and long_only and cash > 0 and marks_non_negative:
        equity[start:stop] = segment_equity
        return cash, 0.0, -1
    paid = np.zeros(0)
    if has_funding:
        paid = np.cumsum(_marks_times_units(funding, units, start, stop))
        segment_equity -= paid
    ruined = not np.isnan(segment_equity).any() and segment_equity.min() <= 0
    last = stop - 1
    if ruined:
        last = start + int(np.argmax(segment_equity <= 0))
    funding_paid = 0.0
    if has_funding:
        funding_paid = paid[last - start]
        cash -= funding_paid
    if ruined:
        equity[start:last] = segment_equity[: last - start]
        held[last:stop] = 0.0
        return 0.0, funding_paid, last
    equity[start:stop] = segment_equity
    return cash, funding_paid, -1


@njit(cache=True, error_model="numpy")
def _rebalance(records: np.ndarray, count: int, units: np.ndarray, cash: float, reference: np.ndarray,
               tradeable: np.ndarray, wanted_row: np.ndarray, slip: np.ndarray, bar: int, fee_frac: float,
               long_only: bool, min_notional: float, band: float, work: np.ndarray, order_asset: np.ndarray,
               max_order_notional: float, max_orders: int) -> tuple[int, float, int]:  # pragma: no cover (compiled)
    """Trade ``units`` toward ``wanted_row`` at ``reference`` (bar ``bar``'s open), as backtester._rebalance;
    (record count, cash, order cap broken: 0 none, FAT_FINGER or ORDER_COUNT, then nothing is traded).

    ``max_orders`` >= 0: the live order caps (backtester's ``order_check``) on the orders that would be sent;
    -1: none. ``work`` (7 x assets) and ``order_asset`` are scratch buffers reused from tick to tick."""
    n_assets = units.size
    held_value, wanted, order_side, order_amount = work[0], work[1], work[2], work[3]
    order_fill, buys, sells = work[4], work[5], work[6]
    for asset in range(n_assets):
        held_value[asset] = units[asset] * reference[asset]
    book_equity = cash + _numpy_sum(held_value)
    if book_equity <= 0:
        return count, cash, 0
    wanted[:] = wanted_row
    if band != 0:
        for asset in range(n_assets):
            current = held_value[asset] / book_equity
            if abs(wanted[asset] - current) < band and wanted[asset] != 0:
                wanted[asset] = current
    threshold = max(min_notional, DUST_QUOTE)
    n_orders = 0
    for asset in range(n_assets):
        delta = (wanted[asset] * book_equity - held_value[asset]) * tradeable[asset]
        if not abs(delta) >= threshold:
            continue
        price = reference[asset]
        side = 1.0 if delta > 0 else -1.0
        order_asset[n_orders] = asset
        order_side[n_orders] = side
        order_amount[n_orders] = abs(units[asset]) if wanted[asset] == 0 else abs(delta) / price
        order_fill[n_orders] = price * (1.0 + side * slip[asset])
        n_orders += 1
    if n_orders == 0:
        return count, cash, 0
    scaled = False
    if long_only:  # sells settle first; buys scaled down to the cash left (backtester._fit_buys_to_cash)
        n_buys, n_sells = 0, 0
        for k in range(n_orders):
            if order_side[k] > 0:
                buys[n_buys] = order_amount[k] * order_fill[k]
                n_buys += 1
            elif order_side[k] < 0:
                sells[n_sells] = order_amount[k] * order_fill[k]
                n_sells += 1
        bought, sold = _python_sum(buys, n_buys), _python_sum(sells, n_sells)
        cost, available = bought * (1.0 + fee_frac), cash + sold * (1.0 - fee_frac)
        if not cost <= available:
            scaled = True
            scale = max(available, 0.0) / cost
            for k in range(n_orders):
                if order_side[k] > 0:
                    order_amount[k] = order_amount[k] * scale
    if max_orders >= 0:
        breach = _order_breach(order_asset, order_side, order_amount, order_fill, n_orders, reference, scaled,
                               min_notional, max_order_notional, max_orders)
        if breach:
            return count, cash, breach
    for k in range(n_orders):
        if scaled and order_side[k] > 0 and not order_amount[k] * order_fill[k] >= min_notional:
            continue  # a buy the scaling pushed under the minimum notional is dropped
        asset, side, amount, fill = order_asset[k], order_side[k], order_amount[k], order_fill[k]
        units[asset] += side * amount
        notional = amount * fill
        cash -= side * notional + fee_frac * notional
        _record(records, count, bar, asset, side, amount, fill, 0.0, reference[asset])
        count += 1
    if long_only:  # only float dust can cross 0 after the cash fit
        for asset in range(n_assets):
            units[asset] = max(units[asset], 0.0)
        cash = max(cash, 0.0)
    return count, cash, 0


@njit(cache=True, error_model="numpy")
def _order_breach(order_asset: np.ndarray, order_side: np.ndarray, order_amount: np.ndarray, order_fill: np.ndarray,
                  n_orders: int, reference: np.ndarray, scaled: bool, min_notional: float, max_order_notional: float,
                  max_orders: int) -> int:  # pragma: no cover (compiled)
    """live_risk.LiveRiskState.order_breach on the orders ``_rebalance`` would send (a dropped buy is not sent)."""
    n_sent, fat_finger = 0, False
    for k in range(n_orders):
        if scaled and order_side[k] > 0 and not order_amount[k] * order_fill[k] >= min_notional:
            continue
        n_sent += 1
        if order_amount[k] * reference[order_asset[k]] > max_order_notional:
            fat_finger = True
    if fat_finger:
        return FAT_FINGER
    return ORDER_COUNT if n_sent > max_orders else 0


@njit(cache=True, error_model="numpy")
def _exit_ended(records: np.ndarray, count: int, units: np.ndarray, cash: float, mark_row: np.ndarray,
                slip: np.ndarray, last_close_bar: np.ndarray, last_bar: int,
                fee_frac: float) -> tuple[int, float]:  # pragma: no cover (compiled)
    """Sell (or buy back) every held asset whose candles stop at ``last_bar``, at that close."""
    for asset in range(units.size):
        if last_close_bar[asset] != last_bar or units[asset] == 0:
            continue
        side = -1.0 if units[asset] > 0 else 1.0
        amount = abs(units[asset])
        fill = mark_row[asset] * (1.0 + side * slip[asset])
        cash -= side * amount * fill + fee_frac * amount * fill
        units[asset] = 0.0
        _record(records, count, last_bar, asset, side, amount, fill, 1.0, mark_row[asset])
        count += 1
    return count, cash


@njit(cache=True, error_model="numpy")
def _exit_ticks(last_close_bar: np.ndarray, n_bars: int) -> np.ndarray:  # pragma: no cover (compiled)
    """Bars right after an asset's last close (its data ended): the walk exits it there."""
    exit_tick = np.zeros(n_bars, np.bool_)
    for asset in range(last_close_bar.shape[0]):
        if 0 <= last_close_bar[asset] < n_bars - 1:
            exit_tick[last_close_bar[asset] + 1] = True
    return exit_tick


@njit(cache=True, error_model="numpy")
def _holds_an_ended_asset(units: np.ndarray, last_close_bar: np.ndarray, bar: int) -> bool:  # pragma: no cover
    for asset in range(units.shape[0]):  # noqa: SIM110 (numba compiles loops, not any() over a generator)
        if last_close_bar[asset] == bar - 1 and units[asset] != 0:
            return True
    return False


@njit(cache=True, error_model="numpy")
def _is_flat(units: np.ndarray) -> bool:  # pragma: no cover (compiled)
    for asset in range(units.shape[0]):  # noqa: SIM110 (numba compiles loops, not all() over a generator)
        if units[asset] != 0:
            return False
    return True


def simulate(mark: np.ndarray, reference: np.ndarray, tradeable: np.ndarray, target: np.ndarray,
             has_decision: np.ndarray, slip: np.ndarray, funding: np.ndarray, wants_position: np.ndarray,
             last_close_bar: np.ndarray, marks_non_negative: bool, starting_cash: float, fee_frac: float,
             long_only: bool, min_notional: float,
             band: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, int]:
    """The whole walk (see the module docstring). ``slip``: one row per bar, or a single row for every bar;
    ``funding``: per bar and asset, or 0 rows without funding. The large outputs are allocated here by numpy, whose
    big arrays get transparent huge pages (numba's allocator maps 4 KiB pages that fault one by one: ~40 % of the
    walk's CPU on a decision every bar, whose fill buffer is ~20 MB)."""
    n_bars, n_assets = mark.shape
    records = np.empty((7, int(has_decision.sum()) * n_assets + n_assets))  # room for every order (see _record;
    # pages never written are never resident)
    return _simulate(mark, reference, tradeable, target, has_decision, slip, funding, wants_position, last_close_bar,
                     marks_non_negative, starting_cash, fee_frac, long_only, min_notional, band, np.zeros(n_bars),
                     np.zeros((n_bars, n_assets)), records)


@njit(cache=True, error_model="numpy")
def _simulate(mark: np.ndarray, reference: np.ndarray, tradeable: np.ndarray, target: np.ndarray,
              has_decision: np.ndarray, slip: np.ndarray, funding: np.ndarray, wants_position: np.ndarray,
              last_close_bar: np.ndarray, marks_non_negative: bool, starting_cash: float, fee_frac: float,
              long_only: bool, min_notional: float, band: float, equity: np.ndarray, held: np.ndarray,
              records: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, int]:  # pragma: no cover
    """``simulate`` into ``equity`` (bars, zeros), ``held`` (bars x assets, zeros) and ``records`` (7 x capacity)."""
    n_bars, n_assets = mark.shape
    exit_tick = _exit_ticks(last_close_bar, n_bars)
    per_bar_slip = slip.shape[0] > 1
    units = np.zeros(n_assets)
    cash, funding_paid, ruined_at, is_flat = starting_cash, 0.0, -1, True
    work, order_asset = np.empty((7, n_assets)), np.empty(n_assets, np.int64)
    count, segment_start = 0, 0
    for bar in range(1, n_bars):
        if not (exit_tick[bar] or has_decision[bar]):
            continue
        must_exit = exit_tick[bar] and _holds_an_ended_asset(units, last_close_bar, bar)
        is_fill = has_decision[bar] and not (is_flat and not wants_position[bar - 1])
        if not (must_exit or is_fill):
            continue
        cash, paid, ruined_at = _walk_segment(mark, funding, equity, held, units, cash, segment_start, bar,
                                              long_only, marks_non_negative)
        funding_paid += paid
        if ruined_at >= 0:
            return equity, held, records[:, :count].T, funding_paid, ruined_at
        segment_start = bar
        if must_exit:
            exit_slip = slip[min(bar, n_bars - 1)] if per_bar_slip else slip[0]
            count, cash = _exit_ended(records, count, units, cash, mark[bar - 1], exit_slip,
                                               last_close_bar, bar - 1, fee_frac)
        if is_fill:
            fill_slip = slip[bar] if per_bar_slip else slip[0]
            count, cash, _ = _rebalance(records, count, units, cash, reference[bar], tradeable[bar], target[bar - 1],
                                        fill_slip, bar, fee_frac, long_only, min_notional, band, work, order_asset,
                                        np.inf, -1)
        is_flat = _is_flat(units)
    cash, paid, ruined_at = _walk_segment(mark, funding, equity, held, units, cash, segment_start, n_bars,
                                          long_only, marks_non_negative)
    funding_paid += paid
    return equity, held, records[:, :count].T, funding_paid, ruined_at
