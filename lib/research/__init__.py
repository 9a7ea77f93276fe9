"""Research: everything that turns candles into target weights, and the backtester that replays it —
indicators (the only pandas-ta importer), signals, ensemble, universe, sizing, the strategy composition,
the backtester, walk-forward, metrics and the backtest study (``study/``). All pure. Each config section
lives in a light ``*_params`` module next to the code that reads it (the config loader imports only those).

May import: ``lib.core``, ``lib.data``.
"""
