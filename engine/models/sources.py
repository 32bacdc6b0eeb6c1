"""Turn a model argument (`builtin`, a folder, a .gguf file, a hub id) into a store record.

Registering only records where the weights are; nothing is loaded, converted or copied, so
`tunelab model add` is instant and fails early on a wrong path.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

from tunelab.engine.errors import BadInputError, one_line
from tunelab.engine.models.cache import builtin_gguf_path, check_gguf, check_safetensors
from tunelab.engine.models.loading import BUILTIN_NAME, is_offline

if TYPE_CHECKING:
    from tunelab.store import Model, Store

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
"""owner/name, the shape of a Hugging Face hub model id."""


def _looks_like_path(arg: str) -> bool:
    return (
        arg.startswith((".", "/", "~"))
        or arg.lower().endswith(".gguf")
        or arg.count("/") > 1
        or "\\" in arg
    )


def _cheap_fingerprint(path: Path) -> str:
    """Config plus weight names and sizes: enough to notice a changed folder, instant to compute."""
    digest = hashlib.sha256()
    if path.is_file():
        stat = path.stat()
        digest.update(f"{path.name}:{stat.st_size}".encode())
        with path.open("rb") as fh:
            digest.update(fh.read(1 << 20))
    else:
        for name in ("config.json", "adapter_config.json"):
            if (path / name).is_file():
                digest.update((path / name).read_bytes())
        for weight in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
            digest.update(f"{weight.name}:{weight.stat().st_size}".encode())
    return digest.hexdigest()[:20]


def _check_remote_code(folder: Path, trust_remote_code: bool) -> None:
    path = folder / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInputError(f"{path} is not valid JSON: {exc}") from None
    # transformers needs model_type (or the model's own code) to know what to build; `{}`
    # would register fine and fail at the first load.
    if not isinstance(config, dict) or not (config.get("model_type") or config.get("auto_map")):
        raise BadInputError(
            f'{path} has no "model_type", so it is not a model config transformers can load; '
            "re-download the model or fix the file"
        )
    if config.get("auto_map") and not trust_remote_code:
        raise BadInputError(
            f"{folder} ships its own Python code; add --trust-remote-code only if you trust it"
        )


def _check_hub(model_id: str) -> None:
    """Refuse a hub id when offline or when the hub does not know it."""
    if is_offline():
        raise BadInputError(
            f"{model_id!r} is a Hugging Face hub id but tunelab is offline (HF_HUB_OFFLINE is "
            "set); download the model to a folder and add the folder instead"
        )
    try:
        from huggingface_hub import model_info  # heavy-ish import: only for hub ids

        model_info(model_id, timeout=10)
    except Exception as exc:
        text = one_line(exc)
        raise BadInputError(
            f"cannot find {model_id!r} on the Hugging Face hub (offline, unreachable, or no such "
            f"model): {text}"
        ) from exc


def register_model(
    store: Store, source: str, name: str | None = None, trust_remote_code: bool = False
) -> Model:
    """Record a model in the workspace from a model argument.

    Args:
        store: the workspace store.
        source: `builtin`, a Hugging Face model folder, a `.gguf` file, or a hub id (online only).
        name: the workspace name; defaults to "builtin", the folder/file name, or the hub id.
        trust_remote_code: allow a model that ships its own Python code.

    Returns:
        The stored model record (the existing one when the same model is already registered).
    """
    from tunelab.store import NewModel

    arg = source.strip()
    if not arg:
        raise BadInputError("give a model: builtin, a model folder, a .gguf file or a hub id")
    if arg == BUILTIN_NAME:
        gguf = builtin_gguf_path()
        new = NewModel(
            name=name or BUILTIN_NAME,
            kind="base",
            source="builtin",
            path=str(gguf),
            fingerprint=_cheap_fingerprint(gguf),
        )
        return store.add_model(new, exist_ok=True)
    path = Path(arg).expanduser()
    if path.exists():
        path = path.resolve()
        existing = _registered_at(store, path)
        if existing is not None and (name is None or name == existing.name):
            return existing
        if path.is_file():
            if path.suffix.lower() != ".gguf":
                raise BadInputError(
                    f"{path} is not a model: give a model folder (with config.json) or a .gguf file"
                )
            check_gguf(path)
            kind_source = "gguf"
            default_name = path.stem
        else:
            if (path / "adapter_config.json").is_file() and not (path / "config.json").is_file():
                raise BadInputError(
                    f"{path} is a peft adapter, not a full model; fine-tuned adapters are "
                    "registered with their base model by the trainer"
                )
            if not (path / "config.json").is_file():
                raise BadInputError(
                    f"{path} is not a model folder (no config.json); give a Hugging Face model "
                    "folder or a .gguf file"
                )
            _check_remote_code(path, trust_remote_code)
            # Weights (adapter_model.safetensors included) are checked from their headers now,
            # so a truncated download is one line here rather than a traceback at load.
            for weights in sorted(path.glob("*.safetensors")):
                check_safetensors(weights)
            kind_source = "hf_folder"
            default_name = path.name
        new = NewModel(
            name=name or default_name,
            kind="base",
            source=kind_source,
            path=str(path),
            fingerprint=_cheap_fingerprint(path),
        )
        return store.add_model(new)
    if _looks_like_path(arg):
        raise BadInputError(f"model path {arg} does not exist; check the path")
    if not HUB_ID.match(arg):
        raise BadInputError(
            f"{arg!r} is not a model name, path or hub id; known models: "
            f"{', '.join(store.model_names()) or '(none)'}; or use builtin"
        )
    for model in store.list_models():
        if model.source == "hub" and model.path == arg and (name is None or name == model.name):
            return model
    _check_hub(arg)
    new = NewModel(name=name or arg, kind="base", source="hub", path=arg, fingerprint=f"hub:{arg}")
    return store.add_model(new)


def _registered_at(store: Store, path: Path) -> Model | None:
    for model in store.list_models():
        if model.source in {"hf_folder", "gguf"} and Path(model.path) == path:
            return model
    return None


def resolve_model(store: Store, arg: str) -> Model:
    """A model from a workspace name, a model label (`swept`, `sweep-3-best`), `builtin`, a
    path or a hub id (registered on the fly)."""
    from tunelab.store import NotFoundError

    try:
        return store.get_model(arg)
    except NotFoundError:
        pass
    labelled = store.labelled_model(arg)
    if labelled is not None:
        return labelled
    return register_model(store, arg)
