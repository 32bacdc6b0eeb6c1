"""User settings for the TUI: one typed model in a TOML file, read strictly.

The file lives in the platform config dir (`platformdirs`), or where `$TUNELAB_CONFIG`
points. User-written config is strict: an unknown key or a wrong type is an error that
names the file, so a typo never silently does nothing.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from tunelab.engine.errors import BadInputError
from tunelab.themes import BUILTIN_THEMES, DEFAULT_THEME

CONFIG_ENV_VAR = "TUNELAB_CONFIG"
CONFIG_FILE_NAME = "tui.toml"


class ConfigError(BadInputError):
    """The settings file is unreadable or holds a bad key or value; the message names the file."""


@dataclass
class UserSettings:
    """Everything a user can set for the TUI."""

    theme: str = DEFAULT_THEME
    """Theme name: tunelab-dark, tunelab-light, tunelab-high-contrast (or any registered theme)."""

    keymap: dict[str, str] = field(default_factory=dict)
    """Binding id to keys, e.g. `show-playground = "f3"`; see docs/keys.md for the ids."""

    last_evaluation: dict[str, str] = field(default_factory=dict)
    """The New evaluation form's last choices (prompt, model, split, limit), written by the
    TUI when an evaluation starts, so the form opens on them next time."""


LAST_EVALUATION_KEYS = ("prompt", "model", "split", "limit")
"""The choices the New evaluation form remembers (`split` is `dataset/split`)."""


SETTING_NAMES: tuple[str, ...] = tuple(f.name for f in fields(UserSettings))


def config_path() -> Path:
    """Where settings are read and saved: `$TUNELAB_CONFIG`, else the platform config dir."""
    override = os.environ.get(CONFIG_ENV_VAR)
    if override:
        return Path(override).expanduser()
    from platformdirs import user_config_dir

    return Path(user_config_dir("tunelab")) / CONFIG_FILE_NAME


def parse_settings(data: dict[str, Any], source: Path | str) -> UserSettings:
    """Validate a parsed TOML table into settings; unknown keys and bad types raise ConfigError."""
    if "price_per_gpu_hour" in data:
        raise ConfigError(
            f"{source}: price_per_gpu_hour moved to the workspace config, read by the CLI too; "
            "remove it here and run `tunelab config set price.gpu_hour VALUE`"
        )
    unknown = sorted(set(data) - set(SETTING_NAMES))
    if unknown:
        raise ConfigError(
            f"{source}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(SETTING_NAMES)}"
        )
    settings = UserSettings()
    if "theme" in data:
        if not isinstance(data["theme"], str) or not data["theme"]:
            raise ConfigError(f"{source}: theme must be a theme name (a string)")
        settings.theme = data["theme"]
    if "keymap" in data:
        keymap = data["keymap"]
        if not isinstance(keymap, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and v for k, v in keymap.items()
        ):
            raise ConfigError(f'{source}: [keymap] maps binding ids to keys, e.g. quit = "ctrl+q"')
        settings.keymap = dict(keymap)
    if "last_evaluation" in data:
        last = data["last_evaluation"]
        if not isinstance(last, dict) or not all(
            k in LAST_EVALUATION_KEYS and isinstance(v, str) for k, v in last.items()
        ):
            raise ConfigError(
                f"{source}: [last_evaluation] holds {', '.join(LAST_EVALUATION_KEYS)} as strings "
                "(the TUI writes it; delete the table to forget the choices)"
            )
        settings.last_evaluation = dict(last)
    return settings


def load_settings(path: Path | None = None) -> UserSettings:
    """Read the settings file; a missing file gives the defaults."""
    path = path or config_path()
    if not path.exists():
        return UserSettings()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read settings ({exc})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
    return parse_settings(data, path)


def _toml_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _toml_key(key: str) -> str:
    bare = key.replace("-", "").replace("_", "").isalnum()
    return key if bare else _toml_string(key)


def dump_settings(settings: UserSettings) -> str:
    """Settings as TOML text that `load_settings` reads back unchanged."""
    lines = [
        f"theme = {_toml_string(settings.theme)}",
    ]
    if settings.keymap:
        lines += ["", "[keymap]"]
        lines += [f"{_toml_key(k)} = {_toml_string(v)}" for k, v in sorted(settings.keymap.items())]
    if settings.last_evaluation:
        lines += ["", "[last_evaluation]"]
        lines += [f"{k} = {_toml_string(v)}" for k, v in sorted(settings.last_evaluation.items())]
    return "\n".join(lines) + "\n"


def save_settings(settings: UserSettings, path: Path | None = None) -> Path:
    """Write the settings file atomically (so a crash never leaves half a file)."""
    path = path or config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(dump_settings(settings), encoding="utf-8")
    os.replace(tmp, path)
    return path


def builtin_theme_names() -> list[str]:
    return list(BUILTIN_THEMES)
