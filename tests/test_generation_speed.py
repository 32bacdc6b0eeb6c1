"""Generation at the speed of the hardware: the thread-count choice and shared-prefix reuse.

The prefix-cached path must give the plain path's greedy tokens on the real built-in model,
at every batch size, and label scoring the plain path's log-probabilities; the thread choice
never exceeds the cores it may use.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import SHARED_DATASETS
from tunelab.engine.generation import batched, likelihood, prefix_cache, threads
from tunelab.engine.generation.batched import generate_batch
from tunelab.engine.generation.likelihood import continuation, score_labels
from tunelab.engine.prompts.settings import GenerationSettings
from tunelab.engine.prompts.templates import prompt_token_ids

pytest_plugins = ["tests.model_fixtures"]


@given(
    cores=st.integers(min_value=1, max_value=256),
    extra=st.integers(min_value=0, max_value=256),
    load=st.floats(min_value=0.0, max_value=1000.0, allow_nan=False),
)
def test_thread_choice_stays_within_the_cores_it_may_use(
    cores: int, extra: int, load: float
) -> None:
    chosen = threads.choose_threads(cores, cores + extra, load)
    assert 1 <= chosen <= cores
    # More load never means more threads.
    assert threads.choose_threads(cores, cores + extra, load + 1.0) <= chosen


@given(cores=st.integers(min_value=1, max_value=256))
def test_an_idle_machine_gets_every_core_and_a_full_one_gets_one(cores: int) -> None:
    assert threads.choose_threads(cores, cores, 0.0) == cores
    assert threads.choose_threads(cores, cores, float(cores)) == 1


def test_one_busy_core_of_two_leaves_one_thread() -> None:
    # The case: a CPU hog on a 2-core machine; two threads each would oversubscribe.
    assert threads.choose_threads(2, 2, 1.0) == 1
    # Only our share of a bigger machine's load counts against our affinity set.
    assert threads.choose_threads(4, 16, 4.0) == 3


@pytest.mark.parametrize(
    ("env", "source", "count"),
    [
        ({"TUNELAB_THREADS": "3"}, "TUNELAB_THREADS", 3),
        ({"OMP_NUM_THREADS": "5"}, "OMP_NUM_THREADS", 5),
    ],
)
def test_the_users_thread_setting_wins(env: dict[str, str], source: str, count: int) -> None:
    choice = threads.thread_choice(env)
    assert (choice.source, choice.threads) == (source, count)
    assert source in choice.describe()


def test_threads_are_set_once_and_said_under_verbose(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("TUNELAB_THREADS", "2")
    monkeypatch.setenv("TUNELAB_VERBOSE", "1")
    calls: list[int] = []
    threads.forget()
    try:
        first = threads.apply_once(calls.append)
        again = threads.apply_once(calls.append)
    finally:
        threads.forget()
    assert calls == [2]
    assert again is first
    assert "torch threads: 2 (from TUNELAB_THREADS)" in capsys.readouterr().err


def test_auto_threads_leave_out_the_cores_measured_busy(monkeypatch: pytest.MonkeyPatch) -> None:
    # A CPU hog that started a second ago: the 1-minute load average has not seen it yet.
    monkeypatch.setattr(threads, "_affinity_cpus", lambda: {0, 1})
    monkeypatch.setattr(threads, "_load_average", lambda: 0.0)
    monkeypatch.setattr(threads, "busy_cores", lambda cpus: 1.0)
    choice = threads.thread_choice({})
    assert (choice.threads, choice.source, choice.busy) == (1, "auto", 1.0)
    assert "1.0 of them busy with other work" in choice.describe()
    monkeypatch.setattr(threads, "busy_cores", lambda cpus: None)  # off Linux: the load average
    assert threads.thread_choice({}).threads == 2


def test_busy_cores_are_within_the_set() -> None:
    cpus = threads._affinity_cpus()
    busy = threads.busy_cores(cpus, seconds=0.05)
    assert busy is None or 0.0 <= busy <= len(cpus)


def test_omp_num_threads_is_left_to_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TUNELAB_THREADS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    calls: list[int] = []
    threads.forget()
    try:
        assert threads.apply_once(calls.append).source == "OMP_NUM_THREADS"
    finally:
        threads.forget()
    assert calls == []


def test_common_prefix_leaves_every_row_a_token_of_its_own() -> None:
    assert prefix_cache.common_prefix([[1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 3]]) == 2
    assert prefix_cache.common_prefix([[1, 2], [3, 4]]) == 0
    assert prefix_cache.common_prefix([]) == 0


def test_layout_puts_padding_between_prefix_and_suffix() -> None:
    shared = prefix_cache.SharedPrefix([7, 8], cache=None, cache_kwarg="cache")
    ids, mask = shared.layout([[7, 8, 1, 2, 3], [7, 8, 4]], pad=0)
    assert ids == [[7, 8, 1, 2, 3], [7, 8, 0, 0, 4]]
    assert mask == [[1, 1, 1, 1, 1], [1, 1, 0, 0, 1]]


def few_shot_prompts(n: int) -> list[str]:
    """An 8-shot prompt with fixed examples (the first 8 rows) for each of the next n rows."""
    path = Path(SHARED_DATASETS) / "tweeteval-irony-val.jsonl"
    if not path.exists():
        pytest.skip(f"{path} is not present")
    with path.open() as fh:
        rows = [json.loads(line) for _, line in zip(range(8 + n), fh, strict=False)]
    shots = "".join(f"Tweet: {r['text']}\nLabel: {r['label']}\n\n" for r in rows[:8])
    head = "Label each tweet as irony or non_irony.\n\n"
    return [f"{head}{shots}Tweet: {r['text']}\nLabel:" for r in rows[8:]]


def _plain(loaded: Any, prompts: list[str], settings: GenerationSettings, size: int) -> Any:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(batched, "shared_prefix", lambda loaded, encoded: None)
        return generate_batch(loaded, prompts, settings, batch_size=size)


@pytest.mark.model
@pytest.mark.parametrize(
    ("rows", "size"), [(4, 1), (8, 8), pytest.param(32, 32, marks=pytest.mark.slow)]
)
def test_prefix_cached_greedy_equals_the_plain_path(
    builtin_model: Any, rows: int, size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    prompts = few_shot_prompts(rows)
    used: list[prefix_cache.SharedPrefix | None] = []

    def recording(loaded: Any, encoded: list[list[int]]) -> prefix_cache.SharedPrefix | None:
        used.append(prefix_cache.shared_prefix(loaded, encoded))
        return used[-1]

    monkeypatch.setattr(batched, "shared_prefix", recording)
    settings = GenerationSettings(max_new_tokens=6, stop=["\n"])
    cached = generate_batch(builtin_model, prompts, settings, batch_size=size)
    shared = used[0]
    assert shared is not None and shared.length > 300  # the 8 examples, not just the header
    plain = _plain(builtin_model, prompts, settings, size)
    assert [r.text for r in cached] == [r.text for r in plain]
    assert [r.tokens_out for r in cached] == [r.tokens_out for r in plain]
    assert [r.finish_reason for r in cached] == [r.finish_reason for r in plain]
    assert any(r.text.strip() for r in cached)


@pytest.mark.model
def test_rows_without_a_long_shared_prefix_take_the_plain_path(builtin_model: Any) -> None:
    tokenizer = builtin_model.tokenizer
    encoded = [prompt_token_ids(tokenizer, t) for t in ("Hello there", "Goodbye now")]
    assert prefix_cache.shared_prefix(builtin_model, encoded) is None
    assert prefix_cache.shared_prefix(builtin_model, encoded[:1]) is None


@pytest.mark.model
def test_every_way_of_running_a_model_chooses_threads_first(
    builtin_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tunelab.engine.generation.likelihood import score_labels

    calls: list[str] = []
    choice = threads.ThreadChoice(1, "auto", 1, 0.0)

    def recording() -> threads.ThreadChoice:
        calls.append("applied")
        return choice

    monkeypatch.setattr(threads, "apply_once", recording)
    settings = GenerationSettings(max_new_tokens=1)
    generate_batch(builtin_model, ["Hi"], settings)
    list(batched.stream_generate(builtin_model, "Hi", settings))
    score_labels(builtin_model, ["Hi"], ["yes", "no"])
    assert calls == ["applied"] * 3


def zero_shot_prompts(n: int) -> list[str]:
    """Zero-shot prompts on which the built-in model stops after 1 to 16 tokens, row by row."""
    path = Path(SHARED_DATASETS) / "tweeteval-irony-val.jsonl"
    if not path.exists():
        pytest.skip(f"{path} is not present")
    with path.open() as fh:
        rows = [json.loads(line) for _, line in zip(range(8 + n), fh, strict=False)]
    head = "Label each tweet as irony or non_irony.\n\n"
    return [f"{head}Tweet: {r['text']}\nLabel:" for r in rows[8:]]


def _one_at_a_time(loaded: Any, prompts: list[str], settings: GenerationSettings) -> list[Any]:
    """Hugging Face's generate(), one row at a time (no padding, no pool): the reference."""
    encoded = [prompt_token_ids(loaded.tokenizer, p) for p in prompts]
    order = list(range(len(prompts)))
    return batched._generate_in_batches(loaded, encoded, order, settings, None, 1)


def _same_outputs(got: list[Any], expected: list[Any]) -> None:
    assert [r.text for r in got] == [r.text for r in expected]
    assert [r.tokens_out for r in got] == [r.tokens_out for r in expected]
    assert [r.finish_reason for r in got] == [r.finish_reason for r in expected]


@pytest.mark.model
@pytest.mark.parametrize(
    ("few_shot", "rows", "size"),
    [
        (False, 1, 1),
        (False, 8, 8),
        (True, 8, 8),
        (False, 12, 4),
        pytest.param(False, 32, 32, marks=pytest.mark.slow),
        pytest.param(True, 32, 32, marks=pytest.mark.slow),
        pytest.param(False, 64, 32, marks=pytest.mark.slow),
    ],
)
def test_pooled_greedy_equals_generate_one_row_at_a_time(
    builtin_model: Any, few_shot: bool, rows: int, size: int
) -> None:
    prompts = few_shot_prompts(rows) if few_shot else zero_shot_prompts(rows)
    settings = GenerationSettings(max_new_tokens=12, stop=["\n"])
    pooled = generate_batch(builtin_model, prompts, settings, batch_size=size)
    _same_outputs(pooled, _one_at_a_time(builtin_model, prompts, settings))
    assert any(r.finish_reason == "stop" for r in pooled)


def _counting_forward(
    loaded: Any, monkeypatch: pytest.MonkeyPatch, passes: list[tuple[int, int]]
) -> None:
    """Record (rows, tokens per row) of every forward pass of the model."""
    model_class = type(loaded.model)
    forward = model_class.forward

    @functools.wraps(forward)
    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        passes.append(tuple(kwargs["input_ids"].shape))  # type: ignore[arg-type]
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(model_class, "forward", counting)


@pytest.mark.model
def test_rows_finishing_at_very_different_lengths_leave_the_batch(
    builtin_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    prompts = zero_shot_prompts(8)  # on these the model stops after 2 tokens or runs to 16
    settings = GenerationSettings(max_new_tokens=16, stop=["\n"])
    passes: list[tuple[int, int]] = []
    reference = _one_at_a_time(builtin_model, prompts, settings)
    # Only decoding steps are counted: no one-row prefill of a shared prefix first.
    monkeypatch.setattr(batched, "shared_prefix", lambda loaded, encoded: None)
    with monkeypatch.context() as patch:
        _counting_forward(builtin_model, patch, passes)
        shrinking = generate_batch(builtin_model, prompts, settings, batch_size=8)
    lengths = sorted(r.tokens_out for r in shrinking)
    assert lengths[0] <= 2 and lengths[-1] == 16
    _same_outputs(shrinking, reference)
    rows_per_step = [rows for rows, _ in passes]
    # Every step runs only the rows still going: the batch only shrinks, down to the longest.
    assert rows_per_step[0] == 8
    assert rows_per_step == sorted(rows_per_step, reverse=True)
    assert rows_per_step[-1] == sum(1 for n in lengths if n == 16)
    assert len(rows_per_step) == 16


@pytest.mark.model
def test_waiting_rows_take_the_places_of_finished_ones(
    builtin_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    prompts = zero_shot_prompts(16)
    settings = GenerationSettings(max_new_tokens=16, stop=["\n"])
    reference = _one_at_a_time(builtin_model, prompts, settings)
    monkeypatch.setattr(batched, "shared_prefix", lambda loaded, encoded: None)
    passes: list[tuple[int, int]] = []
    with monkeypatch.context() as patch:
        _counting_forward(builtin_model, patch, passes)
        pooled = generate_batch(builtin_model, prompts, settings, batch_size=4)
    _same_outputs(pooled, reference)
    assert max(rows for rows, _ in passes) <= 4
    prefills = [n for n, (_, tokens) in enumerate(passes) if tokens > 1]
    assert len(prefills) > 4  # more than 16 rows / 4: they joined as places came free
    # Some rows joined while others were still decoding: the next step had more rows.
    joined = [
        n for n in prefills[1:] if 0 < n < len(passes) - 1 and passes[n + 1][0] > passes[n][0]
    ]
    assert joined
    # Fewer decoding steps than batches of 4 (longest prompts first) would take: each decodes
    # until its longest output is done, the first token coming from the prefill.
    decoded = sum(1 for _, tokens in passes if tokens == 1)
    lengths = [len(prompt_token_ids(builtin_model.tokenizer, p)) for p in prompts]
    order = sorted(range(16), key=lambda i: lengths[i], reverse=True)
    batches = [order[i : i + 4] for i in range(0, 16, 4)]
    assert decoded < sum(max(reference[i].tokens_out for i in b) - 1 for b in batches)


@pytest.mark.model
def test_pool_rows_share_its_time_and_lone_rows_keep_their_own(builtin_model: Any) -> None:
    prompts = zero_shot_prompts(6)
    settings = GenerationSettings(max_new_tokens=4, stop=["\n"])
    alone = generate_batch(builtin_model, prompts, settings, batch_size=1)
    assert all(r.batch_rows == 1 and r.latency_ms == r.batch_ms > 0 for r in alone)
    pooled = generate_batch(builtin_model, prompts, settings, batch_size=3)
    assert {r.batch_rows for r in pooled} == {6}
    assert len({(r.batch_ms, r.latency_ms) for r in pooled}) == 1
    assert pooled[0].latency_ms == pytest.approx(pooled[0].batch_ms / 6)


def _plain_label_score(loaded: Any, prompt: str, label: str) -> float:
    """A label's log-probability from one forward pass over prompt + label: no cache, no batch."""
    ids = prompt_token_ids(loaded.tokenizer, prompt)
    cont = loaded.tokenizer(continuation(prompt, label), add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        logits = loaded.model(input_ids=torch.tensor([ids + cont])).logits[0].float()
    logprobs = logits.log_softmax(-1)
    return sum(float(logprobs[len(ids) - 1 + j, t]) for j, t in enumerate(cont))


def _check_scores(scores: list[Any], expected: list[dict[str, float]], labels: list[str]) -> None:
    for got, plain in zip(scores, expected, strict=True):
        assert dict(got) == pytest.approx(plain, abs=1e-4)
        assert got.prediction == max(labels, key=lambda label: plain[label])


@pytest.mark.model
@pytest.mark.parametrize("size", [1, 8])
def test_label_scores_equal_the_plain_path_on_eight_shot_rows(
    builtin_model: Any, size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    prompts = few_shot_prompts(8)
    labels = ["irony", "non_irony"]
    expected = [{lab: _plain_label_score(builtin_model, p, lab) for lab in labels} for p in prompts]
    prefix_cache.forget_prefixes()
    _check_scores(score_labels(builtin_model, prompts, labels, batch_size=size), expected, labels)
    # Again, on the remembered prefix cache; then in two passes (attention without 4D masks).
    _check_scores(score_labels(builtin_model, prompts, labels, batch_size=size), expected, labels)
    monkeypatch.setattr(likelihood, "_takes_tree_mask", lambda model: False)
    _check_scores(score_labels(builtin_model, prompts, labels, batch_size=size), expected, labels)


@pytest.mark.model
def test_labels_that_start_alike_share_their_first_tokens(builtin_model: Any) -> None:
    labels = ["non_irony", "non_sarcasm", "irony"]
    ids = likelihood._label_ids(builtin_model.tokenizer, labels, spaced=True)
    tree = likelihood._LabelTree.of(ids)
    assert ids[0][:2] == ids[1][:2]  # " non" "_"
    assert len(tree.tokens) == len(ids[0]) - 1 + len(ids[1]) - 1 - 2
    prompts = few_shot_prompts(3)
    expected = [{lab: _plain_label_score(builtin_model, p, lab) for lab in labels} for p in prompts]
    _check_scores(score_labels(builtin_model, prompts, labels, batch_size=2), expected, labels)


def test_label_tree_feeds_each_shared_token_once() -> None:
    tree = likelihood._LabelTree.of([[5, 6, 7], [5, 6, 8, 9], [4]])
    assert tree.tokens == [5, 6, 8]
    assert tree.depths == [0, 1, 2]
    assert tree.visible == [[0], [0, 1], [0, 1, 2]]
    assert tree.picks == [[(0, 5), (1, 6), (2, 7)], [(0, 5), (1, 6), (2, 8), (3, 9)], [(0, 4)]]


@pytest.mark.model
def test_label_scoring_runs_one_pass_per_batch_and_the_prefix_once(
    builtin_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    prompts = few_shot_prompts(8)
    model_class = type(builtin_model.model)
    forward = model_class.forward
    rows_per_pass: list[int] = []

    @functools.wraps(forward)
    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        rows_per_pass.append(int(kwargs["input_ids"].shape[0]))
        return forward(self, *args, **kwargs)

    prefix_cache.forget_prefixes()
    monkeypatch.setattr(model_class, "forward", counting)
    score_labels(builtin_model, prompts[:4], ["irony", "non_irony"], batch_size=4)
    score_labels(builtin_model, prompts[4:], ["irony", "non_irony"], batch_size=2)
    # One 1-row pass over the shared 8 examples, then one pass per batch, labels included.
    assert rows_per_pass == [1, 4, 2, 2]


def test_a_remembered_prefix_is_forgotten_when_the_weights_change() -> None:
    model = torch.nn.Linear(2, 2)
    prefix_cache.remember(model, [1, 2, 3], "cache")
    rows = [[1, 2, 3, 4], [1, 2, 3, 5]]
    assert prefix_cache.remembered(model, rows, 3) == ([1, 2, 3], "cache")
    assert prefix_cache.remembered(model, [[1, 2, 3]], 2) is None  # no token of its own left
    assert prefix_cache.remembered(model, [[1, 9, 3, 4]], 1) is None
    with torch.no_grad():
        model.weight.add_(1.0)  # a training step
    assert prefix_cache.remembered(model, rows, 3) is None


@pytest.mark.model
def test_out_of_memory_halves_the_pool_and_keeps_the_outputs(
    builtin_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    prompts = zero_shot_prompts(6)
    settings = GenerationSettings(max_new_tokens=4, stop=["\n"])
    reference = _one_at_a_time(builtin_model, prompts, settings)
    model_class = type(builtin_model.model)
    forward = model_class.forward
    rows_seen: list[int] = []

    @functools.wraps(forward)
    def small_memory(self: Any, *args: Any, **kwargs: Any) -> Any:
        rows = int(kwargs["input_ids"].shape[0])
        rows_seen.append(rows)
        if rows > 2:
            raise RuntimeError("CPU out of memory: tried to allocate 2.00 GiB")
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(batched, "shared_prefix", lambda loaded, encoded: None)
    monkeypatch.setattr(model_class, "forward", small_memory)
    pooled = generate_batch(builtin_model, prompts, settings, batch_size=8)
    _same_outputs(pooled, reference)
    assert rows_seen[:2] == [6, 4] and max(rows_seen[2:]) <= 2  # halved twice, then it fits
