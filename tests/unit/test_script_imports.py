"""Each cron script loads only what it uses (a 1 GB VPS; every import is paid at every cron run).

Checked in a fresh interpreter (``sys.modules`` after importing the script module, which is what a cron
start pays before ``main`` runs): run_pipeline only launches children, so it must stay near a bare
interpreter; compute_signals on the default trend core book needs neither pandas-ta/numba nor an exchange
client; fetch_prices and report load ccxt / matplotlib only when they talk to an exchange / draw a chart; no
script loads requests (the HTTP client of lib.ops.alerts) before it posts an alert; backtest loads numba only
when it simulates (the compiled book and walks) and matplotlib when it draws.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

HEAVY = ("pandas", "numpy", "pyarrow", "ccxt", "matplotlib", "pandas_ta", "numba", "scipy", "sklearn", "requests")


def loaded_packages(module: str) -> set[str]:
    """Top-level packages of HEAVY that importing ``module`` loads, in a fresh interpreter."""
    code = (f"import importlib, json, sys; importlib.import_module({module!r}); "
            f"print(json.dumps(sorted({{name.split('.')[0] for name in sys.modules}} & set({list(HEAVY)!r}))))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    return set(json.loads(done.stdout))


def test_run_pipeline_imports_nothing_heavy() -> None:
    assert loaded_packages("scripts.run_pipeline") == set()


@pytest.mark.parametrize(("module", "never"), [
    ("scripts.compute_signals", {"ccxt", "matplotlib", "pandas_ta", "numba", "requests"}),
    ("scripts.fetch_prices", {"ccxt", "matplotlib", "pandas_ta", "numba", "requests"}),
    ("scripts.report", {"ccxt", "matplotlib", "pandas_ta", "numba", "requests"}),
    ("scripts.backtest", {"ccxt", "matplotlib", "pandas_ta", "numba", "requests", "scipy", "sklearn"}),
])  # fmt: skip
def test_a_script_does_not_load_what_it_may_not_use(module: str, never: set[str]) -> None:
    assert loaded_packages(module) & never == set()


def test_the_checker_sees_a_heavy_import() -> None:
    assert {"pandas", "numpy"} <= loaded_packages("lib.research.strategy")


def test_the_alert_path_loads_requests_only_to_post() -> None:
    code = ("import sys; from lib.ops import alerts, config; from lib.core.secrets import Secrets; "
            "alerts.send('x', section=config.AlertsSection(), secrets=Secrets()); "  # not configured: log only
            "print('requests' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
