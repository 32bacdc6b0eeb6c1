"""The table rows of docs/keys.md: `python -m tunelab.tui.keys_doc` prints them."""

from __future__ import annotations

from tunelab.tui.app import TunelabApp
from tunelab.tui.keys import all_bindings
from tunelab.tui.screens.help import typed_keys


def markdown_rows() -> list[str]:
    """One row per binding: id, its default keys as typed (`?`, `/`, `ctrl+p`), owner, tooltip."""
    return [
        f"| `{binding.id}` | `{typed_keys(binding.key)}` | {owner} | {binding.tooltip} |"
        for owner, binding in all_bindings(TunelabApp)
    ]


if __name__ == "__main__":
    print("\n".join(markdown_rows()))
