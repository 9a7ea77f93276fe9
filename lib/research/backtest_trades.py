"""Pure: the backtester's trade log: its schema and the frame built from the fills (see lib.research.backtester)."""

from __future__ import annotations

import numpy as np
import pandas as pd

type Order = tuple[int, float, float, float]  # (asset position, side +1/-1, amount_base, fill price)
DATA_ENDED = "data_ended"
TRADE_DTYPES = {
    "timestamp": "int64",  # open time (ms) of the bar whose open filled the order
    "symbol": "object",
    "side": "object",  # "buy" | "sell"
    "amount_base": "float64",
    "price": "float64",  # fill price, slippage included
    "notional_quote": "float64",  # amount_base x price
    "fee_quote": "float64",
    "slippage_quote": "float64",  # amount_base x |price - open|: the cost hidden in the price
    "reason": "object",  # "rebalance" | "data_ended" (sold at the last close, stamped with that bar)
}
"""Schema of BacktestResult.trades."""
TRADE_COLUMNS = tuple(TRADE_DTYPES)
SIDE_NAMES = np.array(["sell", "buy"], dtype=object)  # indexed by side > 0 (a take: no string built per row)
REASON_NAMES = np.array(["rebalance", DATA_ENDED], dtype=object)  # indexed by is_exit


def trades_frame(
    fills: list[tuple[int, list[Order]]], exits: list[tuple[int, Order]], index: pd.Index, columns: pd.Index,
    reference: np.ndarray, mark: np.ndarray, fee_frac: float,
) -> pd.DataFrame:
    """The trade log (TRADE_COLUMNS), one row per filled order, in time order.

    ``fills``: (bar, orders) filled at the bar's open (``reference``); ``exits``: (bar, order) sold at the
    bar's close (``mark``) because the asset's candles stop there.
    """
    rows = [(bar, *order, float(reference[bar, order[0]]), 0) for bar, orders in fills
            for order in orders]
    rows += [(bar, *order, float(mark[bar, order[0]]), 1) for bar, order in exits]
    if not rows:
        return empty_trades()
    rows.sort(key=lambda row: row[0])  # stable: within a bar, fills keep their order
    bars, assets, sides, amounts, prices, references, is_exit = (np.array(column) for column in zip(*rows, strict=True))
    return _frame(bars, assets, sides, amounts, prices, references, is_exit, index, columns, fee_frac)


def trades_from_records(records: np.ndarray, index: pd.Index, columns: pd.Index, fee_frac: float) -> pd.DataFrame:
    """The same log from lib.research.sim_kernel's records ((bar, asset, side, amount, price, is_exit, price before
    slippage) rows, already in the log's order)."""
    if len(records) == 0:
        return empty_trades()
    bars, assets = records[:, 0].astype(np.int64), records[:, 1].astype(np.int64)
    sides, amounts, prices, is_exit, references = (np.ascontiguousarray(records[:, k]) for k in (2, 3, 4, 5, 6))
    return _frame(bars, assets, sides, amounts, prices, references, is_exit, index, columns, fee_frac)


def empty_trades() -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in TRADE_DTYPES.items()})


def _frame(bars: np.ndarray, assets: np.ndarray, sides: np.ndarray, amounts: np.ndarray, prices: np.ndarray,
           references: np.ndarray, is_exit: np.ndarray, index: pd.Index, columns: pd.Index,
           fee_frac: float) -> pd.DataFrame:
    notionals = amounts * prices
    return pd.DataFrame(
        {
            "timestamp": np.asarray(index)[bars],
            "symbol": np.asarray(columns, dtype=object)[assets],
            "side": SIDE_NAMES[(sides > 0).astype(np.intp)],
            "amount_base": amounts,
            "price": prices,
            "notional_quote": notionals,
            "fee_quote": notionals * fee_frac,
            "slippage_quote": amounts * np.abs(prices - references),
            "reason": REASON_NAMES[(is_exit > 0).astype(np.intp)],
        },
        copy=False,  # every column is a fresh array: no copy into consolidated blocks
    )
