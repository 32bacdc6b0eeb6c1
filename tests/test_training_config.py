"""TrainingConfig: validation messages, JSON round-trips, tolerant and strict loading."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunelab import __version__
from tunelab.engine.errors import BadInputError
from tunelab.engine.training.config import (
    CONFIG_FILE,
    DEFAULT_LR,
    METHODS,
    TrainingConfig,
    check_target_modules,
    default_target_modules,
)


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"lora_r": 0}, "lora_r must be an integer >= 1"),
        ({"lr": -1e-4}, "lr must be a positive number"),
        ({"method": "qlora"}, "method must be one of lora, prefix, prompt, full"),
        ({"scheduler": "wavy"}, "scheduler must be one of linear, cosine"),
        ({"metric_for_best": "f1"}, "metric_for_best must be one of val_loss"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"max_steps": 2.5}, "max_steps must be int"),
        ({"warmup_ratio": 1.5}, "warmup_ratio must be in [0, 1)"),
        ({"device": "tpu"}, "device must be one of auto, cpu, cuda, mps or cuda:N"),
        ({"epochs": 0}, "epochs must be a positive number"),
        ({"method": "prefix", "target_modules": ["q_proj"]}, "only to method lora"),
        ({"method": "prompt", "packing": True}, "packing applies only to lora and full"),
        ({"lora_dropout": "high"}, "lora_dropout must be float"),
    ],
)
def test_bad_values_name_field_and_allowed_values(changes: dict, needle: str) -> None:
    with pytest.raises(BadInputError) as info:
        TrainingConfig(**changes)
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_lr_defaults_per_method_and_follows_a_method_change() -> None:
    for method in METHODS:
        assert TrainingConfig(method=method).lr == DEFAULT_LR[method]
    assert TrainingConfig().with_overrides(method="full").lr == DEFAULT_LR["full"]
    assert TrainingConfig(lr=1e-3).with_overrides(method="full").lr == 1e-3


def test_batch_larger_than_data_is_rejected_with_the_fix() -> None:
    config = TrainingConfig(batch_size=16)
    with pytest.raises(BadInputError, match="batch_size 16 is larger than the 10 training rows"):
        config.check_against_data(10)
    config.check_against_data(16)


def test_strings_from_the_command_line_are_coerced() -> None:
    config = TrainingConfig(lr="1e-3", target_modules="q_proj, v_proj", max_steps="5")  # type: ignore[arg-type]
    assert config.lr == 1e-3 and config.max_steps == 5
    assert config.target_modules == ["q_proj", "v_proj"]


def test_json_file_is_sorted_indented_and_stamped(tmp_path: Path) -> None:
    TrainingConfig(method="prefix").to_json(tmp_path)
    text = (tmp_path / CONFIG_FILE).read_text()
    data = json.loads(text)
    assert data["tunelab_version"] == __version__
    assert list(data) == sorted(data)
    assert text.startswith('{\n  "')


def test_unknown_keys_are_dropped_with_one_warning(tmp_path: Path) -> None:
    data = {**TrainingConfig().to_dict(), "future_knob": 3, "other": "x"}
    (tmp_path / CONFIG_FILE).write_text(json.dumps(data))
    with pytest.warns(UserWarning, match="future_knob, other") as record:
        loaded = TrainingConfig.from_json(tmp_path)
    assert len(record) == 1
    assert loaded == TrainingConfig()


def test_user_config_file_is_strict(tmp_path: Path) -> None:
    path = tmp_path / "train.toml"
    path.write_text('[training]\nmethod = "lora"\nlora_rank = 4\n')
    with pytest.raises(BadInputError, match="unknown training config keys: lora_rank"):
        TrainingConfig.from_file(path)
    path.write_text('[training]\nmethod = "full"\nepochs = 2\n')
    assert TrainingConfig.from_file(path).epochs == 2.0
    with pytest.raises(BadInputError, match="no config file"):
        TrainingConfig.from_file(tmp_path / "missing.toml")


def test_target_modules_checked_against_the_model() -> None:
    available = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj"}
    assert default_target_modules("llama", available) == ["q_proj", "k_proj", "v_proj", "o_proj"]
    with pytest.raises(BadInputError) as info:
        check_target_modules(["q_proj", "c_attn"], available)
    message = str(info.value)
    assert "c_attn" in message and "available: gate_proj, k_proj, o_proj" in message


def test_importing_the_config_does_not_import_torch() -> None:
    import subprocess

    code = (
        "import tunelab.engine.training.config, tunelab.engine.training.jobs, sys;"
        "import tunelab.cli_tune;"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_json_round_trip(tmp_path: Path, data: st.DataObject) -> None:
    method = data.draw(st.sampled_from(METHODS))
    config = TrainingConfig(
        method=method,
        epochs=data.draw(st.floats(min_value=0.1, max_value=50, allow_nan=False)),
        max_steps=data.draw(st.none() | st.integers(min_value=1, max_value=10**6)),
        batch_size=data.draw(st.integers(min_value=1, max_value=512)),
        lr=data.draw(st.none() | st.floats(min_value=1e-7, max_value=1.0)),
        warmup_ratio=data.draw(st.floats(min_value=0, max_value=0.99)),
        lora_r=data.draw(st.integers(min_value=1, max_value=256)),
        target_modules=data.draw(
            st.none() | st.lists(st.sampled_from(["q_proj", "v_proj", "fc1"]), min_size=1)
        )
        if method == "lora"
        else None,
        num_virtual_tokens=data.draw(st.integers(min_value=1, max_value=100)),
        max_seq_len=data.draw(st.integers(min_value=8, max_value=8192)),
        packing=data.draw(st.booleans()) if method in ("lora", "full") else False,
        seed=data.draw(st.integers(min_value=0, max_value=2**31)),
        val_split=data.draw(st.text(max_size=10)),
    )
    path = config.to_json(tmp_path / "c.json")
    assert TrainingConfig.from_json(path) == config
    assert TrainingConfig.from_dict(config.to_dict(), strict=True) == config


def _tune_command() -> Any:
    """The click command typer builds for `tunelab tune` (typer may vendor its own click)."""
    import typer.main

    from tunelab.cli import app

    group: Any = typer.main.get_command(app)
    return group.commands["tune"]


def test_tune_options_are_generated_from_the_config_metadata() -> None:
    """One list: every config field with a flag is a `tune` option named by its metadata,
    and the settings only a --config file takes have none."""
    from tunelab.engine.training.options import config_options

    params = {p.name: p for p in _tune_command().params}
    for option in config_options():
        if not option.cli:
            assert option.name not in params
            continue
        param = params[option.name]
        assert param.opts == [f"--{option.flag}"]
        assert param.secondary_opts == ([f"--no-{option.flag}"] if option.kind == "bool" else [])
        assert param.default is None  # None keeps the config file's or the default value
        assert option.help.split(" (")[0] in (getattr(param, "help", None) or "")
    for flag in ("--eval-every", "--patience", "--gradient-checkpointing", "--lora-r"):
        assert any(flag in p.opts for p in params.values()), flag
    assert "--no-gradient-checkpointing" in params["gradient_checkpointing"].secondary_opts


form_values = st.fixed_dictionaries(
    {},
    optional={
        "method": st.sampled_from(["lora", "full"]),
        "epochs": st.floats(min_value=0.5, max_value=9),
        "lr": st.sampled_from([1e-4, 3e-3]),
        "lora_r": st.integers(1, 64),
        "target_modules": st.lists(st.sampled_from(["q_proj", "v_proj"]), min_size=1,
                                   max_size=2, unique=True),
        "packing": st.booleans(),
        "gradient_checkpointing": st.booleans(),
        "eval_every_steps": st.integers(0, 500),
        "early_stopping_patience": st.integers(0, 5),
        "val_split": st.sampled_from(["dev", "my split"]),
        "weight_decay": st.sampled_from([0.01, 0.1]),
        "scheduler": st.sampled_from(["cosine", "constant"]),
        "save_every_steps": st.integers(1, 100),
    },
)  # fmt: skip


@settings(max_examples=40, deadline=None)
@given(values=form_values)
def test_the_forms_command_line_is_a_tune_command_with_the_same_settings(
    values: dict[str, object],
) -> None:
    """The Fine-tune form shows the `tunelab tune` command equal to its values; parsed by
    the real `tune` command (plus its --config file) it gives back the same config."""
    import shlex
    import tomllib

    from tunelab.engine.api.training_form import config_fields, training_command_line

    defaults = {f.name: f.default for f in config_fields()}
    line = training_command_line(values, defaults)
    command_text, _, toml_text = line.partition("\n# training.toml:\n")
    args = shlex.split(command_text)
    assert args[:2] == ["tunelab", "tune"]
    context = _tune_command().make_context("tune", [*args[2:], "--dataset", "d", "--prompt",
                                                    "p@1"])  # fmt: skip
    flags = {k: v for k, v in context.params.items() if k in defaults and v is not None}
    from_file = tomllib.loads(toml_text) if toml_text else {}
    assert bool(toml_text) == ("--config" in args)
    try:
        expected = TrainingConfig().with_overrides(**values)
    except BadInputError as refused:  # e.g. target_modules with full: refused the same way
        with pytest.raises(BadInputError, match=re.escape(str(refused))):
            TrainingConfig().with_overrides(**{**from_file, **flags})
        return
    assert TrainingConfig().with_overrides(**{**from_file, **flags}) == expected


def test_boolean_settings_become_flag_pairs() -> None:
    from tunelab.engine.api.training_form import training_command_line

    line = training_command_line({"gradient_checkpointing": True, "packing": False},
                                 {"gradient_checkpointing": False, "packing": True})  # fmt: skip
    assert line == "tunelab tune --gradient-checkpointing --no-packing"
