"""Data: candle and funding frames — their schema, validation and merge rules — and the downloader that
fills a series from any MarketData venue.

May import: ``lib.core``.
"""
