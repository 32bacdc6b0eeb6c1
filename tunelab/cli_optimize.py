"""`tunelab optimize`: search a prompt's demonstrations, instruction and scoring, in the
foreground with progress or `--detach`ed as a queued job (`tunelab jobs`); Ctrl-C (SIGINT)
stops after the current evaluation keeping what it scored, and re-running with the same seed
(or `tunelab jobs resume`) reuses every finished evaluation. `optimize show` reads a search
back. `--on slurm` submits the search to Slurm (`engine.optimize.remote`)."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from tunelab.cli_common import (
    cluster_option,
    console,
    emit_json,
    err_console,
    fail,
    slurm_options,
    state,
)

if TYPE_CHECKING:
    from tunelab.engine.optimize.history import SearchHistory
    from tunelab.engine.optimize.search import OptimizeProgress, OptimizeRequest, OptimizeResult
    from tunelab.engine.training.slurm import SlurmOptions
    from tunelab.store import Store


def read_instructions(path: Path) -> tuple[str, ...]:
    """Instruction variants: a JSON list of strings, or a text file with one per line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        fail(f"cannot read instructions file {path}: {exc.strerror or exc}")
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            fail(f"instructions file {path} is not valid JSON: {exc.msg} at line {exc.lineno}")
        if not isinstance(data, list) or not all(isinstance(x, str) for x in data):
            fail(f"instructions file {path} must hold a JSON list of strings")
        return tuple(data)
    lines = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not lines:
        fail(f"instructions file {path} holds no instruction (one per line)")
    return lines


def _print_result(result: OptimizeResult) -> None:
    table = Table("version", "what the search changed", "scoring", "validation score")
    for c in result.candidates:
        scores = ", ".join(f"{s:.4f} on {n}" for n, s in sorted(c.scores.items()))
        style = "bold green" if c.version_ref == result.best_ref else ""
        table.add_row(c.version_ref, c.description, c.scoring, scores, style=style)
    console.print(table)
    for number, text in enumerate(result.proposed_instructions, start=1):
        console.print(f"proposed instruction {number}: {text}")
    seed = "—" if result.seed_score is None else f"{result.seed_score:.4f}"
    console.print(f"seed {result.seed_ref}: {result.metric}={seed}")
    if result.best_ref is not None and result.best_score is not None:
        console.print(
            f"best {result.best_ref} (labelled optimized): {result.metric}="
            f"{result.best_score:.4f} on {result.rung_rows[-1]} validation rows"
        )
    console.print(
        f"{result.evaluations} evaluations ({result.reused_evaluations} reused), "
        f"{result.rows_scored} rows scored against {result.rows_without_halving} without "
        f"halving, {result.generated_rows} run by the model"
    )
    if result.interrupted:
        console.print("[yellow]stopped early[/]: run the same command again to continue")


def _detach(store: Store, request: OptimizeRequest, as_json: bool) -> None:
    """Queue the search as a job (kind optimize) whose worker outlives the terminal and the
    SSH connection; `tunelab jobs list|show|cancel|resume` work on it."""
    from tunelab.engine.optimize.job import launch_search_job

    job, pid = launch_search_job(state.workspace(), store, request)
    if as_json:
        emit_json({"job": job.id, "pid": pid, "log": job.log_path})
        return
    console.print(
        f"queued as job {job.id} (worker pid {pid}, log {job.log_path}): follow it with "
        f"`tunelab jobs show {job.id}`, stop it with `tunelab jobs cancel {job.id}` (keeps what "
        f"it scored) and continue with `tunelab jobs resume {job.id}`."
    )


def _submit(store: Store, request: OptimizeRequest, options: SlurmOptions, as_json: bool) -> None:
    """Submit the search to Slurm as a job (kind optimize); its candidates become versions
    and runs here as `tunelab jobs list|show` or the TUI ingest the worker's events."""
    from tunelab.engine.optimize.remote import submit_search

    job = submit_search(state.workspace(), store, request, options)
    if as_json:
        emit_json({"job": job.id, "scheduler_job_id": job.scheduler_job_id,
                   "log": job.log_path})  # fmt: skip
        return
    console.print(
        f"submitted to Slurm as job {job.scheduler_job_id} (tunelab job {job.id}): follow it "
        f"with `tunelab jobs show {job.id}` (candidates arrive as they finish), stop it with "
        f"`tunelab jobs cancel {job.id}` and continue with `tunelab jobs resume {job.id}`."
    )


def search_line(config: dict[str, object]) -> str:
    """A search job's request in one line, for `tunelab jobs show`."""
    from tunelab.engine.optimize.job import request_from_config

    r = request_from_config(dict(config))
    space = r.space
    return (
        f"search: {r.prompt} on {r.dataset} ({r.train_split} demos, scored on {r.val_split}), "
        f"budget {r.budget}, strategy {r.strategy}, k {space.k_min}..{space.k_max}, scoring "
        f"{','.join(space.scorings)}, calibration {','.join(space.calibrations)}, demos "
        f"{','.join(space.selections)}, seed {r.seed}"
    )


def _print_history(history: SearchHistory) -> None:
    if not history.points:
        console.print(f"no search from {history.seed_ref} has been scored yet")
        return
    table = Table("#", "version", "rows", f"validation {history.metric}")
    for p in history.points:
        style = "bold green" if p.version_ref == history.best_ref else ("dim" if p.seed else "")
        seed = " (seed)" if p.seed else ""
        table.add_row(
            str(p.order), p.version_ref + seed, str(p.rows), f"{p.score:.4f}", style=style
        )
    console.print(table)
    console.print(
        f"{len(history.candidates)} candidates from {history.seed_ref}, selected on "
        f"{history.dataset}/{history.split}"
    )
    if history.best_ref is None or history.best_validation is None:
        return
    console.print(
        f"best {history.best_ref}: validation {history.metric}={history.best_validation:.4f}"
    )
    if history.gap is not None and history.best_test is not None:
        console.print(
            f"on test: {history.best_test:.4f}, a validation/test gap of {history.gap:+.4f} "
            "(what selecting on validation overstates)"
        )
    else:
        console.print(
            f"not evaluated on test yet: tunelab eval --prompt {history.best_ref} --dataset "
            f"{history.dataset} --split test --scoring likelihood (or generate)"
        )


def register(app: typer.Typer) -> None:
    optimize_app = typer.Typer(
        help="Search a prompt's demonstrations, instructions, scoring and calibration.",
        invoke_without_command=True,
    )
    app.add_typer(optimize_app, name="optimize")

    @optimize_app.command("show")
    def optimize_show(
        seed: str = typer.Argument(..., help="The seed version a search started from, NAME@V."),
        as_json: bool = typer.Option(False, "--json", help="Print the history as JSON."),
    ) -> None:
        """A search's validation score per candidate in the order measured, its best, the
        best's diff against the seed, and the validation/test gap once the best is on test."""
        from tunelab.cli_compare import diff_prompt_command
        from tunelab.engine.optimize.history import search_history

        history = search_history(state.store(), seed)
        if as_json:
            emit_json(history)
            return
        _print_history(history)
        if history.best_ref is not None:
            diff_prompt_command(
                history.seed_ref, history.best_ref, side_by_side=False, json_output=False
            )

    @optimize_app.callback()
    def optimize_command(
        ctx: typer.Context,
        prompt: str | None = typer.Option(
            None, "--prompt", "-p", help="The seed prompt, NAME@VERSION."
        ),
        dataset: str | None = typer.Option(None, "--dataset", "-d", help="Dataset name."),
        budget: int | None = typer.Option(None, "--budget", help="Prompt candidates to evaluate."),
        model: str = typer.Option("builtin", "--model", "-m", help="Model name or 'builtin'."),
        train_split: str = typer.Option(
            "train", "--train-split", help="Split demonstrations come from."
        ),
        val_split: str = typer.Option(
            "validation", "--val-split", help="Split candidates are scored on."
        ),
        strategy: str = typer.Option("random", "--strategy", help="random, or tpe (Optuna)."),
        instructions: Path | None = typer.Option(
            None, "--instructions", help="Instruction variants: one per line, or a JSON list."
        ),
        k_range: str = typer.Option("0..8", "--k-range", help="Demonstrations: LOW..HIGH."),
        pool_size: int = typer.Option(
            16, "--pool-size", help="Training rows demonstrations are picked from."
        ),
        scoring: list[str] = typer.Option(
            [],
            "--scoring",
            help="Scoring mode to try (repeatable); default: likelihood for "
            "classification, else generate.",
        ),
        propose: int = typer.Option(
            0,
            "--propose-instructions",
            help="Instructions a model writes from a few training examples, joining the list.",
        ),
        proposer: str = typer.Option(
            "builtin", "--proposer", help="The model that proposes instructions."
        ),
        calibration: str = typer.Option(
            "none",
            "--calibration",
            help="Label-score calibrations to try with likelihood scoring, comma-separated: "
            "none, contextual (content-free prior), batch (mean over the rows scored).",
        ),
        demo_selection: str = typer.Option(
            "fixed",
            "--demo-selection",
            help="How demonstrations are chosen, comma-separated: fixed (a set from the "
            "pool), bm25 (the k nearest training rows to each row).",
        ),
        first_rung: int = typer.Option(
            8, "--first-rung", help="Validation rows every candidate is scored on first."
        ),
        metric: str | None = typer.Option(None, "--metric", help="Metric to maximise."),
        seed: int = typer.Option(0, "--seed", help="Seeds the pool and the strategy."),
        batch_size: int = typer.Option(8, "--batch-size", help="Rows evaluated together."),
        as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
        detach: bool = typer.Option(
            False,
            "--detach",
            help="Run in a detached process that outlives the terminal; prints its pid and log.",
        ),
        on: str = typer.Option(
            "local",
            "--on",
            help="Where to search: local, or slurm (sbatch; candidates arrive as they finish).",
            rich_help_panel="Cluster",
        ),
        partition: str = cluster_option("partition"),
        gpus_per_node: int = cluster_option("gpus_per_node"),
        time_limit: str = cluster_option("time_limit"),
        slurm_arg: list[str] = cluster_option("slurm_arg"),
        slurm_allow_local_fs: bool = cluster_option("slurm_allow_local_fs"),
    ) -> None:
        """Search demonstrations, instructions, scoring and calibration for a prompt on the
        validation split; every candidate becomes a version and the best is labelled
        `optimized` (`tunelab optimize show NAME@V` reads a search back)."""
        if ctx.invoked_subcommand is not None:
            return
        if prompt is None or dataset is None or budget is None:
            fail("name the seed, the data and the budget: --prompt NAME@V --dataset D --budget N")
        from tunelab.cli_common import stop_on_sigint
        from tunelab.engine.optimize.search import OptimizeRequest, optimize
        from tunelab.engine.optimize.space import (
            CALIBRATIONS,
            SELECTIONS,
            SearchSpace,
            parse_choices,
            parse_k_range,
        )

        slurm = slurm_options(on, partition, gpus_per_node, 1, time_limit, slurm_arg,
                              slurm_allow_local_fs)  # fmt: skip
        if slurm is not None and detach:
            fail("--on slurm already runs the search in the background; drop --detach")
        store = state.store()
        k_min, k_max = parse_k_range(k_range)
        if not scoring:
            data = store.get_dataset(dataset)
            likely = data.task == "classification" and bool(data.labels)
            scoring = ["likelihood" if likely else "generate"]
        space = SearchSpace(
            k_min=k_min,
            k_max=k_max,
            pool_size=pool_size,
            instructions=read_instructions(instructions) if instructions else (),
            scorings=tuple(scoring),
            calibrations=parse_choices(calibration, CALIBRATIONS, "--calibration"),
            selections=parse_choices(demo_selection, SELECTIONS, "--demo-selection"),
        )
        request = OptimizeRequest(
            prompt=prompt,
            dataset=dataset,
            model=model,
            train_split=train_split,
            val_split=val_split,
            budget=budget,
            strategy=strategy,
            space=space,
            seed=seed,
            first_rung=first_rung,
            metric=metric,
            batch_size=batch_size,
            propose_instructions=propose,
            proposer=proposer,
        )

        if slurm is not None:
            _submit(store, request, slurm, as_json)  # bad input is refused before a job exists
            return
        if detach:
            _detach(store, request, as_json)  # bad input is refused before a job exists
            return

        def on_progress(p: OptimizeProgress) -> None:
            e = p.evaluation
            best = "—" if p.best_score is None else f"{p.best_score:.4f}"
            reused = " (reused)" if e.reused else ""
            err_console.print(
                f"[{p.evaluations}] {e.version_ref} on {e.rows} rows: {e.score:.4f}{reused}  "
                f"candidates {p.candidates}/{p.budget}, best {best}"
            )

        flag, previous = stop_on_sigint()
        try:
            result = optimize(store, request, on_progress, lambda: flag[0])
        finally:
            signal.signal(signal.SIGINT, previous)
        if as_json:
            emit_json(result)
        else:
            _print_result(result)
        if result.interrupted:
            raise typer.Exit(1)
