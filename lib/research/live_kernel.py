"""Pure: the backtester's walk WITH the live risk layer, compiled with numba (long histories).

The Python walk of lib.research.backtester through lib.research.live_risk.LiveRiskState stays the reference
(``run_backtest(..., compiled=False)``); this is the same walk, operation for operation in the same order: the
verdict's mode at each tick (drawdown halt and its re-arm after ``backtest.halt_review_days``, the daily-loss
reduce-only day), the per-asset clip (lib.core.weight_caps' rule), the tail-risk factor of the tick (computed
before the walk by lib.research.live_tail: the kernel only applies it), the target caps, the reduce-only weights
and the order caps, around lib.research.sim_kernel's segment marks, data-end exits and rebalance. Sums over assets
are numpy's pairwise sums (``sim_kernel._numpy_sum``), so equity, trades, weights and the layer's report equal the
reference's (tests/unit/research/test_live_kernel.py). Imported lazily by lib.research.backtester; compiled code is
cached next to this file. numba's cache does not notice edits to another file (here sim_kernel.py, whose functions
are compiled into these): ``COMPILED_FROM_SHA256`` records those sources, so changing them means editing this file
too (tests/unit/research/test_kernel_cache.py fails until then), and an edited file is recompiled.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from lib.core.timeframes import MS_PER_DAY
from lib.core.weight_caps import WEIGHT_TOLERANCE
from lib.research.live_risk import LiveRiskState
from lib.research.sim_kernel import (
    _exit_ended,
    _exit_ticks,
    _holds_an_ended_asset,
    _is_flat,
    _numpy_sum,
    _rebalance,
    _walk_segment,
)

COMPILED_FROM_SHA256 = "be6ed038d648e7c6bfd62b803d5e2cb73b21a6280c1ba13dcef2274f108db775"  # see test_kernel_cache.py

BREACHES = ("asset_weight", "exposure", "fat_finger", "order_count")  # check names of LiveRiskState.blocked
ASSET_WEIGHT, EXPOSURE = 1, 2  # codes (1-based positions in BREACHES); sim_kernel reports FAT_FINGER, ORDER_COUNT
TRADE, REDUCE_ONLY, FLATTEN_AND_HALT, HALTED = 0, 1, 2, 3  # live_risk.Mode
# the layer's integer memory (one int64 array): LiveRiskState's fields and counters
PEAK_TO, HALTED_AT, REDUCE_DAY, RESET_DAY, N_HALTS, N_REDUCE, N_SCALED, CLIPPED, TAIL_REFUSED, TAIL_UNKNOWN = range(10)
BLOCKED = 10  # BLOCKED + code - 1: ticks blocked by that check
HWM, RESET_EQUITY = 0, 1  # its float memory
# caps (one float64 array)
MAX_DRAWDOWN, DAILY_LOSS, ASSET_CAP, GROSS_CAP, NET_CAP, ORDER_NOTIONAL = range(6)


def simulate(mark: np.ndarray, reference: np.ndarray, tradeable: np.ndarray, target: np.ndarray,
             has_decision: np.ndarray, slip: np.ndarray, funding: np.ndarray, wants_position: np.ndarray,
             last_close_bar: np.ndarray, marks_non_negative: bool, starting_cash: float, fee_frac: float,
             long_only: bool, min_notional: float, band: float,
             risk: LiveRiskState) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, int]:
    """``sim_kernel.simulate`` (same arguments and outputs) with the live risk layer of ``risk``, a fresh state
    (its ``tail_scale`` set, or None); the layer's record is written into it, so ``risk.report()`` is the
    reference's."""
    n_bars, n_assets = mark.shape
    n_ticks = int(has_decision.sum())
    limits = risk.limits
    caps = np.array([limits.max_drawdown_frac, limits.daily_loss_limit_frac, limits.max_asset_weight_frac,
                     limits.max_gross_leverage if risk.is_perp else limits.max_gross_exposure_frac,
                     limits.max_net_exposure_frac, limits.max_order_notional_quote])
    review_ms = risk.review_days * MS_PER_DAY if risk.review_days > 0 else -1
    tail = np.zeros(0) if risk.tail_scale is None else np.ascontiguousarray(risk.tail_scale, dtype=float)
    ints, floats = np.zeros(BLOCKED + len(BREACHES), np.int64), np.array([risk.high_water_mark, 0.0])
    ints[HALTED_AT] = ints[REDUCE_DAY] = ints[RESET_DAY] = -1
    halts, reduce_days = np.empty((n_ticks + 1, 2), np.int64), np.empty((n_ticks + 1, 2), np.int64)
    tail_scaled = np.empty(n_ticks + 1)
    records = np.empty((7, n_ticks * n_assets + n_assets))  # as sim_kernel.simulate
    equity, held = np.zeros(n_bars), np.zeros((n_bars, n_assets))
    records, funding_paid, ruined_at = _walk(
        mark, reference, tradeable, target, has_decision, slip, funding, wants_position, last_close_bar,
        marks_non_negative, starting_cash, fee_frac, long_only, min_notional, band, np.asarray(risk.index, np.int64),
        caps, int(limits.max_orders_per_run), review_ms, tail, limits.tail_risk_action == "refuse", ints, floats,
        halts, reduce_days, tail_scaled, equity, held, records)  # fmt: skip
    risk.halts = [(int(start), int(end)) for start, end in halts[: ints[N_HALTS]].tolist()]
    risk.reduce_only_days = [(int(bar), int(day)) for bar, day in reduce_days[: ints[N_REDUCE]].tolist()]
    risk.blocked = {name: int(n) for name, n in zip(BREACHES, ints[BLOCKED:].tolist(), strict=True) if n}
    risk.clipped, risk.tail_refused, risk.tail_unknown = (int(ints[k]) for k in (CLIPPED, TAIL_REFUSED, TAIL_UNKNOWN))
    risk.tail_scaled = tail_scaled[: ints[N_SCALED]].tolist()
    risk.halted_at, risk.peak_scanned_to, risk.high_water_mark = int(ints[HALTED_AT]), int(ints[PEAK_TO]), floats[HWM]
    return equity, held, records, funding_paid, ruined_at


@njit(cache=True, error_model="numpy")
def _is_halted(ints: np.ndarray, index: np.ndarray, bar: int, review_ms: int) -> bool:  # pragma: no cover
    """LiveRiskState.is_halted: a halt stands and its review time (``review_ms`` after it; -1: never) has not come."""
    halted_at = ints[HALTED_AT]
    if halted_at < 0:
        return False
    return review_ms < 0 or index[bar] < index[halted_at] + review_ms


@njit(cache=True, error_model="numpy")
def _mode(ints: np.ndarray, floats: np.ndarray, halts: np.ndarray, reduce_days: np.ndarray, index: np.ndarray,
          equity: np.ndarray, bar: int, equity_now: float, starting_cash: float, caps: np.ndarray,
          review_ms: int) -> int:  # pragma: no cover (compiled)
    """LiveRiskState.mode (and its ``_rearm``) at the tick filling at ``bar``; ``equity[:bar]`` are the closes."""
    if _is_halted(ints, index, bar, review_ms):
        return HALTED
    if ints[HALTED_AT] >= 0:  # the review is due: peak = start of day = equity now
        halts[ints[N_HALTS] - 1, 1] = bar
        ints[HALTED_AT] = -1
        floats[HWM], ints[PEAK_TO] = equity_now, bar
        ints[RESET_DAY] = index[bar] - index[bar] % MS_PER_DAY
        floats[RESET_EQUITY] = equity_now
        ints[REDUCE_DAY] = -1
    peak_to = ints[PEAK_TO]
    if bar > peak_to:
        peak = equity[peak_to]
        for i in range(peak_to + 1, bar):  # numpy's max: NaN as soon as one value is NaN
            if np.isnan(equity[i]):
                peak = equity[i]
                break
            if equity[i] > peak:
                peak = equity[i]
        if peak > floats[HWM]:  # Python's max(peak so far, peak): a NaN never replaces it
            floats[HWM] = peak
        ints[PEAK_TO] = bar
    if equity_now > floats[HWM]:
        floats[HWM] = equity_now
    if not equity_now > 0 or 1.0 - equity_now / floats[HWM] >= caps[MAX_DRAWDOWN]:
        ints[HALTED_AT] = bar
        halts[ints[N_HALTS], 0], halts[ints[N_HALTS], 1] = bar, -1
        ints[N_HALTS] += 1
        return FLATTEN_AND_HALT
    day_ms = index[bar] - index[bar] % MS_PER_DAY
    if day_ms == ints[REDUCE_DAY]:
        return REDUCE_ONLY
    last_run_before_day = np.searchsorted(index, day_ms) - 1
    day_start = equity[last_run_before_day - 1] if last_run_before_day >= 1 else starting_cash
    if day_ms == ints[RESET_DAY]:
        day_start = floats[RESET_EQUITY]
    if day_start > 0 and 1.0 - equity_now / day_start >= caps[DAILY_LOSS]:
        ints[REDUCE_DAY] = day_ms
        reduce_days[ints[N_REDUCE], 0], reduce_days[ints[N_REDUCE], 1] = bar, day_ms
        ints[N_REDUCE] += 1
        return REDUCE_ONLY
    return TRADE


@njit(cache=True, error_model="numpy")
def _target_breach(wanted: np.ndarray, scratch: np.ndarray, caps: np.ndarray) -> int:  # pragma: no cover
    """LiveRiskState.target_breach: 0, ASSET_WEIGHT or EXPOSURE (gross, then |net|)."""
    limit = caps[ASSET_CAP] + WEIGHT_TOLERANCE
    for asset in range(wanted.size):
        if abs(wanted[asset]) > limit:
            return ASSET_WEIGHT
    for asset in range(wanted.size):
        scratch[asset] = abs(wanted[asset])
    if _numpy_sum(scratch) > caps[GROSS_CAP] + WEIGHT_TOLERANCE:
        return EXPOSURE
    if abs(_numpy_sum(wanted)) > caps[NET_CAP] + WEIGHT_TOLERANCE:
        return EXPOSURE
    return 0


@njit(cache=True, error_model="numpy")
def _clip_and_fit_tail(ints: np.ndarray, wanted: np.ndarray, tail_scale: np.ndarray, tail_scaled: np.ndarray,
                       bar: int, cap: float, tail_refuse: bool) -> bool:  # pragma: no cover (compiled)
    """LiveRiskState.clip then .fit_tail on ``wanted`` in place; True when the tail pass refused the target."""
    over = False
    for asset in range(wanted.size):
        if abs(wanted[asset]) > cap + WEIGHT_TOLERANCE:
            over = True
    if over:
        ints[CLIPPED] += 1
        for asset in range(wanted.size):  # weight_caps.clip_to_cap
            if np.isfinite(wanted[asset]) and abs(wanted[asset]) > cap + WEIGHT_TOLERANCE:
                wanted[asset] = np.copysign(cap, wanted[asset])
    if tail_scale.size == 0:
        return False
    factor = tail_scale[bar]
    if factor >= 1.0:
        return False
    if np.isnan(factor):  # the risk cannot be estimated: fail closed
        ints[TAIL_UNKNOWN] += 1
        return True
    if tail_refuse:
        ints[TAIL_REFUSED] += 1
        return True
    tail_scaled[ints[N_SCALED]] = factor
    ints[N_SCALED] += 1
    for asset in range(wanted.size):
        wanted[asset] = wanted[asset] * factor
    return False


@njit(cache=True, error_model="numpy")
def _risk_tick(records: np.ndarray, count: int, units: np.ndarray, cash: float, reference_row: np.ndarray,
               tradeable_row: np.ndarray, wanted_row: np.ndarray, slip_row: np.ndarray, bar: int, fee_frac: float,
               long_only: bool, min_notional: float, band: float, work: np.ndarray, order_asset: np.ndarray,
               risk_work: np.ndarray, index: np.ndarray, equity: np.ndarray, starting_cash: float, caps: np.ndarray,
               max_orders: int, review_ms: int, tail_scale: np.ndarray, tail_refuse: bool, ints: np.ndarray,
               floats: np.ndarray, halts: np.ndarray, reduce_days: np.ndarray,
               tail_scaled: np.ndarray) -> tuple[int, float]:  # pragma: no cover (compiled)
    """backtester._risk_checked_rebalance: the decision of bar ``bar - 1`` through the live risk verdict."""
    held_value, wanted, scratch = risk_work[0], risk_work[1], risk_work[2]
    for asset in range(units.size):
        held_value[asset] = units[asset] * reference_row[asset]
    equity_now = cash + _numpy_sum(held_value)
    mode = _mode(ints, floats, halts, reduce_days, index, equity, bar, equity_now, starting_cash, caps, review_ms)
    if mode >= FLATTEN_AND_HALT:  # or HALTED: flatten (again, if an asset could not trade), no order cap
        wanted[:] = 0.0
        count, cash, _ = _rebalance(records, count, units, cash, reference_row, tradeable_row, wanted, slip_row, bar,
                                    fee_frac, long_only, min_notional, band, work, order_asset, np.inf, -1)
        return count, cash
    wanted[:] = wanted_row
    refused = _clip_and_fit_tail(ints, wanted, tail_scale, tail_scaled, bar, caps[ASSET_CAP], tail_refuse)
    if refused and mode == TRADE:
        breach = _target_breach(wanted, scratch, caps)
        if breach:
            ints[BLOCKED + breach - 1] += 1
            return count, cash
    if mode == REDUCE_ONLY or refused:  # live_risk.reduce_only_weights (np.clip's max then min)
        for asset in range(units.size):
            held = held_value[asset] / equity_now
            low, high = min(held, 0.0), max(held, 0.0)
            raised = wanted[asset] if wanted[asset] > low else low
            wanted[asset] = raised if raised < high else high
    else:
        breach = _target_breach(wanted, scratch, caps)
        if breach:
            ints[BLOCKED + breach - 1] += 1
            return count, cash
    count, cash, breach = _rebalance(records, count, units, cash, reference_row, tradeable_row, wanted, slip_row, bar,
                                     fee_frac, long_only, min_notional, band, work, order_asset,
                                     caps[ORDER_NOTIONAL], max_orders)
    if breach:
        ints[BLOCKED + breach - 1] += 1
    return count, cash


@njit(cache=True, error_model="numpy")
def _walk(mark: np.ndarray, reference: np.ndarray, tradeable: np.ndarray, target: np.ndarray,
          has_decision: np.ndarray, slip: np.ndarray, funding: np.ndarray, wants_position: np.ndarray,
          last_close_bar: np.ndarray, marks_non_negative: bool, starting_cash: float, fee_frac: float,
          long_only: bool, min_notional: float, band: float, index: np.ndarray, caps: np.ndarray, max_orders: int,
          review_ms: int, tail_scale: np.ndarray, tail_refuse: bool, ints: np.ndarray, floats: np.ndarray,
          halts: np.ndarray, reduce_days: np.ndarray, tail_scaled: np.ndarray, equity: np.ndarray, held: np.ndarray,
          records: np.ndarray) -> tuple[np.ndarray, float, int]:  # pragma: no cover (compiled)
    """sim_kernel._simulate's loop with the risk-checked fill and the halted book's flat ticks skipped, as
    backtester.run_backtest's; (records, funding paid, ruined bar or -1)."""
    n_bars, n_assets = mark.shape
    exit_tick = _exit_ticks(last_close_bar, n_bars)
    per_bar_slip = slip.shape[0] > 1
    units = np.zeros(n_assets)
    cash, funding_paid, ruined_at, is_flat = starting_cash, 0.0, -1, True
    work, order_asset, risk_work = np.empty((7, n_assets)), np.empty(n_assets, np.int64), np.empty((3, n_assets))
    count, segment_start = 0, 0
    for bar in range(1, n_bars):
        if not (exit_tick[bar] or has_decision[bar]):
            continue
        must_exit = exit_tick[bar] and _holds_an_ended_asset(units, last_close_bar, bar)
        is_fill = has_decision[bar] and not (
            is_flat and (not wants_position[bar - 1] or _is_halted(ints, index, bar, review_ms)))
        if not (must_exit or is_fill):
            continue
        cash, paid, ruined_at = _walk_segment(mark, funding, equity, held, units, cash, segment_start, bar,
                                              long_only, marks_non_negative)
        funding_paid += paid
        if ruined_at >= 0:
            return records[:, :count].T, funding_paid, ruined_at
        segment_start = bar
        if must_exit:
            exit_slip = slip[min(bar, n_bars - 1)] if per_bar_slip else slip[0]
            count, cash = _exit_ended(records, count, units, cash, mark[bar - 1], exit_slip, last_close_bar, bar - 1,
                                      fee_frac)
        if is_fill:
            fill_slip = slip[bar] if per_bar_slip else slip[0]
            count, cash = _risk_tick(records, count, units, cash, reference[bar], tradeable[bar], target[bar - 1],
                                     fill_slip, bar, fee_frac, long_only, min_notional, band, work, order_asset,
                                     risk_work, index, equity, starting_cash, caps, max_orders, review_ms, tail_scale,
                                     tail_refuse, ints, floats, halts, reduce_days, tail_scaled)
        is_flat = _is_flat(units)
    cash, paid, ruined_at = _walk_segment(mark, funding, equity, held, units, cash, segment_start, n_bars,
                                          long_only, marks_non_negative)
    funding_paid += paid
    return records[:, :count].T, funding_paid, ruined_at
