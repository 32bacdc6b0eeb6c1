"""Export rated, corrected and preferred outputs as SFT and DPO training data.

Each prompt is rendered through the run's own prompt version with the one renderer
(`RowRenderer`), so a model trained on the file sees the text evaluation shows it. Rows of
any split but the training split are left out unless asked: a run on the test split would
otherwise put the test rows into training. Every export is registered as a dataset whose
lineage names the runs, outputs, ratings, corrections, preferences and filters behind it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tunelab.engine.errors import BadInputError
from tunelab.engine.feedback.options import ExportOptions
from tunelab.engine.feedback.writing import ExportResult, register_export
from tunelab.engine.prompts.templates import RowRenderer
from tunelab.store import Dataset, Run, RunOutput, Store

__all__ = [
    "ExportOptions",
    "ExportResult",
    "export_dpo_from_preferences",
    "export_dpo_from_ratings",
    "export_sft",
]


class _Prompts:
    """Renders each run's rows through its prompt version once per (run, row)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._renderers: dict[int, tuple[RowRenderer, Dataset, str]] = {}

    def mode(self, run: Run) -> str:
        return self.store.get_prompt_version_by_id(run.prompt_version_id).mode

    def render(self, run: Run, row_idx: int) -> str | list[dict[str, str]]:
        """The prompt of one row: text (plain mode) or chat messages (chat mode)."""
        if run.id not in self._renderers:
            version = self.store.get_prompt_version_by_id(run.prompt_version_id)
            dataset = self.store.get_dataset_by_id(run.dataset_id)
            self._renderers[run.id] = (
                RowRenderer(self.store, version, None, dataset, run.split),
                dataset,
                version.mode,
            )
        renderer, dataset, mode = self._renderers[run.id]
        rows = self.store.dataset_rows(dataset.name, run.split, [row_idx])
        if not rows:
            raise BadInputError(f"row {row_idx} of {dataset.name}/{run.split} is gone")
        rendered = renderer.render(rows[0].data, row_idx)
        return list(rendered.messages) if mode == "chat" else rendered.text


def _get_runs(store: Store, run_ids: Sequence[int]) -> list[Run]:
    if not run_ids:
        raise BadInputError("name at least one run to export from")
    runs = [store.get_run(i) for i in dict.fromkeys(run_ids)]
    datasets = {r.dataset_id for r in runs}
    if len(datasets) > 1:
        names = ", ".join(sorted({r.dataset_name for r in runs}))
        raise BadInputError(
            f"the runs are on different datasets ({names}); export runs of one dataset at a time"
        )
    return runs


def _held_out(run: Run, options: ExportOptions) -> bool:
    return run.split != options.train_split and not options.include_eval_split


def _nothing(
    what: str, excluded: dict[str, int], runs: Sequence[Run], options: ExportOptions
) -> str:
    held = [f"{r.id} ({r.split})" for r in runs if _held_out(r, options)]
    why = f"nothing to export: no {what}"
    if held:
        why += (
            f"; runs {', '.join(held)} are not on the training split {options.train_split!r}, "
            "so their rows stay out of training (pass --include-eval-split to export them anyway)"
        )
    skipped = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in excluded.items() if n)
    return why + (f" (left out: {skipped})" if skipped else "")


def export_sft(
    store: Store, workspace_root: Path, run_ids: Sequence[int], options: ExportOptions
) -> ExportResult:
    """Prompt/completion pairs (chat `messages` for chat prompts) from the good rows of runs.

    A row qualifies when it has a correction (the newest version is the completion) or, unless
    `corrected_only`, when its output is rated at least `min_rating`.
    """
    runs = _get_runs(store, run_ids)
    prompts = _Prompts(store)
    modes = {prompts.mode(r) for r in runs}
    if len(modes) > 1:
        raise BadInputError("the runs mix plain and chat prompts; export them separately")
    records: list[dict[str, Any]] = []
    used: list[dict[str, Any]] = []
    excluded = {"held_out": 0, "unrated": 0, "rated_below": 0}
    for run in runs:
        corrections = store.latest_corrections(run.id)
        raters = store.rating_authors(run.id)
        for output in store.run_outputs(run.id):
            if _held_out(run, options):
                excluded["held_out"] += 1
                continue
            correction = corrections.get(output.id)
            if correction is None and (options.corrected_only or output.rating is None):
                excluded["unrated"] += 1
                continue
            if correction is None and (output.rating or 0) < options.min_rating:
                excluded["rated_below"] += 1
                continue
            completion = correction.text if correction is not None else output.output
            prompt = prompts.render(run, output.row_idx)
            if isinstance(prompt, list):
                messages = [*prompt, {"role": "assistant", "content": completion}]
                records.append({"messages": messages})
            else:
                records.append({"prompt": prompt, "completion": completion})
            used.append(
                {
                    "run_id": run.id,
                    "run_output_id": output.id,
                    "row_idx": output.row_idx,
                    "rating": output.rating,
                    "rated_by": raters.get(output.id),
                    "correction_id": None if correction is None else correction.id,
                    "correction_version": None if correction is None else correction.version,
                    "corrected_by": None if correction is None else correction.author,
                }
            )
    if not records:
        what = (
            "corrected rows"
            if options.corrected_only
            else (f"corrected rows or outputs rated {options.min_rating} or more")
        )
        raise BadInputError(_nothing(what, excluded, runs, options))
    lineage = {
        "kind": "sft",
        "source": "runs",
        "format": "messages" if modes == {"chat"} else "prompt_completion",
        "runs": [_run_lineage(r) for r in runs],
        "filters": options.filters(),
        "outputs": used,
        "excluded": excluded,
    }
    default = f"sft-from-run-{'-'.join(str(r.id) for r in runs)}"
    reference = "completion" if modes != {"chat"} else None
    return register_export(store, workspace_root, records, lineage, options, default, reference)


def export_dpo_from_ratings(
    store: Store, workspace_root: Path, run_ids: Sequence[int], options: ExportOptions
) -> ExportResult:
    """prompt/chosen/rejected from two runs' outputs of the same row rated differently.

    Every pair of differently rated outputs of a row makes one example, the higher rated one
    chosen. The prompt is rendered through the first run's prompt version.
    """
    runs = _get_runs(store, run_ids)
    if len(runs) < 2:
        raise BadInputError("pairs from ratings need two or more runs on the same rows")
    by_row: dict[tuple[str, int], list[tuple[Run, RunOutput]]] = {}
    excluded = {"held_out": 0, "unrated": 0, "equal_ratings": 0}
    raters: dict[int, str] = {}
    for run in runs:
        raters.update(store.rating_authors(run.id))
        for output in store.run_outputs(run.id):
            if _held_out(run, options):
                excluded["held_out"] += 1
            elif output.rating is None:
                excluded["unrated"] += 1
            else:
                by_row.setdefault((run.split, output.row_idx), []).append((run, output))
    prompts = _Prompts(store)
    records: list[dict[str, Any]] = []
    used: list[dict[str, Any]] = []
    for (_, row_idx), rated in sorted(by_row.items()):
        for i, (run_x, x) in enumerate(rated):
            for run_y, y in rated[i + 1 :]:
                if x.rating == y.rating:
                    excluded["equal_ratings"] += 1
                    continue
                (chosen_run, chosen), (rejected_run, rejected) = sorted(
                    [(run_x, x), (run_y, y)], key=lambda p: -(p[1].rating or 0)
                )
                prompt = prompts.render(runs[0] if runs[0].split == run_x.split else run_x, row_idx)
                records.append(_preference_record(prompt, chosen.output, rejected.output))
                used.append(
                    {
                        "row_idx": row_idx,
                        "chosen": {"run_id": chosen_run.id, "run_output_id": chosen.id,
                                   "rating": chosen.rating, "rated_by": raters.get(chosen.id)},
                        "rejected": {"run_id": rejected_run.id, "run_output_id": rejected.id,
                                     "rating": rejected.rating,
                                     "rated_by": raters.get(rejected.id)},
                    }
                )  # fmt: skip
    if not records:
        raise BadInputError(
            _nothing("row with two differently rated outputs", excluded, runs, options)
        )
    lineage = {
        "kind": "dpo",
        "source": "ratings",
        "runs": [_run_lineage(r) for r in runs],
        "filters": options.filters(),
        "pairs": used,
        "excluded": excluded,
    }
    default = f"dpo-from-ratings-{'-'.join(str(r.id) for r in runs)}"
    return register_export(store, workspace_root, records, lineage, options, default, "chosen")


def export_dpo_from_preferences(
    store: Store,
    workspace_root: Path,
    run_pair: tuple[int, int] | None,
    options: ExportOptions,
) -> ExportResult:
    """prompt/chosen/rejected from blind A/B preferences (ties left out), rendered through
    run A's prompt version; all recorded preferences unless a pair of runs is named."""
    if run_pair is not None:
        _get_runs(store, run_pair)
    preferences = store.preferences(run_pair)
    datasets = {p.dataset_id for p in preferences}
    if len(datasets) > 1:
        names = sorted(store.get_dataset_by_id(i).name for i in datasets)
        raise BadInputError(
            f"the preferences reference rows of different datasets ({', '.join(names)}); "
            "export one pair of runs at a time: --from-preferences RUN_A RUN_B"
        )
    prompts = _Prompts(store)
    records: list[dict[str, Any]] = []
    used: list[dict[str, Any]] = []
    excluded = {"held_out": 0, "ties": 0}
    runs: dict[int, Run] = {}
    outputs: dict[int, dict[int, RunOutput]] = {}
    for preference in preferences:
        for run_id in (preference.run_a_id, preference.run_b_id):
            if run_id not in runs:
                runs[run_id] = store.get_run(run_id)
                outputs[run_id] = {o.id: o for o in store.run_outputs(run_id)}
        run_a = runs[preference.run_a_id]
        if _held_out(run_a, options):
            excluded["held_out"] += 1
            continue
        if preference.choice == "tie":
            excluded["ties"] += 1
            continue
        a = outputs[preference.run_a_id][preference.output_a_id]
        b = outputs[preference.run_b_id][preference.output_b_id]
        chosen, rejected = (a, b) if preference.choice == "a" else (b, a)
        prompt = prompts.render(run_a, preference.row_idx)
        records.append(_preference_record(prompt, chosen.output, rejected.output))
        used.append(
            {
                "preference_id": preference.id,
                "author": preference.author,
                "row_idx": preference.row_idx,
                "chosen_output_id": chosen.id,
                "rejected_output_id": rejected.id,
            }
        )
    if not records:
        what = "preferences" if not preferences else "preference with a winner"
        raise BadInputError(_nothing(what, excluded, list(runs.values()), options))
    lineage = {
        "kind": "dpo",
        "source": "preferences",
        "runs": [_run_lineage(r) for r in runs.values()],
        "filters": options.filters(),
        "preferences": used,
        "excluded": excluded,
    }
    suffix = "-".join(str(i) for i in run_pair) if run_pair else "all"
    return register_export(
        store, workspace_root, records, lineage, options, f"dpo-from-preferences-{suffix}", "chosen"
    )


def _preference_record(
    prompt: str | list[dict[str, str]], chosen: str, rejected: str
) -> dict[str, Any]:
    """TRL's preference format: standard (text) or conversational (messages)."""
    if isinstance(prompt, list):
        return {
            "prompt": prompt,
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}],
        }
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def _run_lineage(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "prompt": run.prompt_ref,
        "prompt_version_id": run.prompt_version_id,
        "model": run.model_name,
        "dataset": run.dataset_name,
        "split": run.split,
    }
