"""Export rated, corrected and preferred outputs as SFT and DPO training data.

Each prompt is rendered through the run's own prompt version with the one renderer
(`RowRenderer`), so a model trained on the file sees the text evaluation shows it. Rows of
any split but the training split are left out unless asked: a run on the test split would
otherwise put the test rows into training. Every export is registered as a dataset whose
lineage names the runs, outputs, ratings, corrections, preferences and filters behind it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunelab.engine.data.importing import DEFAULT_METRICS, fingerprint_rows
from tunelab.engine.errors import BadInputError
from tunelab.engine.prompts.templates import RowRenderer
from tunelab.store import Dataset, NewDataset, NewSplit, Run, RunOutput, Store

FORMATS = ("jsonl", "hf")
"""`jsonl`: one file; `hf`: a folder `datasets.load_from_disk` reads."""
EXPORT_SPLIT = "train"
"""The one split an exported dataset has: it exists to be trained on."""


@dataclass(frozen=True)
class ExportOptions:
    """What to export and where.

    Args:
        min_rating: SFT keeps outputs rated at least this (corrected rows always qualify).
        corrected_only: SFT keeps only corrected rows, with the correction as the completion.
        include_eval_split: keep rows of splits other than `train_split` (leaks them).
        train_split: the split training may see; rows of every other split are held out.
        name: the dataset to register; default one named after the source.
        out: the file (or folder for `hf`); default `exports/NAME.jsonl` in the workspace.
        format: `jsonl` or `hf`.
    """

    min_rating: int = field(default=4, metadata={"help": "Keep outputs rated at least this (1-5)."})
    corrected_only: bool = field(
        default=False, metadata={"help": "Keep only corrected rows (SFT)."}
    )
    include_eval_split: bool = field(
        default=False,
        metadata={"help": "Also export rows of splits other than the training split."},
    )
    train_split: str = field(
        default="train", metadata={"help": "The split whose rows training may see."}
    )
    name: str | None = field(default=None, metadata={"help": "Name of the dataset to register."})
    out: Path | None = field(default=None, metadata={"help": "File (or folder) to write."})
    format: str = field(default="jsonl", metadata={"help": "jsonl, or hf for a datasets folder."})

    def __post_init__(self) -> None:
        if not 1 <= self.min_rating <= 5:
            raise BadInputError(f"--min-rating is 1 to 5, not {self.min_rating}")
        if self.format not in FORMATS:
            raise BadInputError(f"--format is one of {', '.join(FORMATS)}, not {self.format!r}")
        if self.name is not None and not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", self.name):
            raise BadInputError(
                f"bad dataset name {self.name!r}: use letters, digits, '.', '_' or '-'"
            )

    def filters(self) -> dict[str, Any]:
        return {
            "min_rating": self.min_rating,
            "corrected_only": self.corrected_only,
            "include_eval_split": self.include_eval_split,
            "train_split": self.train_split,
        }


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote: the registered dataset, the file and what it holds."""

    dataset: Dataset
    path: Path
    rows: int
    lineage: dict[str, Any]


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
                    "correction_id": None if correction is None else correction.id,
                    "correction_version": None if correction is None else correction.version,
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
    return _register(store, workspace_root, records, lineage, options, default, reference)


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
    for run in runs:
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
                                   "rating": chosen.rating},
                        "rejected": {"run_id": rejected_run.id, "run_output_id": rejected.id,
                                     "rating": rejected.rating},
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
    return _register(store, workspace_root, records, lineage, options, default, "chosen")


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
    return _register(
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


def _free_name(store: Store, wanted: str | None, default: str) -> str:
    if wanted is not None:
        return wanted  # the store refuses a taken name with a one-line error
    names = set(store.dataset_names())
    name, n = default, 1
    while name in names:
        n += 1
        name = f"{default}-{n}"
    return name


def _register(
    store: Store,
    workspace_root: Path,
    records: list[dict[str, Any]],
    lineage: dict[str, Any],
    options: ExportOptions,
    default_name: str,
    reference: str | None,
) -> ExportResult:
    """Write the file, then register the dataset and its lineage; a failed registration
    removes the file, so neither exists without the other."""
    name = _free_name(store, options.name, default_name)
    if name in store.dataset_names():
        raise BadInputError(f"a dataset named {name!r} already exists; choose another --name")
    suffix = ".jsonl" if options.format == "jsonl" else ""
    path = (options.out or workspace_root / "exports" / f"{name}{suffix}").expanduser()
    if path.exists():
        raise BadInputError(f"{path} already exists; choose another --out (nothing was written)")
    rows = json.loads(json.dumps(records, ensure_ascii=False))
    split_fingerprint = fingerprint_rows(rows)
    lineage = {**lineage, "file": str(path.resolve()), "file_format": options.format}
    new = NewDataset(
        name=name,
        source=f"export:{lineage['kind']} from {lineage['source']}",
        fingerprint=hashlib.sha256(f"{EXPORT_SPLIT}:{split_fingerprint}".encode()).hexdigest()[:16],
        splits=[NewSplit(EXPORT_SPLIT, rows, split_fingerprint)],
        task="generation",
        input_columns=["messages" if reference is None else "prompt"],
        reference_column=reference,
        metrics=DEFAULT_METRICS["generation"] if reference is not None else [],
        card=f"Exported by `tunelab export {lineage['kind']}` from {lineage['source']}.",
    )
    _write(path, rows, options.format)
    try:
        dataset = store.add_exported_dataset(new, lineage)
    except BaseException:
        _remove(path)
        raise
    return ExportResult(dataset, path, len(rows), lineage)


def _write(path: Path, rows: list[dict[str, Any]], fmt: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "hf":
        # Deferred: `datasets` pulls in pyarrow and pandas.
        import datasets

        datasets.Dataset.from_list(rows).save_to_disk(str(path))
        return
    partial = path.with_name(f".{path.name}.partial")
    with partial.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(partial, path)  # a reader never sees half a file


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
