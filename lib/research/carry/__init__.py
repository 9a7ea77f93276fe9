"""Research: the funding-carry sleeve (long spot + short USDT-M perpetual of equal notional).

``market`` (aligned spot/perp/funding panels), ``sleeve`` (causal funding forecast, hysteresis, sizing),
``book`` (two-wallet backtest: fills, fees, funding, basis, margin), ``report`` (metrics) are pure;
``run`` is the edge glue behind ``backtest --strategy funding_carry`` and the research grid.
"""
