"""Core: what every other package shares — the error hierarchy, timeframe arithmetic, symbol slugs, the
file map, venue protocols and the records that cross them, the state-file records, the one atomic writer
and torn-line-safe appender, and the one retry policy.

May import: the standard library and third-party packages only; never another ``lib`` package.
"""
