"""The footer of tunelab's main screens: Textual's, composed again only when its keys change.

Textual's `Footer` rebuilds every key widget whenever its screen publishes a bindings update,
which a screen does each time it is shown: most of a screen switch's time. The keys rarely
differ between two visits, so this footer keeps its widgets while they would come out the same.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.widgets import Footer
from textual.widgets._footer import FooterKey

if TYPE_CHECKING:
    from textual.app import ComposeResult
    from textual.screen import Screen

KeysShown = tuple[tuple[str, str, str, str, bool, str, str | None], ...]
"""(key, key display, description, action, enabled, tooltip, group) of each key on show."""


class ScreenFooter(Footer):
    """A `Footer` that skips its rebuild when the screen's keys are what it already shows."""

    def __init__(self, *, show_command_palette: bool = True, compact: bool = False) -> None:
        super().__init__(show_command_palette=show_command_palette, compact=compact)
        self.keys_shown: KeysShown | None = None
        """What the last composition showed; None before the first."""

    def keys_for(self, screen: Screen[object]) -> KeysShown:
        """What a composition over `screen`'s bindings now would show."""
        palette_key = self.app.COMMAND_PALETTE_BINDING
        return tuple(
            (
                binding.key, self.app.get_key_display(binding), binding.description,
                binding.action, enabled, tooltip,
                binding.group.description if binding.group else None,
            )
            for key, (_node, binding, enabled, tooltip) in screen.active_bindings.items()
            if binding.show or (key == palette_key and self.show_command_palette)
        )  # fmt: skip

    def bindings_changed(self, screen: Screen[object]) -> None:
        if self.keys_shown is not None and self.keys_shown == self.keys_for(screen):
            return
        super().bindings_changed(screen)

    def compose(self) -> ComposeResult:
        # Before the screen's first bindings update the footer composes empty: nothing shown.
        self.keys_shown = self.keys_for(self.screen) if self._bindings_ready else None
        for widget in super().compose():
            if self.compact and isinstance(widget, FooterKey):
                # A key starts compact and restyles itself when it turns so on mount; adding
                # the class first spares each key that second pass over the stylesheet.
                widget.add_class("-compact", update=False)
            yield widget
