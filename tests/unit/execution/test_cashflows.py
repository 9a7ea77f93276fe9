"""lib/execution/cashflows.py and the cash-flow shift in lib/execution/risk_baselines.py (hand-computed)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from lib.core.errors import StateError
from lib.core.state import Positions
from lib.core.timeframes import MS_PER_DAY, MS_PER_HOUR
from lib.execution.cashflows import CashFlow, sum_flows_quote
from lib.execution.risk_baselines import roll_baselines

DAY = 20_000 * MS_PER_DAY


def previous(*, updated_ms: int, equity: float, peak: float, day_start: float, day_start_ms: int = DAY) -> Positions:
    return Positions(mode="testnet", venue="binance", updated_ms=updated_ms, cash_quote=equity, amounts_base={},
                     marks={}, equity_quote=equity, high_water_mark_quote=peak, day_start_ms=day_start_ms,
                     day_start_equity_quote=day_start, inception_ms=0, inception_equity_quote=900.0)


def test_a_withdrawal_today_shifts_peak_start_of_day_and_inception() -> None:
    before = previous(updated_ms=DAY + MS_PER_HOUR, equity=1000.0, peak=1100.0, day_start=980.0)
    rolled = roll_baselines(before, equity_quote=690.0, now_ms=DAY + 5 * MS_PER_HOUR, flows_quote=-300.0)
    assert rolled.high_water_mark_quote == 800.0  # 1100 - 300: equity 690 is 13.75 % below, not 37 %
    assert rolled.day_start_equity_quote == 680.0  # 980 - 300: down 1.5 % today, not 29.6 %
    assert rolled.inception_equity_quote == 600.0


def test_a_deposit_after_yesterdays_last_run_shifts_todays_start() -> None:
    before = previous(updated_ms=DAY + 23 * MS_PER_HOUR, equity=1000.0, peak=1000.0, day_start=990.0)
    rolled = roll_baselines(before, equity_quote=1490.0, now_ms=DAY + MS_PER_DAY + MS_PER_HOUR, flows_quote=500.0)
    assert rolled.day_start_equity_quote == 1500.0 and rolled.high_water_mark_quote == 1500.0


def test_a_new_peak_above_the_shifted_one_is_kept() -> None:
    before = previous(updated_ms=DAY + MS_PER_HOUR, equity=1000.0, peak=1000.0, day_start=1000.0)
    assert roll_baselines(before, equity_quote=800.0, now_ms=DAY + 2 * MS_PER_HOUR,
                          flows_quote=-300.0).high_water_mark_quote == 800.0


def test_flows_are_summed_between_the_previous_run_and_now() -> None:
    flows = [CashFlow(time_ms=t, amount_quote=Decimal(a), source="manual") for t, a in
             ((100, "-300"), (200, "50.5"), (300, "1000"))]
    assert sum_flows_quote(flows, after_ms=100, until_ms=250) == 50.5
    assert sum_flows_quote(flows, after_ms=0, until_ms=300) == 750.5
    assert CashFlow.from_dict(flows[0].to_dict()) == flows[0]


@pytest.mark.parametrize("raw", [{"time_ms": 1, "amount_quote": "0", "source": "manual"},
                                 {"time_ms": 1, "amount_quote": "NaN", "source": "manual"},
                                 {"time_ms": 0, "amount_quote": "5", "source": "manual"},
                                 {"amount_quote": "5", "source": "manual"}])
def test_unreadable_flows_are_refused(raw: dict[str, object]) -> None:
    with pytest.raises(StateError):
        CashFlow.from_dict(raw)
