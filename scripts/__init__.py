"""coinbot's scripts, run as ``python -m scripts.<name>`` (cron: crontab.txt)."""

import os

# Arrow's default allocator (mimalloc) keeps the buffers a Parquet read frees once they are copied into pandas,
# and costs system time in page faults; scripts run on a 1 GB VPS. Arrow reads this once, when pandas first
# imports it, so it is set here, before any script module loads (whole hourly backtest: ~25 MB less peak RSS
# than switching pools later, ~65 MB less than mimalloc; system time 0.5-1.7 s -> 0.3 s).
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
