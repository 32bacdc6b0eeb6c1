"""Load models for generation: the built-in SmolLM2, local folders, GGUF files, hub ids, adapters.

GGUF files are converted once to a safetensors folder in the user cache (see model_cache.py).
torch, transformers and peft are imported inside the functions that need them.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunelab.engine.errors import BadInputError
from tunelab.engine.models.cache import builtin_model_dir, convert_gguf, file_hash, short_error
from tunelab.engine.models.prompt_learning import check_supported

if TYPE_CHECKING:
    from tunelab.store import Model, Store

BUILTIN_NAME = "builtin"
SOURCES = ("builtin", "hf_folder", "gguf", "hub", "artifact")
KINDS = ("base", "adapter", "merged")
LRU_SIZE = 2


@dataclass(frozen=True)
class ModelRef:
    """Where a model's weights live, resolved from a store record; adapters carry their base."""

    name: str
    source: str
    kind: str
    path: str
    """A local folder (or, for source 'hub', a hub id)."""
    base: ModelRef | None = None
    """The base model an adapter applies to."""


@dataclass
class LoadedModel:
    """A model ready to run, with its tokenizer and what callers need to budget prompts."""

    model: Any
    tokenizer: Any
    device: str
    dtype: str
    fingerprint: str
    """Stable across processes for the same weights + adapter; response-cache key material."""
    context_window: int
    name: str
    ref: ModelRef | None = None
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    """Held while generating: one forward pass at a time on a shared model."""


def _check_model_folder(path: Path, what: str = "model") -> None:
    if not path.exists():
        raise BadInputError(f"{what} path {path} does not exist; check the path")
    if not path.is_dir():
        raise BadInputError(f"{path} is not a folder; point at a model folder or a .gguf file")
    if not (path / "config.json").is_file():
        raise BadInputError(
            f"{path} is not a model folder (no config.json); point at a Hugging Face model "
            "folder or a .gguf file"
        )


def _check_adapter_folder(path: Path) -> None:
    if not path.exists():
        raise BadInputError(f"adapter path {path} does not exist; check the path")
    if not (path / "adapter_config.json").is_file():
        raise BadInputError(f"{path} is not a peft adapter folder (no adapter_config.json)")


def is_offline() -> bool:
    """True when the Hugging Face hub must not be contacted."""
    return any(
        os.environ.get(var, "").strip().lower() in {"1", "true", "yes", "on"}
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def model_ref(store: Store, model: Model) -> ModelRef:
    """Resolve a store record to where its weights live (converting GGUF, following adapters)."""
    if model.kind == "endpoint":
        raise BadInputError(
            f"model {model.name!r} is served by {model.path}; it has no weights here to load, "
            "fine-tune or export"
        )
    if model.source not in SOURCES:
        raise BadInputError(
            f"model {model.name!r} has unknown source {model.source!r}; "
            f"allowed: {', '.join(SOURCES)}"
        )
    if model.kind not in KINDS:
        raise BadInputError(
            f"model {model.name!r} has unknown kind {model.kind!r}; allowed: {', '.join(KINDS)}"
        )
    if model.kind == "adapter":
        if model.base_model_id is None:
            raise BadInputError(f"adapter {model.name!r} has no base model recorded")
        base = model_ref(store, store.get_model_by_id(model.base_model_id))
        path = Path(model.path).expanduser()
        _check_adapter_folder(path)
        return ModelRef(model.name, model.source, "adapter", str(path), base)
    if model.source == "builtin":
        return ModelRef(model.name, "builtin", model.kind, str(builtin_model_dir()))
    if model.source == "hub":
        return ModelRef(model.name, "hub", model.kind, model.path)
    path = Path(model.path).expanduser()
    if model.source == "gguf" or path.suffix.lower() == ".gguf":
        if not path.exists():
            raise BadInputError(f"GGUF file {path} does not exist; check the path")
        return ModelRef(model.name, model.source, model.kind, str(convert_gguf(path)))
    if (path / "adapter_config.json").is_file() and not (path / "config.json").is_file():
        raise BadInputError(
            f"{path} is a peft adapter; register it as an adapter with its base model"
        )
    _check_model_folder(path)
    return ModelRef(model.name, model.source, model.kind, str(path))


def fingerprint_of(ref: ModelRef) -> str:
    """A stable id for the weights (and adapter) a ref points at, cheap enough to call often."""
    if ref.source == "hub" and ref.kind != "adapter":
        return f"hub:{ref.path}"
    path = Path(ref.path)
    digest = hashlib.sha256()
    names = ("config.json", "adapter_config.json")
    weights = sorted(
        p for p in path.iterdir() if p.suffix in {".safetensors", ".bin", ".pt", ".pth"}
    )
    for name in names:
        if (path / name).is_file():
            digest.update(name.encode())
            digest.update((path / name).read_bytes())
    for weight in weights:
        digest.update(weight.name.encode())
        digest.update(file_hash(weight).encode())
    own = digest.hexdigest()[:20]
    if ref.base is not None:
        return f"{fingerprint_of(ref.base)}+{own}"
    return own


def pick_device(device: str = "auto") -> str:
    """cuda, then mps, then cpu; an explicit device is checked so a typo fails early."""
    import torch  # heavy import: only when a model is actually placed

    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BadInputError(f"device {device!r} requested but CUDA is not available; use cpu")
    if device not in {"cpu", "mps"} and not device.startswith("cuda"):
        raise BadInputError(f"unknown device {device!r}; allowed: auto, cpu, cuda, cuda:N, mps")
    return device


def pick_dtype(device: str, dtype: str = "auto") -> Any:
    """bf16 on CUDA where supported, else float32 (CPU half precision is slow and lossy)."""
    import torch  # heavy import

    names = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if dtype == "auto":
        if device.startswith("cuda") and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if dtype not in names:
        raise BadInputError(f"unknown dtype {dtype!r}; allowed: auto, {', '.join(names)}")
    return names[dtype]


_LRU: OrderedDict[tuple[str, str, str, bool], LoadedModel] = OrderedDict()
_LRU_LOCK = threading.Lock()


def clear_model_cache() -> None:
    """Forget loaded models (frees their memory once callers drop them)."""
    with _LRU_LOCK:
        _LRU.clear()


def load_model(
    store: Store,
    model: Model,
    device: str = "auto",
    dtype: str = "auto",
    trust_remote_code: bool = False,
) -> LoadedModel:
    """Load a store model (with its adapter) onto a device; the last two loads stay cached.

    Args:
        store: the workspace store, to follow an adapter to its base model.
        model: the model record to load.
        device: "auto" (cuda, mps, cpu) or an explicit device.
        dtype: "auto" (bf16 on CUDA where supported, else float32) or a dtype name.
        trust_remote_code: allow models that ship their own Python code.

    Returns:
        The loaded model, tokenizer (left padding, pad token set) and its metadata.
    """
    ref = model_ref(store, model)
    return load_ref(ref, device=device, dtype=dtype, trust_remote_code=trust_remote_code)


def load_ref(
    ref: ModelRef, device: str = "auto", dtype: str = "auto", trust_remote_code: bool = False
) -> LoadedModel:
    """Load a resolved ModelRef, using the LRU cache; see `load_model`."""
    resolved_device = pick_device(device)
    torch_dtype = pick_dtype(resolved_device, dtype)
    fingerprint = fingerprint_of(ref)
    key = (fingerprint, resolved_device, str(torch_dtype), trust_remote_code)
    with _LRU_LOCK:
        if key in _LRU:
            _LRU.move_to_end(key)
            return _LRU[key]
    loaded = _load_uncached(ref, resolved_device, torch_dtype, trust_remote_code, fingerprint)
    with _LRU_LOCK:
        _LRU[key] = loaded
        _LRU.move_to_end(key)
        while len(_LRU) > LRU_SIZE:
            _LRU.popitem(last=False)
    return loaded


def load_builtin(device: str = "auto", dtype: str = "auto") -> LoadedModel:
    """The built-in SmolLM2-135M-Instruct, without needing a store."""
    ref = ModelRef(BUILTIN_NAME, "builtin", "base", str(builtin_model_dir()))
    return load_ref(ref, device=device, dtype=dtype)


def _needs_remote_code(folder: Path) -> bool:
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return bool(config.get("auto_map"))


def _load_uncached(
    ref: ModelRef, device: str, torch_dtype: Any, trust_remote_code: bool, fingerprint: str
) -> LoadedModel:
    base_ref = ref.base if ref.kind == "adapter" and ref.base is not None else ref
    try:
        model, tokenizer = _load_base(base_ref, torch_dtype, trust_remote_code)
        if ref.kind == "adapter":
            model = _apply_adapter(model, ref)
        model.to(device)
    except (MemoryError, RuntimeError) as exc:
        if not _is_out_of_memory(exc):
            raise
        raise BadInputError(
            f"not enough memory to load model {ref.name!r} on {device} ({short_error(exc)}); "
            "close other programs, use a smaller model, or load it with dtype=float16"
        ) from exc
    model.eval()
    # Refuse, at load, an adapter whose virtual tokens evaluation cannot make explicit.
    check_supported(model, device)
    _prepare_tokenizer(tokenizer, model)
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        device=device,
        dtype=str(torch_dtype).removeprefix("torch."),
        fingerprint=fingerprint,
        context_window=_context_window(model, tokenizer),
        name=ref.name,
        ref=ref,
    )


def _is_out_of_memory(exc: BaseException) -> bool:
    """MemoryError, torch's OutOfMemoryError, or the CPU allocator's 'can't allocate memory'."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc).lower()
    return "out of memory" in text or "can't allocate memory" in text


def _load_base(ref: ModelRef, torch_dtype: Any, trust_remote_code: bool) -> tuple[Any, Any]:
    # Heavy import: transformers only when a model is actually loaded.
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    # Its "Loading weights" bar would land on the terminal under the TUI, and on stderr
    # beside the CLI's one-line errors; loads are reported by the callers instead.
    hf_logging.disable_progress_bar()
    if "TRANSFORMERS_VERBOSITY" not in os.environ:
        # Library deprecation notices are for us, not for people reading a run's output.
        hf_logging.set_verbosity_error()

    where = ref.path
    if ref.source == "hub":
        if is_offline():
            raise BadInputError(
                f"{ref.path!r} is a Hugging Face hub id but tunelab is offline "
                "(HF_HUB_OFFLINE is set); download it to a folder and register the folder"
            )
    else:
        folder = Path(where)
        _check_model_folder(folder)
        if _needs_remote_code(folder) and not trust_remote_code:
            raise BadInputError(
                f"model {ref.name!r} ships its own Python code; pass trust_remote_code "
                "(--trust-remote-code) only if you trust its source"
            )
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            where, dtype=torch_dtype, trust_remote_code=trust_remote_code
        )
    except ValueError as exc:
        if "trust_remote_code" in str(exc):
            raise BadInputError(
                f"model {ref.name!r} needs trust_remote_code; pass it only if you trust its source"
            ) from exc
        raise BadInputError(
            f"cannot load model {ref.name!r} from {where}: {short_error(exc)}"
        ) from exc
    except OSError as exc:
        if ref.source == "hub":
            raise BadInputError(
                f"cannot reach the Hugging Face hub for {where!r} (offline or unknown id): "
                f"{short_error(exc)}"
            ) from exc
        raise BadInputError(
            f"cannot load model {ref.name!r} from {where}: {short_error(exc)}"
        ) from exc
    return model, tokenizer


def _apply_adapter(model: Any, ref: ModelRef) -> Any:
    # Heavy import: peft only for adapter models.
    from peft import PeftModel

    _check_adapter_folder(Path(ref.path))
    base_name = ref.base.name if ref.base else "its base"
    try:
        return PeftModel.from_pretrained(model, ref.path, is_trainable=False)
    except (RuntimeError, ValueError, KeyError) as exc:
        raise BadInputError(
            f"adapter {ref.name!r} does not fit base model {base_name!r} ({short_error(exc)}); "
            "register it on the base it was trained on"
        ) from exc


def _prepare_tokenizer(tokenizer: Any, model: Any) -> None:
    """Left padding and a pad token, which batched generation needs."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token
        else:
            tokenizer.add_special_tokens({"pad_token": "<pad>"})
            model.resize_token_embeddings(len(tokenizer))
    gen_config = getattr(model, "generation_config", None)
    if gen_config is not None and gen_config.pad_token_id is None:
        gen_config.pad_token_id = tokenizer.pad_token_id


def _context_window(model: Any, tokenizer: Any) -> int:
    config = model.config
    for attr in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            window = value
            break
    else:
        window = 2048
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < 1_000_000:
        window = min(window, limit)
    return window
