"""Sleeves: pure signal producers (candles -> per-asset conviction), sizing, combiner and turnover control
that together make the ``trend_core`` and ``combined`` books (see ``lib.research.sleeves.book``)."""
