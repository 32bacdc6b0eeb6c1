"""Built-in tunelab themes: dark, light and high-contrast `textual.theme.Theme` objects.

Stylesheets only use theme variables, so a theme is the one place colours are chosen.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import fields
from pathlib import Path

from textual.color import Color, ColorParseError
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


THEMES_DIR_ENV_VAR = "TUNELAB_THEMES_DIR"
_COLOR_KEYS = (
    "primary", "secondary", "warning", "error", "success", "accent", "foreground",
    "background", "surface", "panel", "boost",
)  # fmt: skip
_THEME_KEYS = {f.name for f in fields(Theme)} - {"ansi"}


class ThemeFileError(ValueError):
    """A user theme file that cannot be read; the message names the file and the key."""


def user_themes_dir() -> Path:
    """Where user themes live: `$TUNELAB_THEMES_DIR`, else `themes/` in the user data dir."""
    override = os.environ.get(THEMES_DIR_ENV_VAR)
    if override:
        return Path(override).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("tunelab")) / "themes"


def load_theme_file(path: Path) -> Theme:
    """One theme from a TOML file: `name`, `primary` and optional colours, `dark`, `variables`."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ThemeFileError(f"{path}: cannot read theme ({exc})") from exc
    unknown = sorted(set(data) - _THEME_KEYS)
    if unknown:
        raise ThemeFileError(
            f"{path}: unknown theme key(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(_THEME_KEYS))}"
        )
    for key in ("name", "primary"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise ThemeFileError(f"{path}: {key} is required (a string)")
    for key in _COLOR_KEYS:
        if key in data:
            try:
                Color.parse(str(data[key]))
            except ColorParseError:
                raise ThemeFileError(f"{path}: {key} = {data[key]!r} is not a colour") from None
    if "dark" in data and not isinstance(data["dark"], bool):
        raise ThemeFileError(f"{path}: dark must be true or false")
    if "variables" in data and not (
        isinstance(data["variables"], dict)
        and all(isinstance(v, str) for v in data["variables"].values())
    ):
        raise ThemeFileError(f"{path}: [variables] maps variable names to strings")
    return Theme(**data)


def load_user_themes(folder: Path | None = None) -> list[Theme]:
    """Every `*.toml` theme in the user themes folder (none when the folder is absent)."""
    folder = folder or user_themes_dir()
    if not folder.is_dir():
        return []
    return [load_theme_file(path) for path in sorted(folder.glob("*.toml"))]


__all__ = [
    "BUILTIN_THEMES",
    "DARK",
    "DEFAULT_THEME",
    "HIGH_CONTRAST",
    "LIGHT",
    "ThemeFileError",
    "UnknownThemeError",
    "load_theme_file",
    "load_user_themes",
    "user_themes_dir",
]
