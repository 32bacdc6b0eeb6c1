"""The search space of a sweep: `lr=1e-4..1e-3:log,lora_r=8|16|32,epochs=1..3`, parsed into
parameters that map onto `TrainingConfig` fields and are checked through it.

A parameter is a range (`LOW..HIGH`, with `:log` for a log scale; integers for integer
fields) or a list of choices (`A|B|C`; one value fixes it). Parsing is a pure function: its
errors are one line each, naming the parameter and what to write instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tunelab.engine.errors import BadInputError
from tunelab.engine.training.config import TrainingConfig
from tunelab.engine.training.options import ConfigOption, config_options

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

ParamValue = int | float | str | bool
NOT_SWEPT = frozenset(
    {"method", "device", "train_split", "val_split", "metric_for_best", "from_adapter"}
)
"""Fields a sweep sets itself or that would change what the trials are compared on."""


@dataclass(frozen=True)
class SweepParameter:
    """One swept `TrainingConfig` field: a range (`low`, `high`, `log`) or `choices`."""

    name: str
    kind: str
    """The field's kind: int, float, bool or str."""
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[ParamValue, ...] = ()

    @property
    def is_range(self) -> bool:
        return self.low is not None

    def extremes(self) -> tuple[ParamValue, ...]:
        """The values that bound what a trial can get: both ends of a range, or every choice."""
        if self.low is None or self.high is None:
            return self.choices
        if self.kind == "int":
            return (int(self.low), int(self.high))
        return (self.low, self.high)

    def distribution(self) -> BaseDistribution:
        """The Optuna distribution this parameter is sampled from."""
        from optuna.distributions import (  # optuna loads only where a study runs
            CategoricalDistribution,
            FloatDistribution,
            IntDistribution,
        )

        if self.low is None or self.high is None:
            return CategoricalDistribution(list(self.choices))
        if self.kind == "int":
            return IntDistribution(int(self.low), int(self.high), log=self.log)
        return FloatDistribution(self.low, self.high, log=self.log)


def sweepable_options() -> dict[str, ConfigOption]:
    """The `TrainingConfig` fields a space may name, by name."""
    return {o.name: o for o in config_options() if o.kind != "list" and o.name not in NOT_SWEPT}


def parse_space(text: str, base: TrainingConfig) -> list[SweepParameter]:
    """Parse a space and check every value it can produce through `TrainingConfig`.

    Args:
        text: comma-separated `NAME=LOW..HIGH[:log]` or `NAME=A|B|C` items.
        base: the config the trials start from (its method decides which fields apply).

    Returns:
        The parameters, in the order given.

    Raises:
        BadInputError: a one-line message naming the item and what to write instead.
    """
    options = sweepable_options()
    items = [item.strip() for item in text.split(",")]
    if not text.strip() or not all(items):
        raise BadInputError(
            f"--space {text!r} has an empty item; write NAME=LOW..HIGH[:log] or NAME=A|B|C, "
            "comma-separated, e.g. lr=1e-4..1e-3:log,lora_r=8|16"
        )
    parameters: list[SweepParameter] = []
    for item in items:
        name, equals, spec = (part.strip() for part in item.partition("="))
        if not equals or not spec:
            raise BadInputError(
                f"--space item {item!r} needs NAME=LOW..HIGH[:log] or NAME=A|B|C, e.g. lora_r=8|16"
            )
        if name not in options:
            raise BadInputError(
                f"--space: unknown parameter {name!r}; sweepable: {', '.join(sorted(options))}"
            )
        if any(p.name == name for p in parameters):
            raise BadInputError(f"--space names {name!r} twice; give it once")
        parameters.append(_parameter(options[name], spec))
    for parameter in parameters:
        methods = options[parameter.name].methods
        if methods and base.method not in methods:
            raise BadInputError(
                f"--space {parameter.name}: applies only to method {' or '.join(methods)}, not "
                f"{base.method}; drop it from --space or use --method {methods[0]}"
            )
    for parameter in parameters:
        for value in parameter.extremes():
            try:
                base.with_overrides(**{parameter.name: value})
            except BadInputError as exc:
                raise BadInputError(f"--space {parameter.name}={value}: {exc}") from None
    return parameters


def _parameter(option: ConfigOption, spec: str) -> SweepParameter:
    name = option.name
    if "|" in spec or ".." not in spec:
        texts = [t.strip() for t in spec.split("|")]
        if not all(texts):
            raise BadInputError(f"--space {name}={spec}: a choice is empty; write e.g. {name}=A|B")
        choices = tuple(_value(option, t, spec) for t in texts)
        if len(set(choices)) != len(choices):
            raise BadInputError(f"--space {name}={spec}: a choice repeats; give each once")
        return SweepParameter(name, option.kind, choices=choices)
    bounds, _, scale = spec.partition(":")
    if scale not in ("", "log"):
        raise BadInputError(f"--space {name}={spec}: unknown scale {scale!r}; the only one is :log")
    if option.kind not in ("int", "float"):
        raise BadInputError(
            f"--space {name}={spec}: {name} is {option.kind}, so give choices A|B, not a range"
        )
    low_text, _, high_text = bounds.partition("..")
    low, high = (float(_value(option, t.strip(), spec)) for t in (low_text, high_text))
    if not low < high:
        raise BadInputError(f"--space {name}={spec}: LOW must be below HIGH")
    if scale == "log" and low <= 0:
        raise BadInputError(f"--space {name}={spec}: a :log range needs LOW above 0")
    return SweepParameter(name, option.kind, low, high, log=scale == "log")


def _value(option: ConfigOption, text: str, spec: str) -> ParamValue:
    """One value as the field's kind, or a one-line error."""
    where = f"--space {option.name}={spec}"
    if option.kind == "bool":
        if text.lower() not in ("true", "false"):
            raise BadInputError(f"{where}: {text!r} is not true or false")
        return text.lower() == "true"
    if option.kind == "str":
        if option.choices and text not in option.choices:
            raise BadInputError(f"{where}: {text!r} is not one of {', '.join(option.choices)}")
        return text
    try:
        number = float(text)
    except ValueError:
        raise BadInputError(f"{where}: {text!r} is not a number") from None
    if option.kind == "int":
        if not number.is_integer():
            raise BadInputError(f"{where}: {option.name} takes whole numbers, not {text!r}")
        return int(number)
    return number
