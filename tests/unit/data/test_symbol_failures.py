"""The per-symbol failure ledger: a dead symbol is alerted once, not every hour."""

from __future__ import annotations

import pytest

from lib.core.errors import StateError
from lib.data.symbol_failures import alert_text, change_lines, parse_ledger, to_document, update_ledger


def test_a_new_failure_is_new_once_and_recovers():
    first = update_ledger({}, {"LUNA/USDT": "BadSymbol"}, attempted=["BTC/USDT", "LUNA/USDT"],
                          configured=["BTC/USDT", "LUNA/USDT"], now_ms=10)
    assert first.new == ("LUNA/USDT",) and first.failing == {"LUNA/USDT": {"since_ms": 10, "error": "BadSymbol"}}
    again = update_ledger(parse_ledger(to_document(first.failing)), {"LUNA/USDT": "BadSymbol"},
                          attempted=["BTC/USDT", "LUNA/USDT"],
                          configured=["BTC/USDT", "LUNA/USDT"], now_ms=20)
    assert again.new == () and again.failing["LUNA/USDT"]["since_ms"] == 10
    back = update_ledger(again.failing, {}, attempted=["BTC/USDT", "LUNA/USDT"],
                          configured=["BTC/USDT", "LUNA/USDT"], now_ms=30)
    assert back.recovered == ("LUNA/USDT",) and back.failing == {}


def test_a_run_on_other_symbols_does_not_clear_a_failure():
    kept = update_ledger({"LUNA/USDT": {"since_ms": 1, "error": "x"}}, {}, attempted=["BTC/USDT"],
                         configured=["BTC/USDT", "LUNA/USDT"], now_ms=5)
    assert kept.recovered == () and set(kept.failing) == {"LUNA/USDT"}


def test_alert_text_flags_a_held_position_and_bad_ledgers_are_refused():
    text = alert_text(["XMR/USDT"], {"XMR/USDT": "ExchangeError: Invalid symbol"}, held={"XMR/USDT"},
                      healthy_count=5)
    assert "the other 5 were fetched" in text and "XMR/USDT: ExchangeError" in text and "HELD POSITION" in text
    with pytest.raises(StateError):
        parse_ledger({"schema_version": 9})


def test_a_symbol_taken_out_of_the_config_is_forgotten_so_re_added_and_failing_it_alerts_again():
    ledger = {"LUNA/USDT": {"since_ms": 86_400_000, "error": "BadSymbol"}}
    removed = update_ledger(ledger, {}, attempted=["BTC/USDT"], configured=["BTC/USDT"], now_ms=20)
    assert removed.failing == {} and removed.dropped == ("LUNA/USDT",) and removed.recovered == ()
    assert change_lines(ledger, removed) == [
        "LUNA/USDT is no longer in data.symbols: forgotten as failing (since 1970-01-02T00:00Z)"]
    back = update_ledger(removed.failing, {"LUNA/USDT": "BadSymbol"}, attempted=["BTC/USDT", "LUNA/USDT"],
                         configured=["BTC/USDT", "LUNA/USDT"], now_ms=30)
    assert back.new == ("LUNA/USDT",) and back.failing == {"LUNA/USDT": {"since_ms": 30, "error": "BadSymbol"}}


def test_configured_symbols_perpetuals_and_symbols_fetched_by_name_stay_in_the_ledger():
    # the carry books fetch spot and USD-M into one ledger; a --symbols run may name an unconfigured symbol
    ledger = {"ETH/USDT:USDT": {"since_ms": 1, "error": "x"}, "ETH/USDT": {"since_ms": 1, "error": "x"},
              "DOGE/USDT": {"since_ms": 2, "error": "y"}}
    kept = update_ledger(ledger, {"DOGE/USDT": "y"}, attempted=["BTC/USDT", "DOGE/USDT"],
                         configured=["BTC/USDT", "ETH/USDT"], now_ms=5)
    assert set(kept.failing) == set(ledger) and kept.dropped == () and kept.new == ()
