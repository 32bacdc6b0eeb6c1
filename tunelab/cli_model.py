"""`tunelab model add|list|show|export`: base models and fine-tuned artifacts."""

from __future__ import annotations

import typer
from rich.table import Table
from rich.text import Text

from tunelab.cli_common import console, emit_json, fail, state
from tunelab.store import Model

model_app = typer.Typer(help="Register and inspect models.", no_args_is_help=True)


def lineage(model: Model) -> list[str]:
    """Human-readable lineage: base model, training data, prompt, job, step."""
    store = state.store()
    parts: list[str] = []
    if model.base_model_id is not None:
        parts.append(f"base: {store.get_model_by_id(model.base_model_id).name}")
    if model.training_dataset_id is not None:
        data = store.get_dataset_by_id(model.training_dataset_id)
        parts.append(f"trained on: {data.name} ({model.training_dataset_fingerprint})")
        made_from = store.dataset_lineage(data.id)  # an export of ratings or preferences
        if made_from is not None:
            from tunelab.cli_feedback import lineage_line

            parts.append(f"training data made from: {lineage_line(made_from)}")
    start = (model.training_config or {}).get("from_adapter")
    if start:
        parts.append(f"started from adapter: {start} (also the DPO reference)")
    if model.prompt_version_id is not None:
        parts.append(f"prompt: {store.get_prompt_version_by_id(model.prompt_version_id).ref}")
    if model.job_id is not None:
        parts.append(f"job: {model.job_id}, step {model.step}")
    return parts


@model_app.command("add")
def model_add(
    source: str = typer.Argument(
        ...,
        help="builtin, a Hugging Face folder, a .gguf file, a hub id, or openai:MODEL (an "
        "OpenAI-compatible endpoint; needs --base-url).",
    ),
    name: str | None = typer.Option(None, "--name", "-n", help="Name in the workspace."),
    trust_remote_code: bool = typer.Option(
        False, "--trust-remote-code", help="Allow the model's own code to run."
    ),
    json_output: bool = typer.Option(False, "--json", help="Print JSON."),
    base_url: str | None = typer.Option(
        None, "--base-url", help="openai:MODEL only: the API's base URL, e.g. http://host:8000/v1."
    ),
    api_key_env: str | None = typer.Option(
        None, "--api-key-env", help="openai:MODEL only: environment variable holding the key."
    ),
    price_in: float = typer.Option(
        0.0, "--price-in", help="openai:MODEL only: USD per 1M input tokens."
    ),
    price_out: float = typer.Option(
        0.0, "--price-out", help="openai:MODEL only: USD per 1M output tokens."
    ),
    max_concurrency: int = typer.Option(
        4, "--max-concurrency", help="openai:MODEL only: requests in flight at once."
    ),
    api: str = typer.Option(
        "auto",
        "--api",
        help="openai:MODEL only: auto (chat prompts to the chat API, plain ones to "
        "completions), chat (a chat-only endpoint) or completions (no chat API).",
    ),
) -> None:
    """Register a model in the workspace (nothing is loaded or copied)."""
    from tunelab.engine.models.endpoint import SPEC_PREFIX, register_endpoint
    from tunelab.engine.models.sources import register_model

    if source.startswith(SPEC_PREFIX):
        fields = {
            "base_url": base_url,
            "api_key_env": api_key_env,
            "price_in_per_1m": price_in,
            "price_out_per_1m": price_out,
            "max_concurrency": max_concurrency,
            "api": api,
        }
        model = register_endpoint(state.store(), source, fields, name=name)
    else:
        if base_url is not None or api_key_env is not None or api != "auto":
            fail("--base-url, --api-key-env and --api are for endpoint models: openai:MODEL")
        model = register_model(
            state.store(), source, name=name, trust_remote_code=trust_remote_code
        )
    if json_output:
        emit_json(model)
    else:
        console.print(f"Added model {model.name!r} ({model.source}: {model.path})")


@model_app.command("list")
def model_list(json_output: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List models: base models and fine-tuned checkpoints with their lineage."""
    models = state.store().list_models()
    if json_output:
        emit_json(models)
        return
    table = Table("model", "kind", "source", "method", "step", "best", "lineage")
    for m in models:
        table.add_row(
            m.name,
            m.kind,
            m.source,
            m.method or "",
            "" if m.step is None else str(m.step),
            "★" if m.is_best else "",
            Text("; ".join(lineage(m))),
        )
    console.print(table)


@model_app.command("show")
def model_show(
    name: str = typer.Argument(..., help="Model name."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show a model with its lineage, training config and metrics."""
    model = state.store().get_model(name)
    if json_output:
        emit_json({**model.__dict__, "lineage": lineage(model)})
        return
    for key, value in model.__dict__.items():
        if value not in (None, {}, ""):
            console.print(Text(f"{key}: {value}"))
    for line in lineage(model):
        console.print(Text(line))


def register(app: typer.Typer) -> None:
    from tunelab.cli_tune import add_export_command

    add_export_command(model_app)
    app.add_typer(model_app, name="model")
