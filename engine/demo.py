"""The built-in demo: support-ticket routing, prompt engineering versus LoRA fine-tuning.

Everything here goes through the same engine calls as the CLI and the TUI: the dataset is
added with `datasets.add_dataset`, prompts are saved as versions, runs go through
`evaluation.evaluate`, the fine-tune through `jobs.launch_job`, the verdict through
`compare.compare_runs`. Nothing is precomputed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from tunelab.engine.errors import EngineError
from tunelab.store import (
    Model,
    NotFoundError,
    PromptContent,
    Store,
    Workspace,
    init_workspace,
)

DATASET = "tickets"
QUEUES = ["account", "billing", "sales", "shipping", "technical"]
PROMPT = "route"
FINETUNE_PROMPT = "route-ft"
DEFAULT_DIR = Path("tunelab-demo")

SYSTEM = "You route customer support tickets to the right team."
ZERO_SHOT = (
    "Route this customer support ticket to one of these queues: "
    "account, billing, sales, shipping, technical.\n\n"
    "Ticket: {{ ticket }}\n\n"
    "Answer with the queue name only."
)
FEW_SHOT_EXAMPLES = [
    {"ticket": "I was charged twice for my Pro plan this month.", "output": "billing"},
    {"ticket": "The Nimbus router keeps disconnecting from wifi.", "output": "technical"},
    {"ticket": "Order #40213 still says processing after 6 days.", "output": "shipping"},
    {"ticket": "Please change the email address on my account.", "output": "account"},
    {"ticket": "We want 40 seats of the Team plan, can you send a quote?", "output": "sales"},
]
CHAIN_OF_THOUGHT = (
    "Route this customer support ticket to one of these queues: "
    "account (logins, profiles, security), billing (charges, invoices, payments), "
    "sales (prices, quotes, upgrades), shipping (orders, delivery, returns), "
    "technical (devices, apps, errors).\n\n"
    "Ticket: {{ ticket }}"
)
FINETUNE_TEMPLATE = "Ticket: {{ ticket }}\nQueue:"

PROMPT_VERSIONS: list[tuple[str, PromptContent]] = [
    (
        "zero-shot: the queues listed, nothing else",
        PromptContent(
            template=ZERO_SHOT,
            system=SYSTEM,
            settings={"max_new_tokens": 5, "stop": ["\n"]},
        ),
    ),
    (
        "few-shot: one example per queue",
        PromptContent(
            template=ZERO_SHOT,
            system=SYSTEM,
            examples=FEW_SHOT_EXAMPLES,
            settings={"max_new_tokens": 5, "stop": ["\n"]},
        ),
    ),
    (
        "chain-of-thought: describe the queues, reason, then answer",
        PromptContent(
            template=CHAIN_OF_THOUGHT,
            system=SYSTEM,
            reasoning="cot",
            settings={"max_new_tokens": 48},
        ),
    ),
    (
        "constrained: stop at the newline, logit bias towards the queue names",
        PromptContent(
            template=ZERO_SHOT,
            system=SYSTEM,
            examples=FEW_SHOT_EXAMPLES,
            settings={
                "max_new_tokens": 3,
                "stop": ["\n", " "],
                "logit_bias": {q: 3.0 for q in QUEUES},
            },
        ),
    ),
]


@dataclass(frozen=True)
class DemoSize:
    """How much of the demo to run: the full demo, or a quick variant for tests."""

    test_rows: int | None = None
    """Test rows per evaluation (None: the whole test split)."""
    prompt_versions: tuple[int, ...] = (1, 2, 3, 4)
    likelihood_versions: tuple[int, ...] = (2,)
    """Versions also scored by label log-likelihood: the strongest way to prompt a classifier."""
    training: dict[str, Any] = field(
        default_factory=lambda: {
            "method": "lora",
            "max_steps": 80,
            "batch_size": 8,
            "lr": 2e-3,
            "lora_r": 8,
            "lora_alpha": 16,
            "lora_dropout": 0.05,
            "max_seq_len": 64,
            "eval_every_steps": 40,
            "eval_samples": 40,
            "save_every_steps": 40,
            "val_split": "validation",
            "seed": 7,
        }
    )


FULL = DemoSize()
QUICK = DemoSize(
    test_rows=10,
    prompt_versions=(1, 4),
    likelihood_versions=(),
    training={
        "method": "lora",
        "max_steps": 4,
        "batch_size": 4,
        "lr": 2e-3,
        "max_seq_len": 48,
        "eval_every_steps": 4,
        "eval_samples": 8,
        "save_every_steps": 4,
        "val_split": "validation",
        "seed": 7,
    },
)


def demo_data_dir() -> Path:
    return Path(str(resources.files("tunelab") / "demo"))


def create_demo_workspace(directory: Path | str = DEFAULT_DIR) -> tuple[Workspace, bool]:
    """Create the demo workspace, or bring an existing one up to date; returns (it, created)."""
    from tunelab.engine.data.importing import DatasetOptions, add_dataset
    from tunelab.engine.models.sources import register_model

    workspace, created = init_workspace(directory)
    store = workspace.open_store()
    try:
        try:
            store.get_dataset(DATASET)
        except NotFoundError:
            files = sorted(demo_data_dir().glob("tickets-*.jsonl"))
            if not files:
                raise EngineError(
                    f"the demo data is missing from {demo_data_dir()}; reinstall tunelab"
                ) from None
            card = (demo_data_dir() / "README.md").read_text(encoding="utf-8")
            add_dataset(
                store,
                files,
                DatasetOptions(name=DATASET, reference_column="queue", labels=QUEUES, card=card),
                cache_dir=workspace.cache_dir / "datasets",
            )
        register_model(store, "builtin")
        for message, content in PROMPT_VERSIONS:
            _ensure_version(store, PROMPT, content, message)
        _ensure_version(
            store,
            FINETUNE_PROMPT,
            PromptContent(
                template=FINETUNE_TEMPLATE,
                mode="plain",
                settings={"max_new_tokens": 4, "stop": ["\n"]},
            ),
            "short plain prompt that the LoRA fine-tune is trained with",
        )
        if "baseline" not in store.get_prompt(PROMPT).labels:
            store.set_label(f"{PROMPT}@1", "baseline")
    finally:
        store.close()
    write_training_config(workspace)
    return workspace, created


TRAINING_CONFIG_FILE = "demo-lora.json"


def write_training_config(workspace: Workspace, size: DemoSize | None = None) -> Path:
    """The demo's LoRA settings as a file `tunelab tune --config` reads (shown in the tour)."""
    import json

    from tunelab.engine.training.config import TrainingConfig

    config = TrainingConfig.from_dict((size or FULL).training)
    path = workspace.root / TRAINING_CONFIG_FILE
    path.write_text(json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n")
    return path


def tour_text(workspace: Workspace) -> str:
    """The guided path the TUI shows when it opens on the demo."""
    config = workspace.root / TRAINING_CONFIG_FILE
    return f"""Welcome to the tunelab demo: route support tickets to one of five queues.
Question: is prompting the built-in 135M model enough, or does a LoRA fine-tune win?

1. Evaluate the prompts.  Press 4 (Runs), then e: choose prompt route@1 (zero-shot),
   model builtin, dataset tickets, split test. Repeat for route@2 (few-shot),
   route@3 (chain of thought) and route@4 (constrained: stop sequences, logit bias).
   Press 2 (Prompts) to read each version and d to diff two of them.

2. Fine-tune.  Press 6 (Fine-tune), then n: base builtin, dataset tickets,
   prompt route-ft@1, method lora, max steps 80, lr 0.002, batch 8, max seq len 64;
   ctrl+s launches it (a few minutes on a laptop CPU). Or, from any shell:
     tunelab --workspace {workspace.root} tune --base builtin --dataset tickets \\
       --prompt route-ft@1 --method lora --config {config}
   Quit and come back whenever you like: the job runs on its own.

3. Evaluate the fine-tune.  In Runs, e again: prompt route-ft@1, model the
   job's best checkpoint (builtin-lora-job-N-stepM), split test.

4. Compare.  In Runs, mark the best prompt run and the fine-tuned run with space,
   then c: accuracy delta with its 95% interval, McNemar's test, the tickets fixed and
   broken (t for the next tab, w for a word diff), latency and cost side by side.

Everything at once, without the TUI:  tunelab demo --headless
? lists every key on a screen; ctrl+p searches every action. Escape closes this."""


def _ensure_version(store: Store, name: str, content: PromptContent, message: str) -> None:
    """Save a demo prompt version unless one with the same content already exists."""
    from tunelab.engine.prompts.text import validated_content
    from tunelab.store import content_hash

    normalised = validated_content(content)
    digest = content_hash(normalised)
    try:
        existing = store.list_prompt_versions(name)
    except NotFoundError:
        existing = []
    if any(v.content_hash == digest for v in existing):
        return
    store.save_prompt_version(name, normalised, message=message)


@dataclass
class DemoStep:
    name: str
    seconds: float
    detail: str = ""


@dataclass
class DemoResult:
    prompt_runs: dict[str, int]
    """Prompting approach (a version, and how it is scored) → run id on the test split."""
    prompt_accuracy: dict[str, float]
    best_prompt: str
    job_id: int
    finetuned_model: str
    finetuned_run: int
    finetuned_accuracy: float
    comparison: Any
    steps: list[DemoStep]


Report = Callable[[str], None]


def run_headless_demo(
    workspace: Workspace, size: DemoSize = FULL, report: Report | None = None
) -> DemoResult:
    """Evaluate the prompt versions, fine-tune with LoRA, evaluate the fine-tune, compare."""
    from tunelab.engine.compare.runs import compare_runs
    from tunelab.engine.evaluation.run import EvalRequest, evaluate
    from tunelab.engine.training.config import TrainingConfig
    from tunelab.engine.training.jobs import launch_job

    say = report or (lambda _text: None)
    steps: list[DemoStep] = []
    store = workspace.open_store()
    try:
        runs: dict[str, int] = {}
        accuracy: dict[str, float] = {}
        approaches = [(f"{PROMPT}@{v}", f"{PROMPT}@{v}", "generate") for v in size.prompt_versions]
        approaches += [
            (f"{PROMPT}@{v} (label likelihood)", f"{PROMPT}@{v}", "likelihood")
            for v in size.likelihood_versions
        ]
        for name, ref, scoring in approaches:
            started = time.perf_counter()
            result = evaluate(
                store,
                EvalRequest(prompt=ref, model="builtin", dataset=DATASET, split="test",
                            limit=size.test_rows, scoring=scoring),
            )  # fmt: skip
            runs[name] = result.run.id
            accuracy[name] = float(result.metrics.get("accuracy", 0.0))
            elapsed = time.perf_counter() - started
            steps.append(DemoStep(f"evaluate {name}", elapsed, f"accuracy {accuracy[name]:.3f}"))
            say(f"{name}: accuracy {accuracy[name]:.3f} on {result.rows} rows ({elapsed:.1f} s)")
        # The first approach wins ties: simpler prompts are listed first.
        best_prompt = max(accuracy, key=lambda name: accuracy[name])

        started = time.perf_counter()
        config = TrainingConfig.from_dict(size.training)
        base = store.get_model("builtin")
        job = launch_job(
            workspace, store, config, base, store.get_dataset(DATASET), f"{FINETUNE_PROMPT}@1"
        )
        say(f"fine-tuning job {job.id} launched (LoRA, {config.max_steps} steps)")
        job = wait_for_job(store, job.id, say)
        elapsed = time.perf_counter() - started
        if job.status != "succeeded":
            raise EngineError(
                f"the demo's fine-tuning job {job.id} {job.status}: {job.error or 'see its log'}"
                f" ({job.log_path})"
            )
        model = best_checkpoint(store, job.id)
        steps.append(DemoStep("fine-tune (LoRA)", elapsed, f"job {job.id} → {model.name}"))

        started = time.perf_counter()
        tuned = evaluate(
            store,
            EvalRequest(prompt=f"{FINETUNE_PROMPT}@1", model=model.name, dataset=DATASET,
                        split="test", limit=size.test_rows),
        )  # fmt: skip
        tuned_accuracy = float(tuned.metrics.get("accuracy", 0.0))
        elapsed = time.perf_counter() - started
        steps.append(DemoStep("evaluate fine-tune", elapsed, f"accuracy {tuned_accuracy:.3f}"))
        say(f"{model.name} + {FINETUNE_PROMPT}@1: accuracy {tuned_accuracy:.3f} ({elapsed:.1f} s)")

        started = time.perf_counter()
        comparison = compare_runs(store, [runs[best_prompt], tuned.run.id])
        steps.append(DemoStep("compare", time.perf_counter() - started))
        return DemoResult(
            prompt_runs=runs,
            prompt_accuracy=accuracy,
            best_prompt=best_prompt,
            job_id=job.id,
            finetuned_model=model.name,
            finetuned_run=tuned.run.id,
            finetuned_accuracy=tuned_accuracy,
            comparison=comparison,
            steps=steps,
        )
    finally:
        store.close()


def wait_for_job(store: Store, job_id: int, say: Report, poll_s: float = 2.0) -> Any:
    """Follow a job's progress in the store until it ends."""
    from tunelab.engine.training.jobs import refresh_job_states

    last_step = -1
    while True:
        refresh_job_states(store)
        job = store.get_job(job_id)
        step = int(job.progress.get("step", 0) or 0)
        if step != last_step and job.status == "running":
            loss = job.progress.get("train_loss")
            total = job.progress.get("total_steps", "?")
            loss_text = f", loss {loss:.3f}" if isinstance(loss, int | float) else ""
            say(f"  step {step}/{total}{loss_text}")
            last_step = step
        if job.status in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(poll_s)


def best_checkpoint(store: Store, job_id: int) -> Model:
    models = store.models_of_job(job_id)
    if not models:
        raise EngineError(f"job {job_id} finished without saving a checkpoint")
    best = [m for m in models if m.is_best]
    return best[0] if best else models[-1]
