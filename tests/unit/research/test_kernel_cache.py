"""numba's on-disk cache (``@njit(cache=True)``) is invalidated only by a change to the file that defines a kernel,
not by a change to the files whose functions and constants were compiled into it. So every kernel module that
compiles in code from other lib modules records the digest of those modules' sources (``COMPILED_FROM_SHA256``),
and this test fails when they changed without the record being updated. Updating the record edits the kernel
module itself, which is what makes numba recompile it: after a ``git pull``, nobody runs stale compiled code."""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
KERNEL_MODULES = sorted(path.relative_to(REPO_ROOT).as_posix() for path in (REPO_ROOT / "lib").rglob("*.py")
                        if "cache=True" in path.read_text())


def lib_imports(path: str) -> set[str]:
    """The lib modules (repository paths) ``path`` imports from: ``from lib.a.b import c`` is lib/a/b.py, or
    lib/a/b/c.py when c is a module."""
    found = set()
    for node in ast.walk(ast.parse((REPO_ROOT / path).read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lib."):
            for name in (node.module, *(f"{node.module}.{alias.name}" for alias in node.names)):
                if (REPO_ROOT / (candidate := name.replace(".", "/") + ".py")).is_file():
                    found.add(candidate)
    return found


def compiled_from(path: str) -> list[str]:
    """Every lib module whose code or constants can be compiled into ``path``'s kernels: its imports, and
    transitively the imports of the kernel modules among them."""
    seen: set[str] = set()
    todo = [path]
    while todo:
        for module in lib_imports(todo.pop()):
            if module not in seen and module != path:
                seen.add(module)
                if module in KERNEL_MODULES:
                    todo.append(module)
    return sorted(seen)


def sources_digest(modules: list[str]) -> str:
    digest = hashlib.sha256()
    for module in modules:
        digest.update(module.encode() + b"\0" + (REPO_ROOT / module).read_bytes() + b"\0")
    return digest.hexdigest()


def recorded_digest(path: str) -> str | None:
    for node in ast.parse((REPO_ROOT / path).read_text()).body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["COMPILED_FROM_SHA256"]:
            return ast.literal_eval(node.value)
    return None


def test_the_kernel_modules_are_found() -> None:
    assert {"lib/research/sim_kernel.py", "lib/research/live_kernel.py",
            "lib/research/sleeves/book_loop.py"} <= set(KERNEL_MODULES)


@pytest.mark.parametrize("path", KERNEL_MODULES)
def test_each_kernel_records_the_sources_compiled_into_it(path: str) -> None:
    modules = compiled_from(path)
    expected = sources_digest(modules)
    assert recorded_digest(path) == expected, (
        f"{path}: the modules compiled into its kernels changed ({', '.join(modules)}); set its "
        f'COMPILED_FROM_SHA256 = "{expected}" (editing the file is what makes numba recompile it)')
