"""The body of `tunelab generate`: render one prompt and stream the model's answer.

Registered by `cli_eval.register`; kept apart so the eval commands stay short. The engine
(and torch) are imported only when the command runs.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

from tunelab.cli_common import err_console
from tunelab.engine.errors import BadInputError

if TYPE_CHECKING:
    from tunelab.store import Dataset, Store


def _row_values(
    store: Store, dataset_name: str, split: str | None, row: int
) -> tuple[dict[str, Any], Dataset, str]:
    """A dataset row's columns, with the dataset and split it came from (for few-shot)."""
    from tunelab.engine.evaluation.plan import resolve_split

    dataset = store.get_dataset(dataset_name)
    split_name = resolve_split(dataset, split)
    count = dataset.split(split_name).row_count
    if not 0 <= row < count:
        raise BadInputError(
            f"--row {row} is outside split {split_name!r} of {dataset.name!r} (0..{count - 1})"
        )
    found = store.dataset_rows(dataset.name, split_name, indices=[row])
    return found[0].data, dataset, split_name


def stream_one(
    store: Store,
    prompt_ref: str,
    model_arg: str,
    dataset: str | None,
    split: str | None,
    row: int | None,
    values: dict[str, str],
    overrides: dict[str, Any],
    show_prompt: bool,
    started: float,
) -> None:
    """Render, then write the output to stdout as it streams; timings go to stderr."""
    from tunelab.engine.evaluation.plan import merged_settings, resolve_model_arg
    from tunelab.engine.generation.batched import stream_generate
    from tunelab.engine.models.loading import load_model
    from tunelab.engine.prompts.settings import GenerationSettings
    from tunelab.engine.prompts.templates import RowRenderer, variables_of

    version = store.get_prompt_version(prompt_ref)
    settings = GenerationSettings.from_dict(merged_settings(version, overrides))
    record: Dataset | None = None
    split_name: str | None = None
    if dataset is not None and row is not None:
        data, record, split_name = _row_values(store, dataset, split, row)
    else:
        data = dict(values)
        missing = sorted(set(variables_of(version.template)) - set(data))
        if missing:
            raise BadInputError(
                f"prompt {version.ref} needs {', '.join(missing)}; pass --input "
                + " ".join(f"{name}=..." for name in missing)
            )
    from tunelab.engine.generation.endpoint import EndpointPrompt, endpoint_of, stream_endpoint

    model_record = resolve_model_arg(store, model_arg)
    endpoint = endpoint_of(model_record)
    loaded = None if endpoint is not None else load_model(store, model_record)
    # Rendered as `eval` renders this row (the same few-shot draw), and as the Playground does.
    renderer = RowRenderer(store, version, loaded, record, split_name, settings.max_new_tokens)
    rendered = renderer.render(data, row, must_fit=True)
    if show_prompt:
        count = "?" if rendered.token_count is None else rendered.token_count
        err_console.print(f"[dim]--- prompt ({count} tokens) ---[/]")
        err_console.print(rendered.text, markup=False, highlight=False)
        err_console.print("[dim]--- output ---[/]")
    ready = time.perf_counter()
    last = None
    if loaded is None:
        assert endpoint is not None
        request = EndpointPrompt(rendered.text, list(rendered.messages))
        chunks = stream_endpoint(endpoint, request, settings)
    else:
        chunks = stream_generate(loaded, rendered.text, settings)
    for chunk in chunks:
        if chunk.text:
            sys.stdout.write(chunk.text)
            sys.stdout.flush()
        last = chunk
    sys.stdout.write("\n")
    sys.stdout.flush()
    if last is None:
        return
    ttft = last.time_to_first_token_s
    rate = last.tokens_out / last.elapsed_s if last.elapsed_s > 0 else 0.0
    first = f"{ttft:.3f}s" if ttft is not None else "n/a (no output)"
    err_console.print(
        f"[dim]time to first token {first} (model load and render "
        f"{ready - started:.2f}s); {last.tokens_out} tokens in {last.elapsed_s:.2f}s "
        f"({rate:.1f} tok/s), finished: {last.finish_reason}[/]"
    )
