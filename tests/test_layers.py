"""The layer rules, enforced: tui → engine → store, an order between engine sub-packages,
no import cycles, and no heavy imports where they don't belong.

import-linter cannot follow the `package-dir` mapping of an editable install, so the
contracts are checked here: statically (every import statement, deferred ones included)
and at run time (what importing a package actually loads).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PACKAGE_DIRS = {
    "tunelab": "tunelab",
    "engine": "tunelab.engine",
    "store": "tunelab.store",
    "tui": "tunelab.tui",
    "themes": "tunelab.themes",
}

FORBIDDEN = {
    "store": ("textual", "torch", "transformers", "peft", "tunelab.engine", "tunelab.tui"),
    "engine": ("textual", "tunelab.tui", "tunelab.cli"),
}

ENGINE_ORDER = [
    ["errors"],
    ["processes", "text_diff"],
    ["data"],
    ["models"],
    ["prompts"],
    ["generation"],
    ["judge"],
    ["evaluation", "feedback"],
    ["training", "compare"],
    ["curves", "optimize", "robustness", "sweeps"],
    ["report"],
    ["serving"],
    ["demo"],
    ["api"],
]
"""Engine sub-packages, lowest first: one may import only from its own rank or below, and
packages sharing a rank never import each other (compare never imports training)."""


def module_files() -> dict[str, tuple[Path, bool]]:
    """Every tunelab module by its installed name: (file, is_package)."""
    modules: dict[str, tuple[Path, bool]] = {}
    for folder, package in PACKAGE_DIRS.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts = parts[:-1]
            modules[".".join([package, *parts])] = (path, is_package)
    return modules


def imports_of(name: str, path: Path, is_package: bool) -> list[tuple[int, str]]:
    """(line, module) of every import in the file, relative ones resolved, deferred included.

    `from a import b` yields both `a` and `a.b`, since `b` may be a module.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if is_package else name.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


MODULES = module_files()


def import_graph() -> dict[str, set[str]]:
    return {
        name: {m for _, m in imports_of(name, path, pkg) if m in MODULES and m != name}
        for name, (path, pkg) in MODULES.items()
    }


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_nothing_forbidden(layer: str) -> None:
    violations = []
    for name, (path, is_package) in sorted(MODULES.items()):
        if not name.startswith(PACKAGE_DIRS[layer]):
            continue
        for line, module in imports_of(name, path, is_package):
            for banned in FORBIDDEN[layer]:
                if module == banned or module.startswith(banned + "."):
                    violations.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not violations, "\n".join(violations)


def _engine_unit(module: str) -> str | None:
    """The engine sub-package (or top-level module) a module belongs to."""
    prefix = "tunelab.engine."
    return module[len(prefix) :].split(".")[0] if module.startswith(prefix) else None


def test_engine_sub_packages_import_only_downwards() -> None:
    rank = {unit: i for i, units in enumerate(ENGINE_ORDER) for unit in units}
    engine_units = {
        u for m in MODULES if (u := _engine_unit(m)) is not None and not m.endswith("engine")
    }
    assert engine_units <= set(rank), f"add to ENGINE_ORDER: {sorted(engine_units - set(rank))}"
    violations = []
    for name, (path, is_package) in sorted(MODULES.items()):
        unit = _engine_unit(name)
        if unit is None:
            continue
        for line, module in imports_of(name, path, is_package):
            target = _engine_unit(module)
            if target is None or target == unit or target not in rank:
                continue
            if rank[target] >= rank[unit]:
                violations.append(f"{path.relative_to(ROOT)}:{line} ({unit}) imports {module}")
    assert not violations, "\n".join(violations)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_among_tunelab_modules() -> None:
    # A package's __init__ importing its own modules is not a cycle worth failing on;
    # every other edge counts, deferred imports included.
    graph = {
        name: {m for m in deps if not name.startswith(m + ".")}
        for name, deps in import_graph().items()
    }
    cycles = _cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" ↔ ".join(c) for c in cycles)


def _loaded_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print(' '.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return set(out.split())


def test_importing_store_and_engine_loads_neither_textual_nor_torch() -> None:
    engine_modules = sorted(
        name
        for name in MODULES
        if name.startswith("tunelab.engine") and not name.endswith(".worker")
    )
    assert len(engine_modules) > 30, "the engine's modules were not found"
    code = "import tunelab.store\n" + "\n".join(f"import {m}" for m in engine_modules)
    loaded = _loaded_after(code)
    assert "textual" not in loaded
    assert "torch" not in loaded, "an engine module imports torch at module level"


def test_cli_help_does_not_import_torch() -> None:
    loaded = _loaded_after("import tunelab.cli")
    assert "torch" not in loaded
    assert "transformers" not in loaded
    assert "textual" not in loaded
    result = subprocess.run(
        [sys.executable, "-m", "tunelab", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0
    assert "Usage" in result.stdout
