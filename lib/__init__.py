"""coinbot's library: one sub-package per concern; imports flow one way (tests/unit/test_layout.py).

- ``lib.core``      errors, time, symbols, paths, venue protocols, state records, atomic files, retry
- ``lib.data``      candles and funding: schemas, validation, merge, the downloader
- ``lib.research``  indicators, signals, sleeves, weights, backtester, walk-forward, metrics, studies
- ``lib.execution`` order planning, risk, the journal, the paper/simulated/ccxt venues, the rebalance engine
- ``lib.ops``       config, the script runner, alerts, health, doctor, reporting, charts

core <- data <- research; core <- execution; ops composes all of them. Scripts import any of them.
"""
