"""lib.research.numba_blas: numba's BLAS/LAPACK come from scipy's Cython modules without scipy.linalg's package,
give numpy's numbers, and a later ``import scipy.linalg`` still sees its children (run in a fresh interpreter)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
CODE = """
import sys
import numpy as np
from lib.research import sim_kernel  # preloads
from lib.research.sleeves import book_kernel
loaded_early = "scipy.linalg" in sys.modules
rng = np.random.default_rng(0)
a = rng.normal(size=(6, 6)); covariance = a @ a.T + np.eye(6)
book_kernel.risk_parity_weights(covariance, np.ones(6), 1e-12, 100)  # np.dot and np.linalg.solve compiled
still_absent = "scipy.linalg" not in sys.modules
import scipy.linalg
from scipy.linalg import cython_lapack
print(loaded_early, still_absent, scipy.linalg.cython_blas is sys.modules["scipy.linalg.cython_blas"],
      cython_lapack is sys.modules["scipy.linalg.cython_lapack"],
      bool(np.allclose(scipy.linalg.solve(covariance, np.ones(6)), np.linalg.solve(covariance, np.ones(6)))))
"""


def test_numba_runs_without_scipy_linalg_package_and_a_later_import_still_works() -> None:
    result = subprocess.run([sys.executable, "-c", CODE], cwd=REPO, capture_output=True, text=True, timeout=300,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True", "True", "True", "True"]
