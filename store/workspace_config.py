"""The workspace config file, `.tunelab/config.toml`: prices, the one place they live.

The CLI (`tunelab config show|set`, `tunelab compare`) and the TUI's Compare screen read the
same file. It is user-written, so it is read strictly: an unknown key or a bad value is an
error naming the file. `set_value` rewrites it whole and atomically.
"""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import StoreError

if TYPE_CHECKING:
    from .store import Store

CONFIG_FILE_NAME = "config.toml"


class WorkspaceConfigError(StoreError):
    """The workspace config is unreadable or holds a bad key or value; the message names it."""


@dataclass(frozen=True)
class Prices:
    """What compute costs, for the cost scorecard and break-even in Compare.

    Args:
        gpu_hour: price of one GPU-hour (inference, and training on GPUs).
        cpu_hour: price of one hour of a CPU machine (training run on the CPU).
    """

    gpu_hour: float = field(
        default=2.0, metadata={"help": "Price of one GPU-hour (inference, GPU training)."}
    )
    """Price of one GPU-hour (inference, GPU training)."""
    cpu_hour: float = field(
        default=0.1, metadata={"help": "Price of one CPU machine-hour (CPU training)."}
    )
    """Price of one CPU machine-hour (CPU training)."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
                raise ValueError(f"price.{f.name} must be a number >= 0, not {value!r}")
            if math.isinf(value):
                raise ValueError(f"price.{f.name} must be finite")


@dataclass(frozen=True)
class WorkspaceConfig:
    """Everything the workspace config file holds.

    Args:
        price: compute prices (the `[price]` table).
    """

    price: Prices = field(default_factory=Prices, metadata={"help": "Compute prices."})
    """Compute prices (the `[price]` table)."""


_SECTIONS: dict[str, type[Prices]] = {"price": Prices}


def config_keys() -> list[str]:
    """Every settable key, `section.name`."""
    return [f"{s}.{f.name}" for s, cls in _SECTIONS.items() for f in fields(cls)]


def config_items(config: WorkspaceConfig) -> list[tuple[str, float, str]]:
    """(key, value, help) for every setting, in file order."""
    out = []
    for section, cls in _SECTIONS.items():
        table = getattr(config, section)
        for f in fields(cls):
            out.append((f"{section}.{f.name}", getattr(table, f.name), f.metadata["help"]))
    return out


def config_path(workspace_dir: Path) -> Path:
    """The config file of a workspace whose `.tunelab/` folder is `workspace_dir`."""
    return workspace_dir / CONFIG_FILE_NAME


def parse_config(data: dict[str, Any], source: Path | str) -> WorkspaceConfig:
    """Validate parsed TOML into a config; unknown keys and bad values raise, naming `source`."""
    unknown = sorted(set(data) - set(_SECTIONS))
    if unknown:
        raise WorkspaceConfigError(
            f"{source}: unknown table(s) {', '.join(unknown)}; known: {', '.join(config_keys())}"
        )
    tables: dict[str, Prices] = {}
    for section, cls in _SECTIONS.items():
        raw = data.get(section, {})
        if not isinstance(raw, dict):
            raise WorkspaceConfigError(f"{source}: [{section}] must be a table")
        names = {f.name for f in fields(cls)}
        extra = sorted(set(raw) - names)
        if extra:
            raise WorkspaceConfigError(
                f"{source}: unknown key(s) {', '.join(f'{section}.{k}' for k in extra)}; "
                f"known: {', '.join(config_keys())}"
            )
        try:
            tables[section] = cls(**raw)
        except (TypeError, ValueError) as exc:
            raise WorkspaceConfigError(f"{source}: {exc}") from exc
    return WorkspaceConfig(**tables)


def load_config(path: Path) -> WorkspaceConfig:
    """Read a workspace config file; a missing file gives the defaults."""
    if not path.exists():
        return WorkspaceConfig()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkspaceConfigError(f"{path}: cannot read the workspace config ({exc})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise WorkspaceConfigError(f"{path}: not valid TOML ({exc})") from exc
    return parse_config(data, path)


def store_config(store: Store) -> WorkspaceConfig:
    """The config of the workspace a store belongs to; defaults for a throwaway store."""
    if store.path is None:
        return WorkspaceConfig()
    return load_config(config_path(store.path.parent))


def dump_config(config: WorkspaceConfig) -> str:
    """The config as TOML text that `load_config` reads back unchanged."""
    lines: list[str] = []
    for section, cls in _SECTIONS.items():
        table = getattr(config, section)
        lines.append(f"[{section}]")
        for f in fields(cls):
            lines.append(f"# {f.metadata['help']}")
            lines.append(f"{f.name} = {float(getattr(table, f.name))!r}")
    return "\n".join(lines) + "\n"


def set_value(path: Path, key: str, raw: str) -> WorkspaceConfig:
    """Set one `section.name` key from its text form and rewrite the file atomically."""
    section, _, name = key.partition(".")
    if key not in config_keys():
        raise WorkspaceConfigError(f"unknown setting {key!r}; known: {', '.join(config_keys())}")
    try:
        value = float(raw)
    except ValueError:
        raise WorkspaceConfigError(f"{key} must be a number, not {raw!r}") from None
    config = load_config(path)
    try:
        table = replace(getattr(config, section), **{name: value})
    except ValueError as exc:
        raise WorkspaceConfigError(str(exc)) from exc
    config = replace(config, **{section: table})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(dump_config(config), encoding="utf-8")
    os.replace(tmp, path)
    return config
