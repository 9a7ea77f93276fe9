"""Execution: from targets to orders on a venue — the order planner, risk checks, the order journal, the
paper broker, the simulated exchange, the ccxt venue and the rebalance engine.

May import: ``lib.core`` (and, until the split of issue #8 lands, ``lib.ops.config`` section classes).
"""
