"""doctor's hedge rows of the carry books (lib.ops.doctor_hedge.check_hedges) on hand-computed holdings."""

from __future__ import annotations

from decimal import Decimal

from lib.core.findings import Finding
from lib.core.state import Positions
from lib.ops.doctor_hedge import check_hedges

SPOT, PERP = "BTC/USDT", "BTC/USDT:USDT"


def book(spot: float, short: float) -> Positions:
    return Positions(mode="testnet", venue="binance", updated_ms=0, cash_quote=500.0,
                     amounts_base={SPOT: spot, PERP: -short, "ETH/USDT": 1.0}, marks={SPOT: 25_000.0, PERP: 25_000.0},
                     equity_quote=1000.0, high_water_mark_quote=1000.0, day_start_ms=0, day_start_equity_quote=1000.0,
                     inception_ms=0, inception_equity_quote=1000.0, wallets={"spot": 300.0, "futures": 200.0})


def statuses(spot: float, short: float, weights: dict[str, float] | None, risk_changed: bool = False) -> list[str]:
    return [f.status for f in check_hedges(book(spot, short), weights, max_unhedged_quote=25.0, quote="USDT",
                                           risk_changed=risk_changed)]


def test_the_spot_above_the_directional_target_covers_the_short() -> None:
    # directional 0.15 of 1 000 at 25 000 = 0.006 BTC; spot 0.016 = 0.006 + 0.010 hedge: the 0.010 short is covered
    rows = check_hedges(book(0.016, 0.01), {SPOT: 0.15}, max_unhedged_quote=25.0, quote="USDT")
    assert [(r.check, r.status) for r in rows] == [("carry hedge", "ok")]  # one row per short (ETH has none)
    assert "short 0.01, spot 0.016 = directional target 0.006 + hedge 0.01" in rows[0].detail
    assert "0.00 USDT of the short uncovered" in rows[0].detail


def test_a_broken_hedge_fails() -> None:
    # spot 0.012: 0.006 above the directional 0.006 -> 0.004 x 25 000 = 100 USDT uncovered > 25
    rows = check_hedges(book(0.012, 0.01), {SPOT: 0.15}, max_unhedged_quote=25.0, quote="USDT")
    assert rows[0].status == "fail" and "100.00 USDT of the short uncovered" in rows[0].detail
    assert "rebalance" in rows[0].what_to_do
    assert statuses(0.012, 0.01, {SPOT: 0.15}, risk_changed=True) == ["warn"]  # the risk pass made it smaller
    assert statuses(0.012, 0.01, None) == ["ok"]  # target unknown: only the whole spot counts, and it covers
    # spot 0.005 < the 0.010 short: 125 USDT not covered by any spot: fails whatever is known of the targets
    assert statuses(0.005, 0.01, None) == ["fail"] and statuses(0.005, 0.01, {SPOT: 0.15}, True) == ["fail"]


def test_funding_carry_within_the_limit() -> None:
    # the carry book alone: 0.0095 spot for a 0.010 short leaves 0.0005 x 25 000 = 12.50 <= 25: ok; 0.008: 50 fails
    assert statuses(0.0095, 0.01, {}) == ["ok"] and statuses(0.008, 0.01, {}) == ["fail"]


# BTC at 25 000; spot step 0.00001, perp step 0.002: one lot = 0.002 BTC = 50 USDT, twice carry.max_unhedged_quote
STEPS = {SPOT: Decimal("0.00001"), PERP: Decimal("0.002")}
WITHIN_ONE_LOT = "within one lot (0.002 = the larger amount step of BTC/USDT and BTC/USDT:USDT)"


def hedge_row(spot: float, short: float, weights: dict[str, float] | None,
              steps: dict[str, Decimal] | None = STEPS, unknown: str = "") -> Finding:
    rows = check_hedges(book(spot, short), weights, max_unhedged_quote=25.0, quote="USDT", amount_steps=steps,
                        steps_unknown=unknown)
    assert len(rows) == 1
    return rows[0]


def test_an_exact_hedge_is_covered_and_the_row_says_it_reads_positions_json() -> None:
    row = hedge_row(0.01, 0.01, {})
    assert row.status == "ok" and "0.00 USDT of the short uncovered" in row.detail
    assert "per positions.json (last rebalance 1970-01-01T00:00Z; not the live exchange)" in row.detail
    assert "lot" not in row.detail  # nothing to excuse


def test_a_gap_under_one_lot_is_covered_whatever_its_value() -> None:
    # funding_carry: spot 0.0085 for a 0.010 short: 0.0015 BTC < the 0.002 lot, 0.0015 x 25 000 = 37.50 USDT > 25
    row = hedge_row(0.0085, 0.01, {})
    assert row.status == "ok" and "37.50 USDT of the short uncovered" in row.detail and WITHIN_ONE_LOT in row.detail
    # combined book: directional 0.15 x 1 000 / 25 000 = 0.006; spot 0.0145 -> hedge 0.0085: the same 0.0015 gap
    row = hedge_row(0.0145, 0.01, {SPOT: 0.15})
    assert row.status == "ok" and "37.50 USDT of the short uncovered" in row.detail and WITHIN_ONE_LOT in row.detail
    # target unknown: the whole spot 0.0085 against the short, the same gap
    assert hedge_row(0.0085, 0.01, None).status == "ok"
    # the lot is the larger step: with the perp's step at 0.001 the same gap is a real one
    assert hedge_row(0.0085, 0.01, {}, {SPOT: Decimal("0.00001"), PERP: Decimal("0.001")}).status == "fail"


def test_one_lot_or_a_hair_more_is_still_uncovered() -> None:
    # spot 0.0079: 0.0021 BTC >= the 0.002 lot, 0.0021 x 25 000 = 52.50 USDT > 25: FAIL
    row = hedge_row(0.0079, 0.01, {})
    assert row.status == "fail" and "52.50 USDT of the short uncovered" in row.detail
    assert "within one lot" not in row.detail and "carry.max_unhedged_quote 25" in row.detail
    # exactly one lot (0.010 - 0.008 = 0.002, not 0.0020000000000000005 or a hair under): 50.00 USDT, FAIL
    row = hedge_row(0.008, 0.01, {})
    assert row.status == "fail" and "50.00 USDT of the short uncovered" in row.detail
    # combined book: spot 0.0139 -> hedge 0.0079 above the 0.006 directional: the same 0.0021 gap
    assert hedge_row(0.0139, 0.01, {SPOT: 0.15}).status == "fail"


def test_without_the_markets_steps_the_gap_is_judged_without_a_lot_and_the_row_says_why() -> None:
    row = hedge_row(0.0085, 0.01, {}, None, "binance spot markets not read (timeout)")
    assert row.status == "fail" and "37.50 USDT of the short uncovered" in row.detail
    assert "lot steps unknown: binance spot markets not read (timeout)" in row.detail
    assert hedge_row(0.0085, 0.01, {}, {SPOT: Decimal("0.00001")}).status == "fail"  # the perp's step missing
