"""Shared fixtures: the repo root and the optional real-data copy in ../shared/data."""

from __future__ import annotations

import decimal
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA_ENV = "COINBOT_SHARED_DATA"
"""Where the real data is, when not at ../shared/data (e.g. a worktree one level deeper)."""
REQUIRE_SHARED_DATA_ENV = "COINBOT_REQUIRE_SHARED_DATA"
"""Set to 1 (.ci/run does) to make a missing ../shared/data FAIL the real-data tests instead of skipping them."""
SHARED_DATA = Path(os.environ.get(SHARED_DATA_ENV) or REPO_ROOT.parent / "shared" / "data")


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """../shared/data (real Binance candles and funding); the test is skipped when it is absent, or fails
    when $COINBOT_REQUIRE_SHARED_DATA is 1 (CI has the data: a skip there would hide a broken path)."""
    if not (SHARED_DATA / "market").is_dir():
        if os.environ.get(REQUIRE_SHARED_DATA_ENV) == "1":
            pytest.fail(f"{SHARED_DATA} is not present but {REQUIRE_SHARED_DATA_ENV}=1: the real-data tests must run")
        pytest.skip("../shared/data is not present on this machine")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def default_decimal_context() -> Iterator[None]:
    """Every test starts in Python's default Decimal context and leaves the thread's as it found it: a test that
    calls ccxt directly (its decimal_to_precision sets the thread's rounding) must not change the Decimal results of
    the tests after it in the same worker (production confines ccxt: lib.execution.ccxt_client)."""
    with decimal.localcontext(decimal.Context()):
        yield
