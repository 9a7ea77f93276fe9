"""Pure: the two-wallet carry backtest: long spot + isolated short perpetual per coin, hourly bars.

Timeline of one bar opening at t (fills of the weight decided at the previous close):
1. both legs are marked from the last price to their own open (price P&L);
2. funding settled at t is paid on the short held BEFORE the fills (a fill at the open is just after
   the settlement): short units x perp open x rate, into that coin's isolated margin (rate > 0: shorts receive);
3. pending orders fill at each leg's OWN open (only when both legs have an open; else they wait):
   spot to N / spot open units, short to N / perp open units (equal notional), price moved against us by
   the slippage rate, fee on the fill notional; then the coin's margin balance is set to N / leverage by
   a transfer from/to the spot wallet's cash (an exit sends it all back);
4. the short's worst intrabar point gives the bar's margin ratio (maintenance / margin balance,
   Binance tiers, ``lib.core.perp_margin``); at >= 1 the short is liquidated at its liquidation price and
   the remaining isolated margin is lost;
5. both legs are marked to their close; equity = spot cash + spot units x spot close + margin balances;
6. orders for the next open: a coin whose target changed from/to zero, drifted beyond the rebalance band
   (and by at least ``min_trade_quote``), lost its hedge, or whose collateral fell below
   ``min_collateral_frac`` x initial margin, or whose 24 h liquidation probability exceeds the limit while
   a reset can add collateral, is re-sized to target notional = weight x equity. The collateral set at a fill
   is notional / leverage, raised (up to 1x) so that the 24 h liquidation probability of the short
   (``lib.core.tail_risk``, perp volatility forecast at the decision) is at most the limit.

The worst intrabar point is the perp's last-price high (``liquidation_price = "last"``, the default:
conservative, last-price wicks included) or a mark-price proxy (``"mark_proxy"``: the spot high times the
bar-open perp/spot ratio, i.e. index high plus basis, within [perp close, perp high]; Binance liquidates on
the mark price, which follows the index and does not follow last-price wicks; a missing spot bar falls
back to the perp high).

Identity (tested): equity change = price P&L (both legs at mid) + funding - fees - slippage - liquidation losses,
where a liquidation's loss is the whole isolated margin of that short (its move from the last mark to the
liquidation price included), so that price P&L is the basis P&L of the hedged book (plus any spot move
while a liquidated leg waits for its re-hedge at the next open).
Simplifications: the perp's last price stands in for its mark price (funding and margin); transfers are
free and instant; unrealized profit counts as transferable; no interest on cash.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lib.core import perp_margin, tail_risk
from lib.core.errors import DataError
from lib.research.carry.market import CarryMarket, funding_at_bar
from lib.research.carry.sleeve import CarryParams

CASH_TOLERANCE = 1e-9  # spot cash may dip this far below 0 (float noise), as a fraction of equity
DUST_QUOTE = 1e-9
TRADE_COLUMNS = ("timestamp", "coin", "leg", "side", "amount_base", "price", "notional_quote", "fee_quote",
                 "slippage_quote")
LEDGER_COLUMNS = ("equity", "spot_cash", "spot_value", "margin_balance", "short_notional", "funding",
                  "price_pnl", "fees", "slippage", "liquidation_loss", "worst_margin_ratio",
                  "max_liquidation_probability")


@dataclass(frozen=True, slots=True)
class CarryBookResult:
    """Hourly ledger (index = bar open ms; cumulative money columns), trades, transfers, spot-leg weights."""

    ledger: pd.DataFrame
    trades: pd.DataFrame
    transfers: pd.DataFrame
    spot_weights: pd.DataFrame
    liquidations: int


def simulate_book(market: CarryMarket, weights: pd.DataFrame, params: CarryParams, *,
                  capital_quote: float = 1000.0, perp_volatility: pd.DataFrame | None = None) -> CarryBookResult:
    """Replay target spot-leg weights (decided at each bar's close) through both wallets."""
    coins, index = market.coins, market.index
    if list(weights.columns) != coins or not weights.index.equals(index):
        raise DataError("carry weights must have the market's index and coins")
    if not capital_quote > 0:
        raise DataError(f"capital must be > 0, got {capital_quote}")
    s_open, s_close = market.spot_open.to_numpy(float), market.spot_close.to_numpy(float)
    p_open, p_high = market.perp_open.to_numpy(float), market.perp_high.to_numpy(float)
    p_close, rates = market.perp_close.to_numpy(float), funding_at_bar(market).to_numpy(float)
    if params.liquidation_price == "mark_proxy":
        basis = market.perp_open.to_numpy(float) / s_open
        proxy = np.maximum(market.spot_high.to_numpy(float) * basis, p_close)
        p_high = np.where(np.isfinite(proxy), np.minimum(proxy, p_high), p_high)
    target = weights.to_numpy(float)
    vol = (perp_volatility.to_numpy(float) if perp_volatility is not None
           else np.full(target.shape, np.nan))
    k = len(coins)
    units, short, margin = np.zeros(k), np.zeros(k), np.zeros(k)
    s_mark, p_mark = np.full(k, np.nan), np.full(k, np.nan)
    pending: dict[int, float] = {}
    cash = float(capital_quote)
    totals = dict.fromkeys(("funding", "price_pnl", "fees", "slippage", "liquidation_loss"), 0.0)
    worst_ratio, worst_probability, liquidations = 0.0, 0.0, 0
    rows: list[tuple[float, ...]] = []
    trades: list[tuple[object, ...]] = []
    transfers: list[tuple[int, str, float]] = []
    spot_weights = np.zeros(target.shape)
    fee, slip = params.fee_rate, params.slippage_rate

    for t, stamp in enumerate(index):
        stamp = int(stamp)
        # 1. mark to the open
        for i in range(k):
            if math.isfinite(s_open[t, i]):
                if units[i]:
                    totals["price_pnl"] += units[i] * (s_open[t, i] - s_mark[i])
                s_mark[i] = s_open[t, i]
            if math.isfinite(p_open[t, i]):
                if short[i]:
                    move = short[i] * (p_mark[i] - p_open[t, i])
                    margin[i] += move
                    totals["price_pnl"] += move
                p_mark[i] = p_open[t, i]
                # 2. funding on the short held over the settlement
                if short[i] and math.isfinite(rates[t, i]):
                    paid = short[i] * p_open[t, i] * rates[t, i]
                    margin[i] += paid
                    totals["funding"] += paid
        # 3. fills, reducing coins first so their cash is there for the others
        ready = [i for i in pending if math.isfinite(s_open[t, i]) and math.isfinite(p_open[t, i])]
        for i in sorted(ready, key=lambda j: pending[j] - units[j] * s_open[t, j]):
            notional = pending.pop(i)
            collateral = _collateral_target(coins[i], notional, p_open[t, i], vol[t - 1, i] if t else math.nan, params)
            cash = _fill_coin(i, coins[i], stamp, notional, s_open[t, i], p_open[t, i], units, short, margin,
                              cash, fee, slip, collateral, totals, trades, transfers)
        # 4. the short's worst intrabar point
        for i in range(k):
            if not short[i] or not math.isfinite(p_high[t, i]):
                continue
            high = max(p_high[t, i], p_mark[i])
            at_high = margin[i] - short[i] * (high - p_mark[i])
            ratio = perp_margin.margin_ratio(coins[i], short[i] * high, at_high)
            if ratio >= 1.0:
                liq_price = perp_margin.short_liquidation_price(coins[i], short[i], p_mark[i], margin[i])
                totals["liquidation_loss"] += margin[i]  # the whole isolated margin: the move to liq_price + the rest
                trades.append((stamp, coins[i], "perp", "buy", short[i], liq_price, short[i] * liq_price, 0.0, 0.0))
                short[i], margin[i], liquidations, ratio = 0.0, 0.0, liquidations + 1, 1.0
            worst_ratio = max(worst_ratio, ratio)
        # 5. mark to the close
        for i in range(k):
            if math.isfinite(s_close[t, i]):
                if units[i]:
                    totals["price_pnl"] += units[i] * (s_close[t, i] - s_mark[i])
                s_mark[i] = s_close[t, i]
            if math.isfinite(p_close[t, i]):
                if short[i]:
                    move = short[i] * (p_mark[i] - p_close[t, i])
                    margin[i] += move
                    totals["price_pnl"] += move
                p_mark[i] = p_close[t, i]
        spot_value = float(np.nansum(units * s_mark))
        equity = cash + spot_value + float(margin.sum())
        if equity > 0:
            spot_weights[t] = np.nan_to_num(units * s_mark) / equity
        if cash < -CASH_TOLERANCE * max(equity, 1.0):
            raise DataError(f"carry book spot cash went negative ({cash:.6f}) at {stamp}: sizing bug")
        # 6. orders for the next open
        probability = _decide(t, coins, target, equity, units, short, margin, s_mark, p_mark, vol, params, pending)
        worst_probability = max(worst_probability, probability)
        rows.append((equity, cash, spot_value, float(margin.sum()), float(np.nansum(short * p_mark)),
                     totals["funding"], totals["price_pnl"], totals["fees"], totals["slippage"],
                     totals["liquidation_loss"], worst_ratio, worst_probability))

    return CarryBookResult(
        ledger=pd.DataFrame(rows, index=index, columns=list(LEDGER_COLUMNS)),
        trades=pd.DataFrame(trades, columns=list(TRADE_COLUMNS)),
        transfers=pd.DataFrame(transfers, columns=["timestamp", "coin", "to_futures_quote"]),
        spot_weights=pd.DataFrame(spot_weights, index=index, columns=coins),
        liquidations=liquidations,
    )


def _collateral_needed(coin: str, quantity: float, price: float, volatility: float, params: CarryParams) -> float:
    """Margin balance that puts a short's 24 h liquidation probability at the limit (0 without a vol forecast)."""
    if not (quantity > 0 and math.isfinite(volatility) and volatility > 0):
        return 0.0
    buffer = tail_risk.buffer_for_probability(params.liquidation_probability_limit, volatility)
    tier = perp_margin.tier_for(coin, quantity * price)
    liquidation = price * math.exp(buffer)
    return liquidation * quantity * (1.0 + tier.maintenance_rate) - quantity * price - tier.maintenance_amount_quote


def _collateral_target(coin: str, notional: float, perp_price: float, volatility: float, params: CarryParams) -> float:
    """Initial margin (notional / leverage), raised to keep the liquidation probability at the limit, at most 1x."""
    if notional <= 0:
        return 0.0
    perp_margin.check_leverage(coin, notional, params.leverage)
    needed = _collateral_needed(coin, notional / perp_price, perp_price, volatility, params)
    return min(max(notional / params.leverage, needed), notional)


def _fill_coin(i: int, coin: str, stamp: int, notional: float, spot_open: float, perp_open: float,
               units: np.ndarray, short: np.ndarray, margin: np.ndarray, cash: float, fee: float, slip: float,
               collateral: float, totals: dict[str, float], trades: list[tuple[object, ...]],
               transfers: list[tuple[int, str, float]]) -> float:
    """Trade both legs of one coin to ``notional`` at their opens and set its margin balance to ``collateral``
    (a top-up never takes the spot wallet's cash below 0, and a buy is cut to the cash there is: raised
    collateral elsewhere may have used the buffer); returns the cash."""
    affordable = units[i] * spot_open + max(cash, 0.0) / ((1.0 + slip) * (1.0 + fee))
    notional = min(notional, affordable)
    delta = notional / spot_open - units[i]
    if abs(delta) * spot_open > DUST_QUOTE:
        side = 1.0 if delta > 0 else -1.0
        price = spot_open * (1.0 + side * slip)
        cost = abs(delta) * price * fee
        cash -= delta * price + cost
        totals["fees"] += cost
        totals["slippage"] += abs(delta) * spot_open * slip
        trades.append((stamp, coin, "spot", "buy" if delta > 0 else "sell", abs(delta), price,
                       abs(delta) * price, cost, abs(delta) * spot_open * slip))
    units[i] = notional / spot_open
    delta = notional / perp_open - short[i]  # > 0: sell more (a bigger short)
    if abs(delta) * perp_open > DUST_QUOTE:
        side = -1.0 if delta > 0 else 1.0
        price = perp_open * (1.0 + side * slip)
        cost = abs(delta) * price * fee
        margin[i] -= abs(delta) * perp_open * slip + cost
        totals["fees"] += cost
        totals["slippage"] += abs(delta) * perp_open * slip
        trades.append((stamp, coin, "perp", "sell" if delta > 0 else "buy", abs(delta), price,
                       abs(delta) * price, cost, abs(delta) * perp_open * slip))
    short[i] = notional / perp_open
    moved = collateral - margin[i] if notional > 0 else -margin[i]
    moved = min(moved, max(cash, 0.0)) if moved > 0 else moved
    if abs(moved) > DUST_QUOTE:
        cash -= moved
        margin[i] += moved
        transfers.append((stamp, coin, moved))
    return cash


def _decide(t: int, coins: list[str], target: np.ndarray, equity: float, units: np.ndarray, short: np.ndarray,
            margin: np.ndarray, s_mark: np.ndarray, p_mark: np.ndarray, vol: np.ndarray, params: CarryParams,
            pending: dict[int, float]) -> float:
    """Queue re-sizing orders for the next open; returns the largest 24 h liquidation probability now."""
    worst = 0.0
    wants = np.clip(target[t], 0.0, None) * max(equity, 0.0)
    for i, coin in enumerate(coins):
        want = float(wants[i])
        held = units[i] > 0 or short[i] > 0 or margin[i] != 0
        probability = 0.0
        if short[i] > 0 and math.isfinite(p_mark[i]) and math.isfinite(vol[t, i]):
            liq = perp_margin.short_liquidation_price(coin, short[i], p_mark[i], margin[i])
            buffer = tail_risk.short_buffer_log(p_mark[i], liq) if liq > 0 else -1.0
            probability = tail_risk.liquidation_probability(buffer, vol[t, i])
        worst = max(worst, probability)
        if want <= DUST_QUOTE:
            if held:
                pending[i] = 0.0
            else:
                pending.pop(i, None)
            continue
        if not held:
            pending[i] = want
            continue
        spot_value, short_value = units[i] * s_mark[i], short[i] * p_mark[i]
        drifted = abs(spot_value - want) > max(params.rebalance_band * want, params.min_trade_quote)
        unhedged = abs(spot_value - short_value) > params.rebalance_band * want
        thin = margin[i] < params.min_collateral_frac * short_value / params.leverage
        # a reset only helps when it ADDS collateral; otherwise the risk is reported, not churned on every bar
        needed = min(_collateral_needed(coin, short[i], p_mark[i], vol[t, i], params), short_value)
        risky = probability > params.liquidation_probability_limit and margin[i] < needed
        if drifted or unhedged or thin or risky:
            pending[i] = want
        else:
            pending.pop(i, None)
    # a coin kept inside its band must not starve a new one: if the book would commit more than the
    # equity can fund, every coin holding more capital (spot leg + margin) than its target needs is re-sized
    per_unit = 1.0 + 1.0 / params.leverage
    capital = [units[i] * s_mark[i] + margin[i] if units[i] > 0 else margin[i] for i in range(len(coins))]
    committed = sum(pending[i] * per_unit if i in pending else capital[i] for i in range(len(coins)))
    if committed > equity * (1.0 - params.cash_buffer / 2.0):
        for i in range(len(coins)):
            if i not in pending and capital[i] > wants[i] * per_unit:
                pending[i] = float(wants[i])
    return worst
