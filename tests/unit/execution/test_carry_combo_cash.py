"""The combined carry book planned within its spot cash, hand-computed: where the over-commitment comes from (the
carry sleeve sizes its legs for collateral of notional / leverage, live posts notional / leverage x (1 + buffer)),
the fit (sales after the reserve in, the carry buys and the collateral first, the directional buys scaled by one
factor), each buy split into its carry and directional parts, the scaled directional target, and the run's step
on a stub session: a book that fits is returned as it is, a short one is scaled and journaled once."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal as D
from types import SimpleNamespace
from typing import Any, cast

import pytest

from lib.core.errors import StateError
from lib.core.venue import Holdings, MarketRules
from lib.execution import carry_guard
from lib.execution.carry_combo import (
    CASH_SHORT,
    CashFit,
    CoinCash,
    buy_parts,
    directional_amount,
    fit_cash,
    scaled_directional,
)
from lib.execution.carry_combo_cash import fit_combined_cash, fit_spot_cash
from lib.execution.carry_legs import CarrySection, PairTarget, pair_amount, plan_pair
from lib.execution.carry_risk import CarryCandles
from lib.execution.carry_state import RunState
from lib.execution.journal import JournalEvent, RunInfo
from lib.execution.orders import OrderParams
from lib.execution.risk import RiskLimits
from lib.research.carry.sleeve import CarryParams
from tests.unit.execution.test_carry_legs import PARAMS, PERP, PRICES, RULES, SPOT

RESERVE = D("0.0035")  # the spot book's: 0.1 % taker fee + 25 bps slippage allowance


def test_the_over_commitment_is_the_carry_sleeve_sized_without_the_live_collateral_buffer() -> None:
    """The carry sleeve funds spot legs + notional / leverage from (1 - cash_buffer) of its capital: 0.98 / (1 + 1/3)
    = 0.735; live posts 0.735 / 3 x (1 + 0.5) = 0.3675 of collateral, so the carry part needs 1.1025 of its share
    and a book with budget 0.5 and its spot sleeves fully invested 0.5 + 0.5 x 1.1025 = 1.05125 of its equity."""
    research, live = CarryParams(leverage=3.0), CarrySection()
    carry_cash = research.deployable_frac * (1 + (1 + live.collateral_buffer_frac) / live.leverage)
    assert research.deployable_frac == pytest.approx(0.735)
    assert carry_cash == pytest.approx(1.1025)
    assert 0.5 * 1.0 + 0.5 * carry_cash == pytest.approx(1.05125)


def test_the_readme_book_at_budget_one_half_scales_its_directional_buys_to_what_the_pairs_leave() -> None:
    """1,000 on spot: carry legs 200 + 167.5 and collateral 183.75 first: 367.5 x 1.0035 + 183.75 = 552.53625;
    447.46375 left for directional buys of 2 x 250 x 1.0035 = 501.75: scale 447.46375 / 501.75, floored at 1e-12."""
    coins = [CoinCash(symbol=SPOT, carry_buy=D(200), directional_buy=D(250), haircut=RESERVE),
             CoinCash(symbol="ETH/USDT", carry_buy=D("167.5"), haircut=RESERVE),
             CoinCash(symbol="BNB/USDT", directional_buy=D(250), haircut=RESERVE)]
    fit = fit_cash(coins, spot_cash=D(1000), to_futures=D("183.75"))
    assert fit == CashFit(available=D(1000), committed=D("552.53625"), directional=D("501.75"),
                          scale=D("0.891806178375"))
    assert fit.shortfall == D("54.28625") and fit.uncovered == 0
    assert "short of 54.29" in fit.describe() and "scaled by 0.8918" in fit.describe()


def test_a_book_within_its_cash_is_not_scaled() -> None:
    """Budget 0.3: directional 400, carry 300, collateral 300 / 3 x 1.5 = 150: 700 x 1.0035 + 150 = 852.45."""
    fit = fit_cash([CoinCash(symbol=SPOT, carry_buy=D(300), directional_buy=D(400), haircut=RESERVE)],
                   spot_cash=D(1000), to_futures=D(150))
    assert fit.scale == 1 and fit.shortfall == 0


def test_sales_and_returned_collateral_pay_for_buys_after_the_reserve() -> None:
    """Cash 100 + a sale of 500 x (1 - 0.0035) = 598.25 against a buy of 600 x 1.0035 = 602.1: scale 598.25 / 602.1;
    50 of collateral coming back makes 648.25, enough."""
    coins = [CoinCash(symbol=SPOT, sale=D(500), haircut=RESERVE),
             CoinCash(symbol="BNB/USDT", directional_buy=D(600), haircut=RESERVE)]
    assert fit_cash(coins, spot_cash=D(100), to_futures=D(0)).scale == D("0.993605713336")
    assert fit_cash(coins, spot_cash=D(100), to_futures=D(-50)).scale == 1


def test_a_carry_part_the_cash_cannot_pay_leaves_nothing_for_the_directional_buys_and_says_so() -> None:
    fit = fit_cash([CoinCash(symbol=SPOT, carry_buy=D(200), directional_buy=D(50), haircut=RESERVE)],
                   spot_cash=D(100), to_futures=D(0))
    assert fit.scale == 0 and fit.uncovered == D("100.7") and "carry part alone is 100.70 short" in fit.describe()


@pytest.mark.parametrize("bad", [D("NaN"), D(-1), D("Infinity")])
def test_nan_or_negative_cash_is_refused(bad: D) -> None:
    with pytest.raises(StateError):
        fit_cash([CoinCash(symbol=SPOT, directional_buy=bad)], spot_cash=D(100), to_futures=D(0))
    with pytest.raises(StateError):
        fit_cash([], spot_cash=bad if bad.is_nan() else D("Infinity"), to_futures=D(0))


def test_a_buy_splits_into_the_carry_growth_and_the_directional_growth() -> None:
    """Held 0.5 spot / 0.3 short: 0.2 is directional now; directional target 0.5 grows by 0.3."""
    assert buy_parts("buy", D("0.4"), spot_held=D("0.5"), short_held=D("0.3"), directional=D("0.5")) == (
        D("0.1"), D("0.3"))  # the carry leg grows by 0.1 too
    assert buy_parts("buy", D("0.2"), spot_held=D("0.5"), short_held=D("0.3"), directional=D("0.5")) == (
        D(0), D("0.2"))  # the carry leg shrinks by 0.1: the netted buy is directional only
    assert buy_parts("sell", D("0.2"), spot_held=D("0.5"), short_held=D("0.3"), directional=D("0.5")) == (D(0), D(0))
    assert buy_parts("buy", D(2), spot_held=D(1), short_held=D(0), directional=D(3)) == (D(0), D(2))  # spot only


def test_a_scaled_pair_keeps_its_legs_and_buys_its_directional_part_times_the_scale() -> None:
    """BTC at 20,000, book 10,000: carry 0.3 -> 0.15 per leg, directional 0.25 -> 0.125; nothing held, so the one
    spot buy is 0.275 = 0.15 carry + 0.125 directional. Scale 0.5: directional 0.0625 (weight 0.125), the perp leg
    0.15 as before, the spot buy 0.2125."""
    pair = PairTarget(spot_symbol=SPOT, perp_symbol=PERP, spot_weight=0.3, directional_weight=0.25)
    directional = directional_amount(pair, sizing_quote=10_000, spot_price=PRICES[SPOT],
                                     step=RULES[SPOT].amount_step)
    carry_part, part = buy_parts("buy", D("0.275"), spot_held=D(0), short_held=D(0), directional=directional)
    assert (carry_part, part) == (D("0.15"), D("0.125"))
    scaled = scaled_directional(pair, directional=directional, buy_part=part, scale=D("0.5"), price=PRICES[SPOT],
                                equity=10_000)
    assert scaled.spot_weight == 0.3 and scaled.directional_weight == pytest.approx(0.125)
    amount = pair_amount(scaled, sizing_quote=10_000, spot_price=PRICES[SPOT], step=D("0.001"))
    orders, _ = plan_pair(scaled, amount=amount, spot_held=D(0), perp_held=D(0), prices=PRICES, rules=RULES,
                          params=PARAMS, rebalance_id="r1", prefix="cb",
                          directional_amount=directional_amount(scaled, sizing_quote=10_000, spot_price=PRICES[SPOT],
                                                                step=RULES[SPOT].amount_step))
    assert [(o.symbol, o.side, o.amount_base) for o in orders] == [(PERP, "sell", D("0.15")),
                                                                   (SPOT, "buy", D("0.2125"))]
    assert scaled_directional(pair, directional=directional, buy_part=D(0), scale=D(0), price=PRICES[SPOT],
                              equity=10_000) is pair  # buys nothing directional: unchanged
    zero = scaled_directional(pair, directional=directional, buy_part=part, scale=D(0), price=PRICES[SPOT],
                              equity=10_000)
    assert zero.directional_weight == 0.0  # nothing held, nothing bought: never below 0


BNB = "BNB/USDT"
BNB_RULES = MarketRules(symbol=BNB, base="BNB", quote="USDT", is_perpetual=False, amount_step=D("0.001"),
                        price_step=D("0.1"), min_amount_base=D("0.001"), max_amount_base=None,
                        min_notional_quote=D("5"))


@dataclass
class _Journal:
    appended: list[JournalEvent] = field(default_factory=list)

    def append(self, event: JournalEvent) -> None:
        self.appended.append(event)


class _Session:
    """The spot wallet with ``cash`` and nothing held, the futures wallet empty; BTC at 20,000, BNB at 500."""

    def __init__(self, cash: float) -> None:
        self.cash = cash
        self.markets = {**RULES, BNB: BNB_RULES}

    def wallets(self) -> dict[str, Holdings]:
        return {"spot": Holdings(cash_quote=self.cash, amounts_base={}), "futures": Holdings(cash_quote=0.0,
                                                                                           amounts_base={})}

    def fetch_prices(self, symbols: set[str]) -> dict[str, float]:
        return {s: {**PRICES, BNB: 500.0}[s] for s in symbols}


def _state(cash: float) -> Any:
    settings = SimpleNamespace(combined=True, carry=CarrySection(), orders=OrderParams())
    return SimpleNamespace(settings=settings, session=_Session(cash), journal=_Journal(), incidents=[],
                           run=RunInfo(time_ms=0, run_id="run", rebalance_id="combined-0", mode="testnet",
                                       venue="binance"))


BOOK = ({SPOT: PairTarget(spot_symbol=SPOT, perp_symbol=PERP, spot_weight=0.3, directional_weight=0.25)},
        {BNB: PairTarget(spot_symbol=BNB, perp_symbol="BNB/USDT:USDT", spot_weight=0.0, directional_weight=0.25)})


def test_the_run_step_returns_a_book_within_its_cash_as_it_is_and_writes_nothing() -> None:
    """10,000 on spot, nothing held (equity 10,000): spot buys 3,000 + 2,500 + 2,500 (x 1.0035 = 8,028) and 500 of
    collateral: 8,528 fits."""
    state = _state(10_000.0)
    pairs, spot_only, fit = fit_spot_cash(cast(RunState, state), *BOOK, to_futures=D(500))
    assert pairs is BOOK[0] and spot_only is BOOK[1] and fit is None
    assert state.journal.appended == [] and state.incidents == []


def test_the_run_step_scales_a_short_book_journals_cash_short_once_and_alerts_beyond_rounding() -> None:
    """10,000 on spot, 2,200 of collateral: the pair's carry buy 3,000 x 1.0035 + 2,200 = 5,210.5 first; 4,789.5
    left for directional buys of 2 x 2,500 x 1.0035 = 5,017.5: scale 4,789.5 / 5,017.5, 228 short."""
    state = _state(10_000.0)
    pairs, spot_only, fit = fit_spot_cash(cast(RunState, state), *BOOK, to_futures=D(2_200))
    assert fit is not None and fit.scale == D("0.954559043348") and fit.shortfall == D(228)
    assert pairs[SPOT].spot_weight == 0.3  # the pair's carry leg is never scaled
    for target in (pairs[SPOT], spot_only[BNB]):  # 0.25 - (1 - scale) x 0.25
        assert target.directional_weight == pytest.approx(0.25 * float(fit.scale), abs=1e-9)
    [event] = state.journal.appended
    assert (event.event, event.reason) == ("risk_rejected", CASH_SHORT) and "scaled by 0.9546" in event.detail
    assert len(state.incidents) == 1 and CASH_SHORT in state.incidents[0]  # 228 >= carry.min_leg_quote 10


def test_a_shortfall_within_rounding_is_journaled_but_not_alerted() -> None:
    """1,979.75 of collateral: 8,028 + 1,979.75 = 10,007.75 wanted, 7.75 short < carry.min_leg_quote (10)."""
    state = _state(10_000.0)
    _, _, fit = fit_spot_cash(cast(RunState, state), *BOOK, to_futures=D("1979.75"))
    assert fit is not None and fit.shortfall == D("7.75") and fit.scale == D("0.998455406078")
    assert [e.reason for e in state.journal.appended] == [CASH_SHORT] and state.incidents == []


class _TwoWallets(_Session):
    """``cash`` on spot and ``futures`` on the futures wallet, nothing held."""

    def __init__(self, cash: float, futures: float) -> None:
        super().__init__(cash)
        self.futures = futures

    def wallets(self) -> dict[str, Holdings]:
        return {"spot": Holdings(cash_quote=self.cash, amounts_base={}),
                "futures": Holdings(cash_quote=self.futures, amounts_base={})}


def test_the_futures_wallets_excess_pays_the_directional_buys_before_any_is_scaled() -> None:
    """8,000 on spot, 2,300 on futures: equity 10,300. BTC carry 0.3 -> 0.1545 -> 0.154 (3,080) + directional 0.25
    -> 0.12875 (2,575), BNB 0.25 -> 5.15 (2,575): 8,230 x 1.0035 = 8,258.805 of spot buys. The need 3,090 / 3 x 1.5
    = 1,545; 2,300 is inside the band (returned on its own only beyond 2,317.5). Before: no transfer, the
    directional buys scaled by (8,000 - 3,090.78) / 5,168.025 = 0.949921875377. Now: 258.81 of the 755 above the
    need comes back, the book fits as targeted (the same objects), nothing journaled."""
    state = _state(8_000.0)
    state.session = _TwoWallets(8_000.0, 2_300.0)
    state.settings.risk = RiskLimits(max_liquidation_prob_24h=1.0)  # guard off: no candles needed
    candles = cast(CarryCandles, None)
    before = fit_spot_cash(cast(RunState, state), *BOOK, to_futures=D(0))[2]
    assert before is not None and before.scale == D("0.949921875377") and before.shortfall == D("258.805")
    state.journal.appended.clear()
    state.incidents.clear()
    pairs, spot_only, fit, release = fit_combined_cash(cast(RunState, state), *BOOK, candles)
    assert pairs is BOOK[0] and spot_only is BOOK[1] and fit is None and release == D("258.805")
    assert state.journal.appended == [] and state.incidents == []
    plan = carry_guard.plan_collateral(cast(RunState, state), pairs, candles, release=release)
    assert plan.needed == D(1545) and plan.transfer is not None
    assert (plan.transfer.amount_quote, plan.transfer.from_wallet) == (D("258.81"), "futures")
    assert carry_guard.plan_collateral(cast(RunState, state), pairs, candles).transfer is None  # no shortfall: as ever
