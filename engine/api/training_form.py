"""The Fine-tune form: its fields, the `tunelab tune` command equal to it, and its launch.

Fields, flags and the settings that only a --config file takes all come from
`TrainingConfig`'s field metadata (`engine.training.options`), the list `tunelab tune`'s
options are generated from, so the form's command line always runs.
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

from tunelab.engine.api.types import FormValues, TrainingField
from tunelab.engine.errors import BadInputError
from tunelab.engine.training.options import ConfigOption, config_options

if TYPE_CHECKING:
    from tunelab.store import Store, Workspace

JOB_FIELDS = [
    TrainingField("base", "builtin", "Base model to fine-tune (name, folder or hub id)."),
    TrainingField("dataset", "", "Dataset to train on (its train split by default)."),
    TrainingField("prompt", "", "Prompt version that renders each row, e.g. classify@2."),
    TrainingField(
        "gpus", 0, "GPUs: 0 or 1 trains in one process; N > 1 is data-parallel.", kind="int"
    ),
]
"""Launch arguments that are not part of the training config itself (flags of the same
name, in kebab case)."""


def config_fields() -> list[TrainingField]:
    """One form field per config field, with its default, help text, choices and type."""
    return [TrainingField(o.name, o.default, o.help, o.choices, o.kind) for o in config_options()]


def training_fields() -> list[TrainingField]:
    """Everything the form shows: the launch arguments, then the config."""
    return [*JOB_FIELDS, *config_fields()]


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def training_command_line(values: FormValues, defaults: FormValues) -> str:
    """The `tunelab tune` command equal to a form: settings that differ from the defaults.

    Settings the CLI has no flag for go into a TOML file passed with --config; its content
    follows the command, so the user can write it out.
    """
    options: dict[str, ConfigOption] = {o.name: o for o in config_options()}
    parts = ["tunelab", "tune"]
    config_lines: list[str] = []
    for name, value in values.items():
        if name in defaults and defaults[name] == value:
            continue
        if value is None or value == "":
            continue
        option = options.get(name)
        if option is not None and not option.cli:
            config_lines.append(f"{name} = {_toml_value(value)}")
            continue
        flag = "--" + (option.flag if option is not None else name.replace("_", "-"))
        if isinstance(value, bool):
            parts.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, list | tuple):
            parts += [flag, ",".join(str(v) for v in value)]
        else:
            parts += [flag, str(value)]
    if not config_lines:
        return shlex.join(parts)
    parts += ["--config", "training.toml"]
    return shlex.join(parts) + "\n# training.toml:\n" + "\n".join(config_lines)


def given_settings(values: FormValues) -> FormValues:
    """The form's config settings that differ from their defaults: what the user set, as
    `tunelab tune` sees the flags its command line passes."""
    defaults = {f.name: f.default for f in config_fields()}
    return {
        name: value
        for name, value in values.items()
        if name in defaults and value is not None and value != "" and value != defaults[name]
    }


def launch_from_form(store: Store, workspace: Workspace, values: FormValues) -> int:
    """Queue the job a form describes, checked as `tunelab tune` checks its flags; its id."""
    from tunelab.engine.evaluation.plan import resolve_model_arg
    from tunelab.engine.training.config import TrainingConfig
    from tunelab.engine.training.jobs import launch_job

    job_values = {f.name: values.get(f.name, f.default) for f in JOB_FIELDS}
    # A DPO dataset carries its rendered prompts; its prompt version defaults to the export's.
    needs_prompt = values.get("method", "lora") != "dpo"
    if not job_values["dataset"] or (needs_prompt and not job_values["prompt"]):
        raise BadInputError("a job needs a dataset and a prompt version (e.g. classify@2)")
    known = {f.name for f in training_fields()}
    unknown = sorted(set(values) - known)
    if unknown:
        raise BadInputError(f"unknown training settings: {', '.join(unknown)}")
    given = given_settings(values)
    config = TrainingConfig().with_overrides(**given)
    base = resolve_model_arg(store, str(job_values["base"]))
    dataset = store.get_dataset(str(job_values["dataset"]))
    job = launch_job(
        workspace, store, config, base, dataset, str(job_values["prompt"]),
        gpus=int(str(job_values["gpus"] or 0)), given=list(given),
    )  # fmt: skip
    return job.id
