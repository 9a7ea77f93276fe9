"""Edge (paths only): which candle and funding files a research script reads, from its --data-dir/--symbols
arguments and the config. The reading itself is lib.data.stored."""

from __future__ import annotations

from pathlib import Path

from lib.data import stored
from lib.ops.runner import RunContext


def series_files(ctx: RunContext, timeframe: str, *, is_perp: bool) -> dict[str, tuple[Path, Path]]:
    """symbol -> (candle file, funding file); see lib.data.stored.series_files."""
    args, config = ctx.args, ctx.config
    return stored.series_files(
        timeframe, is_perp=is_perp, data_dir=getattr(args, "data_dir", None), symbols=getattr(args, "symbols", None),
        configured_symbols=config.data.symbols, exchange_id=config.exchange.id, data_root=config.data_dir,
        state_root=config.state_dir,
    )  # fmt: skip
