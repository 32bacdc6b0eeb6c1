"""The command palette provider: every screen switch and every action of every screen.

An action of another screen switches to that screen first, then runs there, so ctrl+p on Home
finds "Eval (Runs)" or "Launch (Fine-tune)". Each command shows its key (after any remapping).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.dom import DOMNode
from textual.markup import escape
from textual.screen import Screen


class PaletteHost(Protocol):
    """What the palette needs of the app (a protocol: the app imports this module)."""

    def screen_titles(self) -> dict[str, str]: ...

    def screen_type(self, mode: str) -> type[DOMNode]: ...

    def show_screen(self, mode: str) -> object: ...

    def key_for(self, binding: Binding) -> str: ...

    async def run_screen_action(self, mode: str, action: str) -> None: ...

    async def run_action(self, action: str, default_namespace: DOMNode | None = None) -> bool: ...


@dataclass(frozen=True)
class PaletteCommand:
    title: str
    help: str
    run: Callable[[], Awaitable[object] | object]


def screen_bindings(screen_type: type[DOMNode], stop_at: type[DOMNode]) -> list[Binding]:
    """The bindings a screen class declares itself or inherits from its own bases (a shared
    base such as the catalog's), not those of `stop_at` and above (the help key)."""
    found: list[Binding] = []
    for cls in reversed(screen_type.__mro__):
        if not isinstance(cls, type) or not issubclass(cls, stop_at) or cls is stop_at:
            continue
        found.extend(b for b in cls.__dict__.get("BINDINGS", []) if isinstance(b, Binding))
    return found


def palette_commands(app: PaletteHost, screen: Screen[Any]) -> list[PaletteCommand]:
    """Go-to commands, the app's own actions, every screen's actions and, for the screen on
    show, the keys of its focused widgets (a table's rating keys)."""
    from tunelab.tui.screens.base import TunelabScreen

    titles = app.screen_titles()
    commands: list[PaletteCommand] = []
    seen: set[str] = set()
    for mode, title in titles.items():
        go = f"show-{mode}"
        seen.add(go)
        key = _key_of(app, go)
        commands.append(
            PaletteCommand(f"Go to {title}", f"Switch to the {title} screen{key}",
                           partial(app.show_screen, mode))
        )  # fmt: skip
    for entry in screen.active_bindings.values():
        binding = entry.binding
        binding_id = binding.id or binding.action
        if binding.system or binding_id in seen or isinstance(entry.node, Screen):
            continue  # screen actions are listed per screen below
        seen.add(binding_id)
        title = binding.description or binding.action
        commands.append(
            PaletteCommand(title, _help(app, binding), partial(app.run_action, binding.action,
                                                               entry.node))
        )  # fmt: skip
    for binding in screen_bindings(TunelabScreen, DOMNode):
        binding_id = binding.id or binding.action
        if binding_id not in seen:
            seen.add(binding_id)
            commands.append(
                PaletteCommand(binding.description, _help(app, binding),
                               partial(app.run_action, binding.action))
            )  # fmt: skip
    for mode, title in titles.items():
        for binding in screen_bindings(app.screen_type(mode), TunelabScreen):
            commands.append(
                PaletteCommand(f"{binding.description or binding.action} ({title})",
                               _help(app, binding),
                               partial(app.run_screen_action, mode, binding.action))
            )  # fmt: skip
    return commands


def _help(app: PaletteHost, binding: Binding) -> str:
    """The tooltip and the key; help text is markup, so the brackets are escaped."""
    return escape(f"{binding.tooltip or binding.description}  [{app.key_for(binding)}]")


def _key_of(app: PaletteHost, binding_id: str) -> str:
    from tunelab.tui.keys import all_bindings

    for _owner, binding in all_bindings(type(app)):  # type: ignore[arg-type]
        if binding.id == binding_id:
            return escape(f"  [{app.key_for(binding)}]")
    return ""


class TunelabCommands(Provider):
    """Lists every command `palette_commands` builds, so ctrl+p reaches everything from anywhere."""

    def _commands(self) -> list[PaletteCommand]:
        app: PaletteHost = self.app  # type: ignore[assignment]
        return palette_commands(app, self.screen)

    async def discover(self) -> Hits:
        for command in self._commands():
            yield DiscoveryHit(command.title, command.run, help=command.help)  # type: ignore[arg-type]

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for command in self._commands():
            score = command_score(matcher.match, command)
            if score > 0:
                title = (
                    matcher.highlight(command.title)
                    if matcher.match(command.title)
                    else (command.title)
                )
                yield Hit(score, title, command.run, help=command.help)  # type: ignore[arg-type]


HELP_MATCH_WEIGHT = 0.5
"""A match in a command's help counts half a match in its title, so titles rank first."""


def command_score(match: Callable[[str], float], command: PaletteCommand) -> float:
    """How well a query matches a command: its title, or else what it does.

    Titles are the footer's short words ("Eval (Runs)"); a user looking for "evaluation" or
    "new eval" types what the command does, which is its help ("Start a new evaluation").
    """
    return max(match(command.title), HELP_MATCH_WEIGHT * match(command.help))
