"""docs/architecture.md names every module, so the map never drifts from the code."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_module_is_in_the_architecture_doc() -> None:
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    missing = []
    for folder in ("engine", "store", "tui", "tunelab"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            name = path.relative_to(ROOT).as_posix()
            if path.name == "__init__.py" and not path.read_text(encoding="utf-8").strip():
                continue
            if path.name == "__main__.py":
                continue
            if f"`{name}`" not in doc:
                missing.append(name)
    assert not missing, "add to docs/architecture.md: " + ", ".join(missing)


def test_every_engine_package_states_what_it_may_import() -> None:
    for init in sorted((ROOT / "engine").glob("*/__init__.py")):
        text = init.read_text(encoding="utf-8")
        assert "May import:" in text, f"{init.relative_to(ROOT)} lacks its import rule"
