"""Pure: the ``[signals]`` section (SignalParams) and the base signal names.

Shared by ``lib.research.indicators`` (default lengths) and ``lib.research.signals`` (the scores) without
either importing the other, and light enough for the config loader: no pandas, no pandas-ta.
"""

from __future__ import annotations

from dataclasses import dataclass

from lib.core.errors import ConfigError

SIGNAL_NAMES: tuple[str, ...] = ("trend", "momentum", "mean_reversion", "volatility", "volume")
"""Base signal names, in the column order of ``compute_base_signals``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SignalParams:
    """TOML section ``[signals]``. All lengths and windows are in bars of the configured timeframe."""

    ema_fast_length: int = 20
    ema_slow_length: int = 100
    adx_length: int = 14
    trend_use_supertrend: bool = False  # pandas-ta loops in Python: ~0.6 s per 35k bars per asset
    supertrend_length: int = 10
    supertrend_multiplier: float = 3.0
    roc_lengths: tuple[int, ...] = (10, 30, 90)
    rsi_length: int = 14
    bbands_length: int = 20
    bbands_std: float = 2.0
    atr_length: int = 14
    realized_vol_length: int = 20
    obv_flow_length: int = 20
    norm_window_bars: int = 250
    norm_min_bars: int = 60
    score_clip: float = 3.0

    def __post_init__(self) -> None:
        for key in ("adx_length", "supertrend_length", "rsi_length", "atr_length", "obv_flow_length"):
            _require(getattr(self, key) >= 1, key, "must be >= 1", getattr(self, key))
        for key in ("ema_fast_length", "bbands_length", "realized_vol_length"):
            _require(getattr(self, key) >= 2, key, "must be >= 2", getattr(self, key))
        _require(
            self.ema_fast_length < self.ema_slow_length,
            "ema_fast_length",
            f"must be < ema_slow_length ({self.ema_slow_length})",
            self.ema_fast_length,
        )
        lengths = self.roc_lengths
        ok_lengths = len(lengths) > 0 and all(n >= 1 for n in lengths) and len(set(lengths)) == len(lengths)
        _require(ok_lengths, "roc_lengths", "must be a non-empty tuple of distinct ints >= 1", lengths)
        _require(
            self.supertrend_multiplier > 0, "supertrend_multiplier", "must be > 0", self.supertrend_multiplier
        )
        _require(self.bbands_std > 0, "bbands_std", "must be > 0", self.bbands_std)
        _require(self.norm_window_bars >= 2, "norm_window_bars", "must be >= 2", self.norm_window_bars)
        _require(
            2 <= self.norm_min_bars <= self.norm_window_bars,
            "norm_min_bars",
            f"must be in [2, norm_window_bars={self.norm_window_bars}]",
            self.norm_min_bars,
        )
        _require(self.score_clip > 0, "score_clip", "must be > 0", self.score_clip)


def _require(ok: bool, key: str, rule: str, value: object) -> None:
    if not ok:
        raise ConfigError(f"signals.{key} {rule}, got {value!r}")
