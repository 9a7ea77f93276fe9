"""The vectorbt side of the simulator benchmark, run by ANOTHER interpreter ($COINBOT_VECTORBT_PYTHON, a throwaway
venv with vectorbt; vectorbt is not a project dependency): it imports numpy and vectorbt only.

    <vectorbt python> tests/bench/vectorbt_side.py CASE.npz OUT.npz

CASE.npz (written by tests/bench/test_bench_simulator.py): ``close`` (bars x assets, the marks the project's
simulator uses), ``price`` (fill reference: each bar's open), ``size`` (target weight to fill at that bar's
open, NaN = no order), ``init_cash``, ``fees`` and ``slippage`` (one value per simulation), ``rounds``,
``batched`` (1: also run every simulation in one call, one column group each). OUT.npz: ``cpu_s`` per round
(one simulation = Portfolio.from_orders + value(); CPU seconds), ``batched_cpu_s`` per round, ``equity``
(bars x simulations), ``orders`` filled per simulation and the vectorbt version.

Conventions aligned with lib/research/backtester.py: orders are target percents of the group's value at the
fill price (``val_price`` = price), filled at price x (1 +/- slippage), fee = fees x notional, one cash pool
(``cash_sharing``), sells before buys (``call_seq="auto"``).
"""

from __future__ import annotations

import sys
import time

import numpy as np
import vectorbt as vbt


def simulate(close: np.ndarray, price: np.ndarray, size: np.ndarray, init_cash: float, fees: float | np.ndarray,
             slippage: float | np.ndarray, n_groups: int = 1) -> tuple[np.ndarray, int]:
    """(equity (bars x groups), orders filled); with ``n_groups`` > 1 the asset columns are tiled once per group."""
    tile = (1, n_groups)
    group_by = np.repeat(np.arange(n_groups), close.shape[1])
    portfolio = vbt.Portfolio.from_orders(
        close=np.tile(close, tile), size=np.tile(size, tile), price=np.tile(price, tile), size_type="targetpercent",
        fees=np.repeat(np.asarray(fees, dtype=float), close.shape[1])[None, :] if n_groups > 1 else fees,
        slippage=np.repeat(np.asarray(slippage, dtype=float), close.shape[1])[None, :] if n_groups > 1 else slippage,
        init_cash=init_cash, cash_sharing=True, group_by=group_by, call_seq="auto", freq="1h",
    )
    return np.asarray(portfolio.value()).reshape(len(close), n_groups), int(portfolio.orders.count().sum())


def main(case_path: str, out_path: str) -> None:
    case = np.load(case_path)
    close, price, size = case["close"], case["price"], case["size"]
    init_cash, fees, slippage = float(case["init_cash"]), case["fees"], case["slippage"]
    rounds, batched = int(case["rounds"]), bool(case["batched"])
    simulate(close, price, size, init_cash, float(fees[0]), float(slippage[0]))  # compile (not timed)
    cpu_s: list[float] = []
    equity = np.empty((len(close), len(fees)))
    orders = np.zeros(len(fees), dtype=np.int64)
    for _ in range(rounds):
        started = time.process_time()
        for k in range(len(fees)):
            curve, orders[k] = simulate(close, price, size, init_cash, float(fees[k]), float(slippage[k]))
            equity[:, k] = curve[:, 0]
        cpu_s.append(time.process_time() - started)
    batched_cpu_s: list[float] = []
    if batched:
        simulate(close, price, size, init_cash, fees, slippage, n_groups=len(fees))
        for _ in range(rounds):
            started = time.process_time()
            simulate(close, price, size, init_cash, fees, slippage, n_groups=len(fees))
            batched_cpu_s.append(time.process_time() - started)
    np.savez(out_path, cpu_s=np.array(cpu_s), batched_cpu_s=np.array(batched_cpu_s), equity=equity, orders=orders,
             version=np.array(vbt.__version__))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
