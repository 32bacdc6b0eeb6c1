"""Every fine-tuning method evaluates right: greedy output does not depend on the batch, the
adapter is not ignored, and evaluation scores labels exactly as training's validation does.

Adapters are trained for a few steps (the tiny Llama for speed, the built-in model once per
method), then loaded the way evaluation loads them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.tune_helpers import LABELS, add_training_data, tiny_model_dir
from tunelab.engine.generation.batched import generate_batch, generate_tokens
from tunelab.engine.generation.likelihood import continuation, score_labels
from tunelab.engine.models.loading import clear_model_cache, load_model
from tunelab.engine.prompts.settings import GenerationSettings
from tunelab.engine.training.checkpoint import build_model
from tunelab.engine.training.config import TrainingConfig
from tunelab.engine.training.data import ExampleBuilder, encode_example, plan_splits
from tunelab.engine.training.loop import TrainingRequest, run_training
from tunelab.engine.training.steps import collate, forward_logits, sequence_logprobs
from tunelab.store import Model, PromptContent, Store

torch = pytest.importorskip("torch")

METHODS = ["lora", "prefix", "prompt", "full"]
LR = {"lora": 1e-2, "prefix": 3e-2, "prompt": 3e-2, "full": 1e-3}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model_dir(tmp_path_factory.mktemp("tiny"))


class Trained:
    """An adapter trained for a few steps, and what the tests need around it."""

    def __init__(self, store: Store, out: Path, model_dir: Path | None, method: str) -> None:
        base, dataset, _ = add_training_data(store, model_dir)
        # Plain mode keeps prompts short (no chat system prompt): the built-in model is slow.
        version = store.save_prompt_version(
            "irony-plain",
            PromptContent(template="Tweet: {{ text[:60] }}\nIronic?\nAnswer:", mode="plain"),
        ).version
        self.config = TrainingConfig(
            method=method, max_steps=2, batch_size=2, max_seq_len=48, eval_every_steps=0,
            eval_samples=2, lr=LR[method], num_virtual_tokens=4, seed=3, device="cpu",
        )  # fmt: skip
        request = TrainingRequest(self.config, base.id, dataset.id, version.id, out)
        result = run_training(store, request)
        self.store = store
        self.base = base
        self.model: Model = store.get_model_by_id(result.model_ids[-1])
        splits = plan_splits(store, dataset, self.config)
        clear_model_cache()
        self.loaded = load_model(store, self.model, device="cpu")
        builder = ExampleBuilder(store, dataset, version, self.loaded.tokenizer, self.config)
        self.prompts = [builder.prompt_text(r) for r in (splits.train + splits.val)[:8]]

    def training_model(self) -> tuple[Any, Any, int]:
        """The checkpoint as training holds it (peft wrapper in training configuration)."""
        model, tokenizer, virtual = build_model(
            self.store, self.base, self.config, "cpu", Path(self.model.path)
        )
        model.eval()
        return model, tokenizer, virtual


def _greedy(loaded: Any, prompts: list[str], batch_size: int) -> list[str]:
    settings = GenerationSettings(temperature=0, max_new_tokens=4)
    return [r.text for r in generate_batch(loaded, prompts, settings, batch_size=batch_size)]


def _check_batch_invariant_and_adapter_used(trained: Trained) -> None:
    """Batch 1 == batch 8, and each row's first new token is the one training's forward picks."""
    assert _greedy(trained.loaded, trained.prompts, 8) == _greedy(
        trained.loaded, trained.prompts, 1
    )
    model, tokenizer, virtual = trained.training_model()
    # One completion token per row: its logits are those of the last prompt position.
    examples = [encode_example(p, " x", tokenizer, 10_000) for p in trained.prompts]
    assert all(len(e) - e.prompt_len == 1 for e in examples)
    with torch.no_grad():
        logits, _, rows = forward_logits(
            model, collate(examples, tokenizer.pad_token_id, "cpu"), virtual
        )
    assert rows.tolist() == list(range(len(examples)))
    # Token ids, not text: a first token can be half of an emoji's bytes.
    prompts = [e.input_ids[: e.prompt_len] for e in examples]
    width = max(len(p) for p in prompts)
    pad = tokenizer.pad_token_id
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    settings = GenerationSettings(temperature=0, max_new_tokens=1)
    generated = generate_tokens(trained.loaded, ids, mask, settings)[:, width]
    assert generated.tolist() == logits.argmax(-1).tolist()


def _check_likelihood_matches_validation(trained: Trained) -> None:
    """score_labels (batched, shared prompt cache) == the validation forward, within 1e-4."""
    prompts = trained.prompts[:5]
    scores = score_labels(trained.loaded, prompts, LABELS, batch_size=3)
    model, tokenizer, virtual = trained.training_model()
    examples = [
        encode_example(p, continuation(p, label), tokenizer, 10_000)
        for p in prompts
        for label in LABELS
    ]
    with torch.no_grad():
        expected = sequence_logprobs(
            model, collate(examples, tokenizer.pad_token_id, "cpu"), virtual
        ).tolist()
    got = [scores[i][label] for i in range(len(prompts)) for label in LABELS]
    assert got == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("method", METHODS)
def test_tiny_adapter_generates_the_same_at_any_batch_size(
    method: str, store: Store, tmp_path: Path, tiny_dir: Path
) -> None:
    _check_batch_invariant_and_adapter_used(Trained(store, tmp_path / "out", tiny_dir, method))


@pytest.mark.parametrize("method", METHODS)
def test_tiny_adapter_likelihood_equals_the_validation_forward(
    method: str, store: Store, tmp_path: Path, tiny_dir: Path
) -> None:
    _check_likelihood_matches_validation(Trained(store, tmp_path / "out", tiny_dir, method))


@pytest.mark.model
@pytest.mark.parametrize("method", METHODS)
def test_builtin_model_adapter_is_batch_invariant_and_scores_like_validation(
    method: str, store: Store, tmp_path: Path
) -> None:
    trained = Trained(store, tmp_path / "out", None, method)
    _check_batch_invariant_and_adapter_used(trained)
    _check_likelihood_matches_validation(trained)


@pytest.mark.parametrize("method", ["prefix", "prompt"])
def test_validation_exact_match_decodes_like_evaluation(
    method: str, store: Store, tmp_path: Path, tiny_dir: Path
) -> None:
    """Training's val_exact_match generation uses the adapter exactly as evaluation does."""
    from tunelab.engine.prompts.templates import prompt_token_ids
    from tunelab.engine.training.data import IGNORE_INDEX, Example
    from tunelab.engine.training.steps import exact_match

    trained = Trained(store, tmp_path / "out", tiny_dir, method)
    budget = 5  # exact_match generates the reference's length + 2 tokens
    settings = GenerationSettings(temperature=0, max_new_tokens=budget)
    outputs = generate_batch(trained.loaded, trained.prompts, settings, batch_size=8)
    model, tokenizer, _ = trained.training_model()
    examples = []
    for i, (prompt, out) in enumerate(zip(trained.prompts, outputs, strict=True)):
        ids = prompt_token_ids(tokenizer, prompt)
        filler = [tokenizer.eos_token_id] * (budget - 2)
        labels = [IGNORE_INDEX] * len(ids) + filler
        examples.append(Example(ids + filler, labels, len(ids), i, out.text))
    assert exact_match(model, tokenizer, examples, 3, "cpu") == 1.0


def test_prompt_learning_adapter_it_cannot_run_right_is_refused_at_load(
    store: Store, tmp_path: Path, tiny_dir: Path
) -> None:
    """P-tuning pads like prompt tuning but has no explicit form here: one-line refusal."""
    from peft import PromptEncoderConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from tunelab.engine.errors import BadInputError
    from tunelab.store import NewModel

    folder = tmp_path / "p-tuning"
    config = PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=4)
    get_peft_model(AutoModelForCausalLM.from_pretrained(str(tiny_dir)), config).save_pretrained(
        str(folder)
    )
    base = store.add_model(NewModel("tiny", "base", "hf_folder", str(tiny_dir)))
    adapter = store.add_model(
        NewModel("p-tuned", "adapter", "hf_folder", str(folder), base_model_id=base.id)
    )
    clear_model_cache()
    with pytest.raises(BadInputError, match="P_TUNING is not supported") as caught:
        load_model(store, adapter, device="cpu")
    assert "\n" not in str(caught.value)


def test_streamed_prefix_adapter_output_equals_the_batched_output(
    store: Store, tmp_path: Path, tiny_dir: Path
) -> None:
    from tunelab.engine.generation.batched import stream_generate

    trained = Trained(store, tmp_path / "out", tiny_dir, "prefix")
    settings = GenerationSettings(temperature=0, max_new_tokens=4)
    prompt = trained.prompts[0]
    chunks = list(stream_generate(trained.loaded, prompt, settings))
    expected = generate_batch(trained.loaded, [prompt], settings)[0]
    assert "".join(c.text for c in chunks) == expected.text
    assert (chunks[-1].tokens_out, chunks[-1].finish_reason) == (
        expected.tokens_out,
        expected.finish_reason,
    )
