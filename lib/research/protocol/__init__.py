"""Research protocol (issue #10): every candidate configuration goes through the same overfitting-resistant
checks, and a rule stated up front chooses what ships.

The interface is a RETURNS MATRIX: a UTC daily DatetimeIndex, one column per configuration tried (the column
count is the trial count), values = net daily simple returns from the causal backtester; plus BTC
buy-and-hold daily returns on the same index. Modules: ``frame`` (matrix checks, Sharpe/drawdown helpers),
``walkforward`` (calendar-time windows with purge/embargo), ``cpcv`` (skfolio's CombinatorialPurgedCV),
``overfitting`` (PBO by CSCV, deflated Sharpe), ``bootstrap`` (paired stationary block bootstrap),
``selection`` (the stated rule), ``run`` (all of it as one JSON document) and ``markdown``. All pure.
"""
