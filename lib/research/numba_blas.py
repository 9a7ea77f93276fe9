"""Edge (module loading): numba's BLAS/LAPACK entry points loaded without running scipy.linalg's package.

numba calls BLAS and LAPACK (``np.dot``, ``np.linalg.solve`` in compiled code) through scipy's Cython modules
``scipy.linalg.cython_blas`` / ``cython_lapack``, and on its first compile or cache load it imports them the
ordinary way, which first runs ``scipy/linalg/__init__.py``: ~0.4 s CPU and tens of MB (scipy's array-API layer,
numpy.f2py, ...) for two extension modules that need none of it. ``preload()`` loads the two extension modules
under their own names, so numba finds them in ``sys.modules``: the same modules, so the same BLAS and the same
numbers. If scipy.linalg is imported later, the two are attached to it as the import system would have done.
Called by the compiled kernels' modules before numba is imported.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

PACKAGE = "scipy.linalg"
CHILDREN = ("cython_blas", "cython_lapack")


def preload() -> None:
    """Load ``scipy.linalg.cython_blas`` / ``cython_lapack`` alone (no-op once scipy.linalg or they are loaded; an
    unusual scipy layout is left to numba's own import)."""
    if PACKAGE in sys.modules or all(f"{PACKAGE}.{child}" in sys.modules for child in CHILDREN):
        return
    scipy_spec = importlib.util.find_spec("scipy")  # finds, does not import
    if scipy_spec is None or scipy_spec.origin is None:
        return
    directory = Path(scipy_spec.origin).parent / "linalg"
    paths = [_extension(directory, child) for child in CHILDREN]
    if any(path is None for path in paths):
        return
    for child, path in zip(CHILDREN, paths, strict=True):
        spec = importlib.util.spec_from_file_location(f"{PACKAGE}.{child}", path)
        if spec is None or spec.loader is None:
            return
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    sys.meta_path.insert(0, _AttachChildren())


def _extension(directory: Path, name: str) -> Path | None:
    candidates = (directory / f"{name}{suffix}" for suffix in importlib.machinery.EXTENSION_SUFFIXES)
    return next((path for path in candidates if path.is_file()), None)


class _AttachChildren(importlib.abc.MetaPathFinder):
    """On the first real import of scipy.linalg: finds it as usual, then sets the preloaded children as its
    attributes (``scipy.linalg.cython_blas`` works as after an ordinary import). Removes itself."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != PACKAGE:
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        execute = spec.loader.exec_module

        def exec_module(module: ModuleType) -> None:
            execute(module)
            for child in CHILDREN:
                if f"{PACKAGE}.{child}" in sys.modules and not hasattr(module, child):
                    setattr(module, child, sys.modules[f"{PACKAGE}.{child}"])

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec
