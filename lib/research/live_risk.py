"""Pure: the live risk layer of ``[risk]`` as the backtester applies it at each rebalance tick.

What runs live (lib/execution/risk.py ``check_all``, carried out by lib/execution/rebalance_engine.py) and how
the backtest models it at the tick that fills at bar ``f``'s open (the live run right after bar ``f - 1``):

- drawdown: ``1 - equity / high-water mark >= max_drawdown_frac`` -> flatten now (no order cap) and halt.
  Live stays flat until a person deletes state/halt.json and runs ``rebalance --reset-high-water-mark``, which
  takes the equity of that run as the new peak and start of day (lib/execution/risk_baselines.py). The backtest
  models that person: ``review_days`` after the halt (``backtest.halt_review_days``; 0 = nobody, flat to the end)
  the first tick at or after that time re-arms with the same reset (peak = start of day = equity now) and
  trades. The peak is the starting capital (or the last reset's equity), every close marked since (bars < f)
  and the equity now (the book at bar f's open): closes stand in for the live runs' valuations.
- daily loss: ``1 - equity / start-of-day equity >= daily_loss_limit_frac`` -> reduce-only (each weight may
  only move toward 0) for the rest of that UTC day. The start-of-day equity is, as in
  lib/execution/risk_baselines.py, the equity of the last run before 00:00 UTC: the close before that run's
  bar (the starting capital before any such run). On daily bars this is the loss over the last bar.
- per-asset cap: a target over max_asset_weight_frac is CLIPPED to +-cap and the rest trades, as live
  (lib.core.weight_caps, shared with lib/execution/risk_targets.py; before every other check, in every mode).
- caps, checked like ``check_all`` (a breach = the run fails and sends nothing; the book stays as it is):
  gross (spot: max_gross_exposure_frac, perp: max_gross_leverage) and |net| (max_net_exposure_frac) of the
  target; each order's notional <= max_order_notional_quote; order count <= max_orders_per_run. In reduce-only
  mode only the order caps apply (as live). Post-trade drift checks are not modelled (fills go to the checked targets).
- tail risk (``risk.tail_risk_action``, lib.execution.tail_risk_checks): after the clip, the target book is fitted
  to the 99 % 1-day VaR / CVaR limits on the trailing daily returns live would see (lib.research.live_tail, the rule
  of lib.core.tail_fit): ``scale`` multiplies it by live's factor; a breach under ``refuse``, or a risk that cannot
  be estimated under either, trades only the risk-reducing part (each weight toward 0, as reduce-only); ``off``:
  nothing. In a halt or flatten tick it is not looked at (live flattens first).

The decision at tick f reads equity of bars < f and the book at f's open only (tests/unit/research/test_live_risk.py).
The thresholds are the loaded ``[risk]`` section's own values (``LiveRiskLimits.from_risk_limits``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from lib.core.timeframes import MS_PER_DAY
from lib.core.weight_caps import WEIGHT_TOLERANCE, clip_to_cap

Mode = Literal["trade", "reduce_only", "flatten_and_halt", "halted"]


@dataclass(frozen=True, slots=True, kw_only=True)
class LiveRiskLimits:
    """The thresholds of ``[risk]`` that bind in a backtest (research cannot import lib.execution)."""

    max_drawdown_frac: float
    daily_loss_limit_frac: float
    max_asset_weight_frac: float
    max_gross_exposure_frac: float
    max_gross_leverage: float
    max_net_exposure_frac: float
    max_order_notional_quote: float
    max_orders_per_run: int
    var_lookback_days: int = 365
    max_var_99_frac: float = 0.08
    max_cvar_99_frac: float = 0.12
    tail_risk_action: str = "off"  # scale | refuse | off; from_risk_limits takes the config's (default "scale")

    @classmethod
    def from_risk_limits(cls, limits: Any) -> LiveRiskLimits:
        """From a ``lib.execution.risk.RiskLimits`` (the loaded config's ``risk``): the same values."""
        return cls(
            max_drawdown_frac=float(limits.max_drawdown_frac),
            daily_loss_limit_frac=float(limits.daily_loss_limit_frac),
            max_asset_weight_frac=float(limits.max_asset_weight_frac),
            max_gross_exposure_frac=float(limits.max_gross_exposure_frac),
            max_gross_leverage=float(limits.max_gross_leverage),
            max_net_exposure_frac=float(limits.max_net_exposure_frac),
            max_order_notional_quote=float(limits.max_order_notional_quote),
            max_orders_per_run=int(limits.max_orders_per_run),
            var_lookback_days=int(limits.var_lookback_days),
            max_var_99_frac=float(limits.max_var_99_frac),
            max_cvar_99_frac=float(limits.max_cvar_99_frac),
            tail_risk_action=str(limits.tail_risk_action),
        )


@dataclass(frozen=True, slots=True)
class LiveRiskReport:
    """What the layer did in one run: ``halted_at_ms`` = open time of the bar whose open flattened the book."""

    halted_at_ms: int | None  # the first halt
    halted_bars: int  # bars from each flatten to its re-arm (or to the end), summed
    reduce_only_bars: int  # bars under a reduce-only day, from the tick that tripped it
    reduce_only_days: int
    blocked_ticks: dict[str, int]  # ticks at which a cap made the run send nothing, by check
    halts: tuple[tuple[int, int | None], ...] = ()  # (flatten bar's open ms, re-arm bar's open ms or None)
    clipped_ticks: int = 0  # ticks at which a target over max_asset_weight_frac was clipped to the cap
    tail_action: str = "off"  # risk.tail_risk_action as modelled ("off" also when no daily closes were given)
    tail_scales: tuple[float, ...] = ()  # the factor of each tick whose target the tail limits scaled down
    tail_refused_ticks: int = 0  # ticks whose breach was refused (tail_risk_action = "refuse"): risk-reducing only
    tail_unknown_ticks: int = 0  # ticks whose tail risk could not be estimated (refused, as live): risk-reducing only


@dataclass(slots=True)
class LiveRiskState:
    """The layer's memory over one run (lives inside one run_backtest call)."""

    limits: LiveRiskLimits
    index: np.ndarray  # bar open times (ms)
    starting_capital_quote: float
    is_perp: bool
    review_days: int = 0  # a person clears a halt this many days after it (0: never)
    high_water_mark: float = 0.0
    peak_scanned_to: int = 0  # closes of bars < this are in high_water_mark
    halted_at: int = -1
    reduce_only_day_ms: int = -1
    reduce_only_days: list[tuple[int, int]] = field(default_factory=list)  # (trip bar, day start ms)
    blocked: dict[str, int] = field(default_factory=dict)
    halts: list[tuple[int, int]] = field(default_factory=list)  # (flatten bar, re-arm bar or -1)
    reset_day_ms: int = -1  # the UTC day of the last re-arm, whose start-of-day equity is reset_equity
    reset_equity: float = 0.0
    clipped: int = 0
    tail_scale: np.ndarray | None = None  # per fill bar: live's tail factor for its target (1 fits, NaN unknown)
    tail_scaled: list[float] = field(default_factory=list)
    tail_refused: int = 0
    tail_unknown: int = 0

    def __post_init__(self) -> None:
        self.high_water_mark = self.starting_capital_quote

    def is_halted(self, bar: int) -> bool:
        """Halted at the tick filling at ``bar``: a halt stands and its review time has not come yet."""
        if self.halted_at < 0:
            return False
        return self.review_days <= 0 or int(self.index[bar]) < self._review_due_ms()

    def _review_due_ms(self) -> int:
        return int(self.index[self.halted_at]) + self.review_days * MS_PER_DAY

    def mode(self, bar: int, equity: np.ndarray, equity_now: float) -> Mode:
        """The verdict's mode at the tick filling at ``bar``; ``equity[:bar]`` are the closes so far."""
        if self.is_halted(bar):
            return "halted"
        if self.halted_at >= 0:  # the review is due: a person cleared the halt and reset the baselines
            self._rearm(bar, equity_now)
        if bar > self.peak_scanned_to:
            self.high_water_mark = max(self.high_water_mark, float(equity[self.peak_scanned_to : bar].max()))
            self.peak_scanned_to = bar
        self.high_water_mark = max(self.high_water_mark, equity_now)
        if not equity_now > 0 or 1.0 - equity_now / self.high_water_mark >= self.limits.max_drawdown_frac:
            self.halted_at = bar
            self.halts.append((bar, -1))
            return "flatten_and_halt"
        day_ms = int(self.index[bar]) - int(self.index[bar]) % MS_PER_DAY
        if day_ms == self.reduce_only_day_ms:
            return "reduce_only"
        last_run_before_day = int(np.searchsorted(self.index, day_ms, side="left")) - 1
        day_start = float(equity[last_run_before_day - 1]) if last_run_before_day >= 1 else self.starting_capital_quote
        if day_ms == self.reset_day_ms:  # the reset made this run's equity the start of the day
            day_start = self.reset_equity
        if day_start > 0 and 1.0 - equity_now / day_start >= self.limits.daily_loss_limit_frac:
            self.reduce_only_day_ms = day_ms
            self.reduce_only_days.append((bar, day_ms))
            return "reduce_only"
        return "trade"

    def _rearm(self, bar: int, equity_now: float) -> None:
        """``rebalance --reset-high-water-mark`` after the halt file is deleted: peak = start of day = equity now."""
        self.halts[-1] = (self.halts[-1][0], bar)
        self.halted_at = -1
        self.high_water_mark, self.peak_scanned_to = equity_now, bar
        self.reset_day_ms = int(self.index[bar]) - int(self.index[bar]) % MS_PER_DAY
        self.reset_equity = equity_now
        self.reduce_only_day_ms = -1

    def clip(self, wanted: np.ndarray) -> np.ndarray:
        """Targets over max_asset_weight_frac clipped to +-cap, as live (counted as a clipped tick)."""
        cap = self.limits.max_asset_weight_frac
        if not (np.abs(wanted) > cap + WEIGHT_TOLERANCE).any():
            return wanted
        self.clipped += 1
        return np.array([clip_to_cap(float(weight), cap) for weight in wanted])

    def clip_all(self, wanted: np.ndarray) -> np.ndarray:
        """``clip`` of every row at once, not counted (the targets the tail factors are computed on)."""
        cap = self.limits.max_asset_weight_frac
        over = np.isfinite(wanted) & (np.abs(wanted) > cap + WEIGHT_TOLERANCE)
        return np.where(over, np.copysign(cap, wanted), wanted)

    def fit_tail(self, bar: int, wanted: np.ndarray) -> tuple[np.ndarray, bool]:
        """(target after the tail-risk pass, refused?) at the tick filling at ``bar``: scaled by live's factor under
        ``scale``; refused (only risk-reducing orders go) on a breach under ``refuse`` or an unknown risk."""
        if self.tail_scale is None:
            return wanted, False
        factor = float(self.tail_scale[bar])
        if factor >= 1.0:
            return wanted, False
        if factor != factor:  # NaN: the risk cannot be estimated, fail closed
            self.tail_unknown += 1
            return wanted, True
        if self.limits.tail_risk_action == "refuse":
            self.tail_refused += 1
            return wanted, True
        self.tail_scaled.append(factor)
        return wanted * factor, False

    def target_breach(self, wanted: np.ndarray) -> str | None:
        """The first cap the target weights break (the run then sends nothing), else None. Call it on
        ``clip(wanted)``: an over-cap asset is clipped, not a breach (an unclipped one still reports asset_weight)."""
        limits = self.limits
        if (np.abs(wanted) > limits.max_asset_weight_frac + WEIGHT_TOLERANCE).any():
            return "asset_weight"
        gross_cap = limits.max_gross_leverage if self.is_perp else limits.max_gross_exposure_frac
        if float(np.abs(wanted).sum()) > gross_cap + WEIGHT_TOLERANCE:
            return "exposure"
        if abs(float(wanted.sum())) > limits.max_net_exposure_frac + WEIGHT_TOLERANCE:
            return "exposure"
        return None

    def order_breach(self, notionals: list[float]) -> str | None:
        """The first order cap the plan breaks (fat finger, order count), else None."""
        if any(notional > self.limits.max_order_notional_quote for notional in notionals):
            return "fat_finger"
        if len(notionals) > self.limits.max_orders_per_run:
            return "order_count"
        return None

    def block(self, check: str) -> None:
        self.blocked[check] = self.blocked.get(check, 0) + 1

    def report(self) -> LiveRiskReport:
        n_bars = len(self.index)
        reduce_bars = sum(int(np.searchsorted(self.index, day_ms + MS_PER_DAY, side="left")) - bar
                          for bar, day_ms in self.reduce_only_days)
        halts = tuple((int(self.index[start]), None if end < 0 else int(self.index[end])) for start, end in self.halts)
        return LiveRiskReport(
            halted_at_ms=halts[0][0] if halts else None,
            halted_bars=sum((n_bars if end < 0 else end) - start for start, end in self.halts),
            reduce_only_bars=reduce_bars,
            reduce_only_days=len(self.reduce_only_days),
            blocked_ticks=dict(sorted(self.blocked.items())),
            halts=halts,
            clipped_ticks=self.clipped,
            tail_action="off" if self.tail_scale is None else self.limits.tail_risk_action,
            tail_scales=tuple(self.tail_scaled),
            tail_refused_ticks=self.tail_refused,
            tail_unknown_ticks=self.tail_unknown,
        )


def reduce_only_weights(wanted: np.ndarray, held_weights: np.ndarray) -> np.ndarray:
    """Each weight moved toward 0 at most down to the target, never past 0 and never up (reduce-only orders)."""
    return np.clip(wanted, np.minimum(held_weights, 0.0), np.maximum(held_weights, 0.0))
