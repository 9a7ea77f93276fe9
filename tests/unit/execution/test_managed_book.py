"""lib/execution/managed_book.py: the bot's capital and managed set (issue 9, item 3), hand-computed."""

from __future__ import annotations

from decimal import Decimal

import pytest

from lib.core.errors import ConfigError
from lib.core.venue import Holdings
from lib.execution.managed_book import BookParams, managed_symbols, sizing_equity, split_holdings


def test_the_managed_set_is_the_universe_plus_what_the_bot_traded_minus_ignored_assets() -> None:
    managed = managed_symbols(["BTC/USDT", "ETH/USDT"], ["SOL/USDT", "ADA/USDT:USDT"],
                              BookParams(ignored_assets=("ETH",)))
    assert managed == {"BTC/USDT", "SOL/USDT", "ADA/USDT"}


def test_holdings_outside_the_managed_set_are_ignored_and_cash_is_kept() -> None:
    holdings = Holdings(cash_quote=1000.0, amounts_base={"BTC/USDT": 0.1, "BNB/USDT": 2.0, "ADA/USDT:USDT": -5.0})
    kept, ignored = split_holdings(holdings, frozenset({"BTC/USDT", "ADA/USDT"}))
    assert kept == Holdings(cash_quote=1000.0, amounts_base={"BTC/USDT": 0.1, "ADA/USDT:USDT": -5.0})
    assert ignored == {"BNB/USDT": 2.0}


@pytest.mark.parametrize(("params", "expected"), [
    (BookParams(), 1200.0),
    (BookParams(capital_quote=Decimal(500)), 500.0),
    (BookParams(capital_quote=Decimal(5000)), 1200.0),  # the cap is a ceiling, never more than there is
    (BookParams(capital_frac=0.25), 300.0),
    (BookParams(capital_frac=0.5, capital_quote=Decimal(500)), 500.0),
    (BookParams(capital_frac=0.25, capital_quote=Decimal(500)), 300.0),
])
def test_sizing_equity(params: BookParams, expected: float) -> None:
    assert sizing_equity(1200.0, params) == expected


@pytest.mark.parametrize("kwargs", [{"capital_quote": Decimal(-1)}, {"capital_frac": 0.0}, {"capital_frac": 1.5},
                                    {"ignored_assets": ("bnb",)}])
def test_bad_book_params_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="book."):
        BookParams(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(("params", "expected"), [
    (BookParams(), False),  # the whole account is the bot's: no ledger, measured as before
    (BookParams(capital_quote=Decimal(1000)), True),
    (BookParams(capital_frac=0.5), True),
    (BookParams(ignored_assets=("BNB",)), False),
])
def test_a_capital_setting_gives_the_bot_its_own_cash_ledger(params: BookParams, expected: bool) -> None:
    assert params.has_capital is expected
