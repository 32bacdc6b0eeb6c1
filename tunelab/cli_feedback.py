"""`tunelab run correct|corrections|prefer`, `tunelab export sft|dpo`: feedback as training data."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from tunelab.cli_common import console, emit_json, fail, state

if TYPE_CHECKING:
    from tunelab.engine.feedback.export import ExportOptions, ExportResult


def _run_group(app: typer.Typer) -> typer.Typer:
    """The `run` group `cli_eval` registered, so feedback commands sit beside `run rate`."""
    for group in app.registered_groups:
        if group.name == "run" and group.typer_instance is not None:
            return group.typer_instance
    raise RuntimeError("register cli_eval before cli_feedback")


def _options(
    min_rating: int,
    corrected: bool,
    include_eval_split: bool,
    train_split: str,
    name: str | None,
    out: Path | None,
    fmt: str,
) -> ExportOptions:
    from tunelab.engine.feedback.export import ExportOptions

    return ExportOptions(
        min_rating=min_rating,
        corrected_only=corrected,
        include_eval_split=include_eval_split,
        train_split=train_split,
        name=name,
        out=out,
        format=fmt,
    )


_NAME = typer.Option(None, "--name", help="Dataset to register (default: named after the source).")
_OUT = typer.Option(
    None, "--out", help="File to write (a folder with --format hf); default exports/NAME.jsonl."
)
_FORMAT = typer.Option("jsonl", "--format", help="jsonl, or hf for a `datasets` folder.")
_INCLUDE = typer.Option(
    False,
    "--include-eval-split",
    help="Also export rows of splits other than the training split (they leak into training).",
)
_TRAIN_SPLIT = typer.Option("train", "--train-split", help="The split training may see.")
_JSON = typer.Option(False, "--json", help="Print JSON.")


def register(app: typer.Typer) -> None:
    run_app = _run_group(app)

    @run_app.command("correct")
    def run_correct(
        output_id: int = typer.Argument(..., help="The output's id (see run show --outputs)."),
        text: str = typer.Option(..., "--text", help="The output that should have been produced."),
        by: str | None = typer.Option(
            None, "--by", help="Who corrects (default: TUNELAB_USER, else the login name)."
        ),
    ) -> None:
        """Store the output that should have been produced, beside the original (versioned)."""
        correction = state.store().correct_output(output_id, text, by)
        console.print(
            f"Corrected output {output_id} (version {correction.version}, by {correction.author})"
        )

    @run_app.command("corrections")
    def run_corrections(
        output_id: int = typer.Argument(..., help="The output's id."),
        json_output: bool = _JSON,
    ) -> None:
        """Every version of an output's correction, oldest first."""
        store = state.store()
        history = store.corrections(output_id)
        if json_output:
            emit_json(history)
            return
        if not history:
            console.print(f"output {output_id} has no correction")
        for c in history:
            console.print(f"v{c.version} {c.created_at} {c.author}: {c.text}")

    @run_app.command("prefer")
    def run_prefer(
        run_a: int = typer.Argument(..., help="Run shown as A."),
        run_b: int = typer.Argument(..., help="Run shown as B."),
        row: int = typer.Option(..., "--row", help="The row both runs answered (its index)."),
        choice: str = typer.Option(..., "--choice", help="a, b or tie."),
        by: str | None = typer.Option(
            None, "--by", help="Who judged (default: TUNELAB_USER, else the login name)."
        ),
    ) -> None:
        """Record a blind A/B preference between two runs' outputs of one row."""
        from tunelab.engine.feedback.preferences import prefer_row

        preference = prefer_row(state.store(), run_a, run_b, row, choice, by)
        console.print(f"Recorded preference {preference.id}: row {row}, {choice}")

    export_app = typer.Typer(
        help="Export ratings, corrections and preferences as training data (JSONL, datasets).",
        no_args_is_help=True,
    )

    @export_app.command("sft")
    def export_sft_command(
        from_run: list[int] = typer.Option(..., "--from-run", help="Run(s) to export from."),
        min_rating: int = typer.Option(4, "--min-rating", help="Keep outputs rated at least this."),
        corrected: bool = typer.Option(
            False, "--corrected", help="Keep only corrected rows (the correction is the answer)."
        ),
        include_eval_split: bool = _INCLUDE,
        train_split: str = _TRAIN_SPLIT,
        name: str | None = _NAME,
        out: Path | None = _OUT,
        fmt: str = _FORMAT,
        json_output: bool = _JSON,
    ) -> None:
        """Prompt/completion pairs (chat `messages`) from rated and corrected outputs."""
        from tunelab.engine.feedback.export import export_sft

        options = _options(min_rating, corrected, include_eval_split, train_split, name, out, fmt)
        result = export_sft(state.store(), state.workspace().root, from_run, options)
        _report(result, json_output)

    @export_app.command("dpo")
    def export_dpo_command(
        runs: list[int] | None = typer.Argument(None, help="Runs (two with --from-preferences)."),
        from_ratings: bool = typer.Option(
            False, "--from-ratings", help="Pairs from differently rated outputs of a row."
        ),
        from_preferences: bool = typer.Option(
            False, "--from-preferences", help="Pairs from blind A/B preferences."
        ),
        include_eval_split: bool = _INCLUDE,
        train_split: str = _TRAIN_SPLIT,
        name: str | None = _NAME,
        out: Path | None = _OUT,
        fmt: str = _FORMAT,
        json_output: bool = _JSON,
    ) -> None:
        """prompt/chosen/rejected pairs from ratings or preferences."""
        from tunelab.engine.feedback.export import (
            export_dpo_from_preferences,
            export_dpo_from_ratings,
        )

        if from_ratings == from_preferences:
            fail("give one of --from-ratings RUN RUN... or --from-preferences [RUN_A RUN_B]")
        options = _options(4, False, include_eval_split, train_split, name, out, fmt)
        run_ids = list(runs or [])
        store, root = state.store(), state.workspace().root
        if from_ratings:
            result = export_dpo_from_ratings(store, root, run_ids, options)
        else:
            if len(run_ids) not in (0, 2):
                fail("--from-preferences takes no runs (all preferences) or two: RUN_A RUN_B")
            pair = (run_ids[0], run_ids[1]) if run_ids else None
            result = export_dpo_from_preferences(store, root, pair, options)
        _report(result, json_output)

    app.add_typer(export_app, name="export")


def _report(result: ExportResult, json_output: bool) -> None:
    if json_output:
        emit_json(
            {
                "dataset": result.dataset.name,
                "fingerprint": result.dataset.fingerprint,
                "path": result.path,
                "rows": result.rows,
                "lineage": result.lineage,
            }
        )
        return
    console.print(
        f"Exported {result.rows} rows to {result.path} and registered dataset "
        f"{result.dataset.name!r} (fingerprint {result.dataset.fingerprint})"
    )


def lineage_line(lineage: dict[str, Any]) -> str:
    """An exported dataset's lineage in one line: what made it, from which runs, how filtered."""
    runs = ", ".join(f"{r['id']} ({r['prompt']} on {r['dataset']}/{r['split']})"
                     for r in lineage.get("runs", []))  # fmt: skip
    used = {key: len(lineage[key]) for key in ("outputs", "pairs", "preferences") if key in lineage}
    counts = ", ".join(f"{n} {key}" for key, n in used.items())
    filters = " ".join(f"{k}={v}" for k, v in sorted(lineage.get("filters", {}).items()))
    return (
        f"{lineage.get('kind', '?')} export from {lineage.get('source', '?')}; runs {runs}; "
        f"{counts}; {filters}"
    )
