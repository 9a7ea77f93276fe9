"""lib.ops.charts renders precomputed frames to a PNG, and is the only lib module that touches matplotlib."""

from __future__ import annotations

import ast
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lib.ops.charts import DPI, FIGURE_SIZE_IN, PNG_SIGNATURE, render_equity_chart

LIB = Path(__file__).resolve().parents[3] / "lib"
REPO = LIB.parent


def frames(rows: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    times_ms = 1_767_225_600_000 + np.arange(rows) * 86_400_000
    index = pd.DatetimeIndex(pd.to_datetime(times_ms, unit="ms", utc=True))
    curves = pd.DataFrame({"strategy": 1000.0 + np.arange(rows) * 7.0 % 30,
                           "BTC buy & hold": 1000.0 * 1.01 ** np.arange(rows)}, index=index)
    return curves, curves / curves.cummax() - 1.0


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk that follows the signature."""
    assert png[12:16] == b"IHDR"
    return struct.unpack(">II", png[16:24])


@pytest.mark.parametrize("rows", [1, 2, 30])
def test_renders_a_png_of_the_configured_size(rows: int) -> None:
    png = render_equity_chart(*frames(rows), title="equity vs buy & hold")
    assert png.startswith(PNG_SIGNATURE) and png.endswith(b"IEND\xaeB`\x82")
    assert png_size(png) == (int(FIGURE_SIZE_IN[0] * DPI), int(FIGURE_SIZE_IN[1] * DPI))


def test_same_frames_same_bytes() -> None:
    assert render_equity_chart(*frames(10), title="t") == render_equity_chart(*frames(10), title="t")


def test_nan_gaps_and_empty_frames_still_render() -> None:
    curves, drawdowns = frames(5)
    curves.iloc[1:3, 1] = np.nan
    assert render_equity_chart(curves, drawdowns, title="gaps").startswith(PNG_SIGNATURE)
    empty = render_equity_chart(curves.iloc[:, :0], drawdowns.iloc[:, :0], title="empty")
    assert empty.startswith(PNG_SIGNATURE)


def test_no_other_lib_module_imports_matplotlib() -> None:
    importers = []
    for path in sorted(LIB.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(name.split(".")[0] == "matplotlib" for name in names):
                importers.append(path.name)
    assert sorted(set(importers)) == ["charts.py"]


def test_importing_every_other_lib_module_loads_no_matplotlib() -> None:
    modules = [".".join(path.relative_to(LIB.parent).with_suffix("").parts) for path in sorted(LIB.rglob("*.py"))
               if path.stem not in ("__init__", "charts")]
    code = "import importlib, sys\n" + "".join(f"importlib.import_module({m!r})\n" for m in modules) + \
        "print(sorted(name for name in sys.modules if name.split('.')[0] == 'matplotlib'))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_distribution_chart_is_a_deterministic_png_and_skips_nan() -> None:
    from lib.ops.charts import render_distribution_chart

    panels = {"trial Sharpe": ([0.1, 0.5, float("nan"), 1.2, 0.7], {"BTC": 0.6}), "logits": ([-1.0, 0.5, 2.0], {})}
    first = render_distribution_chart(panels, title="three trials")
    assert first.startswith(PNG_SIGNATURE)
    assert render_distribution_chart(panels, title="three trials") == first
