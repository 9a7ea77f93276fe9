"""Pure: walk-forward parameter grids: the small built-in one and ``--grid section.field=v1,v2`` items."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lib.core.errors import ConfigError
from lib.core.timeframes import MS_PER_DAY, timeframe_ms
from lib.research.strategy_params import BOOK_STRATEGIES, PERP_STRATEGY
from lib.research.study.sections import StudyParams, StudySettings, split_key

type Grid = dict[str, tuple[Any, ...]]
BOOK_TARGET_VOL_GRID = (0.3, 0.4, 0.6)  # the sleeve books' built-in walk-forward axis


def default_grid(settings: StudySettings, study: StudyParams) -> Grid:
    """The small built-in grid: how many names to hold (sleeve books: volatility target) x how often to
    rebalance (days -> bars)."""
    bar_ms = timeframe_ms(settings.strategy.timeframe)
    every_bars = tuple(dict.fromkeys(max(1, day * MS_PER_DAY // bar_ms) for day in study.rebalance_days_grid))
    if settings.strategy.name == PERP_STRATEGY:
        return {"perp.top_k": study.perp_top_k_grid, "strategy.rebalance_every_bars": every_bars}
    if settings.strategy.name in BOOK_STRATEGIES:  # spot.top_n means nothing to a sleeve book
        return {"sizing.target_vol_annual_frac": BOOK_TARGET_VOL_GRID, "strategy.rebalance_every_bars": every_bars}
    return {"spot.top_n": study.spot_top_n_grid, "strategy.rebalance_every_bars": every_bars}

def parse_grid(items: Sequence[str], settings: StudySettings) -> Grid:
    """``["spot.top_n=3,5,8", ...]`` -> ``{"spot.top_n": (3, 5, 8)}``, values typed like the field.

    Raises:
        ConfigError: malformed item, unknown key, or a value that does not parse as the field's type.
    """
    grid: Grid = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not text:
            raise ConfigError(f"--grid {item!r} must look like section.field=value1,value2")
        section, field_name = split_key(settings, key.strip())
        current = getattr(getattr(settings, section), field_name)
        grid[f"{section}.{field_name}"] = tuple(_typed(value, current, key) for value in text.split(","))
    return grid

def _typed(text: str, like: Any, key: str) -> Any:
    text = text.strip()
    try:
        if isinstance(like, bool):
            if text.lower() not in ("true", "false"):
                raise ValueError(text)
            return text.lower() == "true"
        if isinstance(like, int | float | str):
            return type(like)(text)
    except ValueError:
        raise ConfigError(f"--grid {key}: {text!r} is not a {type(like).__name__}") from None
    raise ConfigError(f"--grid {key}: fields of type {type(like).__name__} cannot be gridded")
