"""Shared fixtures: the repo root and the optional real-data copy in ../shared/data."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """../shared/data (real Binance candles and funding); the test is skipped when it is absent."""
    if not (SHARED_DATA / "market").is_dir():
        pytest.skip("../shared/data is not present on this machine")
    return SHARED_DATA
