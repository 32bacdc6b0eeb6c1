"""`TrainingConfig`'s fields as options: the one list `tunelab tune`'s flags, the Fine-tune
form and the command line the form shows are all built from (its field metadata)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import MISSING, dataclass, fields
from typing import Any

from tunelab.engine.errors import BadInputError
from tunelab.engine.training.config import TrainingConfig


@dataclass(frozen=True)
class ConfigOption:
    """One config field as the front ends offer it, read from the field's metadata.

    The metadata keys: `help`; `flag`, the `tunelab tune` flag when it is not the name in
    kebab case; `cli`, False when only a --config file sets it; `choices`; `methods`, the
    methods the setting applies to (all when absent).
    """

    name: str
    kind: str
    """How text becomes a value: str, int, float, bool or list (comma-separated)."""
    default: Any
    help: str
    flag: str
    """Without the leading dashes; booleans also take --no-FLAG."""
    cli: bool
    choices: tuple[str, ...]
    methods: tuple[str, ...]
    optional: bool
    """None is a value (it means: pick for me)."""


def config_options() -> list[ConfigOption]:
    """Every `TrainingConfig` field, in order: the one list the CLI, the form and the command
    line a form shows are built from."""
    out = []
    for f in fields(TrainingConfig):
        kind = str(f.type)
        default = f.default if f.default is not MISSING else None
        out.append(
            ConfigOption(
                name=f.name,
                kind=next((k for k in ("bool", "list", "int", "float") if k in kind), "str"),
                default=default,
                help=str(f.metadata.get("help", "")),
                flag=str(f.metadata.get("flag", f.name.replace("_", "-"))),
                cli=bool(f.metadata.get("cli", True)),
                choices=tuple(f.metadata.get("choices", ())),
                methods=tuple(f.metadata.get("methods", ())),
                optional="None" in kind,
            )
        )
    return out


def check_options_apply(method: str, given: Iterable[str]) -> None:
    """Refuse settings the user gave explicitly that `method` ignores (e.g. --lora-r with
    prompt tuning): the job would run, but not as asked."""
    by_name = {o.name: o for o in config_options()}
    for name in given:
        option = by_name.get(name)
        if option is not None and option.methods and method not in option.methods:
            only = " or ".join(option.methods)
            raise BadInputError(
                f"--{option.flag} applies only to method {only}, not {method}; drop it or "
                f"use --method {option.methods[0]}"
            )
