"""Render a prompt version for one dataset row into the exact text the model sees.

Templates are Jinja2 in a sandbox with strict undefined variables: a template can read the
row's columns and nothing else, and a typo fails before any generation instead of rendering "".

Few-shot examples are dicts holding the row's input columns plus the answer under the key
`output` (and optionally `reasoning`, shown before the answer in chain-of-thought mode). They
come from the version's fixed `examples`, or are drawn from a dataset split according to the
version's `settings["fewshot"]` (`{"k": 3, "split": "train", "seed": 0}`), see `FewShotConfig`.
"""

from __future__ import annotations

import functools
import random
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tunelab.engine.errors import BadInputError

if TYPE_CHECKING:
    from jinja2 import Template

    from tunelab.engine.models.loading import LoadedModel
    from tunelab.engine.prompts.retrieval import RetrievalSampler
    from tunelab.store import Dataset, PromptContent, PromptVersion, Store

OUTPUT_KEY = "output"
"""The key of a few-shot example that holds its answer."""
REASONING_KEY = "reasoning"
ANSWER_PREFIX = "Answer:"
COT_INSTRUCTION = (
    "Think step by step. Then give the final answer on its own line, "
    f'starting with "{ANSWER_PREFIX}".'
)
MODES = ("plain", "chat")
REASONING = ("none", "cot")
EXAMPLE_SEPARATOR = "\n\n"


@dataclass(frozen=True)
class FewShotConfig:
    """Draw k few-shot examples from a dataset split, stored under a version's settings["fewshot"].

    Args:
        k: how many examples to draw (0 = use the version's fixed `examples`, if any).
        split: the split to draw from, e.g. "train".
        seed: makes the draw repeatable; the same examples are used for every row.
    """

    k: int = 0
    split: str = "train"
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or not 0 <= self.k <= 64:
            raise BadInputError(f"fewshot.k must be a whole number from 0 to 64, got {self.k!r}")
        if not isinstance(self.split, str) or not self.split:
            raise BadInputError(f"fewshot.split must be a split name, got {self.split!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise BadInputError(f"fewshot.seed must be a whole number, got {self.seed!r}")

    @classmethod
    def from_settings(cls, settings: dict[str, Any] | None) -> FewShotConfig:
        """Read the "fewshot" section of a version's settings, rejecting unknown keys."""
        data = (settings or {}).get("fewshot") or {}
        if not isinstance(data, dict):
            raise BadInputError(
                "settings.fewshot must be a mapping like {'k': 3, 'split': 'train'}"
            )
        unknown = sorted(set(data) - {"k", "split", "seed"})
        if unknown:
            raise BadInputError(
                f"unknown fewshot setting(s) {', '.join(unknown)}; allowed: k, split, seed"
            )
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return {"k": self.k, "split": self.split, "seed": self.seed}


@dataclass(frozen=True)
class RenderedPrompt:
    """The text the model sees, with its size against the model's context window."""

    text: str
    token_count: int | None
    """None when no tokenizer was given (a preview without a model)."""
    context_window: int | None
    max_new_tokens: int = 0
    messages: list[dict[str, str]] = field(default_factory=list)
    """Chat mode: the messages passed to the chat template."""
    examples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        """Whether prompt + max_new_tokens fit the context window (True when unknown)."""
        if self.token_count is None or self.context_window is None:
            return True
        return self.token_count + self.max_new_tokens <= self.context_window


@functools.lru_cache(maxsize=1)
def _environment() -> Any:
    from tunelab.engine.prompts.sandbox import bounded_environment

    return bounded_environment()


def _syntax_column(source: str, lineno: int) -> int:
    """Best guess at the column of a syntax error: the first tag on the line that fails alone."""
    from jinja2 import TemplateSyntaxError

    lines = source.splitlines() or [""]
    line = lines[min(max(lineno, 1), len(lines)) - 1]
    for match in re.finditer(r"\{\{|\{%|\{#", line):
        start = match.start()
        close = {"{{": "}}", "{%": "%}", "{#": "#}"}[match.group()]
        end = line.find(close, start + 2)
        if end < 0:
            return start + 1
        if match.group() == "{{":
            try:
                _environment().parse(line[start : end + 2])
            except TemplateSyntaxError:
                return start + 1
    tag = re.search(r"\{%", line)
    return tag.start() + 1 if tag else 1


@functools.lru_cache(maxsize=256)
def _parse(source: str) -> tuple[Template, frozenset[str]]:
    from jinja2 import TemplateSyntaxError, meta

    from tunelab.engine.prompts.sandbox import guard_loops

    env = _environment()
    try:
        ast = env.parse(source)
        variables = frozenset(meta.find_undeclared_variables(ast))
        template = env.from_string(guard_loops(env.parse(source)))
    except TemplateSyntaxError as exc:
        line = exc.lineno or 1
        column = _syntax_column(source, line)
        raise BadInputError(
            f"template syntax error at line {line}, column {column}: {exc.message}"
        ) from exc
    return template, variables


def variables_of(template: str) -> list[str]:
    """The variables a template reads (sorted), e.g. to check them against dataset columns."""
    return sorted(_parse(template)[1])


def render_template(template: str, values: dict[str, Any]) -> str:
    """Render one template with a row's values, in the sandbox, with one-line errors."""
    from jinja2 import TemplateError, UndefinedError
    from jinja2.exceptions import SecurityError

    compiled, needed = _parse(template)
    missing = sorted(needed - set(values))
    if missing:
        available = ", ".join(sorted(values)) or "(none)"
        raise BadInputError(
            f"template uses unknown variable {', '.join(missing)}; available columns: {available}"
        )
    from tunelab.engine.prompts.sandbox import TemplateLimitError, check_output, start_render

    start_render()
    try:
        return check_output(str(compiled.render(**values)))
    except TemplateLimitError:
        raise
    except (MemoryError, RecursionError, OverflowError) as exc:
        # Past the size checks (a filter, a recursive macro): still one line, never a traceback.
        raise TemplateLimitError(
            f"template stopped: it needs too much memory or recursion ({type(exc).__name__}); "
            "simplify the template"
        ) from None
    except SecurityError as exc:
        raise BadInputError(
            f"template tried to reach Python internals, which is not allowed: {exc}"
        ) from exc
    except UndefinedError as exc:
        raise BadInputError(f"template refers to something undefined: {exc.message}") from exc
    except TemplateError as exc:
        raise BadInputError(f"template failed to render: {exc}") from exc
    except (TypeError, ValueError, ArithmeticError, LookupError, AttributeError) as exc:
        raise BadInputError(f"template failed to render: {type(exc).__name__}: {exc}") from exc


def _answer_text(example: dict[str, Any], reasoning: str) -> str:
    if OUTPUT_KEY not in example:
        raise BadInputError(
            f"few-shot example is missing its answer under {OUTPUT_KEY!r}: {sorted(example)}"
        )
    answer = str(example[OUTPUT_KEY])
    if reasoning == "cot":
        thought = str(example.get(REASONING_KEY, "")).strip()
        return f"{thought}\n{ANSWER_PREFIX} {answer}" if thought else f"{ANSWER_PREFIX} {answer}"
    return answer


def _join(prompt: str, answer: str) -> str:
    """Prompt then answer, with a space only when the prompt does not end in whitespace."""
    if not prompt or prompt[-1].isspace():
        return prompt + answer
    return f"{prompt} {answer}"


def _with_instruction(text: str, reasoning: str) -> str:
    if reasoning != "cot":
        return text
    return f"{text.rstrip()}\n{COT_INSTRUCTION}\n"


def _check_version(version: PromptVersion | PromptContent) -> None:
    if version.mode not in MODES:
        raise BadInputError(f"prompt mode must be one of {', '.join(MODES)}, got {version.mode!r}")
    if version.reasoning not in REASONING:
        raise BadInputError(
            f"reasoning must be one of {', '.join(REASONING)}, got {version.reasoning!r}"
        )


def prompt_token_ids(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a rendered prompt, adding BOS only when the text does not already start
    with it (chat templates usually include it)."""
    bos = getattr(tokenizer, "bos_token", None)
    add_special = not (bos and text.startswith(bos))
    return list(tokenizer(text, add_special_tokens=add_special)["input_ids"])


def build_prompt(
    version: PromptVersion | PromptContent,
    row: dict[str, Any],
    tokenizer: Any | None = None,
    examples: list[dict[str, Any]] | None = None,
) -> tuple[str, list[dict[str, str]], list[dict[str, Any]]]:
    """The prompt text, chat messages and examples used, without any length check."""
    _check_version(version)
    shots = list(version.examples if examples is None else examples)
    system = render_template(version.system, row) if version.system else ""
    if version.mode == "plain":
        blocks = [system] if system else []
        for example in shots:
            shown = render_template(version.template, example)
            blocks.append(_join(shown, _answer_text(example, version.reasoning)))
        blocks.append(_with_instruction(render_template(version.template, row), version.reasoning))
        return EXAMPLE_SEPARATOR.join(blocks), [], shots
    messages: list[dict[str, str]] = []
    if system:
        messages.append({"role": "system", "content": system})
    for example in shots:
        messages.append({"role": "user", "content": render_template(version.template, example)})
        messages.append({"role": "assistant", "content": _answer_text(example, version.reasoning)})
    user = _with_instruction(render_template(version.template, row), version.reasoning)
    messages.append(
        {"role": "user", "content": user.rstrip("\n") if version.reasoning == "cot" else user}
    )
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        if tokenizer is not None:
            raise BadInputError("this model has no chat template; use plain mode for this prompt")
        text = "".join(f"<|{m['role']}|>\n{m['content']}\n" for m in messages) + "<|assistant|>\n"
        return text, messages, shots
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception as exc:  # the model's own template can fail on e.g. a system message
        raise BadInputError(f"the model's chat template failed: {exc}; try plain mode") from exc
    return str(text), messages, shots


def _finish(
    text: str,
    messages: list[dict[str, str]],
    shots: list[dict[str, Any]],
    loaded: LoadedModel | None,
    max_new_tokens: int,
) -> RenderedPrompt:
    count = len(prompt_token_ids(loaded.tokenizer, text)) if loaded is not None else None
    window = loaded.context_window if loaded is not None else None
    return RenderedPrompt(text, count, window, max_new_tokens, messages, shots)


def render_prompt(
    version: PromptVersion | PromptContent,
    row: dict[str, Any],
    loaded: LoadedModel | None = None,
    examples: list[dict[str, Any]] | None = None,
    max_new_tokens: int | None = None,
) -> RenderedPrompt:
    """Render a version for one row; refuse a prompt that would overflow the context window.

    Args:
        version: the prompt version (template, system, examples, mode, reasoning, settings).
        row: the dataset row's columns.
        loaded: the model; needed for chat templates and token counts.
        examples: few-shot examples overriding the version's fixed ones (e.g. drawn ones).
        max_new_tokens: room to leave for the answer; defaults to the version's setting.
    """
    room = _max_new_tokens(version, max_new_tokens)
    tokenizer = loaded.tokenizer if loaded is not None else None
    text, messages, shots = build_prompt(version, row, tokenizer, examples)
    rendered = _finish(text, messages, shots, loaded, room)
    if not rendered.fits:
        raise BadInputError(
            f"prompt is {rendered.token_count} tokens + {room} new tokens, over the model's "
            f"context window of {rendered.context_window}; shorten the prompt, use fewer "
            "examples or lower max_new_tokens"
        )
    return rendered


def render_preview(
    version: PromptVersion | PromptContent,
    row: dict[str, Any],
    loaded: LoadedModel | None = None,
    examples: list[dict[str, Any]] | None = None,
    max_new_tokens: int | None = None,
) -> RenderedPrompt:
    """Like `render_prompt` but returns an overlong prompt (check `.fits`) for display."""
    room = _max_new_tokens(version, max_new_tokens)
    tokenizer = loaded.tokenizer if loaded is not None else None
    text, messages, shots = build_prompt(version, row, tokenizer, examples)
    return _finish(text, messages, shots, loaded, room)


def _max_new_tokens(version: PromptVersion | PromptContent, override: int | None) -> int:
    if override is not None:
        return override
    from tunelab.engine.prompts.settings import GenerationSettings

    return GenerationSettings.from_version_settings(version.settings).max_new_tokens


class FewShotSampler:
    """Draws the same k examples for every row of a run, skipping the row being evaluated.

    k + 1 rows are drawn once with the seed; a row that is itself among them is replaced by
    the spare, so every row sees k examples that are never its own answer.
    """

    def __init__(
        self, store: Store, dataset: Dataset, config: FewShotConfig, eval_split: str | None = None
    ) -> None:
        self.config = config
        self.eval_split = eval_split
        self.reference_column = dataset.reference_column
        if config.k and not self.reference_column:
            raise BadInputError(
                f"dataset {dataset.name!r} has no reference column to use as few-shot answers"
            )
        self._pool: list[tuple[int, dict[str, Any]]] = []
        if config.k:
            split = dataset.split(config.split)
            indices = list(range(split.row_count))
            chosen = random.Random(config.seed).sample(indices, min(config.k + 1, len(indices)))
            rows = {r.idx: r.data for r in store.dataset_rows(dataset.name, split.name, chosen)}
            self._pool = [(i, rows[i]) for i in chosen if i in rows]

    def examples_for(self, row_idx: int | None = None) -> list[dict[str, Any]]:
        """The k examples for one row (excluding it when it comes from the same split)."""
        same_split = self.eval_split == self.config.split
        pool = [
            data
            for idx, data in self._pool
            if not (same_split and row_idx is not None and idx == row_idx)
        ]
        column = self.reference_column or OUTPUT_KEY
        return [{**data, OUTPUT_KEY: data.get(column, "")} for data in pool[: self.config.k]]


class RowRenderer:
    """The one way a version becomes the text the model sees for a dataset row.

    Evaluation, `tunelab generate` and the Playground all render through `render`, so the same
    version and row give the same text everywhere: few-shot examples are drawn from the row's
    dataset with the version's seed (skipping the row itself), exactly as a run draws them.
    Without a dataset (free input) a `fewshot.k` version falls back to its fixed examples.

    Args:
        store: where the dataset's rows are read from (for drawn few-shot examples).
        version: the prompt version or unsaved content to render.
        loaded: the model; needed for chat templates and token counts.
        dataset: the dataset the rows come from, if any.
        split: the split the rows come from; a row of the few-shot split is never its own
            example.
        max_new_tokens: room to leave for the answer; defaults to the version's setting.
    """

    def __init__(
        self,
        store: Store | None,
        version: PromptVersion | PromptContent,
        loaded: LoadedModel | None,
        dataset: Dataset | None = None,
        split: str | None = None,
        max_new_tokens: int | None = None,
    ) -> None:
        self.version = version
        self.loaded = loaded
        self.room = _max_new_tokens(version, max_new_tokens)
        fewshot = FewShotConfig.from_settings(version.settings)
        self.sampler = (
            FewShotSampler(store, dataset, fewshot, split)
            if fewshot.k and store is not None and dataset is not None
            else None
        )
        from tunelab.engine.prompts.retrieval import RetrievalConfig, RetrievalSampler

        retrieval = RetrievalConfig.from_settings(version.settings)
        self.retriever = (
            RetrievalSampler(store, dataset, retrieval, split)
            if retrieval is not None and store is not None and dataset is not None
            else None
        )

    def render(
        self, row: dict[str, Any], row_idx: int | None = None, *, must_fit: bool = False
    ) -> RenderedPrompt:
        """Render one row; `must_fit` refuses a prompt that overflows the context window
        (a preview leaves that to the caller, which shows `.fits`)."""
        examples = self.sampler.examples_for(row_idx) if self.sampler is not None else None
        if self.retriever is not None:
            examples = self._retrieved(self.retriever, row, row_idx)
        rendered = render_preview(self.version, row, self.loaded, examples, self.room)
        if must_fit and not rendered.fits:
            where = f"row {row_idx}: " if row_idx is not None else ""
            raise BadInputError(
                f"{where}the prompt is {rendered.token_count} tokens + {self.room} new tokens, "
                f"over the model's context window of {rendered.context_window}; shorten the "
                "prompt, use fewer examples or lower max_new_tokens"
            )
        return rendered

    @staticmethod
    def _retrieved(
        retriever: RetrievalSampler, row: dict[str, Any], row_idx: int | None
    ) -> list[dict[str, Any]]:
        """The row's nearest pool rows as examples, the nearest last (next to the row)."""
        column = retriever.reference_column or OUTPUT_KEY
        nearest = retriever.nearest(row, row_idx)
        return [{**r.data, OUTPUT_KEY: r.data.get(column, "")} for r in reversed(nearest)]


def extract_answer(version: PromptVersion | PromptContent, output: str) -> str:
    """The answer part of a model output: after the last "Answer:" in chain-of-thought mode."""
    if version.reasoning != "cot":
        return output.strip()
    # An "Answer:" that starts a line is the one asked for; one mid-sentence ("the final
    # answer: first ...") is only a fallback. An empty answer line means the next line.
    prefix = re.escape(ANSWER_PREFIX)
    matches = list(re.finditer(rf"^[ \t*]*{prefix}", output, flags=re.IGNORECASE | re.M))
    matches = matches or list(re.finditer(prefix, output, flags=re.IGNORECASE))
    if matches:
        rest = output[matches[-1].end() :].strip()
        return rest.splitlines()[0].strip() if rest else ""
    lines = [line.strip() for line in output.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""
