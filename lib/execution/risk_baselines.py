"""Pure: the risk baselines of a run: the equity high-water mark (drawdown halt), the start-of-day equity (daily
loss limit), inception and fees, rolled forward from the last positions.json."""

from __future__ import annotations

from lib.core.state import Positions, RiskBaselines
from lib.core.timeframes import MS_PER_DAY


def roll_baselines(previous: Positions | None, *, equity_quote: float, now_ms: int,
                   reset: bool = False, flows_quote: float = 0.0) -> RiskBaselines:
    """The baselines for a run at ``now_ms`` valued at ``equity_quote``.

    The peak only rises by trading. The day rolls at 00:00 UTC and starts from the last equity recorded before
    it (``previous.equity_quote``: the close of the day as this system last saw it). The first run starts
    everything from ``equity_quote``; so does ``reset`` (a person cleared a drawdown halt and accepts
    today's book as the new baseline), which keeps inception and fees. ``flows_quote`` (deposits minus
    withdrawals since the previous run, lib.execution.cashflows) shifts the peak, the start of day and the
    inception equity alike, so money moved by a person is neither a drawdown, a daily loss nor P&L.
    """
    day_ms = now_ms - now_ms % MS_PER_DAY
    if previous is None:
        return RiskBaselines(high_water_mark_quote=equity_quote, day_start_ms=day_ms,
                             day_start_equity_quote=equity_quote, inception_ms=now_ms,
                             inception_equity_quote=equity_quote, fees_paid_quote=0.0)
    if reset:
        high_water, day_start_equity = equity_quote, equity_quote
    else:
        high_water = max(previous.high_water_mark_quote + flows_quote, equity_quote)
        day_start_equity = flows_quote + (previous.day_start_equity_quote if previous.day_start_ms == day_ms
                                          else previous.equity_quote)
    return RiskBaselines(high_water_mark_quote=high_water, day_start_ms=day_ms,
                         day_start_equity_quote=day_start_equity, inception_ms=previous.inception_ms,
                         inception_equity_quote=previous.inception_equity_quote + flows_quote,
                         fees_paid_quote=previous.fees_paid_quote)
