"""The command palette provider: every screen switch and every action of the current screen."""

from __future__ import annotations

from functools import partial
from typing import Protocol

from textual.command import DiscoveryHit, Hit, Hits, Provider


class PaletteHost(Protocol):
    """What the palette needs of the app (a protocol: the app imports this module)."""

    def screen_titles(self) -> dict[str, str]: ...

    def show_screen(self, mode: str) -> object: ...

    async def run_action(self, action: str, default_namespace: object = None) -> bool: ...


class TunelabCommands(Provider):
    """Lists `Go to <screen>` commands and the active bindings, so ctrl+p reaches everything."""

    def _commands(self) -> list[tuple[str, str, object]]:
        app: PaletteHost = self.app  # type: ignore[assignment]
        commands: list[tuple[str, str, object]] = []
        for mode, title in app.screen_titles().items():
            commands.append(
                (f"Go to {title}", f"Switch to the {title} screen", partial(app.show_screen, mode))
            )
        seen: set[str] = set()
        for key, entry in self.screen.active_bindings.items():
            binding = entry.binding
            binding_id = binding.id or binding.action
            if binding.system or binding_id in seen:
                continue
            seen.add(binding_id)
            title = binding.description or binding.action
            help_text = f"{binding.tooltip or title}  [{key}]"
            run = partial(app.run_action, binding.action, entry.node)
            commands.append((title, help_text, run))
        return commands

    async def discover(self) -> Hits:
        for title, help_text, run in self._commands():
            yield DiscoveryHit(title, run, help=help_text)  # type: ignore[arg-type]

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, run in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), run, help=help_text)  # type: ignore[arg-type]
