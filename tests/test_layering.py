"""Dependencies run one way: storage <- configs <- models, beam_jobs <- pipeline; only the CLI imports the CLI.

Every import statement is read from the source (function-level imports included), so a lazy
import cannot hide a dependency that points the wrong way.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("storage", "configs", "models", "beam_jobs", "pipeline")

# package -> the project packages it may import (besides itself)
ALLOWED = {
    "storage": set(),
    "configs": {"storage"},
    "models": {"configs", "storage"},
    "beam_jobs": {"configs", "storage"},
    "pipeline": {"storage", "configs", "models", "beam_jobs"},
}


def _modules() -> list[pathlib.Path]:
    return sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py"))


def _imported(path: pathlib.Path) -> set[str]:
    """Dotted names of the project modules ``path`` imports."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name.split(".")[0] in PACKAGES}


def _module_name(path: pathlib.Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


@pytest.mark.parametrize("path", _modules(), ids=_module_name)
def test_imports_point_one_way(path):
    package = path.relative_to(ROOT).parts[0]
    wrong = sorted(name for name in _imported(path)
                   if name.split(".")[0] not in ALLOWED[package] | {package})
    assert not wrong, f"{_module_name(path)} imports {wrong} (allowed: {sorted(ALLOWED[package])})"


@pytest.mark.parametrize("path", _modules(), ids=_module_name)
def test_no_library_module_imports_a_command(path):
    module = _module_name(path)
    commands = sorted(name for name in _imported(path) if name.startswith("pipeline.cli"))
    if module.startswith("pipeline.cli."):
        # command modules share argument helpers, never each other; `python -m pipeline.cli` runs main
        allowed = ("pipeline.cli.arguments", "pipeline.cli.main") if module == "pipeline.cli.__main__" \
            else ("pipeline.cli.arguments",)
        commands = [name for name in commands if not name.startswith(allowed)]
    assert not commands, f"{module} imports the command-line modules {commands}"


def test_the_checks_see_a_wrong_way_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from pipeline.pretrain import loop\n    import pipeline.cli.main\n")
    assert _imported(bad) >= {"pipeline.pretrain", "pipeline.pretrain.loop", "pipeline.cli.main"}


def _import_graph() -> dict[str, set[str]]:
    """Project module -> the project modules it imports (a package stands for its ``__init__``)."""
    modules = {_module_name(path).removesuffix(".__init__"): path for path in _modules()}
    return {name: {imported for imported in _imported(path) if imported in modules and imported != name}
            for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Groups of modules that import each other, directly or through others (Tarjan's strongly connected
    components of more than one module)."""
    index: dict[str, int] = {}
    lowest: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = lowest[module] = len(index)
        stack.append(module)
        for imported in sorted(graph[module]):
            if imported not in index:
                visit(imported)
                lowest[module] = min(lowest[module], lowest[imported])
            elif imported in stack:
                lowest[module] = min(lowest[module], index[imported])
        if lowest[module] == index[module]:
            group = stack[stack.index(module):]
            del stack[stack.index(module):]
            if len(group) > 1:
                found.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_no_module_imports_itself_through_others():
    assert _cycles(_import_graph()) == []


def test_the_cycle_check_sees_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
