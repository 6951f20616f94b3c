"""The service package's modules import one another without a loop, and only the app imports the routers
(issue 16: the routes' dependencies live in service/deps.py, their state in service/state.py)."""

from __future__ import annotations

import ast
import subprocess
import sys
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

import mimicry.service

SERVICE = Path(mimicry.service.__file__).parent
PACKAGE = "mimicry.service"


def _module_level_imports(tree: ast.Module) -> list[ast.ImportFrom | ast.Import]:
    """Imports run when the module is imported (TYPE_CHECKING blocks included: a loop through one is
    still a loop a reader has to untangle); not those inside functions, which run later."""
    found: list[ast.ImportFrom | ast.Import] = []
    stack: list[ast.AST] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            stack.extend(ast.iter_child_nodes(node))
    return found


def _service_imports(path: Path, modules: set[str]) -> set[str]:
    """The service modules ``path`` imports at module level."""
    out: set[str] = set()
    for node in _module_level_imports(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif node.level == 1:  # from . import x / from .x import y
            names = [f"{PACKAGE}.{node.module}"] if node.module else [f"{PACKAGE}.{a.name}" for a in node.names]
        elif node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            names = []
        out |= {n.removeprefix(PACKAGE + ".") for n in names if n.startswith(PACKAGE + ".")} & modules
    return out


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = {p.stem for p in SERVICE.glob("*.py")}
    return {m: _service_imports(SERVICE / f"{m}.py", modules) for m in modules}


def test_the_service_modules_import_one_another_without_a_loop(graph):
    try:
        tuple(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        pytest.fail(f"import loop in mimicry.service: {' -> '.join(exc.args[1])}")


def test_no_module_imports_the_app_and_only_the_app_imports_the_routers(graph):
    assert [m for m, imported in graph.items() if "app" in imported] == []
    routers = {"detect", "artists", "ops"}
    assert {m for m, imported in graph.items() if imported & routers} - routers == {"app"}


@pytest.mark.parametrize("module", ["state", "deps", "auth", "detect", "artists", "ops", "app"])
def test_each_module_imports_on_its_own(module):
    """In a fresh interpreter, first: a loop that the order of other imports hides would show here."""
    subprocess.run([sys.executable, "-c", f"import {PACKAGE}.{module}"], check=True, timeout=120)
