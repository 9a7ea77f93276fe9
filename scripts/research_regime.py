"""Research: do GARCH forecasts beat EWMA volatility, and does HMM regime scaling help a BTC trend exposure?

Story: daily closes of --coins from --data-dir (the ../shared/data layout), CUT AT 2022-12-31 before anything is
computed (2023 is the hold-out) -> per coin, every pre-declared volatility forecaster, scored one day ahead
(QLIKE, MSE, Diebold-Mariano vs EWMA; one task per coin, serially unless --workers N or --scheduler:
lib.ops.fanout; the GARCH fits' optimizer turns last-bit differences of BLAS arithmetic between processes into
different fits, e.g. a Diebold-Mariano t of garch_t 1.98 serial vs 2.36 on a worker) -> on BTC, every pre-declared
exposure variant (trend x vol target x regime scale) from --start, net of costs, with paired block-bootstrap
Sharpe differences -> fit timings -> one JSON file written atomically and markdown tables on stdout.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lib.core import storage
from lib.data import ohlcv
from lib.ops import fanout
from lib.ops.config import ResearchSection
from lib.research import regime, regime_study, volatility
from lib.research.regime_study import exposure_table, forecast_table

END = pd.Timestamp("2022-12-31 23:59:59", tz="UTC")


def load_close(data_dir: Path, coin: str) -> pd.DataFrame:
    frame = storage.read_parquet(data_dir / "market" / "1d" / f"{coin}-USDT.parquet",
                                 columns=ohlcv.OHLCV_COLUMNS, dtypes=ohlcv.OHLCV_DTYPES)
    if frame is None:
        raise SystemExit(f"no daily candles for {coin} in {data_dir}")
    frame.index = pd.to_datetime(frame["timestamp"], unit="ms", utc=True)
    return frame[frame.index <= END]


def timings(close: pd.Series) -> dict[str, float]:
    r = volatility.log_returns(close).dropna().to_numpy()
    features = regime.regime_features(pd.Series(r)).dropna().to_numpy()
    started = time.perf_counter()
    import arch  # noqa: F401  (first import: what a cold cron process pays)
    import hmmlearn.hmm  # noqa: F401
    out: dict[str, float] = {"n_bars": float(len(r)), "import_arch_hmmlearn_s": time.perf_counter() - started}
    for name, fit in (("garch_fit_s", lambda: volatility.fit_garch(r, end_position=len(r) - 1)),
                      ("hmm_fit_s", lambda: regime.fit_hmm(features, end_position=0, start_position=0))):
        runs = []
        for _ in range(5):
            started = time.perf_counter()
            fit()
            runs.append(time.perf_counter() - started)
        out[name + "_median_of_5"], out[name + "_max_of_5"] = float(np.median(runs)), float(max(runs))
    params = regime.fit_hmm(features, end_position=0, start_position=0)
    started = time.perf_counter()
    if params is not None:
        regime.filtered_probabilities(features, params)
    out["hmm_filter_only_s"] = time.perf_counter() - started
    return out


def forecast_task(coin: str, candles: Mapping[str, pd.DataFrame]) -> dict[str, Any]:
    """One coin's forecaster comparison (the GARCH refits are the slow part)."""
    return forecast_table(candles[coin])


def without_nan(value: Any) -> Any:
    """NaN (an undefined ratio, e.g. the Sharpe of a year spent in cash) as JSON null."""
    if isinstance(value, dict):
        return {key: without_nan(item) for key, item in value.items()}
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="directory for research_regime.json")
    parser.add_argument("--coins", nargs="+", default=["BTC", "ETH", "BNB", "XRP", "ADA", "LINK", "DOGE", "SOL"])
    parser.add_argument("--start", default="2018-09-01", help="first bar of the exposure comparison")
    fanout.add_arguments(parser, default_workers="1")  # serial: GARCH fits are not bit-stable across processes
    args = parser.parse_args(argv)
    candles = {coin: load_close(args.data_dir, coin) for coin in args.coins}
    btc = candles["BTC"]["close"]
    measured = timings(btc)  # first: it times the cold import of arch/hmmlearn, before any forecast loads them
    with fanout.from_args(args, ResearchSection(workers=1)) as map_tasks:
        forecasts = map_tasks(forecast_task, list(candles), candles, label="volatility forecasts")
    report: dict[str, Any] = {
        "cut": str(END), "cost_frac": regime_study.COST_FRAC, "target_vol": regime_study.TARGET_VOL,
        "timings": measured,
        "forecasts": dict(zip(candles, forecasts, strict=True)),
        "btc_exposure": exposure_table(btc, args.start),
    }
    storage.write_json_atomic(args.out / "research_regime.json", without_nan(report))
    for coin, block in report["forecasts"].items():
        sys.stdout.write(f"\n{coin} ({block['n_bars']} bars from {block['first']})\n")
        sys.stdout.write(pd.DataFrame(block["forecasts"]).T.round(4).to_string() + "\n")
    sys.stdout.write("\n" + pd.DataFrame(report["btc_exposure"]["variants"]).T.round(3).to_string() + "\n")
    sys.stdout.write("\n" + pd.DataFrame(report["btc_exposure"]["bootstrap_sharpe_diff"]).T.round(3).to_string())
    sys.stdout.write("\n" + pd.DataFrame(report["btc_exposure"]["yearly_sharpe"]).T.round(2).to_string() + "\n")
    sys.stdout.write(f"\ntimings {report['timings']}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
