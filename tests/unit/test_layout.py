"""The import directions of lib/ (README "Where things live"): core <- data <- research; core <- execution;
ops may import every lib package; scripts may import lib; lib never imports scripts; no import cycles
between modules (function-level imports included). Checked on the ast of every file, and shown to fail on a
copy of lib/ with a forbidden import or a cycle added."""

from __future__ import annotations

import ast
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
ALLOWED: dict[str, frozenset[str]] = {
    "core": frozenset({"core"}),
    "data": frozenset({"core", "data"}),
    "research": frozenset({"core", "data", "research"}),
    "execution": frozenset({"core", "execution"}),
    "ops": frozenset({"core", "data", "research", "execution", "ops"}),
}
"""lib package -> the lib packages its modules may import."""


def module_name(root: Path, path: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules(root: Path) -> dict[str, Path]:
    """Every module of lib/ and scripts/ under ``root`` by dotted name."""
    return {module_name(root, path): path for top in ("lib", "scripts") for path in sorted((root / top).rglob("*.py"))}


def imported_modules(path: Path, name: str, known: set[str]) -> Iterator[tuple[str, int]]:
    """(project module imported, line) for each import in ``path``, at any depth; ``from pkg import mod``
    counts as importing ``pkg.mod`` when that is a module, and relative imports are resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import lib.core.errors.X`-style or a third-party name
                target = target.rpartition(".")[0]
            if target:
                yield target, node.lineno


def layer_of(module: str) -> str | None:
    """core/data/research/execution/ops for a lib module, "scripts" for a script, None for ``lib`` itself."""
    parts = module.split(".")
    if parts[0] == "scripts":
        return "scripts"
    return parts[1] if len(parts) > 1 else None


def import_graph(root: Path) -> dict[str, dict[str, int]]:
    modules = project_modules(root)
    known = set(modules)
    return {name: {target: line for target, line in imported_modules(path, name, known) if target != name}
            for name, path in modules.items()}


def direction_violations(root: Path) -> list[str]:
    problems = []
    for source, targets in import_graph(root).items():
        source_layer = layer_of(source)
        for target, line in targets.items():
            target_layer = layer_of(target)
            if source_layer == "scripts" or target_layer is None:
                continue  # scripts may import lib (and each other is a runtime concern, not a layering one)
            if target_layer == "scripts":
                problems.append(f"{source}:{line} imports {target}: lib never imports scripts")
            elif source_layer is not None and target_layer not in ALLOWED[source_layer]:
                problems.append(f"{source}:{line} imports {target}: lib.{source_layer} may import only "
                                f"{', '.join(sorted(ALLOWED[source_layer]))}")
    return problems


def import_cycles(root: Path) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    graph = {name: sorted(targets) for name, targets in import_graph(root).items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, []):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_lib_imports_flow_one_way() -> None:
    assert direction_violations(REPO_ROOT) == []


def test_no_import_cycles_between_modules() -> None:
    assert import_cycles(REPO_ROOT) == []


def test_every_package_is_known() -> None:
    found = {path.name for path in (REPO_ROOT / "lib").iterdir() if (path / "__init__.py").is_file()}
    assert found == set(ALLOWED)


@pytest.fixture
def lib_copy(tmp_path: Path) -> Path:
    """A copy of lib/ and scripts/ to break on purpose."""
    for top in ("lib", "scripts"):
        shutil.copytree(REPO_ROOT / top, tmp_path / top, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def append_line(path: Path, line: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + line + "\n", encoding="utf-8")


@pytest.mark.parametrize(("module", "line", "expected"), [
    ("lib/core/errors.py", "from lib.ops import config", "lib.core.errors:"),
    ("lib/data/ohlcv.py", "from lib.research.metrics import summary_metrics", "lib.data may import only core, data"),
    ("lib/research/metrics.py", "import lib.execution.orders", "lib.research may import only"),
    ("lib/execution/orders.py", "from lib.ops.config import Config", "lib.execution may import only core, execution"),
    ("lib/execution/risk.py", "from lib.data import ohlcv", "imports lib.data.ohlcv"),
    ("lib/ops/config.py", "from scripts import rebalance", "lib never imports scripts"),
])
def test_a_forbidden_import_is_caught(lib_copy: Path, module: str, line: str, expected: str) -> None:
    assert direction_violations(lib_copy) == []
    append_line(lib_copy / module, f"\n\ndef _added() -> None:\n    {line}")  # a function-level import counts too
    problems = direction_violations(lib_copy)
    assert len(problems) == 1 and expected in problems[0], problems


def test_a_cycle_is_caught(lib_copy: Path) -> None:
    append_line(lib_copy / "lib/core/symbols.py", "from lib.core import paths  # noqa")  # paths imports symbols
    assert import_cycles(lib_copy) == [["lib.core.paths", "lib.core.symbols"]]


def test_relative_imports_are_resolved(lib_copy: Path) -> None:
    append_line(lib_copy / "lib/research/study/grids.py", "from ...ops import config")
    assert any("lib.research.study.grids" in problem and "lib.ops.config" in problem
               for problem in direction_violations(lib_copy))
