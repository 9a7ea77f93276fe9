"""Research: everything that turns candles into target weights, and the backtester that replays it —
indicators (the only pandas-ta importer), signals, ensemble, universe, sizing, the strategy composition,
the backtester, walk-forward, metrics and the backtest study glue. All pure.

May import: ``lib.core``, ``lib.data``.
"""
