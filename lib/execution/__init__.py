"""Execution: from targets to orders on a venue — the order planner, risk (checks, baselines, the live-key
policy), the order journal, the paper broker, the simulated exchange, the ccxt client/venue/market parsing,
the venue session, the book, rebalance's state files and the rebalance engine.

May import: ``lib.core`` only (never ``lib.ops``: the config sections it needs live here, config composes them).
"""
