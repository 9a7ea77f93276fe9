"""The backtest study: the research glue of ``scripts/backtest.py``, one module per job.

``sections`` (the config sections one grid point sets) · ``grids`` (walk-forward grids) · ``simulation``
(strategy + backtester as one evaluate()) · ``history`` (the bars a run covers) · ``funding_coverage`` (perps
without a funding history) · ``benchmark_curves`` · ``walk_forward`` · ``reports`` (metrics/cost JSON, stdout
table) · ``chart_data`` · ``run_ids`` · ``json_values``. All pure; the script does the I/O.
"""
