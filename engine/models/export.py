"""Export a fine-tuned model as a plain Hugging Face folder that transformers loads alone.

A LoRA adapter is merged into its base weights (`merge_and_unload`); a fully fine-tuned model
is re-saved as is. Prefix and prompt tuning cannot be merged: their virtual tokens are not
weights of the base model.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from tunelab.engine.errors import BadInputError

if TYPE_CHECKING:
    from tunelab.store import Model, Store


def export_merged(store: Store, model: Model, out_dir: Path | str) -> Path:
    """Write `model` (adapter merged into its base) to `out_dir`; returns the folder.

    Args:
        store: the workspace store, to find an adapter's base model.
        model: the model to export (LoRA adapter, merged/full fine-tune, or base).
        out_dir: a new (or empty) folder.
    """
    import torch  # heavy import: loads the weights
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunelab.engine.models.loading import model_ref

    out = Path(out_dir).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BadInputError(f"{out} already exists and is not empty; choose a new folder")
    ref = model_ref(store, model)
    if ref.kind == "adapter":
        import json

        from peft import PeftModel

        adapter_type = json.loads((Path(ref.path) / "adapter_config.json").read_text()).get(
            "peft_type", ""
        )
        if adapter_type != "LORA":
            raise BadInputError(
                f"{model.name!r} is a {adapter_type.lower() or 'non-LoRA'} adapter, which cannot "
                "be merged into the base weights; only LoRA adapters merge"
            )
        assert ref.base is not None
        base = AutoModelForCausalLM.from_pretrained(ref.base.path, dtype=torch.float32)
        merged = PeftModel.from_pretrained(base, ref.path).merge_and_unload()
        tokenizer_source = (
            ref.path if (Path(ref.path) / "tokenizer_config.json").exists() else ref.base.path
        )
    else:
        merged = AutoModelForCausalLM.from_pretrained(ref.path, dtype=torch.float32)
        tokenizer_source = ref.path
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        merged.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        config = Path(ref.path) / "training_config.json"
        if config.exists():
            shutil.copy2(config, tmp / "training_config.json")
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
