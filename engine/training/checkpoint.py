"""Building the model to train, and checkpoints: save, register in the store, resume.

A checkpoint folder holds what `PeftModel.from_pretrained` (adapters) or
`AutoModelForCausalLM.from_pretrained` (full fine-tuning) loads, the tokenizer, and
`training_config.json`. The newest one also holds `trainer_state.pt` (optimizer, scheduler,
step, RNG), written last, so a folder with it is complete and resumable.
"""

from __future__ import annotations

import errno
import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab.engine.errors import BadInputError, EngineError
from tunelab.engine.models.cache import short_error
from tunelab.engine.training.config import (
    LORA_METHODS,
    TrainingConfig,
    check_target_modules,
    default_target_modules,
)
from tunelab.engine.training.devices import load_plan

if TYPE_CHECKING:
    from tunelab.store import Dataset, Model, PromptVersion, Store

STATE_FILE = "trainer_state.pt"
STEP_PREFIX = "step-"
POLICY_ADAPTER = "default"
REFERENCE_ADAPTER = "reference"
"""DPO from an SFT adapter: the adapter is loaded twice on the one base model, frozen as the
reference and trainable as the policy, so the base weights are in memory once."""


@dataclass
class CheckpointState:
    """Loop state saved with the newest checkpoint; enough to continue exactly."""

    step: int = 0
    tokens_seen: int = 0
    best_value: float | None = None
    best_model_id: int | None = None
    best_step: int | None = None
    evals_without_improvement: int = 0
    last_val: dict[str, float] = field(default_factory=dict)
    resumed_at: int = 0

    def best_dict(self) -> dict[str, Any]:
        if self.best_model_id is None:
            return {}
        return {"model_id": self.best_model_id, "step": self.best_step, "value": self.best_value}

    def observe(self, config: TrainingConfig, metrics: dict[str, float], model_id: int) -> bool:
        """Track the best checkpoint by `metric_for_best`; True when this one is the new best."""
        value = metrics.get(config.metric_for_best)
        if value is None:
            return False
        better = self.best_value is None or (
            value > self.best_value if config.greater_is_better else value < self.best_value
        )
        if better:
            self.best_value, self.best_model_id, self.best_step = value, model_id, self.step
            self.evals_without_improvement = 0
        else:
            self.evals_without_improvement += 1
        return better


def linear_module_names(model: Any) -> set[str]:
    """Short names of the linear layers LoRA could adapt (lm_head excluded)."""
    import torch  # heavy import

    names = set()
    for full_name, module in model.named_modules():
        is_linear = isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D"
        if is_linear and not full_name.endswith("lm_head"):
            names.add(full_name.rsplit(".", 1)[-1])
    return names


def build_model(
    store: Store, base: Model, config: TrainingConfig, device: str, resume_dir: Path | None
) -> tuple[Any, Any, int]:
    """The trainable model, its tokenizer (right padding) and the count of prompt-tuning
    virtual tokens (which shift the logits by that many positions)."""
    import torch  # heavy import: the model itself
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunelab.engine.models.loading import model_ref

    if base.kind == "adapter":
        raise BadInputError(f"{base.name!r} is an adapter; train on its base model")
    ref = model_ref(store, base)
    weights = str(resume_dir) if (resume_dir is not None and config.method == "full") else ref.path
    tokenizer = AutoTokenizer.from_pretrained(ref.path)
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise BadInputError(f"model {base.name!r} has neither a pad nor an EOS token")
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.eos_token is None:
        raise BadInputError(f"model {base.name!r} has no EOS token to end its answers")
    tokenizer.padding_side = "right"
    plan = load_plan(device, config.method, config.quantize,
                     device.startswith("cuda") and torch.cuda.is_bf16_supported())  # fmt: skip
    load_options: dict[str, Any] = {"dtype": getattr(torch, plan.dtype)}
    if plan.attn_implementation:
        load_options["attn_implementation"] = plan.attn_implementation
    if plan.quantize_4bit:
        load_options.update(_four_bit_options(device))
    model: Any = AutoModelForCausalLM.from_pretrained(weights, **load_options)
    model.config.use_cache = False
    if plan.quantize_4bit:
        from peft import prepare_model_for_kbit_training  # QLoRA: norms in fp32, inputs grad

        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=config.gradient_checkpointing
        )
    if config.gradient_checkpointing:
        if not getattr(model, "supports_gradient_checkpointing", False):
            raise BadInputError(
                f"model {base.name!r} does not support gradient checkpointing; "
                "drop --gradient-checkpointing"
            )
        # Non-reentrant checkpointing needs no input that requires grad, so frozen embeddings
        # (LoRA, prefix and prompt tuning) still get gradients into the adapters.
        options = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x name
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=options)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=options)
    if config.is_peft:
        from peft import get_peft_model, set_peft_model_state_dict

        if config.method == "dpo" and config.from_adapter:
            model = _policy_and_reference(store, base, config.from_adapter, model)
        else:
            model = get_peft_model(model, _peft_config(model, config))
        if resume_dir is not None:
            from safetensors.torch import load_file

            weights_file = str(resume_dir / "adapter_model.safetensors")
            set_peft_model_state_dict(model, load_file(weights_file))
    if not plan.quantize_4bit:  # a 4-bit model is placed at load and cannot move
        model.to(device)
    return model, tokenizer, config.num_virtual_tokens if config.method == "prompt" else 0


def _four_bit_options(device: str) -> dict[str, Any]:
    """from_pretrained options that load the base in 4-bit NF4 on `device` (QLoRA)."""
    import torch
    from transformers import BitsAndBytesConfig

    compute = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    quantization = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute,
    )  # fmt: skip
    return {"quantization_config": quantization, "device_map": {"": device}}


def start_adapter(store: Store, base: Model, name: str) -> Model:
    """The LoRA adapter a DPO job starts from, checked: a LoRA adapter on `base` whose files
    are there."""
    import json

    adapter = store.get_model(name)
    if adapter.kind != "adapter":
        raise BadInputError(
            f"--from-adapter {name!r} is a {adapter.kind} model, not a LoRA adapter; give a "
            "LoRA fine-tune (see `tunelab model list`)"
        )
    settings = Path(adapter.path).expanduser() / "adapter_config.json"
    try:
        peft_type = json.loads(settings.read_text(encoding="utf-8")).get("peft_type")
    except (OSError, ValueError):
        raise BadInputError(
            f"--from-adapter {name!r}: no readable adapter_config.json in {adapter.path}"
        ) from None
    if peft_type != "LORA":
        raise BadInputError(
            f"--from-adapter {name!r} is a {peft_type} adapter; DPO starts only from a LoRA one"
        )
    if adapter.base_model_id != base.id:
        trained_on = (
            store.get_model_by_id(adapter.base_model_id).name
            if adapter.base_model_id is not None
            else "an unknown base"
        )
        raise BadInputError(
            f"--from-adapter {name!r} was trained on {trained_on}, not {base.name}; "
            f"pass --base {trained_on}"
        )
    return adapter


def _policy_and_reference(store: Store, base: Model, adapter_name: str, model: Any) -> Any:
    """The SFT adapter on the base twice: frozen (the reference) and trainable (the policy)."""
    from peft import PeftModel

    path = str(Path(start_adapter(store, base, adapter_name).path).expanduser())
    peft_model = PeftModel.from_pretrained(
        model, path, adapter_name=REFERENCE_ADAPTER, is_trainable=False
    )
    peft_model.load_adapter(path, adapter_name=POLICY_ADAPTER, is_trainable=True)
    peft_model.set_adapter(POLICY_ADAPTER)  # also freezes the reference adapter
    return peft_model


def has_reference_adapter(model: Any) -> bool:
    return REFERENCE_ADAPTER in getattr(model, "peft_config", {})


def _peft_config(model: Any, config: TrainingConfig) -> Any:
    from peft import LoraConfig, PrefixTuningConfig, PromptTuningConfig, PromptTuningInit

    if config.method in LORA_METHODS:
        available = linear_module_names(model)
        targets = config.target_modules or default_target_modules(
            model.config.model_type, available
        )
        check_target_modules(targets, available)
        return LoraConfig(
            task_type="CAUSAL_LM", r=config.lora_r, lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout, target_modules=targets,
        )  # fmt: skip
    if config.method == "prefix":
        return PrefixTuningConfig(
            task_type="CAUSAL_LM", num_virtual_tokens=config.num_virtual_tokens
        )
    init = getattr(PromptTuningInit, "SAMPLE_VOCAB", PromptTuningInit.RANDOM)
    return PromptTuningConfig(
        task_type="CAUSAL_LM", num_virtual_tokens=config.num_virtual_tokens,
        prompt_tuning_init=init,
    )  # fmt: skip


def checkpoint_dirs(output_dir: Path) -> list[Path]:
    if not output_dir.is_dir():
        return []
    found = [p for p in output_dir.iterdir() if p.is_dir() and p.name.startswith(STEP_PREFIX)]
    return sorted(found, key=lambda p: int(p.name.removeprefix(STEP_PREFIX)))


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The newest complete, resumable checkpoint in `output_dir`, if any."""
    for path in reversed(checkpoint_dirs(output_dir)):
        if (path / STATE_FILE).is_file():
            return path
    return None


def load_state(checkpoint: Path, optimizer: Any, scheduler: Any) -> CheckpointState:
    """Restore optimizer, scheduler and RNG state; returns the loop state to continue from."""
    import torch  # heavy import

    saved = torch.load(checkpoint / STATE_FILE, map_location="cpu", weights_only=True)
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    torch.set_rng_state(saved["torch_rng"])
    random.setstate(saved["python_rng"])
    state = CheckpointState(**saved["loop"])
    state.resumed_at = state.step
    return state


def _disk_full(exc: BaseException) -> bool:
    """No space left (or a file-size limit hit), from Python or from safetensors' Rust code."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return True
    text = str(exc)
    return any(
        marker in text
        for marker in ("No space left", "File too large", "StorageFull", "FileTooLarge",
                       "Disk quota exceeded")
    )  # fmt: skip


class Checkpointer:
    """Saves checkpoints and registers each as a model with its lineage (rank 0 only)."""

    def __init__(
        self,
        store: Store,
        request: Any,
        base: Model,
        dataset: Dataset,
        version: PromptVersion,
        tokenizer: Any,
        enabled: bool,
    ) -> None:
        self.store = store
        self.request = request
        self.base = base
        self.dataset = dataset
        self.version = version
        self.tokenizer = tokenizer
        self.enabled = enabled
        self.model_ids: list[int] = []
        cfg = request.config
        job = f"job-{request.job_id}" if request.job_id is not None else request.output_dir.name
        self.prefix = request.model_name_prefix or f"{base.name}-{cfg.method}-{job}"

    def save(
        self,
        model: Any,
        config: TrainingConfig,
        step: int,
        state: CheckpointState,
        optimizer: Any,
        scheduler: Any,
        metrics: dict[str, float],
    ) -> int | None:
        """Write a checkpoint, register it, track the best; returns the model id."""
        import torch  # heavy import

        if not self.enabled:
            return None
        out_dir = Path(self.request.output_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        final = out_dir / f"{STEP_PREFIX}{step:06d}"
        tmp = out_dir / f".{final.name}.tmp"
        state_tmp = final / f".{STATE_FILE}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            # Weights go to a temporary folder renamed into place, and the state file is
            # renamed into place last: a crash or a full disk never leaves a half checkpoint
            # that looks complete, and the previous checkpoint keeps its state until then.
            unwrapped = getattr(model, "module", model)
            # Only the policy: the frozen reference copy is the adapter the job started from.
            only = (
                {"selected_adapters": [POLICY_ADAPTER]} if has_reference_adapter(unwrapped) else {}
            )
            unwrapped.save_pretrained(str(tmp), safe_serialization=True, **only)
            self.tokenizer.save_pretrained(str(tmp))
            config.to_json(tmp)
            size = sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file())
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            record = self._register(final, config, step, metrics, size)
            if metrics and state.observe(config, metrics, record.id) and self.request.job_id:
                self.store.mark_best_model(self.request.job_id, record.id)
            loop = {k: v for k, v in state.__dict__.items() if k != "resumed_at"}
            torch.save(
                {
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "torch_rng": torch.get_rng_state(),
                    "python_rng": random.getstate(),
                    "loop": loop,
                },
                state_tmp,
            )
            os.replace(state_tmp, final / STATE_FILE)
        except Exception as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if final.is_dir():
                state_tmp.unlink(missing_ok=True)
            if _disk_full(exc):
                resume = f"tunelab jobs resume {self.request.job_id}" if self.request.job_id else ""
                raise EngineError(
                    f"disk full while saving checkpoint {final.name} ({short_error(exc)}); free "
                    f"some space, then {resume or 'resume'} continues from the last checkpoint"
                ) from exc
            raise
        for older in checkpoint_dirs(out_dir):
            if older != final:
                (older / STATE_FILE).unlink(missing_ok=True)
        self.model_ids.append(record.id)
        return record.id

    def _register(
        self, path: Path, config: TrainingConfig, step: int, metrics: dict[str, float], size: int
    ) -> Model:
        from tunelab.engine.models.loading import ModelRef, fingerprint_of, model_ref
        from tunelab.store import NewModel

        kind = "adapter" if config.is_peft else "merged"
        name = f"{self.prefix}-step{step}"
        base_ref = model_ref(self.store, self.base) if kind == "adapter" else None
        fingerprint = fingerprint_of(ModelRef(name, "artifact", kind, str(path), base_ref))
        record = self.store.add_model(
            NewModel(
                name=name, kind=kind, source="artifact", path=str(path),
                base_model_id=self.base.id, method=config.method,
                training_dataset_id=self.dataset.id,
                training_dataset_fingerprint=self.dataset.fingerprint,
                prompt_version_id=self.version.id, training_config=config.to_dict(),
                job_id=self.request.job_id, step=step, metrics=dict(metrics),
                size_bytes=size, fingerprint=fingerprint,
            ),
            exist_ok=True,
        )  # fmt: skip
        if metrics and record.metrics != metrics:
            self.store.update_model_metrics(record.id, dict(metrics))
        return record
