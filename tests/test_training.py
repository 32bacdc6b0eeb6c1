"""The trainer: completion-only data, every method, reproducibility, exact resume, export,
and (with the real built-in model) a LoRA adapter that plain peft loads and that changes
the model's outputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tune_helpers import add_training_data, tiny_model_dir
from tunelab.engine.errors import BadInputError
from tunelab.engine.training.config import CONFIG_FILE, TrainingConfig
from tunelab.engine.training.data import (
    IGNORE_INDEX,
    batch_order,
    completion_text,
    encode_example,
    packed_order,
)
from tunelab.engine.training.loop import TrainingRequest, run_training
from tunelab.store import Store

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model_dir(tmp_path_factory.mktemp("tiny"))


def _train(store: Store, out: Path, model_dir: Path | None, **changes: object):  # type: ignore[no-untyped-def]
    base, dataset, version = add_training_data(store, model_dir)
    settings = {"max_steps": 3, "batch_size": 4, "max_seq_len": 48, "eval_every_steps": 0,
                "eval_samples": 4, "lr": 1e-2}  # fmt: skip
    config = TrainingConfig(**{**settings, **changes})  # type: ignore[arg-type]
    request = TrainingRequest(config, base.id, dataset.id, version.id, out)
    seen: list = []
    return run_training(store, request, seen.append), seen


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    name = (
        "adapter_model.safetensors"
        if (folder / "adapter_config.json").exists()
        else "model.safetensors"
    )
    return load_file(str(folder / name))


def test_examples_mask_the_prompt_and_keep_the_completion(tiny_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_dir))
    prompt = "<|im_start|>user\nIronic?<|im_end|>\n<|im_start|>assistant\n"
    completion = completion_text(prompt, "irony", tokenizer)
    assert completion == "irony" + tokenizer.eos_token
    assert completion_text("Label:", "irony", tokenizer).startswith(" irony")
    example = encode_example(prompt, completion, tokenizer, 64)
    answer = [t for t in example.labels if t != IGNORE_INDEX]
    assert tokenizer.decode(answer) == completion
    assert example.labels[: example.prompt_len] == [IGNORE_INDEX] * example.prompt_len
    short = encode_example(prompt * 10, completion, tokenizer, 16)
    assert len(short) == 16 and short.labels[-len(answer) :] == answer


def test_batching_groups_by_length_and_packing_fits_rows() -> None:
    lengths = [5, 50, 6, 48, 7, 52, 5, 49] * 10
    grouped = batch_order(lengths, 4, seed=1, epoch=0, group_by_length=True)
    assert sorted(i for b in grouped for i in b) == list(range(80))
    spread = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in grouped]
    assert max(spread) <= 5
    assert batch_order(lengths, 4, 1, 0, True) == grouped != batch_order(lengths, 4, 1, 1, True)
    packed = packed_order(lengths, 2, 64, seed=1, epoch=0)
    rows = [row for batch in packed for row in batch]
    assert sorted(i for row in rows for i in row) == list(range(80))
    assert all(sum(lengths[i] for i in row) <= 64 for row in rows)
    assert len(rows) < 80


def test_packed_batch_loss_equals_the_padded_batch_loss(tiny_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunelab.engine.training.steps import collate, collate_packed, loss_sum

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_dir))
    model = AutoModelForCausalLM.from_pretrained(str(tiny_dir), dtype=torch.float32).eval()
    pairs = [("hi", "irony"), ("long one", "no")]
    examples = [
        encode_example(f"Tweet {t}\nLabel:", completion_text("x", a, tokenizer), tokenizer, 64)
        for t, a in pairs
    ]
    with torch.no_grad():
        padded, n1 = loss_sum(model, collate(examples, tokenizer.pad_token_id, "cpu"))
        packed, n2 = loss_sum(model, collate_packed([examples], tokenizer.pad_token_id, "cpu"))
    assert n1 == n2
    assert float(packed) == pytest.approx(float(padded), rel=1e-4)


@pytest.mark.parametrize("method", ["lora", "prefix", "prompt", "full"])
def test_each_method_trains_and_saves_loadable_artifacts(
    store: Store, tmp_path: Path, tiny_dir: Path, method: str
) -> None:
    result, seen = _train(store, tmp_path / method, tiny_dir, method=method, max_steps=2)
    assert result.status == "completed" and result.step == 2
    models = store.list_models()[1:]
    assert [m.step for m in models] == [2]
    model = models[0]
    assert model.kind == ("merged" if method == "full" else "adapter")
    assert model.metrics["val_loss"] > 0 and "val_accuracy" in model.metrics
    assert (Path(model.path) / CONFIG_FILE).exists()
    assert (Path(model.path) / "tokenizer_config.json").exists()
    assert TrainingConfig.from_json(model.path).method == method
    losses = [p.train_loss for p in seen if p.phase == "training"]
    assert len(losses) == 2 and all(loss > 0 for loss in losses)


def test_same_seed_same_weights_and_resume_is_exact(
    store: Store, tmp_path: Path, tiny_dir: Path
) -> None:
    full, _ = _train(store, tmp_path / "a", tiny_dir, max_steps=4, save_every_steps=2)
    again, _ = _train(store, tmp_path / "b", tiny_dir, max_steps=4)
    first = _weights(tmp_path / "a" / "step-000004")
    second = _weights(tmp_path / "b" / "step-000004")
    assert all(torch.equal(first[k], v) for k, v in second.items())
    # Train two steps, stop, then resume the same folder to four: same weights as straight.
    base, dataset, version = add_training_data(store, tiny_dir)
    config = TrainingConfig(max_steps=4, batch_size=4, max_seq_len=48, eval_every_steps=0,
                            eval_samples=4, lr=1e-2)  # fmt: skip
    request = TrainingRequest(config, base.id, dataset.id, version.id, tmp_path / "c")
    calls = iter(range(100))
    stopped = run_training(store, request, should_stop=lambda: next(calls) >= 1)
    assert stopped.status == "stopped" and stopped.step == 2
    resumed = run_training(store, request)
    assert resumed.status == "completed" and resumed.step == 4
    third = _weights(tmp_path / "c" / "step-000004")
    for key, value in first.items():
        assert torch.allclose(third[key], value, atol=1e-6), key
    assert full.step == again.step == 4


def test_unknown_target_module_is_named_with_the_available_ones(
    store: Store, tmp_path: Path, tiny_dir: Path
) -> None:
    with pytest.raises(BadInputError) as info:
        _train(store, tmp_path / "x", tiny_dir, target_modules=["q_proj", "c_attn"])
    assert "c_attn" in str(info.value) and "available:" in str(info.value)
    assert "o_proj" in str(info.value)


def test_early_stopping_and_best_checkpoint(store: Store, tmp_path: Path, tiny_dir: Path) -> None:
    # A huge learning rate makes validation loss worse after the first evaluation.
    result, _ = _train(store, tmp_path / "e", tiny_dir, max_steps=40, eval_every_steps=1,
                       early_stopping_patience=2, lr=5.0, warmup_ratio=0.0,
                       scheduler="constant")  # fmt: skip
    assert result.status == "early_stopped" and result.step < 40
    models = {m.id: m for m in store.list_models()[1:]}
    best = models[result.best_model_id]  # type: ignore[index]
    assert best.metrics["val_loss"] == min(m.metrics["val_loss"] for m in models.values())


def test_export_merges_lora_into_a_plain_transformers_folder(
    store: Store, tmp_path: Path, tiny_dir: Path
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from tunelab.engine.models.export import export_merged

    _train(store, tmp_path / "m", tiny_dir, max_steps=2)
    adapter = store.list_models()[-1]
    out = export_merged(store, adapter, tmp_path / "merged")
    merged = AutoModelForCausalLM.from_pretrained(str(out)).eval()
    base = AutoModelForCausalLM.from_pretrained(str(tiny_dir))
    peft_model = PeftModel.from_pretrained(base, adapter.path).eval()
    ids = torch.tensor([[1, 200, 300, 400]])
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, peft_model(ids).logits, atol=1e-4)
    with pytest.raises(BadInputError, match="not empty"):
        export_merged(store, adapter, out)


@pytest.mark.model
def test_real_model_lora_adapter_loads_with_plain_peft_and_changes_outputs(
    store: Store, tmp_path: Path
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunelab.engine.models.cache import builtin_model_dir

    result, _ = _train(store, tmp_path / "real", None, max_steps=2, batch_size=2,
                          max_seq_len=40, eval_samples=2, lr=1e-3)  # fmt: skip
    assert result.status == "completed"
    adapter = store.get_model_by_id(result.model_ids[-1])
    assert adapter.kind == "adapter" and adapter.base_model_id == store.get_model("builtin").id
    assert result.tokens_per_s > 0 and result.peak_memory_mb > 0
    folder = builtin_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    ids = tokenizer("Ironic? irony or non_irony.\nGreat, rain again.", return_tensors="pt")
    base = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    with torch.no_grad():
        before = base(**ids).logits
        tuned = PeftModel.from_pretrained(base, adapter.path).eval()
        after = tuned(**ids).logits
    assert (after - before).abs().max() > 1e-3


@pytest.mark.parametrize("method", ["lora", "full"])
def test_gradient_checkpointing_trains_to_the_same_weights(
    store: Store, tmp_path: Path, tiny_dir: Path, method: str
) -> None:
    plain, _ = _train(store, tmp_path / "plain", tiny_dir, method=method, max_steps=2)
    recomputed, _ = _train(store, tmp_path / "gc", tiny_dir, method=method, max_steps=2,
                           gradient_checkpointing=True)  # fmt: skip
    assert recomputed.status == plain.status == "completed"
    first = _weights(tmp_path / "plain" / "step-000002")
    second = _weights(tmp_path / "gc" / "step-000002")
    assert first.keys() == second.keys()
    for key, value in first.items():  # dropout masks are replayed, so only rounding differs
        assert torch.allclose(second[key], value, atol=1e-5), key
    assert TrainingConfig.from_json(tmp_path / "gc" / "step-000002").gradient_checkpointing


def _saved_activation_bytes(model, batch) -> int:  # type: ignore[no-untyped-def]
    """Bytes of tensors autograd keeps for the backward pass of one forward (weights excluded:
    they exist anyway)."""
    from tunelab.engine.training.steps import loss_sum

    weights = {p.data_ptr() for p in model.parameters()}
    kept: dict[int, int] = {}

    def pack(tensor):  # type: ignore[no-untyped-def]
        pointer = tensor.untyped_storage().data_ptr()
        if pointer not in weights:
            kept[pointer] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        value, _ = loss_sum(model, batch)
    value.backward()
    return sum(kept.values())


@pytest.mark.model
def test_gradient_checkpointing_keeps_fewer_activations_on_the_builtin_model(
    store: Store,
) -> None:
    from tunelab.engine.training.checkpoint import build_model
    from tunelab.engine.training.data import ExampleBuilder, plan_splits
    from tunelab.engine.training.steps import collate

    base, dataset, version = add_training_data(store, None)
    kept = {}
    for flag in (False, True):
        config = TrainingConfig(batch_size=4, max_seq_len=64, gradient_checkpointing=flag)
        model, tokenizer, _ = build_model(store, base, config, "cpu", None)
        model.train()
        builder = ExampleBuilder(store, dataset, version, tokenizer, config)
        examples = builder.examples(plan_splits(store, dataset, config).train[:4])
        batch = collate(examples, tokenizer.pad_token_id, "cpu")
        kept[flag] = _saved_activation_bytes(model, batch)
        assert any(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert kept[True] < kept[False] / 4, kept
