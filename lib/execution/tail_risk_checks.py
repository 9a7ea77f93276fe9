"""Edge: the pre-trade tail-risk pass of rebalance, on every book: the liquidation guard of perp shorts
(lib.execution.margin_guard) first, then the 99 % 1-day VaR / CVaR of the TARGET book against
``risk.max_var_99_frac`` / ``risk.max_cvar_99_frac`` (lib.core.tail_limits), both from the stored candles'
daily closes (the one file read here).

A breaching target is scaled down to fit (``risk.tail_risk_action = "scale"``: journaled ``risk_rejected``,
one alert, the run trades) or refused (``"refuse"``: only risk-reducing orders go, then the run fails, which
alerts once). A risk that cannot be estimated (no or too little history, no volatility forecast) is refused
the same way: fail closed, exits still go. Held symbols (late data, no live price) are not scaled.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

import pandas as pd
from loguru import logger

from lib.core.daily_returns import daily_closes
from lib.core.errors import CoinbotError
from lib.core.ewma import ewma_volatility, log_returns
from lib.core.paths import ProjectPaths
from lib.core.short_margin import ShortMargin
from lib.core.state import Targets
from lib.core.storage import read_parquet
from lib.core.tail_fit import fit_book
from lib.core.timeframes import timeframe_ms
from lib.core.venue import Holdings, MarketRules
from lib.execution import journal as records
from lib.execution.book import Book
from lib.execution.journal import RunInfo
from lib.execution.margin_guard import GUARD_OFF, LIQUIDATION_RISK, guard_shorts, reductions_first
from lib.execution.orders import OrderParams, OrderPlan
from lib.execution.risk import RiskLimits, RiskRejection, RiskVerdict, reducing_orders
from lib.execution.state_files import Journal
from lib.execution.venue_session import STORED_CANDLE_COLUMNS

TAIL_RISK_SCALED = "tail_risk_scaled"
TAIL_RISK_REFUSED = "tail_risk"


@dataclass(frozen=True, slots=True, kw_only=True)
class PreTrade:
    """What the pass decided: the targets to plan toward, the held shorts' margin, and any refusal."""

    target_weights: dict[str, float]
    holdings: Holdings
    shorts: tuple[ShortMargin, ...] = ()
    guarded: frozenset[str] = frozenset()
    refusals: tuple[RiskRejection, ...] = ()
    notes: tuple[str, ...] = field(default=())

    def first(self, plan: OrderPlan) -> OrderPlan:
        """The plan with the guarded shorts' reductions sent before anything else."""
        return reductions_first(plan, self.guarded)

    def order_params(self, params: OrderParams) -> OrderParams:
        """No no-trade band in a run that cuts a short: the cut is often smaller than the band."""
        return replace(params, no_trade_band_frac=0.0) if self.guarded else params

    def refuse(self, verdict: RiskVerdict) -> RiskVerdict:
        """A refusal keeps only the risk-reducing orders (reduce_only: sent, then the run fails)."""
        if not self.refusals:
            return verdict
        rejections = verdict.rejections + self.refusals
        if verdict.decision in ("halt", "flatten_and_halt"):
            return replace(verdict, rejections=rejections)
        allowed = tuple(reducing_orders(verdict.allowed_orders, self.holdings))
        return RiskVerdict(decision="reduce_only", rejections=rejections, allowed_orders=allowed)


def read_daily_closes(paths: ProjectPaths, timeframe: str, symbols: Iterable[str]) -> dict[str, pd.Series]:
    """Daily closes of the symbols that have stored candles (a missing or unreadable file: left out)."""
    closes = {}
    for symbol in sorted(set(symbols)):
        try:
            frame = read_parquet(paths.ohlcv(timeframe, symbol), columns=STORED_CANDLE_COLUMNS)
        except CoinbotError as error:
            logger.warning("{}: stored candles unreadable for the tail-risk pass: {}", symbol, error)
            continue
        if frame is not None and not frame.empty:
            closes[symbol] = daily_closes(frame, timeframe_ms=timeframe_ms(timeframe))
    return closes


def daily_volatility(closes: Mapping[str, pd.Series]) -> dict[str, float]:
    """The EWMA (RiskMetrics 0.94) forecast of tomorrow's log-return volatility, per symbol with one."""
    forecasts = {}
    for symbol, series in closes.items():
        forecast = ewma_volatility(log_returns(series)).iloc[-1] if len(series) else float("nan")
        if pd.notna(forecast):
            forecasts[symbol] = float(forecast)
    return forecasts


def forecast_volatility(paths: ProjectPaths, timeframe: str, symbols: Iterable[str]) -> dict[str, float]:
    """daily_volatility of the stored candles of ``symbols`` (doctor's perp-margin rows use it too)."""
    return daily_volatility(read_daily_closes(paths, timeframe, symbols))


def pre_trade(target_weights: Mapping[str, float], book: Book, targets: Targets, paths: ProjectPaths,
              limits: RiskLimits, journal: Journal, run: RunInfo, *, alert: Callable[[str], object],
              markets: Mapping[str, MarketRules] | None = None) -> PreTrade:
    """Guard the shorts, then fit the target book to the tail limits; journal and alert what was changed.

    ``targets`` gives the candles' timeframe and the held symbols (``hold``: not scaled); ``markets`` the amount
    steps a cut short is rounded to."""
    hold, timeframe = targets.hold, targets.timeframe
    weights = {s: w for s, w in target_weights.items() if w != 0}
    shorts_held = {s for s, a in book.holdings.amounts_base.items() if ":" in s and a < 0}
    guard_on = limits.max_liquidation_prob_24h < GUARD_OFF and (shorts_held or any(":" in s for s in weights))
    if limits.tail_risk_action == "off" and not guard_on:
        return PreTrade(target_weights=weights, holdings=book.holdings)
    closes = read_daily_closes(paths, timeframe, set(weights) | shorts_held)
    changed: list[RiskRejection] = []
    refusals: list[RiskRejection] = []
    shorts: list[ShortMargin] = []
    if guard_on:
        try:
            weights, shorts, guarded = guard_shorts(weights, holdings=book.holdings, prices=book.prices,
                                                    sizing_quote=book.sizing_quote,
                                                    daily_volatility=daily_volatility(closes), limits=limits,
                                                    markets=markets)
            changed += guarded
        except CoinbotError as error:
            refusals.append(RiskRejection(check=LIQUIDATION_RISK, symbol=None,
                                          detail=f"liquidation risk of the shorts unknown ({error}): only "
                                                 "risk-reducing orders"))
    if limits.tail_risk_action != "off":
        weights, scaled, refused = fit_tail(weights, closes, fixed=set(hold) | set(book.unpriced), limits=limits)
        changed += scaled
        refusals += refused
    for rejection in changed:
        logger.warning("{} {}: {}", rejection.check, rejection.symbol or "book", rejection.detail)
        journal.append(records.to_risk_rejected_event(rejection, run))
    if changed and journal.write:  # a dry run shows it in the log, alerts nobody
        alert("coinbot: rebalance reduced risk before planning\n" + "\n".join(
            f"{r.check} {r.symbol or 'book'}: {r.detail}" for r in changed))
    return PreTrade(target_weights=weights, holdings=book.holdings, shorts=tuple(shorts), refusals=tuple(refusals),
                    guarded=frozenset(r.symbol for r in changed if r.check == LIQUIDATION_RISK and r.symbol))


def fit_tail(weights: dict[str, float], closes: Mapping[str, pd.Series], *, fixed: set[str],
             limits: RiskLimits) -> tuple[dict[str, float], list[RiskRejection], list[RiskRejection]]:
    """(weights, [the scaling done], [a refusal]) for the target book against the tail limits. The carry book
    passes both legs of each pair with their own closes (spot and perp): its risk is the basis, not the coin."""
    if not weights:
        return weights, [], []
    held = {s: w for s, w in weights.items() if s in fixed and s in closes}
    for symbol in sorted(s for s in weights if s in fixed and s not in closes):  # not traded: nothing to act on
        logger.warning("{} is held (not traded) and has no stored candles: left out of the tail risk", symbol)
    scalable = {s: w for s, w in weights.items() if s not in fixed}
    try:  # the rule itself is lib.core.tail_fit (the backtest models it from there)
        check, days = fit_book(scalable, closes, fixed=held, max_var=limits.max_var_99_frac,
                               max_cvar=limits.max_cvar_99_frac, lookback_days=limits.var_lookback_days)
    except CoinbotError as error:
        return weights, [], [RiskRejection(check=TAIL_RISK_REFUSED, symbol=None,
                                           detail=f"tail risk of the target book unknown ({error}): only "
                                                  "risk-reducing orders")]
    figures = (f"99 % 1-day VaR {check.var_99:.2%} / CVaR {check.cvar_99:.2%} of equity (limits "
               f"{limits.max_var_99_frac:.2%} / {limits.max_cvar_99_frac:.2%}, {days} days)")
    logger.info("target book tail risk: {}", figures)
    if check.scale >= 1.0:
        return weights, [], []
    if limits.tail_risk_action == "refuse":
        return weights, [], [RiskRejection(check=TAIL_RISK_REFUSED, symbol=None,
                                           detail=f"{figures}: refused, only risk-reducing orders")]
    scaled = {s: w * check.scale if s in scalable else w for s, w in weights.items()}
    return scaled, [RiskRejection(check=TAIL_RISK_SCALED, symbol=None,
                                  detail=f"{figures}: target book scaled by {check.scale:.4f} to VaR "
                                         f"{check.scaled_var_99:.2%} / CVaR {check.scaled_cvar_99:.2%}")], []
