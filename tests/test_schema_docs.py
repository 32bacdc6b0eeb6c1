"""docs/schema.md documents every table and column of the real schema, no more, no less."""

from __future__ import annotations

import re
from pathlib import Path

from tunelab.store import Store

DOC = Path(__file__).resolve().parents[1] / "docs" / "schema.md"


def documented_schema() -> dict[str, set[str]]:
    tables: dict[str, set[str]] = {}
    current: str | None = None
    for line in DOC.read_text(encoding="utf-8").splitlines():
        heading = re.match(r"^## `([a-z_]+)`", line)
        if heading:
            current = heading.group(1)
            tables[current] = set()
            continue
        row = re.match(r"^\| ([a-z_]+) \| ([A-Z]+) \|", line)
        if current and row:
            tables[current].add(row.group(1))
    return tables


def test_schema_doc_matches_database(store: Store) -> None:
    real = {
        name: {c.name for c in store.db[name].columns}  # type: ignore[union-attr]
        for name in store.db.table_names()
        if not name.startswith("sqlite_")
    }
    assert documented_schema() == real


def test_schema_doc_column_types_match(store: Store) -> None:
    doc = DOC.read_text(encoding="utf-8")
    for table in store.db.table_names():
        for column in store.db[table].columns:  # type: ignore[union-attr]
            declared = column.type.upper() or "TEXT"
            assert f"| {column.name} | {declared} |" in doc, (table, column.name, declared)
