"""The compiled sleeve book (lib.research.sleeves.book_kernel) against the numpy reference it replaces, run
side by side at test time: risk parity, clusters and turnover control on random inputs (hypothesis), and the
whole book's targets on synthetic markets and on real daily and hourly Binance data (realdata)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lib.core import storage
from lib.core.symbols import from_slug
from lib.data import ohlcv
from lib.ops.config import Config
from lib.research.sleeves.book import BookOutput, BookSettings, _combine, compute_book
from lib.research.sleeves.combiner import CombinerParams, combine_row, normalized_budgets
from lib.research.sleeves.params import SizingParams, TurnoverParams
from lib.research.sleeves.risk import (
    RowRisk,
    correlation_clusters,
    effective_bets,
    ledoit_wolf_covariance,
    row_risk,
    to_correlation,
)
from lib.research.sleeves.sizing import risk_parity_weights, size_row
from lib.research.sleeves.turnover import control_turnover
from lib.research.strategy import to_wide_panel
from lib.research.universe import UniverseParams, eligible_mask
from tests.helpers import synthetic_candles

TOLERANCE = 1e-12
FRAMES = ("target_weights", "raw_weights", "trend_budgets", "clusters", "reasons")


def _covariance(rng: np.random.Generator, n: int, common: float) -> np.ndarray:
    """A positive-definite covariance with a common factor of strength ``common`` (clusters form when high)."""
    factor = rng.normal(size=(200, 1)) * common
    returns = factor + rng.normal(size=(200, n)) * rng.uniform(0.2, 2.0, size=n)
    return np.cov(returns, rowvar=False) + np.eye(n) * 1e-6


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 25), common=st.floats(0.0, 3.0))
def test_compiled_risk_parity_matches_the_reference(seed: int, n: int, common: float) -> None:
    rng = np.random.default_rng(seed)
    covariance = _covariance(rng, n, common)
    budgets = rng.uniform(0.01, 1.0, size=n)
    from lib.research.sleeves import book_kernel
    from lib.research.sleeves.sizing import ERC_MAX_ITERATIONS, ERC_TOLERANCE

    compiled = book_kernel.risk_parity_weights(covariance, budgets, ERC_TOLERANCE, ERC_MAX_ITERATIONS)
    np.testing.assert_allclose(compiled, risk_parity_weights(covariance, budgets), rtol=0, atol=TOLERANCE)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 25), log_scale=st.floats(-3.0, 2.0))
def test_compiled_risk_parity_matches_the_reference_on_near_collinear_assets(seed: int, n: int,
                                                                            log_scale: float) -> None:
    """The kernel solves the Newton system by Cholesky, the reference by LU: still equal when the assets are almost
    one (correlations ~0.9999, the Hessian badly conditioned), their volatilities 1000x apart and the budgets tiny."""
    rng = np.random.default_rng(seed)
    factor = rng.normal(size=(200, 1))
    returns = (factor + rng.normal(size=(200, n)) * 0.01) * np.logspace(log_scale, log_scale + 3.0, n)
    covariance = np.cov(returns, rowvar=False)
    budgets = rng.uniform(1e-4, 1.0, size=n)
    from lib.research.sleeves import book_kernel
    from lib.research.sleeves.sizing import ERC_MAX_ITERATIONS, ERC_TOLERANCE

    compiled = book_kernel.risk_parity_weights(covariance, budgets, ERC_TOLERANCE, ERC_MAX_ITERATIONS)
    np.testing.assert_allclose(compiled, risk_parity_weights(covariance, budgets), rtol=0, atol=TOLERANCE)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 25), common=st.floats(0.0, 3.0),
       cut=st.floats(-0.9, 0.95))
def test_compiled_clusters_match_the_reference(seed: int, n: int, common: float, cut: float) -> None:
    covariance = _covariance(np.random.default_rng(seed), n, common)
    reference = correlation_clusters(covariance, cut)
    from lib.research.sleeves import book_kernel

    distance = np.sqrt(np.clip((1.0 - to_correlation(covariance)) / 2.0, 0.0, 1.0))
    np.fill_diagonal(distance, np.inf)
    np.testing.assert_array_equal(book_kernel.correlation_distance(covariance), distance)
    np.testing.assert_array_equal(correlation_clusters(covariance, cut, compiled=True), reference)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), rows=st.integers(1, 80), assets=st.integers(1, 12),
       zero_share=st.floats(0.0, 0.9), params=st.builds(
           TurnoverParams, min_weight_frac=st.floats(0, 0.2), band_abs_frac=st.floats(0, 0.2),
           band_rel_frac=st.floats(0, 1), min_rebalance_frac=st.floats(0, 0.3)))
def test_compiled_turnover_matches_the_reference(seed: int, rows: int, assets: int, zero_share: float,
                                                 params: TurnoverParams) -> None:
    rng = np.random.default_rng(seed)
    raw = rng.uniform(-0.05, 0.6, size=(rows, assets))
    raw[rng.uniform(size=raw.shape) < zero_share] = 0.0
    raw[rng.uniform(size=raw.shape) < 0.05] = np.nan
    for row in np.flatnonzero(rng.uniform(size=rows) < 0.3):
        raw[row] = raw[row - 1] if row > 0 else 0.0  # repeated raw rows and flat starts
    targets, reasons = control_turnover(raw, params)
    compiled_targets, compiled_reasons = control_turnover(raw, params, compiled=True)
    np.testing.assert_allclose(compiled_targets, targets, rtol=0, atol=TOLERANCE)
    np.testing.assert_array_equal(compiled_reasons, reasons)


def assert_same_to_1e12(compiled: np.ndarray, reference: np.ndarray) -> None:
    """Equal to 1e-12 of the matrix's scale: the kernel calls the same BLAS routine as numpy (dsyrk for X'X), but
    BLAS picks its inner kernel by the arrays' memory alignment, so the last bit can differ from run to run (seen:
    one entry 4.4e-16 apart in one CI run of 80 random cases); exact equality is not what the book promises."""
    scale = float(np.max(np.abs(reference))) if reference.size else 0.0
    np.testing.assert_allclose(compiled, reference, rtol=1e-12, atol=1e-12 * scale)


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 25), common=st.floats(0.0, 3.0),
       params=st.builds(SizingParams, method=st.sampled_from(["inverse_vol", "risk_parity"]),
                        cluster_aware=st.booleans(), target_vol_annual_frac=st.floats(0.05, 2.0),
                        kelly_fraction=st.sampled_from([0.0, 0.25, 0.5, 1.0]), assumed_sharpe=st.floats(0, 3),
                        max_asset_weight_frac=st.floats(0.05, 1.0)))
def test_compiled_sizing_matches_the_reference(seed: int, n: int, common: float, params: SizingParams) -> None:
    rng = np.random.default_rng(seed)
    covariance = _covariance(rng, n, common) * rng.uniform(0.01, 100.0)
    conviction = rng.choice([np.nan, 0.0, 1 / 3, 2 / 3, 1.0, rng.uniform()], size=n)
    risk = RowRisk(members=np.arange(n), covariance=covariance, clusters=correlation_clusters(covariance, 0.5))
    reference, compiled = size_row(conviction, risk, params), size_row(conviction, risk, params, compiled=True)
    for name in ("weights", "budgets"):
        np.testing.assert_allclose(getattr(compiled, name), getattr(reference, name), rtol=0, atol=TOLERANCE)
    assert compiled.binding == reference.binding
    np.testing.assert_allclose([compiled.vol_scale, compiled.kelly_scale], [reference.vol_scale, reference.kelly_scale],
                               rtol=TOLERANCE)


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 25), n_sleeves=st.integers(1, 3),
       max_book_vol=st.floats(0.05, 2.0), max_asset=st.floats(0.05, 1.0))
def test_compiled_combiner_matches_the_reference(seed: int, n: int, n_sleeves: int, max_book_vol: float,
                                                 max_asset: float) -> None:
    rng = np.random.default_rng(seed)
    covariance = _covariance(rng, n, 1.0) * rng.uniform(0.01, 100.0)
    names = ("trend_core", "xsection_momentum", "ensemble")[:n_sleeves]
    sleeve_row = {name: rng.choice([np.nan, 0.0, -0.1, rng.uniform(0, 0.5)], size=n) for name in names}
    budgets = normalized_budgets(names, tuple(rng.uniform(0.1, 1.0, size=n_sleeves)))
    params = CombinerParams(sleeves=names, budgets=tuple(budgets.values()), max_book_vol_annual_frac=max_book_vol,
                            max_asset_weight_frac=max_asset)
    reference = combine_row(sleeve_row, budgets, covariance, params)
    compiled, bets = _combine(sleeve_row, budgets, covariance, params, compiled=True)
    np.testing.assert_allclose(compiled.weights, reference.weights, rtol=0, atol=TOLERANCE)
    for name in names:
        np.testing.assert_allclose(compiled.contributions[name], reference.contributions[name], rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose([compiled.vol_scale, compiled.predicted_vol_annual_frac, bets],
                               [reference.vol_scale, reference.predicted_vol_annual_frac,
                                effective_bets(reference.weights, covariance)], rtol=TOLERANCE)


def _assert_same_book(compiled: BookOutput, reference: BookOutput) -> None:
    for name in FRAMES:
        pd.testing.assert_frame_equal(getattr(compiled, name), getattr(reference, name), rtol=0, atol=TOLERANCE,
                                      check_exact=False)
    pd.testing.assert_frame_equal(compiled.row_stats, reference.row_stats, rtol=0, atol=TOLERANCE, check_exact=False)
    assert np.isfinite(reference.target_weights.to_numpy()).all() and reference.target_weights.to_numpy().max() > 0


def _books(candles: dict[str, pd.DataFrame], universe: UniverseParams, book: BookSettings, timeframe: str,
           strategy_name: str) -> tuple[BookOutput, BookOutput]:
    panel = to_wide_panel(candles)
    eligible = eligible_mask(panel.close, panel.volume, universe)
    kwargs = {"strategy_name": strategy_name, "settings": book, "timeframe": timeframe}
    return (compute_book(candles, panel.close, eligible, compiled=True, **kwargs),  # type: ignore[arg-type]
            compute_book(candles, panel.close, eligible, compiled=False, **kwargs))  # type: ignore[arg-type]


@pytest.mark.parametrize("strategy_name", ["trend_core", "combined"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_compiled_book_matches_the_reference_on_synthetic_markets(strategy_name: str, seed: int) -> None:
    candles = {f"C{k}/USDT": synthetic_candles(600 - 40 * k, seed=seed * 10 + k, start_bar=40 * k,
                                               drift=0.002 - 0.0007 * k, vol=0.01 + 0.004 * k)
               for k in range(6)}
    book = BookSettings()
    compiled, reference = _books(candles, UniverseParams(min_history_bars=60, min_dollar_volume_quote=0.0), book, "1h",
                                 strategy_name)
    _assert_same_book(compiled, reference)


def _config_book() -> tuple[BookSettings, UniverseParams]:
    config = Config()
    return (BookSettings(trend=config.trend, sizing=config.sizing, combiner=config.combiner,
                         turnover=config.turnover), config.universe)


@pytest.mark.realdata
@pytest.mark.parametrize(("timeframe", "strategy_name"), [("1d", "trend_core"), ("1d", "combined"),
                                                          ("1h", "trend_core")])
def test_compiled_book_matches_the_reference_on_real_data(shared_data_dir: Path, timeframe: str,
                                                          strategy_name: str) -> None:
    candles = {from_slug(path.stem): storage.read_parquet(path, columns=ohlcv.OHLCV_COLUMNS)
               for path in sorted((shared_data_dir / "market" / timeframe).glob("*.parquet"))}
    book, universe = _config_book()
    compiled, reference = _books(candles, universe, book, timeframe, strategy_name)
    _assert_same_book(compiled, reference)


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 25), common=st.floats(0.0, 3.0),
       missing=st.floats(0.0, 0.2), cut=st.floats(-0.9, 0.95), window=st.integers(2, 120))
def test_compiled_risk_model_matches_the_reference(seed: int, n: int, common: float, missing: float, cut: float,
                                                   window: int) -> None:
    rng = np.random.default_rng(seed)
    returns = (rng.normal(size=(150, 1)) * common + rng.normal(size=(150, n))) * rng.uniform(0.001, 0.05, size=n)
    returns[rng.uniform(size=returns.shape) < missing] = np.nan  # some assets fall under MIN_VALID_FRAC
    candidates = np.flatnonzero(rng.uniform(size=n) < 0.8)
    for row in (window - 2, window - 1, 149):
        reference = row_risk(returns, row, candidates, window_bars=window, cluster_correlation=cut,
                             periods_per_year=8766.0)
        compiled = row_risk(returns, row, candidates, window_bars=window, cluster_correlation=cut,
                            periods_per_year=8766.0, compiled=True)
        if reference is None:
            assert compiled is None
            continue
        assert compiled is not None
        np.testing.assert_array_equal(compiled.members, reference.members)
        assert_same_to_1e12(compiled.covariance, reference.covariance)
        np.testing.assert_array_equal(compiled.clusters, reference.clusters)


@pytest.mark.parametrize(("seed", "n", "p"), [(0, 90, 25), (1, 30, 5), (2, 15, 20), (3, 120, 1), (4, 60, 2)])
def test_compiled_ledoit_wolf_matches_the_reference(seed: int, n: int, p: int) -> None:
    rng = np.random.default_rng(seed)
    sample = np.asfortranarray(rng.normal(size=(n, 3)) @ rng.normal(size=(3, p)) + rng.normal(size=(n, p)))
    from lib.research.sleeves import risk_kernel

    columns = np.ascontiguousarray(sample.T)  # row_risk hands the reference an F-ordered sample: the same memory
    assert_same_to_1e12(risk_kernel.ledoit_wolf_columns(columns), ledoit_wolf_covariance(sample))
    if p > 1:
        assert_same_to_1e12(risk_kernel.gram(columns), sample.T @ sample)
