"""The pure/edge split of lib/ is enforced here: a pure module imports no I/O module, opens no file,
reads no clock and no environment. Line 1 of every lib module's docstring says which kind it is."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parents[2] / "lib"
FORBIDDEN_IMPORTS = {"ccxt", "requests", "dotenv", "lib.core.storage", "lib.execution.ccxt_client",
                     "lib.execution.ccxt_venue", "lib.execution.binance_keys", "lib.ops.alerts", "lib.ops.runner",
                     "lib.ops.config", "lib.data.fetcher", "lib.data.stored", "lib.ops.charts", "lib.core.retry",
                     "os", "time", "socket", "subprocess", "shutil", "urllib", "http", "random", "loguru", "matplotlib"}
FORBIDDEN_CALLS = {"open", "print", "input", "exec", "eval"}
FORBIDDEN_ATTRIBUTES = {("time", "time"), ("datetime", "now"), ("datetime", "utcnow"), ("date", "today"),
                        ("os", "environ"), ("Path", "read_text"), ("Path", "write_text")}


def lib_modules() -> list[Path]:
    return sorted(path for path in LIB.rglob("*.py") if path.name != "__init__.py")


def first_docstring_line(path: Path) -> str:
    docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
    return docstring.splitlines()[0] if docstring else ""


def pure_modules() -> list[Path]:
    return [path for path in lib_modules() if first_docstring_line(path).startswith("Pure")]


@pytest.mark.parametrize("path", lib_modules(), ids=lambda p: p.name)
def test_every_lib_module_declares_its_kind(path: Path) -> None:
    assert first_docstring_line(path).startswith(("Pure", "Edge")), f"{path.name}: docstring line 1 must say Pure/Edge"


@pytest.mark.parametrize("path", pure_modules(), ids=lambda p: p.name)
def test_pure_module_does_no_io(path: Path) -> None:
    tree = ast.parse(path.read_text())
    problems: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            names = []
        for name in names:
            if name in FORBIDDEN_IMPORTS or name.split(".")[0] in FORBIDDEN_IMPORTS:
                problems.append(f"imports {name}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FORBIDDEN_CALLS:
            problems.append(f"calls {node.func.id}() at line {node.lineno}")
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and (node.value.id, node.attr) in FORBIDDEN_ATTRIBUTES):
            problems.append(f"uses {node.value.id}.{node.attr} at line {node.lineno}")
    assert not problems, f"{path.name} is declared pure but: {problems}"


def test_pandas_ta_is_imported_only_by_indicators() -> None:
    importers = [path.name for path in lib_modules() if "pandas_ta" in path.read_text()
                 and any(isinstance(node, ast.Import | ast.ImportFrom) and "pandas_ta" in ast.dump(node)
                         for node in ast.walk(ast.parse(path.read_text())))]
    assert importers in ([], ["indicators.py"])


def test_there_are_pure_modules() -> None:
    assert len(pure_modules()) >= 5
