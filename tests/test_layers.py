"""The layer rules, enforced: tui → engine → store, and no heavy imports where they don't belong.

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

FORBIDDEN = {
    "store": ("textual", "torch", "transformers", "peft", "tunelab.engine", "tunelab.tui"),
    "engine": ("textual", "tunelab.tui"),
}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_nothing_forbidden(layer: str) -> None:
    violations = []
    for path in sorted((ROOT / layer).rglob("*.py")):
        for line, module in imported_modules(path):
            for banned in FORBIDDEN[layer]:
                if module == banned or module.startswith(banned + "."):
                    violations.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not violations, "\n".join(violations)


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
        f"tunelab.engine.{p.stem}"
        for p in (ROOT / "engine").glob("*.py")
        if p.stem not in ("__init__", "__main__", "job_worker")
    )
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
