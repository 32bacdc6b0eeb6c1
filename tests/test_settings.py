"""GenerationSettings: validation names the field, dict round trips are exact."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tunelab.engine.errors import BadInputError
from tunelab.engine.prompts.settings import GenerationSettings


def test_defaults_are_greedy_and_round_trip() -> None:
    settings = GenerationSettings()
    assert settings.greedy
    assert GenerationSettings.from_dict(settings.to_dict()) == settings


@pytest.mark.parametrize(
    ("changes", "field_name"),
    [
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"top_k": -1}, "top_k"),
        ({"top_k": 2.5}, "top_k"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"max_new_tokens": "10"}, "max_new_tokens"),
        ({"stop": [""]}, "stop"),
        ({"stop": [1]}, "stop"),
        ({"repetition_penalty": 0}, "repetition_penalty"),
        ({"seed": -1}, "seed"),
        ({"seed": True}, "seed"),
        ({"logit_bias": {"yes": 500}}, "logit_bias"),
        ({"logit_bias": {"": 1}}, "logit_bias"),
        ({"logit_bias": ["yes"]}, "logit_bias"),
    ],
)
def test_bad_values_name_the_field(changes: dict[str, Any], field_name: str) -> None:
    with pytest.raises(BadInputError, match=field_name):
        GenerationSettings.from_dict(changes)


def test_unknown_key_is_refused_with_the_allowed_ones() -> None:
    with pytest.raises(BadInputError, match=r"temprature.*allowed: .*temperature"):
        GenerationSettings.from_dict({"temprature": 0.7})


def test_single_stop_string_and_integral_float_are_normalised() -> None:
    settings = GenerationSettings(stop="\n", max_new_tokens=8.0)  # type: ignore[arg-type]
    assert settings.stop == ["\n"]
    assert settings.max_new_tokens == 8 and isinstance(settings.max_new_tokens, int)


def test_version_settings_skip_the_fewshot_section_but_not_typos() -> None:
    settings = GenerationSettings.from_version_settings({"fewshot": {"k": 2}, "max_new_tokens": 5})
    assert settings.max_new_tokens == 5
    with pytest.raises(BadInputError, match="max_tokens"):
        GenerationSettings.from_version_settings({"max_tokens": 5})


def test_every_field_has_help() -> None:
    assert all(GenerationSettings.help().values())
    assert set(GenerationSettings.help()) == set(GenerationSettings().to_dict())


@given(
    temperature=st.floats(0, 5, allow_nan=False),
    top_p=st.floats(0.01, 1),
    top_k=st.integers(0, 500),
    max_new_tokens=st.integers(1, 4096),
    stop=st.lists(st.text(min_size=1, max_size=5), max_size=3),
    penalty=st.floats(0.5, 2),
    seed=st.integers(0, 2**31),
    bias=st.dictionaries(st.text(min_size=1, max_size=6), st.floats(-100, 100), max_size=3),
)
def test_valid_settings_round_trip(
    temperature: float,
    top_p: float,
    top_k: int,
    max_new_tokens: int,
    stop: list[str],
    penalty: float,
    seed: int,
    bias: dict[str, float],
) -> None:
    settings = GenerationSettings(
        temperature, top_p, top_k, max_new_tokens, stop, penalty, seed, bias
    )
    assert GenerationSettings.from_dict(settings.to_dict()) == settings
    assert settings.replace(seed=seed) == settings
