"""lib.ops.reporting: mark to market, benchmarks, equity.csv layout, PnL, metrics, chart frames, summary text."""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from lib.core.errors import DataError, StateError
from lib.core.state import Positions
from lib.core.timeframes import MS_PER_DAY, MS_PER_HOUR
from lib.execution.cashflows import CashFlow
from lib.ops.equity_csv import (
    EQUITY_COLUMNS,
    EquityRow,
    append_row,
    empty_history,
    is_new_row,
    parse_equity_csv,
    to_equity_csv_header,
    to_equity_csv_line,
)
from lib.ops.health import HealthParams, check_health
from lib.ops.reporting import (
    BookMark,
    build_chart_frames,
    build_summary_text,
    compute_benchmark_curves,
    compute_curve_metrics,
    compute_day_reference,
    compute_mark_to_market,
    compute_performance,
    latest_prices,
    to_close_frame,
    to_daily_history,
    to_equity_row,
)
from lib.research.metrics import summary_metrics

D0 = 1_767_225_600_000  # 2026-01-01T00:00Z
D = [D0 + i * MS_PER_DAY for i in range(6)]


def positions(*, cash_quote: float, amounts: dict[str, float], marks: dict[str, float],
              inception_ms: int = D0, inception_equity_quote: float = 1000.0,
              day_start_equity_quote: float = 990.0, fees_paid_quote: float = 1.5) -> Positions:
    return Positions(mode="paper", venue="simulated", updated_ms=D[3], cash_quote=cash_quote,
                     amounts_base=amounts, marks=marks, equity_quote=1000.0, high_water_mark_quote=1100.0,
                     day_start_ms=D[3],
                     day_start_equity_quote=day_start_equity_quote, inception_ms=inception_ms,
                     inception_equity_quote=inception_equity_quote, fees_paid_quote=fees_paid_quote)


# -- mark to market ---------------------------------------------------------------------------------------


def test_spot_equity_is_cash_plus_amounts_at_prices() -> None:
    book = positions(cash_quote=100.0, amounts={"BTC/USDT": 0.01, "ETH/USDT": 0.5, "SOL/USDT": 0.0},
                     marks={"BTC/USDT": 90_000.0, "ETH/USDT": 3000.0})
    mark = compute_mark_to_market(book, {"BTC/USDT": 100_000.0, "ETH/USDT": 2000.0})
    assert mark.equity_quote == pytest.approx(2100.0, abs=1e-9)
    assert mark.gross_exposure_quote == pytest.approx(2000.0, abs=1e-9)
    assert mark.exposure_gross_frac == pytest.approx(2000.0 / 2100.0)
    # the zero SOL amount is skipped
    assert mark.values_quote == pytest.approx({"BTC/USDT": 1000.0, "ETH/USDT": 1000.0})
    assert mark.prices == {"BTC/USDT": 100_000.0, "ETH/USDT": 2000.0} and mark.notes == ()


def test_perp_equity_adds_only_the_move_since_the_rebalance_marks() -> None:
    book = positions(cash_quote=1000.0, amounts={"BTC/USDT:USDT": 0.01, "ETH/USDT:USDT": -0.5},
                     marks={"BTC/USDT:USDT": 90_000.0, "ETH/USDT:USDT": 3000.0})
    mark = compute_mark_to_market(book, {"BTC/USDT:USDT": 100_000.0, "ETH/USDT:USDT": 2000.0})
    assert mark.equity_quote == pytest.approx(1000.0 + 0.01 * 10_000 + (-0.5) * (-1000.0))  # 1600
    assert mark.gross_exposure_quote == pytest.approx(2000.0)
    assert mark.values_quote == pytest.approx({"BTC/USDT:USDT": 1000.0, "ETH/USDT:USDT": -1000.0})


def test_perp_at_its_mark_is_worth_the_cash() -> None:
    book = positions(cash_quote=1234.5, amounts={"BTC/USDT:USDT": -0.2}, marks={"BTC/USDT:USDT": 50_000.0})
    assert compute_mark_to_market(book, {"BTC/USDT:USDT": 50_000.0}).equity_quote == 1234.5


def test_a_held_symbol_without_a_price_is_valued_at_its_mark_and_noted() -> None:
    book = positions(cash_quote=0.0, amounts={"SOL/USDT": 2.0}, marks={"SOL/USDT": 150.0})
    mark = compute_mark_to_market(book, {})
    assert mark.equity_quote == 300.0
    assert mark.notes == ("SOL/USDT valued at the rebalance mark 150 (no stored candle)",)


def test_no_price_and_no_mark_cannot_be_valued() -> None:
    book = positions(cash_quote=0.0, amounts={"SOL/USDT": 2.0}, marks={})
    with pytest.raises(DataError, match="cannot value SOL/USDT"):
        compute_mark_to_market(book, {})


def test_a_perp_without_a_mark_is_a_state_error() -> None:
    book = positions(cash_quote=0.0, amounts={"SOL/USDT:USDT": 2.0}, marks={})
    with pytest.raises(StateError, match="without a mark"):
        compute_mark_to_market(book, {"SOL/USDT:USDT": 100.0})


def test_wiped_out_book_has_undefined_exposure() -> None:
    book = positions(cash_quote=-10.0, amounts={"BTC/USDT": 0.0001}, marks={"BTC/USDT": 100_000.0})
    mark = compute_mark_to_market(book, {"BTC/USDT": 100_000.0})
    assert mark.equity_quote == pytest.approx(0.0) and math.isnan(mark.exposure_gross_frac)


# -- closes and benchmarks --------------------------------------------------------------------------------


def candles(stamps: list[int], closes: list[float]) -> pd.DataFrame:
    close = np.asarray(closes, dtype="float64")
    return pd.DataFrame({"timestamp": np.asarray(stamps, dtype="int64"), "open": close, "high": close,
                         "low": close, "close": close, "volume": np.ones(len(close))})


NOW_MS = D[4] + 30 * 60_000  # the D3 daily candle is the last closed one


def closes_frame() -> pd.DataFrame:
    stored = {
        "BTC/USDT": candles(D[:5], [100.0, 110.0, 120.0, 150.0, 999.0]),  # D4 is still forming at NOW_MS
        "ETH/USDT": candles(D[:4], [10.0, 5.0, 20.0, 25.0]),
        "SOL/USDT": candles(D[1:4], [50.0, 60.0, 70.0]),  # listed a day later
    }
    return to_close_frame(stored, now_ms=NOW_MS, timeframe="1d")


def test_close_frame_holds_closed_candles_only() -> None:
    wide = closes_frame()
    assert list(wide.index) == D[:4] and wide.index.dtype == "int64"
    assert list(wide.columns) == ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
    assert math.isnan(wide.loc[D[0], "SOL/USDT"])
    assert latest_prices(wide) == {"BTC/USDT": 150.0, "ETH/USDT": 25.0, "SOL/USDT": 70.0}


def test_benchmarks_buy_at_the_last_close_known_at_inception() -> None:
    # inception at D1 01:00: the last closed daily candle is D0's (BTC 100, ETH 10, SOL not listed yet)
    curves = compute_benchmark_curves(closes_frame(), inception_ms=D[1] + MS_PER_HOUR,
                                      inception_equity_quote=1000.0, timeframe="1d", btc_symbol="BTC/USDT")
    assert list(curves.index) == D[:4]
    assert curves["btc_benchmark_quote"].tolist() == pytest.approx([1000.0, 1100.0, 1200.0, 1500.0])
    # 500 in BTC (5 units) + 500 in ETH (50 units), never rebalanced, SOL never joins
    assert curves["basket_benchmark_quote"].tolist() == pytest.approx([1000.0, 800.0, 1600.0, 2000.0])


def test_benchmarks_start_later_when_inception_is_later() -> None:
    # inception at D2 12:00: bought at D1's closes (BTC 110; BTC, ETH, SOL a third each)
    curves = compute_benchmark_curves(closes_frame(), inception_ms=D[2] + 12 * MS_PER_HOUR,
                                      inception_equity_quote=990.0, timeframe="1d", btc_symbol="BTC/USDT")
    assert list(curves.index) == D[1:4]
    assert curves["btc_benchmark_quote"].iloc[-1] == pytest.approx(990.0 * 150.0 / 110.0)
    assert curves["basket_benchmark_quote"].iloc[-1] == pytest.approx(330.0 * (150 / 110 + 25 / 5 + 70 / 50))


def test_inception_before_the_stored_candles_starts_at_the_first_one() -> None:
    curves = compute_benchmark_curves(closes_frame(), inception_ms=D[0] - 10 * MS_PER_DAY,
                                      inception_equity_quote=1000.0, timeframe="1d", btc_symbol="BTC/USDT")
    assert curves["btc_benchmark_quote"].iloc[-1] == pytest.approx(1500.0)


def test_benchmarks_without_prices_are_nan() -> None:
    wide = closes_frame()[["ETH/USDT"]]
    curves = compute_benchmark_curves(wide, inception_ms=D[1], inception_equity_quote=1000.0, timeframe="1d",
                                      btc_symbol="BTC/USDT")
    assert curves["btc_benchmark_quote"].isna().all()
    assert curves["basket_benchmark_quote"].iloc[-1] == pytest.approx(2500.0)
    empty = compute_benchmark_curves(wide.iloc[:0], inception_ms=D[1], inception_equity_quote=1000.0,
                                     timeframe="1d", btc_symbol="BTC/USDT")
    row = to_equity_row(now_ms=NOW_MS, mark=book_mark(1000.0), benchmarks=empty, fees_paid_quote=0.0)
    assert math.isnan(row.btc_benchmark_quote) and math.isnan(row.basket_benchmark_quote)


# -- equity.csv -------------------------------------------------------------------------------------------


def book_mark(equity_quote: float, exposure_gross_frac: float = 0.5) -> BookMark:
    return BookMark(equity_quote=equity_quote, gross_exposure_quote=equity_quote * exposure_gross_frac,
                    exposure_gross_frac=exposure_gross_frac, prices={}, values_quote={})


def row_at(time_ms: int, equity_quote: float, btc: float = 1000.0, basket: float = 1000.0) -> EquityRow:
    return EquityRow(time_ms=time_ms, equity_quote=equity_quote, btc_benchmark_quote=btc,
                     basket_benchmark_quote=basket, fees_paid_quote=1.5, exposure_gross_frac=0.5)


def history_of(*rows: EquityRow) -> pd.DataFrame:
    history = empty_history()
    for row in rows:
        history = append_row(history, row)
    return history


def test_equity_row_takes_the_benchmarks_last_values() -> None:
    curves = compute_benchmark_curves(closes_frame(), inception_ms=D[1], inception_equity_quote=1000.0,
                                      timeframe="1d", btc_symbol="BTC/USDT")
    row = to_equity_row(now_ms=NOW_MS, mark=book_mark(1234.5), benchmarks=curves, fees_paid_quote=2.25)
    assert row == EquityRow(time_ms=NOW_MS, equity_quote=1234.5, btc_benchmark_quote=pytest.approx(1500.0),
                            basket_benchmark_quote=pytest.approx(2000.0), fees_paid_quote=2.25,
                            exposure_gross_frac=0.5)


def test_csv_layout_and_exact_round_trip() -> None:
    assert to_equity_csv_header() == ("time_ms,time_iso,equity_quote,btc_benchmark_quote,"
                                      "basket_benchmark_quote,fees_paid_quote,exposure_gross_frac")
    row = EquityRow(time_ms=NOW_MS, equity_quote=1234.5678901234, btc_benchmark_quote=0.1 + 0.2,
                    basket_benchmark_quote=math.nan, fees_paid_quote=1.0, exposure_gross_frac=0.25)
    line = to_equity_csv_line(row)
    assert line == f"{NOW_MS},2026-01-05T00:30:00Z,1234.5678901234,0.30000000000000004,,1.0,0.25"
    history, torn = parse_equity_csv(f"{to_equity_csv_header()}\n{line}\n")
    assert not torn and list(history.columns) == list(EQUITY_COLUMNS)
    assert history["time_ms"].tolist() == [NOW_MS] and history["equity_quote"].iloc[0] == 1234.5678901234
    assert history["btc_benchmark_quote"].iloc[0] == 0.1 + 0.2
    assert math.isnan(history["basket_benchmark_quote"].iloc[0])


def test_a_torn_final_line_is_left_out_and_reported() -> None:
    text = f"{to_equity_csv_header()}\n{to_equity_csv_line(row_at(D[1], 1000.0))}\n{D[2]},2026-01-0"
    history, torn = parse_equity_csv(text)
    assert torn and history["time_ms"].tolist() == [D[1]]
    assert parse_equity_csv("")[0].empty and parse_equity_csv(to_equity_csv_header() + "\n")[0].empty


def csv_text(*rows: EquityRow) -> str:
    return "".join(line + "\n" for line in [to_equity_csv_header(), *map(to_equity_csv_line, rows)])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("time,equity\n", "header"),
        (f"{to_equity_csv_header()}\n1,x,2\n", "line 2 is malformed"),
        (f"{to_equity_csv_header()}\nabc,x,1,2,3,4,5\n", "line 2 is malformed"),
        (csv_text(row_at(D[2], 1.0), row_at(D[1], 1.0)), "not strictly increasing"),
        (csv_text(row_at(D[2], 1.0), row_at(D[2], 2.0)), "not strictly increasing"),
    ],
)
def test_bad_equity_csv_is_a_state_error(text: str, message: str) -> None:
    with pytest.raises(StateError, match=message):
        parse_equity_csv(text)


def test_a_row_at_an_existing_time_is_not_appended_twice() -> None:
    history = history_of(row_at(D[1], 1000.0), row_at(D[2], 1010.0))
    assert not is_new_row(history, D[2]) and not is_new_row(history, D[1]) and is_new_row(history, D[2] + 1)
    assert append_row(history, row_at(D[2], 9999.0)) is history
    assert is_new_row(empty_history(), D[0])


def test_a_row_from_the_future_is_refused_loudly_on_the_wall_clock() -> None:
    history = history_of(row_at(D[1], 1000.0), row_at(D[2], 1010.0))  # D[2]: written by a clock ahead
    with pytest.raises(StateError, match="after this run"):
        is_new_row(history, D[2] - 1, past_ok=False)
    assert not is_new_row(history, D[2] - 1)  # an --as-of replay of an earlier time appends nothing
    assert not is_new_row(history, D[2], past_ok=False) and is_new_row(history, D[2] + 1, past_ok=False)


# -- PnL, metrics, chart frames ---------------------------------------------------------------------------


def test_day_pnl_is_measured_from_the_previous_days_last_report() -> None:
    history = history_of(row_at(D[2] + 10 * MS_PER_HOUR, 1000.0), row_at(D[2] + 20 * MS_PER_HOUR, 1050.0),
                         row_at(D[3] + MS_PER_HOUR, 1100.0))
    reference = compute_day_reference(history, now_ms=D[3] + MS_PER_HOUR, day_start_equity_quote=990.0,
                                      day_start_ms=D[3])
    assert reference == (1050.0, "report 2026-01-03T20:00:00Z")


def test_day_pnl_falls_back_to_the_day_start_equity() -> None:
    history = history_of(row_at(D[1], 1000.0), row_at(D[3] + MS_PER_HOUR, 1100.0))  # no report yesterday
    assert compute_day_reference(history, now_ms=D[3] + MS_PER_HOUR, day_start_equity_quote=990.0,
                                 day_start_ms=D[3]) == (990.0, "day start 2026-01-04T00:00Z")


def test_performance_numbers() -> None:
    history = history_of(row_at(D[2] + 20 * MS_PER_HOUR, 1050.0),
                         row_at(D[3] + MS_PER_HOUR, 1100.0, 1200.0, 900.0))
    book = positions(cash_quote=0.0, amounts={}, marks={}, inception_equity_quote=1000.0, fees_paid_quote=3.0)
    row = row_at(D[3] + MS_PER_HOUR, 1100.0, 1200.0, 900.0)
    perf = compute_performance(history, book, row, now_ms=row.time_ms)
    assert (perf.day_pnl_quote, perf.day_pnl_frac) == (pytest.approx(50.0), pytest.approx(50.0 / 1050.0))
    assert (perf.inception_pnl_quote, perf.inception_pnl_frac) == (pytest.approx(100.0), pytest.approx(0.1))
    assert (perf.btc_benchmark_quote, perf.basket_benchmark_quote, perf.days) == (1200.0, 900.0, 2)
    assert perf.metrics["strategy"]["total_return_frac"] == pytest.approx(1100.0 / 1050.0 - 1)
    assert perf.metrics["BTC buy & hold"]["total_return_frac"] == pytest.approx(0.2)


def test_metrics_use_the_last_row_of_each_utc_day_and_the_backtests_functions() -> None:
    history = history_of(row_at(D[0] + MS_PER_HOUR, 1000.0, 1000.0, 1000.0),
                         row_at(D[0] + 23 * MS_PER_HOUR, 1010.0, 1020.0, 990.0),  # last of D0
                         row_at(D[1] + MS_PER_HOUR, 990.0, 1040.0, 980.0),
                         row_at(D[2] + MS_PER_HOUR, 1030.0, 1000.0, 1000.0),
                         row_at(D[4] + MS_PER_HOUR, 1040.0, 1100.0, 1010.0))  # D3 has no report
    daily = to_daily_history(history)
    assert list(daily.index) == [D[0], D[1], D[2], D[4]]
    assert daily["equity_quote"].tolist() == [1010.0, 990.0, 1030.0, 1040.0]
    metrics = compute_curve_metrics(history)
    expected = summary_metrics(pd.Series([1010.0, 990.0, 1030.0, 1040.0]), timeframe="1d")
    assert metrics["strategy"] == pytest.approx(expected, nan_ok=True)
    assert metrics["equal-weight basket"]["max_drawdown_frac"] == pytest.approx(1 - 980.0 / 990.0)
    assert compute_curve_metrics(history_of(row_at(D[0], 1.0), row_at(D[0] + 1, 2.0))) == {}  # one day only


def test_a_benchmark_with_gaps_gets_no_metrics() -> None:
    history = history_of(row_at(D[0], 1000.0, math.nan, 1000.0), row_at(D[1], 1010.0, 1000.0, 1000.0))
    assert sorted(compute_curve_metrics(history)) == ["equal-weight basket", "strategy"]


def test_chart_frames_are_the_curves_and_their_drawdowns() -> None:
    history = history_of(row_at(D[0], 1000.0, 1000.0, math.nan), row_at(D[1], 1200.0, 800.0, math.nan),
                         row_at(D[2], 900.0, 1000.0, math.nan))
    frames = build_chart_frames(history)
    assert list(frames.curves_quote.columns) == ["strategy", "BTC buy & hold"]  # the empty basket is dropped
    assert str(frames.curves_quote.index.tz) == "UTC"
    assert frames.curves_quote.index[0] == pd.Timestamp(D[0], unit="ms", tz="UTC")
    assert frames.drawdowns_frac["strategy"].tolist() == pytest.approx([0.0, 0.0, -0.25])
    assert frames.drawdowns_frac["BTC buy & hold"].tolist() == pytest.approx([0.0, -0.2, 0.0])


# -- summary text -----------------------------------------------------------------------------------------


def test_summary_text() -> None:
    book = positions(cash_quote=100.0, amounts={"BTC/USDT": 0.01, "ETH/USDT": 0.5},
                     marks={"BTC/USDT": 90_000.0, "ETH/USDT": 3000.0}, inception_equity_quote=2000.0)
    mark = compute_mark_to_market(book, {"BTC/USDT": 100_000.0, "ETH/USDT": 2000.0})
    row = EquityRow(time_ms=D[3] + MS_PER_HOUR, equity_quote=mark.equity_quote, btc_benchmark_quote=2500.0,
                    basket_benchmark_quote=1900.0, fees_paid_quote=1.5,
                    exposure_gross_frac=mark.exposure_gross_frac)
    history = history_of(row)
    perf = compute_performance(history, book, row, now_ms=row.time_ms)
    health = check_health([], {}, now_ms=row.time_ms, params=HealthParams(fetch_prices_max_age_ms=0,
                                                                          compute_signals_max_age_ms=0,
                                                                          rebalance_max_age_ms=0))
    text = build_summary_text(now_ms=row.time_ms, title="paper, simulated spot", health=health, quote="USDT",
                              performance=perf, mark=mark)
    assert text.splitlines()[:11] == [
        "coinbot report 2026-01-04T01:00Z (paper, simulated spot)",
        "equity 2,100.00 USDT",
        "day +1,110.00 USDT (+112.12%) vs day start 2026-01-04T00:00Z",
        "since 2026-01-01: +100.00 USDT (+5.00%)",
        "buy & hold since 2026-01-01: BTC 2,500.00, basket 1,900.00",
        "exposure gross 95.2%, fees paid 1.50 USDT",
        "  BTC/USDT 1,000.00 (47.6%) @ 100000",
        "  ETH/USDT 1,000.00 (47.6%) @ 2000",
        "metrics: need 2+ days of equity history",
        "",
        "health: ok",
    ]


def test_summary_without_positions_says_so() -> None:
    health = check_health([], {}, now_ms=NOW_MS, params=HealthParams())
    text = build_summary_text(now_ms=NOW_MS, title="paper", health=health, quote="USDT")
    assert "no positions yet: state/positions.json does not exist (rebalance has not run)" in text
    assert "health: STALE (3 problem(s))" in text


def test_summary_metrics_block_compares_the_same_period() -> None:
    book = positions(cash_quote=1100.0, amounts={}, marks={}, inception_equity_quote=1000.0)
    first = row_at(D[0] + MS_PER_HOUR, 1000.0, 1000.0, 1000.0)
    row = row_at(D[1] + MS_PER_HOUR, 1100.0, 900.0, 1050.0)
    perf = compute_performance(history_of(first, row), book, row, now_ms=row.time_ms)
    health = check_health([], {}, now_ms=row.time_ms, params=HealthParams(
        fetch_prices_max_age_ms=0, compute_signals_max_age_ms=0, rebalance_max_age_ms=0))
    lines = build_summary_text(now_ms=row.time_ms, title="paper", health=health, quote="USDT",
                               performance=perf, mark=compute_mark_to_market(book, {})).splitlines()
    start = lines.index("metrics since 2026-01-01 (2 daily closes): "
                        "strategy | BTC buy & hold | equal-weight basket")
    assert lines[start + 1:start + 3] == ["  total return: 10.0% | -10.0% | 5.0%",
                                          "  max drawdown: 0.0% | 10.0% | 0.0%"]
    assert lines[start + 4] == "  sharpe: n/a | n/a | n/a"  # one return: undefined, never inf


# -- deposits and withdrawals (state/cashflows.jsonl) are not P&L -------------------------------------------


def flow(time_ms: int, amount: str) -> CashFlow:
    return CashFlow(time_ms=time_ms, amount_quote=Decimal(amount), source="manual")


def test_a_withdrawal_since_yesterdays_report_is_not_a_day_loss() -> None:
    # yesterday's report saw 1000; 300 went out at 05:00; today's rebalance valued it (inception 1000 -> 700)
    # and the book then earned 20: the day's P&L is +20, not -280
    history = history_of(row_at(D[2] + MS_PER_HOUR, 1000.0), row_at(D[3] + MS_PER_HOUR, 720.0))
    book = positions(cash_quote=720.0, amounts={}, marks={}, inception_equity_quote=700.0)
    perf = compute_performance(history, book, row_at(D[3] + MS_PER_HOUR, 720.0), now_ms=D[3] + MS_PER_HOUR,
                               flows=[flow(D[2] + 5 * MS_PER_HOUR, "-300")])
    assert (perf.day_pnl_quote, perf.day_pnl_frac) == (pytest.approx(20.0), pytest.approx(20.0 / 700.0))
    assert perf.day_reference == "report 2026-01-03T01:00:00Z, net of cash flows -300.00"
    assert perf.inception_pnl_quote == pytest.approx(20.0)


def test_flows_before_the_reference_report_do_not_move_the_day_reference() -> None:
    history = history_of(row_at(D[2] + MS_PER_HOUR, 1000.0), row_at(D[3] + MS_PER_HOUR, 1010.0))
    book = positions(cash_quote=1010.0, amounts={}, marks={})
    perf = compute_performance(history, book, row_at(D[3] + MS_PER_HOUR, 1010.0), now_ms=D[3] + MS_PER_HOUR,
                               flows=[flow(D[2], "500")])  # valued before yesterday's report
    assert (perf.day_pnl_quote, perf.day_reference) == (pytest.approx(10.0), "report 2026-01-03T01:00:00Z")


def test_a_flow_recorded_after_the_last_rebalance_is_in_the_marked_equity() -> None:
    # the rebalance (updated_ms = D3) has not valued the 500 deposited at 00:30: the account holds it already
    book = positions(cash_quote=1000.0, amounts={}, marks={}, inception_equity_quote=1000.0)
    mark = compute_mark_to_market(book, {}, pending_flows_quote=500.0)
    assert mark.equity_quote == 1500.0
    assert mark.notes == ("cash flows recorded since the last rebalance: +500.00 (counted in the equity)",)
    row = row_at(D[3] + MS_PER_HOUR, 1500.0)
    perf = compute_performance(history_of(row), book, row, now_ms=row.time_ms,
                               flows=[flow(D[3] + MS_PER_HOUR // 2, "500")])
    assert (perf.inception_pnl_quote, perf.inception_pnl_frac) == (pytest.approx(0.0), pytest.approx(0.0))


def test_metrics_do_not_count_a_withdrawal_as_a_loss_or_a_drawdown() -> None:
    # daily equity 1000, 1010, then 300 out and -3 of trading (707), then +7 (714); BTC rises 0 %, 10 %, 0 %,
    # 9.09 %: its stored value is the inception equity (1000, 700 after the flow) x the price ratio
    history = history_of(row_at(D[0] + MS_PER_HOUR, 1000.0, 1000.0), row_at(D[1] + MS_PER_HOUR, 1010.0, 1100.0),
                         row_at(D[2] + MS_PER_HOUR, 707.0, 770.0), row_at(D[3] + MS_PER_HOUR, 714.0, 840.0))
    flows = [flow(D[1] + 5 * MS_PER_HOUR, "-300")]
    metrics = compute_curve_metrics(history, flows=flows, inception_equity_quote=700.0)
    strategy = pd.Series([1000.0, 1010.0, 1010.0 * 707.0 / 710.0, 1010.0 * 714.0 / 710.0])
    assert metrics["strategy"] == pytest.approx(summary_metrics(strategy, timeframe="1d"), nan_ok=True)
    assert metrics["strategy"]["max_drawdown_frac"] == pytest.approx(1 - 707.0 / 710.0)
    assert metrics["BTC buy & hold"]["total_return_frac"] == pytest.approx(0.2)
    assert metrics["BTC buy & hold"]["max_drawdown_frac"] == pytest.approx(0.0)
    assert compute_curve_metrics(history) == compute_curve_metrics(history, flows=[], inception_equity_quote=700.0)
