"""targets.json records: version 2 keeps the sleeve book summary; version 1 files are still read."""

from __future__ import annotations

import pytest

from lib.core.errors import StateError
from lib.core.state import TARGETS_SCHEMA_VERSION, Targets


def _targets(**overrides) -> Targets:
    fields = {"as_of_ms": 1, "created_ms": 2, "strategy": "combined", "exchange": "binance", "market_type": "spot",
              "timeframe": "1d", "weights": {"BTC/USDT": 0.3}, "breakdown": {"BTC/USDT": {"close": 100.0}},
              "book": {"sleeve_budgets": {"trend_core": 0.7, "ensemble": 0.3}, "effective_bets": 1.8}}
    return Targets(**(fields | overrides))


@pytest.mark.parametrize("strategy", ["trend_core", "combined", "spot_long_only"])
def test_round_trip_keeps_the_book(strategy):
    targets = _targets(strategy=strategy)
    document = targets.to_dict()
    assert document["schema_version"] == TARGETS_SCHEMA_VERSION == 2
    assert Targets.from_dict(document) == targets


def test_version_1_files_are_still_read_without_a_book():
    document = _targets(strategy="spot_long_only").to_dict() | {"schema_version": 1}
    del document["book"]
    targets = Targets.from_dict(document)
    assert targets.book == {} and targets.weights == {"BTC/USDT": 0.3}


@pytest.mark.parametrize(("change", "message"), [({"schema_version": 3}, "schema_version 3"),
                                                 ({"book": [1]}, "book must be an object"),
                                                 ({"strategy": "momo"}, "unknown strategy")])
def test_bad_documents_are_refused(change, message):
    with pytest.raises(StateError, match=message):
        Targets.from_dict(_targets().to_dict() | change)
