"""The carry backtest report's basis P&L net of both legs' fees and slippage, per run and per year, hand-computed."""

from __future__ import annotations

import pandas as pd
import pytest

from lib.research.carry.book import CarryBookResult
from lib.research.carry.report import basis_pnl_net, yearly_breakdown

HOUR = 3_600_000
NEW_YEAR_2021 = 1_609_459_200_000


def test_basis_net_of_fees_and_slippage_per_run_and_per_year() -> None:
    # cumulative money columns at the last bars of 2020 and a bar in 2022 (no 2021 bar): 2020 price P&L +4, fees
    # 1.5, slippage 0.5 -> net +2; 2022 adds price P&L -1 (to 3), fees 0.5 (2.0), slippage 0.25 (0.75) -> net -1.75;
    # the run: 3 - 2.75 = 0.25
    ledger = pd.DataFrame({"funding": [10.0, 10.0, 18.0], "price_pnl": [1.0, 4.0, 3.0], "fees": [1.0, 1.5, 2.0],
                           "slippage": [0.25, 0.5, 0.75], "liquidation_loss": [0.0, 0.0, 0.0]},
                          index=[NEW_YEAR_2021 - 2 * HOUR, NEW_YEAR_2021 - HOUR, NEW_YEAR_2021 + 400 * 24 * HOUR])
    assert basis_pnl_net(ledger.iloc[-1]) == pytest.approx(0.25)
    result = CarryBookResult(ledger=ledger, trades=pd.DataFrame(), transfers=pd.DataFrame(),
                             spot_weights=pd.DataFrame(), liquidations=0)
    years = yearly_breakdown(result)
    assert years["2020"]["basis_pnl_net_quote"] == pytest.approx(2.0)
    assert years["2022"]["basis_pnl_net_quote"] == pytest.approx(-1.75)
    assert years["2022"]["funding_quote"] == pytest.approx(8.0)
