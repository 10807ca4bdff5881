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
