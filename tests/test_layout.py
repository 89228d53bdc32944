"""The code's shape: no import cycles between the project's modules at import time, small
modules, no cog that imports another, and tests that share helpers only through
tests/support/."""

from __future__ import annotations

import ast
from pathlib import Path

from engine.settings import PROJECT_ROOT

PACKAGES = ("engine", "bot", "training", "bench")


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the project's packages."""
    modules = {}
    for package in PACKAGES:
        for path in (PROJECT_ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(PROJECT_ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def import_time_imports(tree: ast.Module) -> set[str]:
    """Names imported while the module loads: its top level, including `if` and `try`
    blocks, but not `if TYPE_CHECKING:` blocks or function bodies (run later)."""
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If):
                if "TYPE_CHECKING" not in ast.unparse(node.test):
                    visit(node.body)
                    visit(node.orelse)
            elif isinstance(node, ast.Try):
                for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                    visit(block)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)

    visit(tree.body)
    return found


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return cycles


def test_no_import_cycles_between_modules() -> None:
    modules = module_files()
    graph = {
        name: {imported for imported in import_time_imports(ast.parse(path.read_text())) if imported in modules}
        - {name}
        for name, path in modules.items()
    }
    assert len(modules) > 100
    assert find_cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c"]]


def every_import(tree: ast.Module) -> set[str]:
    """Every module a file names in an import, wherever the import is (absolute imports)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_no_cog_imports_another_cog() -> None:
    """Cogs share code through helper modules (bot.commands.common, bot.permissions), never
    through each other: a cog can be changed, or left unloaded, on its own."""
    from bot.app import COGS

    modules = module_files()
    assert len(COGS) > 5 and set(COGS) <= set(modules)
    for cog in COGS:
        tree = ast.parse(modules[cog].read_text())
        assert not [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level], cog
        assert every_import(tree) & (set(COGS) - {cog}) == set(), cog


def test_every_import_finds_imports_anywhere_in_a_file() -> None:
    source = "import a.b\nif TYPE_CHECKING:\n    from c import d\ndef f():\n    from bot.commands import dj\n"
    assert every_import(ast.parse(source)) == {"a.b", "c", "c.d", "bot.commands", "bot.commands.dj"}


def test_test_modules_share_helpers_only_through_tests_support() -> None:
    """A test module imported by another runs twice (once as a test, once as a helper),
    and its fixtures leak; shared helpers live in tests/support/ (or a conftest.py)."""
    offenders = []
    for path in (PROJECT_ROOT / "tests").rglob("test_*.py"):
        offenders += [
            f"{path.relative_to(PROJECT_ROOT)}: {name}"
            for name in every_import(ast.parse(path.read_text()))
            if name.startswith("tests.") and not name.startswith("tests.support")
        ]
    assert offenders == []


def test_no_module_over_400_lines_outside_tests() -> None:
    """Small modules with one job each: a module past 400 lines holds more than one."""
    long = {name: n for name, path in module_files().items() if (n := len(path.read_text().splitlines())) > 400}
    assert long == {}
