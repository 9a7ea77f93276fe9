"""Research: do GARCH forecasts beat EWMA volatility, and does HMM regime scaling help a BTC trend exposure?

Story: daily closes of --coins from --data-dir (the ../shared/data layout), CUT AT 2022-12-31 before
anything is computed (2023 is the hold-out) -> per coin, every pre-declared volatility forecaster,
scored one day ahead (QLIKE, MSE, Diebold-Mariano vs EWMA) -> on BTC, every pre-declared exposure variant
(trend x vol target x regime scale) from --start, net of costs, with paired block-bootstrap Sharpe
differences -> fit timings -> one JSON file written atomically and markdown tables on stdout.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lib.core import storage
from lib.data import ohlcv
from lib.research import regime, regime_study, volatility

END = pd.Timestamp("2022-12-31 23:59:59", tz="UTC")
COST_FRAC = 0.0015  # 10 bps fee + 5 bps slippage, the shipped defaults
TARGET_VOL = 0.40
MIN_TRAIN = 365


def load_close(data_dir: Path, coin: str) -> pd.DataFrame:
    frame = storage.read_parquet(data_dir / "market" / "1d" / f"{coin}-USDT.parquet",
                                 columns=ohlcv.OHLCV_COLUMNS, dtypes=ohlcv.OHLCV_DTYPES)
    if frame is None:
        raise SystemExit(f"no daily candles for {coin} in {data_dir}")
    frame.index = pd.to_datetime(frame["timestamp"], unit="ms", utc=True)
    return frame[frame.index <= END]


def forecasters(candles: pd.DataFrame) -> dict[str, pd.Series]:
    r = volatility.log_returns(candles["close"])
    return {
        "ewma_0.94": volatility.ewma_volatility(r, lam=0.94),
        "ewma_0.97": volatility.ewma_volatility(r, lam=0.97),
        "rolling_std_30": r.rolling(30).std(),
        "parkinson_20": volatility.parkinson_volatility(candles["high"], candles["low"], window=20),
        "garch_expanding_r20": volatility.garch_forecast(r, min_train=MIN_TRAIN, refit_every=20).sigma,
        "garch_t_expanding_r20": volatility.garch_forecast(r, min_train=MIN_TRAIN, refit_every=20, dist="t").sigma,
        "garch_rolling1000_r20": volatility.garch_forecast(r, min_train=MIN_TRAIN, refit_every=20, window=1000).sigma,
    }


def forecast_table(candles: pd.DataFrame) -> dict[str, Any]:
    r = volatility.log_returns(candles["close"])
    sigmas = forecasters(candles)
    common = pd.concat(sigmas, axis=1).notna().all(axis=1) & (np.arange(len(r)) >= MIN_TRAIN)
    losses = {name: regime_study.forecast_losses(s[common], r) for name, s in sigmas.items()}
    base = losses["ewma_0.94"]
    table = {name: {"qlike": float(f["qlike"].mean()), "mse_x1e6": float(f["mse"].mean() * 1e6),
                    "dm_t_qlike_vs_ewma094": regime_study.diebold_mariano_t(f["qlike"], base["qlike"]),
                    "dm_t_mse_vs_ewma094": regime_study.diebold_mariano_t(f["mse"], base["mse"])}
             for name, f in losses.items()}
    return {"n_bars": int(len(base)), "first": str(base.index[0].date()), "forecasts": table}


def exposure_variants(close: pd.Series) -> dict[str, pd.Series]:
    r = volatility.log_returns(close)
    trend = (close > close.rolling(200).mean()).astype(float).where(close.rolling(200).count() == 200)
    vt_ewma = regime.vol_target_scale(volatility.ewma_volatility(r), target_vol_annual=TARGET_VOL, timeframe="1d")
    garch = volatility.garch_forecast(r, min_train=MIN_TRAIN, refit_every=20).sigma
    vt_garch = regime.vol_target_scale(garch, target_vol_annual=TARGET_VOL, timeframe="1d")
    hmm2 = regime.hmm_regime(r, min_train=MIN_TRAIN, refit_every=30).bull_probability
    hmm2_mean = regime.hmm_regime(r, min_train=MIN_TRAIN, refit_every=30, label_by="mean_return").bull_probability
    hmm3 = regime.hmm_regime(r, n_states=3, min_train=MIN_TRAIN, refit_every=30).probabilities
    not_wildest = (1.0 - hmm3["state_2"]).rename("p")
    lin = regime.regime_scale(hmm2)
    return {
        "buy_and_hold": pd.Series(1.0, index=close.index),
        "trend": trend,
        "trend_vt_ewma": trend * vt_ewma,
        "trend_vt_garch": trend * vt_garch,
        "trend_vt_ewma_hmm2_linear": trend * vt_ewma * lin,
        "trend_vt_ewma_hmm2_step": trend * vt_ewma * regime.regime_scale(hmm2, mode="step"),
        "trend_vt_ewma_hmm2mean_linear": trend * vt_ewma * regime.regime_scale(hmm2_mean),
        "trend_vt_ewma_hmm3_linear": trend * vt_ewma * regime.regime_scale(not_wildest),
        "trend_vt_garch_hmm2_linear": trend * vt_garch * lin,
        "vt_ewma": vt_ewma,
        "vt_ewma_hmm2_linear": vt_ewma * lin,
    }


def exposure_table(close: pd.Series, start: str) -> dict[str, Any]:
    weights = {name: w.fillna(0.0) for name, w in exposure_variants(close).items()}
    span = close.index >= pd.Timestamp(start, tz="UTC")
    net = {name: regime_study.exposure_returns(w, close, cost_frac=COST_FRAC)[span] for name, w in weights.items()}
    pairs = [("trend_vt_ewma_hmm2_linear", "trend_vt_ewma"), ("trend_vt_ewma_hmm2_step", "trend_vt_ewma"),
             ("trend_vt_ewma_hmm2mean_linear", "trend_vt_ewma"), ("trend_vt_ewma_hmm3_linear", "trend_vt_ewma"),
             ("trend_vt_garch", "trend_vt_ewma"), ("trend_vt_garch_hmm2_linear", "trend_vt_garch"),
             ("vt_ewma_hmm2_linear", "vt_ewma"), ("trend_vt_ewma", "buy_and_hold")]
    return {
        "span": [str(close.index[span][0].date()), str(close.index[span][-1].date())],
        "variants": {name: regime_study.summarize(net[name], weights[name][span]) for name in weights},
        "bootstrap_sharpe_diff": {f"{a} - {b}": regime_study.block_bootstrap_sharpe_difference(net[a], net[b])
                                  for a, b in pairs},
        "yearly_sharpe": regime_study.yearly_sharpe(net).round(3).to_dict(orient="index"),
    }


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
    args = parser.parse_args(argv)
    candles = {coin: load_close(args.data_dir, coin) for coin in args.coins}
    btc = candles["BTC"]["close"]
    report: dict[str, Any] = {
        "cut": str(END), "cost_frac": COST_FRAC, "target_vol": TARGET_VOL, "timings": timings(btc),
        "forecasts": {coin: forecast_table(frame) for coin, frame in candles.items()},
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
