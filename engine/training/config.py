"""The fine-tuning config: one dataclass, validated on construction, saved beside each artifact.

The file `training_config.json` next to a checkpoint is machine-written, so loading it is
tolerant (unknown keys are dropped with one warning); a config file the user passes on the
command line is read strictly (`from_dict(..., strict=True)`).
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab.engine.errors import BadInputError

if TYPE_CHECKING:
    from collections.abc import Iterable

CONFIG_FILE = "training_config.json"
METHODS = ("lora", "prefix", "prompt", "full", "dpo")
PEFT_METHODS = ("lora", "prefix", "prompt", "dpo")
LORA_METHODS = ("lora", "dpo")
"""Methods that train a LoRA adapter: `dpo` is LoRA with the DPO loss on preference pairs."""
SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")
BEST_METRICS = ("val_loss", "val_accuracy", "val_macro_f1", "val_exact_match")
DEVICES = ("auto", "cpu", "cuda", "mps")
QUANTIZE = ("none", "4bit")
DEFAULT_LR = {"lora": 2e-4, "prefix": 3e-3, "prompt": 3e-3, "full": 2e-5, "dpo": 5e-5}
"""Learning rates that work for each method when the user gives none."""

# Attention projections per architecture; LoRA on all four is the usual strong default.
_DEFAULT_TARGETS = {
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "qwen3": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "gemma": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "phi3": ["qkv_proj", "o_proj"],
    "gpt2": ["c_attn", "c_proj"],
    "gpt_neox": ["query_key_value", "dense"],
    "opt": ["q_proj", "k_proj", "v_proj", "out_proj"],
}


@dataclass
class TrainingConfig:
    """How to fine-tune: method, schedule, adapter shape, evaluation and checkpoints.

    Args:
        method: lora, prefix, prompt (peft adapters), full (every weight) or dpo (a LoRA
            adapter trained with the DPO loss on prompt/chosen/rejected rows).
        lr: learning rate; None picks the method's default (see DEFAULT_LR).
        target_modules: LoRA target module names; None picks the architecture's default.
        max_steps: optimizer steps to run; None derives them from epochs.
        beta: DPO's KL strength; small lets the policy drift further from the reference.
        from_adapter: DPO only: a workspace LoRA adapter (an SFT model) to start from; it is
            also the reference policy.
    """

    method: str = field(
        default="lora",
        metadata={"help": f"Fine-tuning method: {', '.join(METHODS)}.", "choices": METHODS},
    )
    epochs: float = field(default=1.0, metadata={"help": "Passes over the training split."})
    max_steps: int | None = field(
        default=None,
        metadata={"help": "Optimizer steps to run; overrides epochs when set."},
    )
    batch_size: int = field(default=8, metadata={"help": "Examples per forward pass."})
    grad_accum: int = field(
        default=1, metadata={"help": "Forward passes accumulated per optimizer step."}
    )
    lr: float | None = field(
        default=None,
        metadata={
            "help": "Peak learning rate (default 2e-4 lora, 3e-3 prefix/prompt, 2e-5 full, "
            "5e-5 dpo)."
        },
    )
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay.", "cli": False})
    warmup_ratio: float = field(
        default=0.03,
        metadata={"help": "Fraction of steps spent warming the learning rate up.", "cli": False},
    )
    scheduler: str = field(
        default="linear",
        metadata={
            "help": f"Learning-rate schedule after warmup: {', '.join(SCHEDULERS)}.",
            "choices": SCHEDULERS,
            "cli": False,
        },
    )
    lora_r: int = field(default=8, metadata={"help": "LoRA rank.", "methods": LORA_METHODS})
    lora_alpha: int = field(
        default=16,
        metadata={"help": "LoRA scaling numerator (alpha/r).", "methods": LORA_METHODS},
    )
    lora_dropout: float = field(
        default=0.05, metadata={"help": "Dropout on the LoRA input.", "methods": LORA_METHODS}
    )
    target_modules: list[str] | None = field(
        default=None,
        metadata={
            "help": "Module names LoRA adapts, comma-separated (default per architecture: "
            "q/k/v/o_proj).",
            "methods": LORA_METHODS,
        },
    )
    beta: float = field(
        default=0.1,
        metadata={
            "help": "DPO: how strongly the policy is held to the reference (TRL's default 0.1; "
            "lower lets it move further).",
            "methods": ("dpo",),
        },
    )
    from_adapter: str = field(
        default="",
        metadata={
            "help": "DPO: start from this LoRA adapter (an SFT model in the workspace); it is "
            "also the reference policy (empty: a new adapter on the base model).",
            "methods": ("dpo",),
        },
    )
    num_virtual_tokens: int = field(
        default=20,
        metadata={
            "help": "Virtual tokens learned by prefix or prompt tuning.",
            "methods": ("prefix", "prompt"),
        },
    )
    max_seq_len: int = field(
        default=256, metadata={"help": "Tokens per example; longer prompts lose their start."}
    )
    packing: bool = field(
        default=False,
        metadata={"help": "Pack several examples into one row (needs sdpa/flash attention)."},
    )
    group_by_length: bool = field(
        default=True,
        metadata={"help": "Batch examples of similar length to cut padding.", "cli": False},
    )
    gradient_checkpointing: bool = field(
        default=False,
        metadata={
            "help": "Recompute each layer's activations during the backward pass instead of "
            "keeping them: less memory, about a quarter slower."
        },
    )
    quantize: str = field(
        default="none",
        metadata={
            "help": "4bit loads the frozen base in 4-bit NF4 (QLoRA, bitsandbytes, CUDA only).",
            "choices": QUANTIZE,
            "methods": ("lora",),
        },
    )
    eval_every_steps: int = field(
        default=50,
        metadata={"help": "Validate every N optimizer steps (0: only at the end).",
                  "flag": "eval-every"},
    )  # fmt: skip
    eval_samples: int = field(
        default=64, metadata={"help": "Validation rows scored at each evaluation."}
    )
    early_stopping_patience: int = field(
        default=0,
        metadata={"help": "Stop after N evaluations without improvement (0: never stop early).",
                  "flag": "patience"},
    )  # fmt: skip
    metric_for_best: str = field(
        default="val_loss",
        metadata={
            "help": f"Metric that picks the best checkpoint: {', '.join(BEST_METRICS)}.",
            "choices": BEST_METRICS,
        },
    )
    save_every_steps: int = field(
        default=0,
        metadata={"help": "Save a checkpoint every N steps (0: at each evaluation and the end).",
                  "cli": False},
    )  # fmt: skip
    seed: int = field(default=42, metadata={"help": "Seed for shuffling, dropout and init."})
    train_split: str = field(default="train", metadata={"help": "Split to train on."})
    val_split: str = field(
        default="",
        metadata={
            "help": "Split to validate on (empty: validation/val/dev if present, else rows held "
            "out of the training split)."
        },
    )
    device: str = field(
        default="auto",
        metadata={"help": f"Where to train: {', '.join(DEVICES)} or cuda:N.", "choices": DEVICES},
    )

    def __post_init__(self) -> None:
        self._coerce_types()
        _one_of("method", self.method, METHODS)
        _one_of("scheduler", self.scheduler, SCHEDULERS)
        _one_of("metric_for_best", self.metric_for_best, BEST_METRICS)
        _one_of("quantize", self.quantize, QUANTIZE)
        if self.quantize != "none" and self.method != "lora":
            raise BadInputError(
                f"--quantize {self.quantize} applies only to method lora (QLoRA), not "
                f"{self.method}; drop it"
            )
        if self.device not in DEVICES and not _is_cuda_index(self.device):
            raise BadInputError(
                f"device must be one of {', '.join(DEVICES)} or cuda:N, not {self.device!r}"
            )
        if self.lr is None:
            self.lr = DEFAULT_LR[self.method]
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise BadInputError(f"lr must be a positive number, not {self.lr}")
        if not (math.isfinite(self.epochs) and self.epochs > 0):
            raise BadInputError(f"epochs must be a positive number, not {self.epochs}")
        if self.max_steps is not None:
            _at_least("max_steps", self.max_steps, 1)
        if not (math.isfinite(self.beta) and self.beta > 0):
            raise BadInputError(f"beta must be a positive number (e.g. 0.1), not {self.beta}")
        for name in ("batch_size", "grad_accum", "lora_r", "lora_alpha", "num_virtual_tokens"):
            _at_least(name, getattr(self, name), 1)
        _at_least("max_seq_len", self.max_seq_len, 8)
        _at_least("eval_samples", self.eval_samples, 1)
        for name in ("eval_every_steps", "early_stopping_patience", "save_every_steps"):
            _at_least(name, getattr(self, name), 0)
        if not 0.0 <= self.weight_decay < 1.0:
            raise BadInputError(f"weight_decay must be in [0, 1), not {self.weight_decay}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise BadInputError(f"warmup_ratio must be in [0, 1), not {self.warmup_ratio}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise BadInputError(f"lora_dropout must be in [0, 1), not {self.lora_dropout}")
        if self.target_modules is not None:
            if not self.target_modules or not all(
                isinstance(m, str) and m for m in self.target_modules
            ):
                raise BadInputError("target_modules must be a non-empty list of module names")
            if self.method not in LORA_METHODS:
                raise BadInputError("target_modules applies only to method lora or dpo")
        if self.packing and self.method not in ("lora", "full"):
            raise BadInputError(
                f"packing applies only to lora and full fine-tuning, not {self.method}; "
                "drop --packing"
            )
        if self.packing and self.group_by_length:
            self.group_by_length = False  # packing already fills rows; grouping is moot
        if not self.train_split:
            raise BadInputError("train_split must name a split of the dataset")

    def _coerce_types(self) -> None:
        """Accept JSON/TOML/CLI spellings (ints for floats, "1e-4" strings) and reject the rest."""
        for f in fields(self):
            value = getattr(self, f.name)
            kind = str(f.type)
            if value is None and "None" in kind:
                continue
            try:
                if kind.startswith("float"):
                    value = float(value)
                elif kind.startswith("int"):
                    if isinstance(value, bool) or float(value) != int(float(value)):
                        raise ValueError
                    value = int(float(value))
                elif kind == "bool":
                    if not isinstance(value, bool):
                        raise ValueError
                elif kind == "str":
                    if not isinstance(value, str):
                        raise ValueError
                elif kind.startswith("list"):
                    if isinstance(value, str):
                        value = [v.strip() for v in value.split(",") if v.strip()]
                    value = list(value)
            except (TypeError, ValueError, OverflowError):
                raise BadInputError(
                    f"{f.name} must be {kind.replace(' | None', '')}, not {value!r}"
                ) from None
            setattr(self, f.name, value)

    @property
    def is_peft(self) -> bool:
        return self.method in PEFT_METHODS

    @property
    def greater_is_better(self) -> bool:
        return self.metric_for_best != "val_loss"

    def check_against_data(self, train_rows: int) -> None:
        """Reject a config the data cannot satisfy (checked once the split is known)."""
        if train_rows < 1:
            raise BadInputError(f"the {self.train_split!r} split is empty; nothing to train on")
        if self.batch_size > train_rows:
            raise BadInputError(
                f"batch_size {self.batch_size} is larger than the {train_rows} training rows of "
                f"split {self.train_split!r}; use --batch-size {train_rows} or less"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], strict: bool = False) -> TrainingConfig:
        """Build a config; unknown keys raise (strict) or are dropped with one warning."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(k for k in data if k not in known and k != "tunelab_version")
        if unknown:
            message = f"unknown training config keys: {', '.join(unknown)}"
            if strict:
                raise BadInputError(f"{message}; known keys: {', '.join(sorted(known))}")
            warnings.warn(f"{message} (ignored)", UserWarning, stacklevel=2)
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_json(self, path: Path | str) -> Path:
        """Write the config (stamped with our version) to `path`, or into it if a folder."""
        from tunelab import __version__

        target = Path(path)
        if target.is_dir():
            target = target / CONFIG_FILE
        payload = {**self.to_dict(), "tunelab_version": __version__}
        target.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return target

    @classmethod
    def from_json(cls, path: Path | str, strict: bool = False) -> TrainingConfig:
        """Read a config written by `to_json` (a file or the folder holding it)."""
        source = Path(path)
        if source.is_dir():
            source = source / CONFIG_FILE
        try:
            data = json.loads(source.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise BadInputError(f"no training config at {source}") from None
        except json.JSONDecodeError as exc:
            raise BadInputError(f"{source} is not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise BadInputError(f"{source} must hold a JSON object of config fields")
        return cls.from_dict(data, strict=strict)

    @classmethod
    def from_file(cls, path: Path | str) -> TrainingConfig:
        """Read a user-written config (.json or .toml) strictly; unknown keys are errors."""
        source = Path(path)
        if source.suffix == ".toml":
            import tomllib

            try:
                data = tomllib.loads(source.read_text(encoding="utf-8"))
            except FileNotFoundError:
                raise BadInputError(f"no config file at {source}") from None
            except tomllib.TOMLDecodeError as exc:
                raise BadInputError(f"{source} is not valid TOML ({exc})") from None
            return cls.from_dict(data.get("training", data), strict=True)
        return cls.from_json(source, strict=True)

    def with_overrides(self, **overrides: Any) -> TrainingConfig:
        """A copy with the given (non-None) fields replaced, validated again."""
        data = self.to_dict()
        new_method = overrides.get("method") or self.method
        follows_default = data["lr"] == DEFAULT_LR[self.method]
        if new_method != self.method and overrides.get("lr") is None and follows_default:
            data["lr"] = None  # follow the new method's default
        data.update({k: v for k, v in overrides.items() if v is not None})
        return TrainingConfig.from_dict(data, strict=True)


def default_target_modules(model_type: str, available: Iterable[str]) -> list[str]:
    """LoRA targets for an architecture: our table, else peft's, else every attention linear."""
    names = set(available)
    if model_type in _DEFAULT_TARGETS:
        return [m for m in _DEFAULT_TARGETS[model_type] if m in names]
    try:
        from peft.utils.constants import (  # peft's own per-architecture table
            TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as peft_table,
        )
    except ImportError:  # pragma: no cover - older peft
        peft_table = {}
    if model_type in peft_table:
        return [m for m in peft_table[model_type] if m in names]
    guessed = sorted(n for n in names if any(k in n for k in ("q", "k", "v", "attn", "query")))
    if not guessed:
        raise BadInputError(
            f"no default LoRA targets for model type {model_type!r}; pass --target-modules "
            f"from: {', '.join(sorted(names))}"
        )
    return guessed


def check_target_modules(requested: Iterable[str], available: Iterable[str]) -> None:
    """Every requested LoRA target must be a linear layer name in the model."""
    names = set(available)
    missing = [m for m in requested if m not in names]
    if missing:
        raise BadInputError(
            f"target module{'s' if len(missing) > 1 else ''} {', '.join(missing)} not found in "
            f"the model; available: {', '.join(sorted(names))}"
        )


def _one_of(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise BadInputError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")


def _at_least(name: str, value: int, minimum: int) -> None:
    if value < minimum:
        raise BadInputError(f"{name} must be an integer >= {minimum}, not {value}")


def _is_cuda_index(device: str) -> bool:
    prefix, _, index = device.partition(":")
    return prefix == "cuda" and index.isdigit()
