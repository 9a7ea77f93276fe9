"""Ops: running the system — the config loader, the script runner, alerts, pipeline health, doctor,
the daily report's numbers and the charts. Composes the other packages.

May import: every ``lib`` package.
"""
