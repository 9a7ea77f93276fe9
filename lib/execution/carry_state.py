"""Edge: the state one carry rebalance carries through its steps (settings, the two-account session, the journal,
the incidents for its one alert) and what the exchange holds now: the wallets, live prices, the book's equity."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from loguru import logger

from lib.core import errors
from lib.core.state import Positions
from lib.core.symbols import is_perpetual
from lib.execution import journal as records
from lib.execution.carry_legs import CarrySection
from lib.execution.carry_risk import CarryCandles
from lib.execution.exchange_section import ExchangeSection
from lib.execution.journal import RunInfo
from lib.execution.orders import OrderParams, to_decimal
from lib.execution.paper import PaperParams
from lib.execution.risk import RiskLimits, RiskRejection
from lib.execution.simulated import SimulatedParams
from lib.execution.state_files import Journal
from lib.execution.two_account_session import TwoAccountSession


@dataclass(frozen=True, slots=True, kw_only=True)
class CarrySettings:
    """What a carry run reads from the config (lib.ops composes it; lib.execution never imports lib.ops)."""

    exchange: ExchangeSection
    carry: CarrySection
    orders: OrderParams
    risk: RiskLimits
    paper: PaperParams
    simulated: SimulatedParams
    quote: str
    strategy: str = "funding_carry"  # or "combined": directional spot sleeves + carry pairs (lib.execution.carry_combo)

    @property
    def combined(self) -> bool:
        return self.strategy != "funding_carry"


@dataclass
class CarryPaths:
    targets: Path
    positions: Path
    journal: Path
    halt: Path
    kill_switch: Path
    venue: str
    candles: CarryCandles  # both legs' stored candles: the tail-risk pass and the liquidation guard


@dataclass
class RunState:
    """One carry run's context; ``incidents`` go into its one alert, ``failures`` fail it."""

    settings: CarrySettings
    session: TwoAccountSession
    journal: Journal
    run: RunInfo
    positions_path: Path
    previous: Positions | None
    reset: bool = False  # --reset-high-water-mark: today's equity is the new peak and start of day
    incidents: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # risk refusals found while trading: exits went, the run fails


def wallet_facts(state: RunState) -> tuple[dict[str, Decimal], Decimal, Decimal]:
    """What the exchange holds now: (legs by symbol, spot free quote, futures margin balance)."""
    wallets = state.session.wallets()
    held = {s: to_decimal(a) for w in wallets.values() for s, a in w.amounts_base.items() if a}
    return held, to_decimal(wallets["spot"].cash_quote), to_decimal(wallets["futures"].cash_quote)


def live_prices(state: RunState, symbols: set[str]) -> dict[str, float]:
    prices = state.session.fetch_prices(symbols)
    missing = sorted(symbols - set(prices))
    if missing:
        raise errors.DataError(f"no live price for {', '.join(missing)}: the carry book is not traded")
    return prices


def book_equity(held: dict[str, Decimal], spot_cash: Decimal, futures_balance: Decimal,
                prices: dict[str, float]) -> float:
    """Spot cash + spot legs at last prices + futures margin balance (perp legs' PnL is inside it)."""
    spot_value = sum((a * Decimal(repr(prices[s])) for s, a in held.items() if not is_perpetual(s)), Decimal(0))
    return float(spot_cash + spot_value + futures_balance)


def journal_risk(state: RunState, rejections: list[RiskRejection]) -> None:
    """risk_rejected lines; each named in the run's one alert (incidents) or its failure."""
    for rejection in rejections:
        logger.warning("{} {}: {}", rejection.check, rejection.symbol or "carry book", rejection.detail)
        state.journal.append(records.to_risk_rejected_event(rejection, state.run))
        state.incidents.append(f"{rejection.check} {rejection.symbol or 'carry book'}: {rejection.detail}")
