"""Built-in tunelab themes: dark, light and high-contrast `textual.theme.Theme` objects.

Stylesheets only use theme variables, so a theme is the one place colours are chosen.
"""

from __future__ import annotations

from textual.theme import Theme

DARK = Theme(
    name="tunelab-dark",
    primary="#5FA8D3",
    secondary="#8E7DBE",
    accent="#F2A65A",
    foreground="#E0E4EA",
    background="#14171C",
    surface="#1C2027",
    panel="#252B34",
    success="#7BC47F",
    warning="#E8C547",
    error="#E5646B",
    dark=True,
    variables={"footer-key-foreground": "#F2A65A", "block-cursor-text-style": "bold"},
)

LIGHT = Theme(
    name="tunelab-light",
    primary="#1F6FA8",
    secondary="#6A4FB0",
    accent="#B85C00",
    foreground="#1E2329",
    background="#F7F8FA",
    surface="#ECEFF3",
    panel="#DDE3EA",
    success="#2E7D32",
    warning="#8A6D00",
    error="#C62828",
    dark=False,
    variables={"footer-key-foreground": "#B85C00", "block-cursor-text-style": "bold"},
)

HIGH_CONTRAST = Theme(
    name="tunelab-high-contrast",
    primary="#FFFF00",
    secondary="#00FFFF",
    accent="#FF00FF",
    foreground="#FFFFFF",
    background="#000000",
    surface="#000000",
    panel="#1A1A1A",
    success="#00FF00",
    warning="#FFFF00",
    error="#FF5555",
    dark=True,
    variables={
        "footer-key-foreground": "#FFFF00",
        "block-cursor-text-style": "bold reverse",
        "border": "#FFFFFF",
        "border-blurred": "#BBBBBB",
    },
)

BUILTIN_THEMES: dict[str, Theme] = {t.name: t for t in (DARK, LIGHT, HIGH_CONTRAST)}
"""Every built-in theme by name; the App registers all of them."""

DEFAULT_THEME = DARK.name


class UnknownThemeError(ValueError):
    """A theme name that is neither built in nor registered; lists the valid ones."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"unknown theme {name!r}; choose one of: {', '.join(sorted(known))}")
        self.name = name


__all__ = ["BUILTIN_THEMES", "DARK", "DEFAULT_THEME", "HIGH_CONTRAST", "LIGHT", "UnknownThemeError"]
