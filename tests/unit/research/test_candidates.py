"""The candidate registry: the existing grids as trials, daily net returns from the backtester, the matrix."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from lib.core.errors import ConfigError
from lib.core.timeframes import MS_PER_DAY
from lib.ops.config import StrategySection
from lib.research import candidates as registry
from lib.research.backtester import BacktestParams
from lib.research.ensemble import EnsembleParams
from lib.research.portfolio import PerpParams, SpotParams
from lib.research.protocol.frame import check_returns_matrix
from lib.research.study import candidate_runs, history, sections, simulation
from lib.research.universe import UniverseParams
from tests.helpers import SMALL, synthetic_candles

BASE = sections.StudySettings(
    strategy=StrategySection(name="spot_long_only", timeframe="1d", volatility_window_bars=20),
    signals=SMALL, ensemble=EnsembleParams(),
    universe=UniverseParams(min_history_bars=60, dollar_volume_window_bars=10, min_dollar_volume_quote=0.0),
    spot=SpotParams(top_n=2, max_asset_weight_frac=0.5, target_vol_annual_frac=0.0, regime_filter=False),
    perp=PerpParams(top_k=1), backtest=BacktestParams(),
)  # fmt: skip
DAYS = 400


def daily(seed: int, drift: float) -> pd.DataFrame:
    frame = synthetic_candles(DAYS, seed=seed, drift=drift, vol=0.03)
    return frame.assign(timestamp=np.arange(DAYS, dtype=np.int64) * MS_PER_DAY)


def data(end_ms: int = (DAYS - 1) * MS_PER_DAY) -> registry.ResearchData:
    coins = {"BTC": (1, 0.001), "ETH": (2, 0.0005), "ADA": (3, -0.0005)}
    spot = {f"{coin}/USDT": daily(seed, drift) for coin, (seed, drift) in coins.items()}
    perp = {f"{coin}/USDT:USDT": daily(seed, drift) for coin, (seed, drift) in coins.items()}
    settlements = np.arange(0, DAYS * 3, dtype=np.int64) * MS_PER_DAY // 3
    rates = pd.DataFrame({"timestamp": settlements, "rate": np.full(len(settlements), 0.0001)})
    funding = {"BTC/USDT:USDT": rates, "ETH/USDT:USDT": rates, "ADA/USDT:USDT": None}  # ADA: no history -> dropped
    return registry.research_data(spot, perp, funding, end_ms=end_ms, base=BASE, study_params=sections.StudyParams())


def test_registry_lists_the_existing_grids_as_trials() -> None:
    found = registry.candidates(data(), ("spot_long_only", "perp_market_neutral"))
    assert len(found) == 12 and [c.family for c in found].count("spot_long_only") == 6
    assert found[0].name == "spot_long_only[spot.top_n=3,strategy.rebalance_every_bars=1]"
    assert found[-1].settings == {"perp.top_k": 3, "strategy.rebalance_every_bars": 7}
    assert len(registry.candidates(data(), ("perp_market_neutral",))) == 6
    with pytest.raises(ConfigError):
        registry.candidates(data(), ("no_such_family",))


def test_the_sleeve_books_are_registered_with_their_grids_and_evaluate() -> None:
    found = registry.candidates(data(), ("trend_core", "xsection_momentum", "combined"))
    families = [candidate.family for candidate in found]
    assert (families.count("trend_core"), families.count("xsection_momentum"), families.count("combined")) == (15, 1, 4)
    assert found[0].name == "trend_core[]" and found[0].settings == {}
    assert len(registry.candidates(data())) == 12 + 15 + 1 + 4
    run = registry.evaluate_candidate(found[0], data(), start_ms=0, end_ms=None)
    assert run.returns.notna().all() and run.returns.ne(0).any() and run.turnover_annual > 0


def test_research_data_cuts_at_the_end_and_drops_unfunded_perps() -> None:
    cut = data(end_ms=199 * MS_PER_DAY)
    assert registry.last_candle_ms(cut) == 199 * MS_PER_DAY
    assert set(cut.perp_candles) == {"BTC/USDT:USDT", "ETH/USDT:USDT"}
    assert cut.funding_wide is not None and int(cut.funding_wide.index.max()) <= 199 * MS_PER_DAY


def test_evaluated_returns_are_the_backtest_equity_returns_and_form_a_matrix() -> None:
    research = data()
    found = registry.candidates(research, ("spot_long_only", "perp_market_neutral"))
    runs = {c.name: registry.evaluate_candidate(c, research, start_ms=0, end_ms=None) for c in found}
    spot = found[0]
    settings = sections.with_overrides(research.base, spot.settings)
    inputs = simulation.build_simulation_inputs(research.spot_candles, settings, funding_wide=None)
    start = history.default_start_ms(inputs)
    equity = simulation.simulate(inputs, sections.to_backtest_params(settings), start_ms=start).equity
    expected = (equity / equity.shift(1) - 1.0).iloc[1:].to_numpy()
    np.testing.assert_allclose(runs[spot.name].returns.to_numpy(), expected, rtol=0, atol=1e-15)
    assert str(runs[spot.name].returns.index.tz) == "UTC" and runs[spot.name].turnover_annual > 0
    matrix, btc = registry.returns_matrix(runs, registry.benchmark_returns(research))
    check_returns_matrix(matrix, btc)
    assert matrix.shape[1] == 12 and matrix.index[0] == max(run.returns.index[0] for run in runs.values())
    close = research.spot_candles["BTC/USDT"]["close"].to_numpy()
    np.testing.assert_allclose(btc.iloc[-1], close[-1] / close[-2] - 1.0)


def test_only_daily_bars() -> None:
    hourly = pd.Series([0.01, 0.02], index=pd.Index([0, 3_600_000], dtype="int64"))
    with pytest.raises(ConfigError):
        registry.to_daily(hourly)


def test_protocol_v2_starts_every_candidate_from_cash_on_their_common_first_day() -> None:
    coins = {"BTC": (1, 0.001), "ETH": (2, 0.0005)}
    spot = {f"{coin}/USDT": daily(seed, drift) for coin, (seed, drift) in coins.items()}
    perp = {f"{coin}/USDT:USDT": daily(seed, drift) for coin, (seed, drift) in coins.items()}
    settlements = np.arange(300, DAYS * 3, dtype=np.int64) * MS_PER_DAY // 3  # funding from day 100 on
    rates = pd.DataFrame({"timestamp": settlements, "rate": np.full(len(settlements), 0.0001)})
    research = registry.research_data(spot, perp, {symbol: rates for symbol in perp}, end_ms=(DAYS - 1) * MS_PER_DAY,
                                      base=BASE, study_params=sections.StudyParams())
    both = [registry.candidates(research, (family,))[0]
            for family in ("spot_long_only", "trend_core", "perp_market_neutral")]
    # own first days: spot books once 60 bars of history exist (day 59); perps also wait for funding (day 100)
    assert [registry.FAMILIES[c.family].first_ms(c, research, 0) // MS_PER_DAY for c in both] == [59, 59, 100]
    assert candidate_runs.common_start(both, research, start_ms=0) == 100 * MS_PER_DAY
    assert candidate_runs.common_start(both, research, start_ms=150 * MS_PER_DAY) == 150 * MS_PER_DAY
    runs = [registry.evaluate_candidate(c, research, start_ms=100 * MS_PER_DAY, end_ms=None) for c in both]
    # every one from cash on day 100: the first return is day 101's (day 100 is the starting equity)
    assert {run.returns.index[0] for run in runs} == {pd.Timestamp(101 * MS_PER_DAY, unit="ms", tz="UTC")}
    own = registry.evaluate_candidate(both[0], research, start_ms=0, end_ms=None)
    assert own.returns.index[0] == pd.Timestamp(60 * MS_PER_DAY, unit="ms", tz="UTC")
    with pytest.raises(ConfigError):
        candidate_runs.common_start([], research, start_ms=0)


def test_the_first_days_phase_hands_every_composition_to_the_driver_so_no_run_computes_one_again() -> None:
    """On a worker the first-days task works on its own copy of the data: what it computed comes back with the
    day, fills the driver's cache, and the runs (second phase) then reuse it instead of recomputing it."""
    spot = {f"{coin}/USDT": daily(seed, drift) for coin, (seed, drift) in {"BTC": (1, 0.001), "ETH": (2, 0.0)}.items()}
    research = registry.research_data(spot, {}, {}, end_ms=(DAYS - 1) * MS_PER_DAY, base=BASE,
                                      study_params=sections.StudyParams())
    trials = registry.candidates(research, ("spot_long_only",))[:3]

    def on_copies(task, items, shared, *, label):  # a worker: its own copy of the shared data, an empty cache
        return [task(item, dataclasses.replace(shared, data=dataclasses.replace(shared.data, cache={})))
                for item in items]

    start = candidate_runs.common_start(trials, research, start_ms=0, map_tasks=on_copies)
    assert start == max(registry.FAMILIES[c.family].first_ms(c, research, 0) for c in trials)
    computed = dict(research.cache)
    assert computed  # the compositions came back from the "workers"
    runs = candidate_runs.candidate_runs(trials, candidate_runs.CandidateShared(data=research, start_ms=start,
                                                                                 end_ms=None))
    assert research.cache.keys() == computed.keys()  # nothing new was computed by the runs
    assert all(research.cache[key] is computed[key] for key in computed)
    assert list(runs) == [c.name for c in trials] and all(len(run.returns) > 0 for run in runs.values())
