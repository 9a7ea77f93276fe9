"""The standalone funding-carry book planned within its spot cash, hand-computed: where its over-commitment comes
from, the cash fit with the pairs' growth and its collateral as the scaled part (lib.execution.carry_combo.fit_cash,
shared with the combined book), a scaled pair (both legs alike, never below the short held) and the run's step on a
stub session (lib.execution.carry_combo_cash.fit_pair_cash): a book that fits is returned as it is, a short one
is scaled, journaled once and alerted."""

from __future__ import annotations

from decimal import ROUND_FLOOR
from decimal import Decimal as D
from types import SimpleNamespace
from typing import Any, cast

import pytest

from lib.core.errors import StateError
from lib.core.venue import Holdings, MarketRules
from lib.execution import carry_guard
from lib.execution.carry_combo import CASH_SHORT, CoinCash, fit_cash, pair_growth, scaled_pair
from lib.execution.carry_combo_cash import fit_pair_cash
from lib.execution.carry_legs import (
    CarrySection,
    PairTarget,
    collateral_needed,
    pair_amount,
    plan_pair,
    transfer_id,
)
from lib.execution.carry_risk import CarryCandles, held_shorts
from lib.execution.carry_state import RunState
from lib.execution.journal import RunInfo
from lib.execution.orders import OrderParams
from lib.execution.risk import RiskLimits
from lib.research.carry.sleeve import CarryParams
from tests.unit.execution.test_carry_combo_cash import _Journal
from tests.unit.execution.test_carry_legs import PARAMS, PERP, PRICES, RULES, SPOT

RESERVE = D("0.0035")  # the spot book's: 0.1 % taker fee + 25 bps slippage allowance
STEP = D("0.001")  # BTC's common lot: spot 0.00001, perp 0.001


def test_a_standalone_carry_book_needs_more_than_its_spot_cash_once_the_futures_wallet_keeps_its_slack() -> None:
    """The sleeve funds spot legs + notional / leverage: at most 0.98 / (1 + 1/3) = 0.735 of equity, 0.65 in
    practice (five coins x 0.13). Live posts notional / 3 x 1.5: 0.65 x (1 + 0.5) = 0.975, with the spot book's
    reserve 0.65 x 1.0035 + 0.325 = 0.977275; at the sleeve's cap 0.735 x 1.5 = 1.1025. And the futures wallet
    returns nothing until it holds 1.5 x its need: up to 0.325 x 0.5 = 0.1625 more sits there, so the spot legs and
    the collateral can need 0.977275 + 0.1625 = 1.139775 of equity."""
    research, live = CarryParams(leverage=3.0), CarrySection()
    posted = 1 + (1 + live.collateral_buffer_frac) / live.leverage
    assert research.deployable_frac * posted == pytest.approx(1.1025)
    practice = 5 * research.max_coin_weight
    need = practice / live.leverage * (1 + live.collateral_buffer_frac)
    assert practice * (1 + float(RESERVE)) + need == pytest.approx(0.977275)
    assert practice * (1 + float(RESERVE)) + need * (1 + live.collateral_buffer_frac) == pytest.approx(1.139775)


def test_the_growth_and_its_collateral_are_scaled_to_the_cash_and_the_scaled_book_fits() -> None:
    """8,000 on spot, nothing held, BTC 0.70 at 20,000: 0.28 BTC, 5,600 x 1.0035 = 5,619.6 of spot buys and 5,600 / 3
    x 1.5 = 2,800 of collateral, all growth: scale 8,000 / 8,419.6. At it: 0.28 x 0.950163903273 = 0.26605 -> 0.266
    BTC, buys 5,320 x 1.0035 = 5,338.62 + collateral 2,660 = 7,998.62 <= 8,000."""
    coins = [CoinCash(symbol=SPOT, directional_buy=D(5600), haircut=RESERVE)]
    fit = fit_cash(coins, spot_cash=D(8000), to_futures=D(2800), scaled_collateral=D(2800))
    assert (fit.committed, fit.directional, fit.scale) == (D(0), D("8419.6"), D("0.950163903273"))
    pair = PairTarget(spot_symbol=SPOT, perp_symbol=PERP, spot_weight=0.7)
    scaled = scaled_pair(pair, amount=D("0.28"), short_held=D(0), scale=fit.scale, step=STEP, price=20_000.0,
                         equity=8_000.0)
    amount = scaled.max_amount_base
    assert amount == D("0.266") and scaled.spot_weight == pytest.approx(0.665)
    spent = amount * 20_000 * (1 + RESERVE) + collateral_needed({PERP: scaled.spot_weight * 8_000}, CarrySection())
    assert spent == D("7998.62")


def test_a_part_of_the_transfer_not_scaled_is_paid_first() -> None:
    """4,000 on spot; 501 of collateral is due anyway (the short held), 1,324 more with the growth, whose spot buys
    are 2,640 x 1.0035 = 2,649.24: (4,000 - 501) / (2,649.24 + 1,324) = 0.880641491578."""
    fit = fit_cash([CoinCash(symbol=SPOT, directional_buy=D(2640), haircut=RESERVE)], spot_cash=D(4000),
                   to_futures=D(1825), scaled_collateral=D(1324), kept="other buys and collateral",
                   scaled="the pairs' growth")
    assert (fit.committed, fit.directional, fit.scale) == (D(501), D("3973.24"), D("0.880641491578"))
    assert "other buys and collateral 501.00 first, the pairs' growth 3973.24 scaled by 0.8806" in fit.describe()
    short = fit_cash([CoinCash(symbol=SPOT, carry_buy=D(400), directional_buy=D(10), haircut=RESERVE)],
                     spot_cash=D(100), to_futures=D(0), kept="other buys and collateral")
    assert short.scale == 0 and "other buys and collateral alone are 301.40 short" in short.describe()


@pytest.mark.parametrize("bad", [D(-1), D(1826), D("NaN")])
def test_scaled_collateral_outside_the_transfer_is_refused(bad: D) -> None:
    with pytest.raises(StateError):
        fit_cash([], spot_cash=D(4000), to_futures=D(1825), scaled_collateral=bad)


def test_a_scaled_pair_grows_both_legs_by_the_scale_and_never_below_its_short() -> None:
    """Equity 10,000, BTC 20,000: held 0.05 short, target 0.15 per leg: growth 0.1; scale 0.5 -> 0.1 per leg
    (weight 0.2, capped at 0.1): the perp sells 0.05 more, the spot buys 0.05. Scale 0: the short held, 0.05."""
    pair = PairTarget(spot_symbol=SPOT, perp_symbol=PERP, spot_weight=0.3)
    assert pair_growth(D("0.15"), D("0.05")) == D("0.1") and pair_growth(D("0.05"), D("0.15")) == 0
    half = scaled_pair(pair, amount=D("0.15"), short_held=D("0.05"), scale=D("0.5"), step=STEP, price=20_000.0,
                       equity=10_000.0)
    assert half.spot_weight == pytest.approx(0.2) and half.max_amount_base == D("0.1")
    amount = pair_amount(half, sizing_quote=10_000, spot_price=PRICES[SPOT], step=STEP)
    orders, _ = plan_pair(half, amount=amount, spot_held=D("0.05"), perp_held=D("-0.05"), prices=PRICES,
                          rules=RULES, params=PARAMS, rebalance_id="r1", prefix="cb")
    assert [(o.symbol, o.side, o.amount_base) for o in orders] == [(PERP, "sell", D("0.05")), (SPOT, "buy", D("0.05"))]
    zero = scaled_pair(pair, amount=D("0.15"), short_held=D("0.05"), scale=D(0), step=STEP, price=20_000.0,
                       equity=10_000.0)
    assert zero.max_amount_base == D("0.05") and zero.spot_weight == pytest.approx(0.1)
    off_grid = scaled_pair(pair, amount=D("0.15"), short_held=D("0.045"), scale=D(0), step=D("0.01"),
                           price=20_000.0, equity=10_000.0)
    assert off_grid.max_amount_base == D("0.045")  # a short off the common lot: scaling never takes it below
    assert scaled_pair(pair, amount=D("0.05"), short_held=D("0.15"), scale=D(0), step=STEP, price=20_000.0,
                       equity=10_000.0) is pair  # shrinking: never scaled
    assert scaled_pair(pair, amount=D("0.15"), short_held=D(0), scale=D(1), step=STEP, price=20_000.0,
                       equity=10_000.0) is pair


class _Session:
    """Spot wallet ``cash`` and ``held`` BTC, futures wallet ``futures`` and a ``short``; BTC 20,000 (perp 20,010)."""

    def __init__(self, cash: float, futures: float, held: float = 0.0, short: float = 0.0) -> None:
        self.cash, self.futures, self.held, self.short = cash, futures, held, short
        self.markets = RULES

    def wallets(self) -> dict[str, Holdings]:
        return {"spot": Holdings(cash_quote=self.cash, amounts_base={SPOT: self.held} if self.held else {}),
                "futures": Holdings(cash_quote=self.futures, amounts_base={PERP: -self.short} if self.short else {})}

    def fetch_prices(self, symbols: set[str]) -> dict[str, float]:
        return {s: PRICES[s] for s in symbols}


def _state(session: _Session) -> Any:
    settings = SimpleNamespace(combined=False, carry=CarrySection(), orders=OrderParams(),
                               risk=RiskLimits(max_liquidation_prob_24h=1.0))  # guard off: no candles needed
    return SimpleNamespace(settings=settings, session=session, journal=_Journal(), incidents=[],
                           run=RunInfo(time_ms=0, run_id="run", rebalance_id="funding_carry-0", mode="testnet",
                                       venue="binance"))


NO_CANDLES = cast(CarryCandles, None)


def _pair(weight: float) -> dict[str, PairTarget]:
    return {SPOT: PairTarget(spot_symbol=SPOT, perp_symbol=PERP, spot_weight=weight)}


def test_the_run_step_returns_a_book_within_its_cash_as_it_is_and_writes_nothing() -> None:
    """10,000 on spot: BTC 0.5 = 0.25 BTC, 5,000 x 1.0035 + 2,500 of collateral = 7,517.5 fits."""
    state, pairs = _state(_Session(10_000.0, 0.0)), _pair(0.5)
    assert fit_pair_cash(cast(RunState, state), pairs, NO_CANDLES) == (pairs, None, 0)
    assert fit_pair_cash(cast(RunState, state), pairs, NO_CANDLES)[0] is pairs
    assert state.journal.appended == [] and state.incidents == []


def test_a_book_that_only_shrinks_is_never_scaled() -> None:
    """0 cash, 0.3 BTC held both legs, target 0.1: nothing grows, the exits go as planned."""
    state, pairs = _state(_Session(0.0, 3_000.0, held=0.3, short=0.3)), _pair(0.1)
    assert fit_pair_cash(cast(RunState, state), pairs, NO_CANDLES)[0] is pairs and state.journal.appended == []


def test_the_futures_wallets_slack_inside_its_band_comes_back_when_the_spot_legs_need_it() -> None:
    """6,000 on spot, 4,000 on futures (inside its hysteresis: 3,250 needed, returned on its own only beyond 4,875),
    BTC 0.65: 0.325 BTC, 6,500 x 1.0035 = 6,522.75 from 6,000. Before: no transfer, so scale 0.919857422099 (both
    legs 0.298, 522.75 short, cash_short alerted) while 750 sat idle above the need. Now: 522.75 comes back (of the
    750 above the need; the futures wallet keeps 3,477.25 >= 3,250), the book fits as targeted, nothing journaled."""
    state, pairs = _state(_Session(6_000.0, 4_000.0)), _pair(0.65)
    assert carry_guard.plan_collateral(cast(RunState, state), pairs, NO_CANDLES).transfer is None  # the hysteresis
    fitted, fit, release = fit_pair_cash(cast(RunState, state), pairs, NO_CANDLES)
    assert fitted is pairs and fit is None and release == D("522.75")
    assert state.journal.appended == [] and state.incidents == []
    plan = carry_guard.plan_collateral(cast(RunState, state), fitted, NO_CANDLES, release=release)
    assert plan.needed == D(3250) and plan.transfer is not None
    assert (plan.transfer.amount_quote, plan.transfer.from_wallet, plan.transfer.to_wallet) == (
        D("522.75"), "futures", "spot")
    assert plan.transfer.transfer_id == transfer_id("funding_carry-0", "futures", "spot", D("522.75"))
    assert plan.balance_after_transfer() == D("3477.25")


def test_an_excess_too_small_comes_back_whole_and_only_what_is_still_missing_is_scaled() -> None:
    """6,000 on spot, 4,000 on futures, BTC 0.70: 0.35 BTC, 7,000 x 1.0035 = 7,024.5, 1,024.5 short; the need is
    3,500, so 500 comes back: scale 6,500 / 7,024.5 = 0.925332763897 (not 6,000 / 7,024.5 without it), 0.35 x it =
    0.32387 -> 0.323 per leg, 524.5 short journaled. The guard's transfer at the scaled pair (weight 0.646: need
    6,460 / 3 x 1.5 = 3,230) returns 770 of the 1,024.5 asked: never below the need; the buy 6,482.61 <= 6,770."""
    state = _state(_Session(6_000.0, 4_000.0))
    pairs, fit, release = fit_pair_cash(cast(RunState, state), _pair(0.7), NO_CANDLES)
    assert release == D("1024.5") and fit is not None
    assert (fit.available, fit.scale, fit.shortfall) == (D(6500), D("0.925332763897"), D("524.5"))
    assert pairs[SPOT].max_amount_base == D("0.323")
    [event] = state.journal.appended
    assert (event.event, event.reason) == ("risk_rejected", CASH_SHORT) and "collateral returned" in event.detail
    plan = carry_guard.plan_collateral(cast(RunState, state), pairs, NO_CANDLES, release=release)
    assert plan.needed == D(3230) and plan.transfer is not None and plan.transfer.amount_quote == D(770)
    assert D("0.323") * 20_000 * (1 + RESERVE) <= 6_000 + plan.transfer.amount_quote


def test_a_growing_held_pair_pays_its_due_collateral_first_and_scales_the_rest() -> None:
    """4,000 on spot, 0.2 BTC held both legs, 1,500 on futures: equity 9,500. Target 0.7: 0.3325 -> 0.332 per leg,
    growth 0.132 (spot buy 2,640). Collateral: full 6,650 / 3 x 1.5 = 3,325 -> 1,825 to send; at no growth the
    short held (0.2 x 20,010 perp = 4,002) needs 2,001 -> 501. So 501 first, then 2,649.24 + 1,324 scaled by
    0.880641491578: 0.2 + 0.132 x it = 0.31624 -> 0.316 per leg. The scaled plan sends 1,660 (6,320 / 3 x 1.5) and
    buys 2,320 x 1.0035 = 2,328.12: 3,988.12 <= 4,000 (the transfer is convex in the scale, the fit's line above)."""
    state = _state(_Session(4_000.0, 1_500.0, held=0.2, short=0.2))
    pairs, fit, _ = fit_pair_cash(cast(RunState, state), _pair(0.7), NO_CANDLES)
    assert fit is not None and (fit.committed, fit.directional, fit.scale) == (D(501), D("3973.24"),
                                                                                D("0.880641491578"))
    assert pairs[SPOT].max_amount_base == D("0.316")
    assert collateral_needed({PERP: pairs[SPOT].spot_weight * 9_500}, CarrySection()) - 1_500 + D("2328.12") <= 4_000


ETH, ETH_PERP = "ETH/USDT", "ETH/USDT:USDT"
TWO_COINS = {**RULES,
             ETH: MarketRules(symbol=ETH, base="ETH", quote="USDT", is_perpetual=False, amount_step=D("0.0001"),
                              price_step=D("0.01"), min_amount_base=D("0.0001"), max_amount_base=None,
                              min_notional_quote=D("5")),
             ETH_PERP: MarketRules(symbol=ETH_PERP, base="ETH", quote="USDT", is_perpetual=True,
                                   amount_step=D("0.01"), price_step=D("0.01"), min_amount_base=D("0.01"),
                                   max_amount_base=None, min_notional_quote=D("5"))}


class _Rotation(_Session):
    """300 on spot and 3 ETH held both legs (ETH 1,000, perp 1,000.5), 1,800 on futures: equity 5,100."""

    def __init__(self) -> None:
        super().__init__(300.0, 1_800.0)
        self.markets = TWO_COINS

    def wallets(self) -> dict[str, Holdings]:
        return {"spot": Holdings(cash_quote=300.0, amounts_base={ETH: 3.0}),
                "futures": Holdings(cash_quote=1_800.0, amounts_base={ETH_PERP: -3.0})}

    def fetch_prices(self, symbols: set[str]) -> dict[str, float]:
        return {s: {**PRICES, ETH: 1_000.0, ETH_PERP: 1_000.5}[s] for s in symbols}


def test_a_sale_of_a_pair_traded_later_does_not_pay_for_an_earlier_pairs_buy() -> None:
    """Rotating out of ETH into BTC 0.6 (0.153 BTC, 3,060): BTC is traded first, ETH's 3,000 sale after it. The
    transfer first tops the futures wallet up to both shorts' need (3,060 + 3,001.5) / 3 x 1.5 = 3,030.75: 1,230.75,
    all BTC's growth (at no growth ETH's 1,500.75 is within the 1,800). Over the whole run the cash would do (300 +
    3,000 x 0.9965 = 3,289.5 against 3,070.71 + 1,230.75 = 4,301.46: 0.7647), but when BTC is bought only the 300 is
    there: 300 / 4,301.46 = 0.069743761420, BTC 0.153 x it = 0.01067 -> 0.010 per leg (200 + 100 of collateral:
    the futures wallet's 1,800 covers 1,600.75, nothing sent; the buy 200.70 <= 300)."""
    state = _state(_Rotation())
    pairs = {SPOT: PairTarget(spot_symbol=SPOT, perp_symbol=PERP, spot_weight=0.6),
             ETH: PairTarget(spot_symbol=ETH, perp_symbol=ETH_PERP, spot_weight=0.0)}
    scaled, fit, _ = fit_pair_cash(cast(RunState, state), pairs, NO_CANDLES)
    assert fit is not None and (fit.available, fit.directional, fit.scale) == (D(300), D("4301.46"),
                                                                                D("0.069743761420"))
    assert "up to BTC/USDT, in trading order" in fit.describe()
    assert scaled[SPOT].max_amount_base == D("0.010") and scaled[ETH] is pairs[ETH]  # the exit goes as planned


def test_a_futures_wallet_inside_its_band_with_no_shortfall_sends_nothing_as_before() -> None:
    """7,000 on spot, 4,000 on futures, BTC 0.6: 0.33 BTC, 6,600 x 1.0035 = 6,623.1 <= 7,000; the need 3,300 (4,000
    inside the band up to 4,950): no shortfall, no release, the same pairs, no transfer (the hysteresis)."""
    state, pairs = _state(_Session(7_000.0, 4_000.0)), _pair(0.6)
    assert fit_pair_cash(cast(RunState, state), pairs, NO_CANDLES) == (pairs, None, 0)
    assert carry_guard.plan_collateral(cast(RunState, state), pairs, NO_CANDLES).transfer is None
    assert state.journal.appended == []


def test_a_return_that_would_put_a_short_over_the_limit_falls_back_to_the_hysteresis_return(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """100 on spot, 0.3 BTC held both legs, 5,000 on futures: equity 11,100, BTC 0.6 -> 0.333 per leg; the need
    6,660 / 3 x 1.5 = 3,330, the band up to 4,995: today's return 5.00. The growth 0.033 BTC (660 x 1.0035 = 662.31)
    leaves spot 562.31 short. With the perp's daily volatility at 0.2 the 0.333 short is within
    risk.max_liquidation_prob_24h (1 %) on 4,995 but over it on 5,000 - 562.31 = 4,437.69: the guard keeps its
    refusal, today's 5.00 is what the fit counts, and the growth is scaled by what is still missing: 105 / 662.31,
    0.3 + 0.033 x 0.1585 = 0.30523 -> 0.305 per leg. At that smaller short the guard then lets the 562.31 come back
    (never less cash on spot than the fit counted; the futures wallet stays above the need)."""
    monkeypatch.setattr(carry_guard, "leg_closes", lambda candles, symbols: {})  # no candles: the volatility is given
    monkeypatch.setattr(carry_guard.carry_risk, "perp_volatility", lambda closes: {PERP: 0.2})
    state = _state(_Session(100.0, 5_000.0, held=0.3, short=0.3))
    state.settings.risk = RiskLimits(max_liquidation_prob_24h=0.01)
    short = {PERP: D("-0.333")}
    assert not any(s.breaches for s in held_shorts(short, PRICES, D(4995), {PERP: 0.2}, state.settings.risk))
    assert all(s.breaches for s in held_shorts(short, PRICES, D("4437.69"), {PERP: 0.2}, state.settings.risk))
    full = carry_guard.plan_collateral(cast(RunState, state), _pair(0.6), NO_CANDLES, release=D("562.31"))
    assert full.transfer is not None and (full.transfer.amount_quote, full.transfer.from_wallet) == (D(5), "futures")
    pairs, fit, release = fit_pair_cash(cast(RunState, state), _pair(0.6), NO_CANDLES)
    assert release == D("562.31") and fit is not None and fit.available == D(105)
    assert fit.scale == (D(105) / D("662.31")).quantize(D("1e-12"), rounding=ROUND_FLOOR)
    assert pairs[SPOT].max_amount_base == D("0.305")
    plan = carry_guard.plan_collateral(cast(RunState, state), pairs, NO_CANDLES, release=release)
    assert plan.transfer is not None and plan.transfer.amount_quote == D("562.31")
    assert plan.balance_after_transfer() >= plan.needed
