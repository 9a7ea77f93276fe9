"""Core: what every other package shares — the error hierarchy, timeframe arithmetic and the ms->ISO
formatter, symbol slugs, the file map, venue protocols and the records that cross them, the state-file
records, the credentials record, the check-result row, the one atomic writer and torn-line-safe appender
(with the line-file rule), and the one retry policy.

May import: the standard library and third-party packages only; never another ``lib`` package.
"""
