"""lib/execution/journal.py: strict journal records (round trip, bad-line table) and the reconciliation questions a
re-run asks: which ids are open, which filled, what positions the fills imply, is the journal consistent."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from lib.core.errors import StateError
from lib.core.state import JOURNAL_EVENTS
from lib.core.venue import OrderResult
from lib.execution.journal import (
    JournalEvent,
    RunInfo,
    compute_fees_quote,
    compute_fill_positions,
    find_filled_ids,
    find_open_orders,
    find_problems,
    find_sent_ids,
    parse_journal,
    to_failed_event,
    to_leg_mismatch_event,
    to_planned_event,
    to_rejected_event,
    to_result_event,
    to_risk_rejected_event,
    to_sent_event,
    to_skipped_event,
    to_transfer_event,
)
from lib.execution.orders import PlannedOrder, SkippedOrder
from lib.execution.risk import RiskRejection

D = Decimal
RUN = RunInfo(time_ms=1_767_225_600_000, run_id="rebalance-1", rebalance_id="spot_long_only-1767139200000",
              mode="paper", venue="simulated")


def order(client_id: str = "cb-1", *, symbol: str = "BTC/USDT", side: str = "buy",
          amount: str = "0.5") -> PlannedOrder:
    return PlannedOrder(symbol=symbol, side=side, amount_base=D(amount), reference_price=100.0,  # type: ignore[arg-type]
                        notional_quote=D(amount) * 100, reduce_only=False, client_order_id=client_id,
                        target_weight=0.3, current_weight=0.0)


def result(client_id: str = "cb-1", *, symbol: str = "BTC/USDT", side: str = "buy", filled: str = "0.5",
           requested: str = "0.5", status: str = "closed") -> OrderResult:
    return OrderResult(client_order_id=client_id, exchange_order_id="x-9", symbol=symbol, side=side,  # type: ignore[arg-type]
                       status=status, requested_amount_base=D(requested), filled_amount_base=D(filled),  # type: ignore[arg-type]
                       average_price=100.05, fee_quote=0.05, timestamp_ms=RUN.time_ms)


def sent_and_filled(client_id: str, *, side: str = "buy", amount: str = "0.5",
                    symbol: str = "BTC/USDT") -> list[JournalEvent]:
    sent = to_sent_event(order(client_id, symbol=symbol, side=side, amount=amount), RUN)
    return [sent, to_result_event(sent, result(client_id, symbol=symbol, side=side, filled=amount,
                                               requested=amount), RUN)]


# --- records ------------------------------------------------------------------------------------------------


def test_a_fill_journals_its_fee_as_the_exchange_charged_it() -> None:
    """``fees_paid`` per currency next to the converted ``fee_quote``; a line without it (written before it
    existed) still loads, with no currency (read as paid in the quote)."""
    sent = to_sent_event(order(), RUN)
    charged = replace(result(), fees_paid=(("BNB", D("0.0000625")), ("BTC", D("0.0005"))))
    filled = to_result_event(sent, charged, RUN)
    line = json.loads(json.dumps(filled.to_dict()))
    assert line["fees_paid"] == {"BNB": "0.0000625", "BTC": "0.0005"} and line["fee_quote"] == 0.05
    assert JournalEvent.from_dict(line) == filled and filled.fees_paid == charged.fees_paid
    assert to_result_event(sent, result(), RUN).fees_paid is None  # the venue did not say: no field
    old = {key: value for key, value in line.items() if key != "fees_paid"}
    assert JournalEvent.from_dict(old).fees_paid is None and JournalEvent.from_dict(old).fee_quote == 0.05


@pytest.mark.parametrize("fees_paid", [["BTC", "0.1"], {"BTC": 0.1}, {"BTC": "-0.1"}, {"BTC": "NaN"}, {"": "1"},
                                       {"BTC": "x"}])
def test_a_bad_fees_paid_is_refused(fees_paid: Any) -> None:
    line = to_result_event(to_sent_event(order(), RUN), result(), RUN).to_dict()
    with pytest.raises(StateError, match="fees_paid"):
        JournalEvent.from_dict({**line, "fees_paid": fees_paid})


def test_every_builder_round_trips_through_json() -> None:
    sent = to_sent_event(order(), RUN)
    events = [
        to_planned_event(order(), RUN), sent, to_result_event(sent, result(), RUN),
        to_rejected_event(sent, RUN, reason="rejected", detail="OrderRejected: insufficient balance"),
        to_failed_event(sent, RUN, reason="not_found", detail="never reached the exchange"),
        to_skipped_event(SkippedOrder(symbol="ETH/USDT", side="sell", reason="below min notional",
                                      detail="3 < 5", target_weight=0.0, current_weight=0.001), RUN),
        to_risk_rejected_event(RiskRejection(check="fat_finger", symbol="BTC/USDT", detail="too big"), RUN),
        to_risk_rejected_event(RiskRejection(check="kill_switch", symbol=None, detail="KILL"), RUN),
        *(to_transfer_event(kind, RUN, transfer_id="tr-1", amount_quote=D("250.00"), from_wallet="spot",
                            to_wallet="futures", tran=("9", RUN.time_ms) if kind == "transferred" else None)
          for kind in ("transfer_sent", "transferred", "transfer_failed")),
        to_leg_mismatch_event(RUN, symbol="BTC/USDT", unhedged_quote=D("30.5"), detail="spot 0.001 / perp 0"),
    ]
    assert {event.event for event in events} == set(JOURNAL_EVENTS)
    lines = [json.dumps(event.to_dict(), allow_nan=False) for event in events]
    assert parse_journal([json.loads(line) for line in lines]) == events


def test_intent_and_facts_are_separate_fields() -> None:
    sent = to_sent_event(order(amount="0.5"), RUN)
    filled = to_result_event(sent, result(filled="0.2", requested="0.5", status="expired"), RUN).to_dict()
    assert (filled["requested_side"], filled["requested_amount_base"]) == ("buy", "0.5")
    assert (filled["filled_amount_base"], filled["status"], filled["average_price"]) == ("0.2", "expired", 100.05)
    assert filled["exchange_order_id"] == "x-9" and filled["fee_quote"] == 0.05
    assert filled["event"] == "filled" and "partial fill 0.2 of 0.5" in filled["detail"]
    assert "filled_amount_base" not in sent.to_dict()  # None fields are left out


def test_nothing_filled_is_a_rejection_with_the_exchange_status() -> None:
    sent = to_sent_event(order(), RUN)
    event = to_result_event(sent, result(filled="0", status="expired"), RUN)
    assert (event.event, event.status, event.reason) == ("rejected", "expired", "not_filled")


GOOD = to_sent_event(order(), RUN).to_dict()


@pytest.mark.parametrize(("change", "message"), [
    ({"schema_version": 2}, "schema_version"),
    ({"event": "cancelled"}, "unknown event"),
    ({"surprise": 1}, "unknown field 'surprise'"),
    ({"requested_amount_base": 0.5}, "decimal string"),
    ({"requested_amount_base": "NaN"}, "finite Decimal"),
    ({"requested_amount_base": "-1"}, "finite Decimal"),
    ({"requested_amount_base": "abc"}, "not a number"),
    ({"reference_price": None}, "reference_price"),
    ({"requested_side": "long"}, "buy/sell"),
    ({"client_order_id": None}, "client_order_id"),
    ({"time_ms": 1.5}, "time_ms must be an integer"),
    ({"reduce_only": "no"}, "true/false"),
    ({"run_id": ""}, "run_id"),
    ({"status": "done"}, "status"),
    ({"event": "filled"}, "filled_amount_base > 0"),
    ({"event": "failed"}, "needs a reason"),
])
def test_bad_journal_lines_are_state_errors(change: dict[str, Any], message: str) -> None:
    line = {key: value for key, value in {**GOOD, **change}.items() if value is not None}
    with pytest.raises(StateError, match=re.escape(message)):
        JournalEvent.from_dict(line)


def test_parse_journal_names_the_bad_record() -> None:
    with pytest.raises(StateError, match="record 2"):
        parse_journal([GOOD, ["not", "an", "object"]])  # type: ignore[list-item]


# --- reconciliation -----------------------------------------------------------------------------------------


def test_open_orders_are_sent_without_a_final_event() -> None:
    events = [*sent_and_filled("cb-a"), to_sent_event(order("cb-b"), RUN), to_planned_event(order("cb-c"), RUN)]
    assert [event.client_order_id for event in find_open_orders(events)] == ["cb-b"]
    assert find_filled_ids(events) == {"cb-a"} and find_sent_ids(events) == {"cb-a", "cb-b"}


def test_an_id_resent_after_failing_is_open_again_until_it_settles() -> None:
    sent = to_sent_event(order("cb-a"), RUN)
    failed = to_failed_event(sent, RUN, reason="not_found", detail="never reached the exchange")
    resent = to_sent_event(order("cb-a"), RUN)
    assert find_open_orders([sent, failed]) == []
    assert find_open_orders([sent, failed, resent]) == [resent]
    filled = to_result_event(resent, result("cb-a"), RUN)
    assert find_open_orders([sent, failed, resent, filled]) == []
    assert find_problems([sent, failed, resent, filled]) == []


def test_fill_positions_net_buys_and_sells_exactly() -> None:
    events = [*sent_and_filled("cb-1", amount="0.3"), *sent_and_filled("cb-2", side="sell", amount="0.1"),
              *sent_and_filled("cb-3", symbol="ETH/USDT", amount="2"),
              *sent_and_filled("cb-4", symbol="ETH/USDT", side="sell", amount="2")]
    sent = to_sent_event(order("cb-5", amount="9"), RUN)
    events += [sent, to_rejected_event(sent, RUN, reason="rejected", detail="no")]
    assert compute_fill_positions(events) == {"BTC/USDT": D("0.2")}  # ETH nets to 0; the rejection adds nothing
    assert compute_fees_quote(events) == pytest.approx(0.2)


def test_fill_positions_net_out_commissions_charged_in_the_coin_bought() -> None:
    sent = to_sent_event(order("cb-1", amount="0.5"), RUN)
    in_coin = replace(result("cb-1"), fees_paid=(("BTC", D("0.0005")),))  # Binance's default: the coin bought
    sent_eth = to_sent_event(order("cb-2", symbol="ETH/USDT", amount="2"), RUN)
    in_bnb = replace(result("cb-2", symbol="ETH/USDT", filled="2", requested="2"), fees_paid=(("BNB", D("0.01")),))
    events = [sent, to_result_event(sent, in_coin, RUN), sent_eth, to_result_event(sent_eth, in_bnb, RUN)]
    assert compute_fill_positions(events) == {"BTC/USDT": D("0.4995"), "ETH/USDT": D("2")}  # 0.5 - 0.0005; BNB aside


def test_a_consistent_journal_has_no_problems() -> None:
    sent = to_sent_event(order("cb-late"), RUN)
    late = [sent, to_failed_event(sent, RUN, reason="not_found", detail="x"),
            to_result_event(sent, result("cb-late"), RUN)]
    assert find_problems([*sent_and_filled("cb-1"), *late]) == []  # a fill found after 'failed' is a correction


@pytest.mark.parametrize(("events", "problem"), [
    (sent_and_filled("cb-1")[1:], "filled cb-1 after nothing"),
    (sent_and_filled("cb-1") + sent_and_filled("cb-1")[1:], "filled cb-1 after filled"),
    (sent_and_filled("cb-1") + sent_and_filled("cb-1")[:1], "sent again after it filled"),
    ([to_sent_event(order("cb-1", amount="0.1"), RUN),
      to_result_event(to_sent_event(order("cb-1", amount="0.1"), RUN), result("cb-1", filled="0.5"), RUN)],
     "filled 0.5 > requested 0.1"),
])
def test_inconsistencies_are_reported(events: list[JournalEvent], problem: str) -> None:
    assert any(problem in text for text in find_problems(events)), find_problems(events)
