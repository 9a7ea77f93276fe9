"""Pure: the sleeve book's risk model (``risk.row_risk``: membership, Ledoit-Wolf, clusters) compiled with numba.

The same operations in the same order as the numpy reference (lib.research.sleeves.risk, which stays). The
reference's window sample is F-ordered (``row_risk``'s column selection leaves it so), so numpy sums each asset's
column pairwise; here the sample is held one asset per row and summed with numpy's pairwise summation
(``sim_kernel._numpy_sum``), and the cross products X'X through the very BLAS routine numpy's ``x.T @ x``
calls (``cblas_dsyrk`` of numpy's own OpenBLAS, upper triangle mirrored), so the covariance is numpy's, usually
bit for bit; BLAS picks its inner kernel by memory alignment, so the last bit may differ between runs (seen once:
4.4e-16), and the tests hold it to 1e-12 (tests/unit/research/sleeves/test_book_kernel.py). Where numpy's BLAS
cannot be found (a build without its bundled OpenBLAS), the routine is a Python callback that runs numpy's
``x.T @ x`` itself: slow, still equal.
Imported lazily (numba loads on first use); compiled code is cached next to this file.
"""

from __future__ import annotations

import ctypes

import numpy as np
from llvmlite import binding, ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from lib.research.sim_kernel import _numpy_sum
from lib.research.sleeves.book_kernel import cluster_labels, correlation_distance

COMPILED_FROM_SHA256 = "1ba6b6082110b8472c5a70a6e7db7c4750b8884fdb9bc4a3042ccfeab437e9cb"  # see test_kernel_cache.py

SYRK_SYMBOL = "coinbot_numpy_dsyrk"  # the name compiled code calls; bound below to numpy's cblas_dsyrk (ILP64)
ROW_MAJOR, UPPER, NOT_TRANSPOSED = 101, 121, 111  # CBLAS enums
_SYRK_TYPE = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64,
                              ctypes.c_double, ctypes.c_int64, ctypes.c_int64, ctypes.c_double, ctypes.c_int64,
                              ctypes.c_int64)


def _numpy_syrk_fallback(order: int, uplo: int, trans: int, n: int, k: int, alpha: float, a: int, lda: int,
                         beta: float, c: int, ldc: int) -> None:  # pragma: no cover (builds without OpenBLAS)
    """C = X'X (upper triangle) for the row-major k x n matrix X at address ``a``, by numpy's own ``x.T @ x``."""
    x = np.ctypeslib.as_array(ctypes.cast(a, ctypes.POINTER(ctypes.c_double)), shape=(k, lda))[:, :n]
    out = np.ctypeslib.as_array(ctypes.cast(c, ctypes.POINTER(ctypes.c_double)), shape=(n, ldc))
    out[:, :n] = np.ascontiguousarray(x).T @ np.ascontiguousarray(x)


def _bind_numpy_syrk() -> object:
    """Points ``SYRK_SYMBOL`` at numpy's cblas_dsyrk (found through numpy's core module, which links its BLAS);
    returns what must stay alive."""
    from numpy._core import _multiarray_umath  # type: ignore[attr-defined]

    core = ctypes.CDLL(_multiarray_umath.__file__)
    for name in ("scipy_cblas_dsyrk64_", "cblas_dsyrk64_"):  # numpy's bundled ILP64 OpenBLAS
        if hasattr(core, name):
            function = getattr(core, name)
            binding.add_symbol(SYRK_SYMBOL, ctypes.cast(function, ctypes.c_void_p).value)
            return function
    callback = _SYRK_TYPE(_numpy_syrk_fallback)
    binding.add_symbol(SYRK_SYMBOL, ctypes.cast(callback, ctypes.c_void_p).value)
    return callback


_SYRK = _bind_numpy_syrk()


@intrinsic
def _syrk_upper(typingctx, size, depth, source, target):  # type: ignore[no-untyped-def]  # pragma: no cover
    """cblas_dsyrk(RowMajor, Upper, NoTrans, size, depth, 1, source, depth, 0, target, size): the upper triangle
    of A A' for A the C-ordered (size, depth) matrix at ``source``."""
    signature = types.void(types.int64, types.int64, types.int64, types.int64)

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        i32, i64, double = ir.IntType(32), ir.IntType(64), ir.DoubleType()
        function_type = ir.FunctionType(ir.VoidType(), [i32, i32, i32, i64, i64, double, i64, i64, double, i64, i64])
        function = cgutils.get_or_insert_function(builder.module, function_type, SYRK_SYMBOL)
        n, k, a, c = args
        builder.call(function, [i32(ROW_MAJOR), i32(UPPER), i32(NOT_TRANSPOSED), n, k, double(1.0), a, k,
                                double(0.0), c, n])
        return context.get_dummy_value()

    return signature, codegen


@njit(cache=True, error_model="numpy")
def gram(columns: np.ndarray) -> np.ndarray:  # pragma: no cover (compiled)
    """``x.T @ x`` for x = ``columns.T`` (an F-ordered (k, n) array, n > 1) as numpy computes it: syrk's upper
    triangle, mirrored."""
    size, depth = columns.shape
    columns = np.ascontiguousarray(columns)
    out = np.empty((size, size))
    _syrk_upper(size, depth, columns.ctypes.data, out.ctypes.data)
    for i in range(size):
        for j in range(i + 1, size):
            out[j, i] = out[i, j]
    return out


@njit(cache=True, error_model="numpy")
def _row_means(columns: np.ndarray) -> np.ndarray:  # pragma: no cover (compiled)
    """``x.mean(axis=0)`` of x = ``columns.T`` (F-ordered): each column a contiguous run, summed pairwise."""
    p, n = columns.shape
    means = np.empty(p)
    for k in range(p):
        means[k] = _numpy_sum(columns[k])
    return means / n


@njit(cache=True, error_model="numpy")
def ledoit_wolf_columns(columns: np.ndarray) -> np.ndarray:  # pragma: no cover (compiled)
    """``risk.ledoit_wolf_covariance`` of the sample x = ``columns.T`` (assets x observations here: the reference
    receives its sample F-ordered, as ``row_risk``'s column selection leaves it), step for step."""
    p, n = columns.shape
    centered = np.empty((p, n))
    means = _row_means(columns)
    for k in range(p):
        for i in range(n):
            centered[k, i] = columns[k, i] - means[k]
    if p == 1:
        out = np.empty((1, 1))
        out[0, 0] = _numpy_sum(centered[0] ** 2) / n
        return out
    squared = centered**2
    trace_terms = _row_means(squared)
    mu = _numpy_sum(trace_terms) / p
    cross = gram(centered)
    delta_raw = _numpy_sum((cross**2).ravel()) / n**2
    beta = (_numpy_sum(gram(squared).ravel()) / n - delta_raw) / (p * n)
    delta = (delta_raw - 2.0 * mu * _numpy_sum(trace_terms) + p * mu**2) / p
    beta = min(beta, delta)
    shrinkage = 0.0 if beta == 0 else beta / delta
    shrunk = (1.0 - shrinkage) * (cross / n)
    for k in range(p):
        shrunk[k, k] += shrinkage * mu
    return shrunk


MIN_VALID_FRAC = 0.9  # as lib.research.sleeves.risk.MIN_VALID_FRAC


@njit(cache=True, error_model="numpy")
def risk_model(
    returns: np.ndarray, row: int, candidates: np.ndarray, window_bars: int, cut: float, periods_per_year: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover (compiled)
    """``risk.row_risk`` in one call: (members as column positions, annualized shrunk covariance, cluster labels
    1..K); no members (the reference's None) when the window starts before the first bar or none qualifies."""
    start = row - window_bars + 1
    none = (np.empty(0, dtype=np.int64), np.empty((0, 0)), np.empty(0, dtype=np.int64))
    if start < 0 or candidates.size == 0:
        return none
    chosen = np.empty(candidates.size, dtype=np.int64)
    m = 0
    for c in range(candidates.size):
        count = 0.0
        for i in range(start, row + 1):
            count += 1.0 if np.isfinite(returns[i, candidates[c]]) else 0.0
        if count / window_bars >= MIN_VALID_FRAC:
            chosen[m] = candidates[c]
            m += 1
    if m == 0:
        return none
    members = chosen[:m].copy()
    columns = np.empty((m, window_bars))  # the window's sample, one asset per row
    for k in range(m):
        for i in range(window_bars):
            value = returns[start + i, members[k]]
            columns[k, i] = value if np.isfinite(value) else 0.0
    covariance = ledoit_wolf_columns(columns) * periods_per_year
    return members, covariance, cluster_labels(correlation_distance(covariance), cut)
