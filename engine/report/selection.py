"""Which two runs a decision report weighs: the ones named, or the best finished prompt run
and the best finished fine-tuned run on the same dataset and evaluation split.

A prompt run is one on a base model (local or endpoint); a fine-tuned run is one on a model
trained from a base (an adapter or a full fine-tune). "Best" is the higher (or, for a
latency-like metric, lower) stored value of the headline metric, the newer run on a tie.
Without a named run or dataset, the perturbed copies a robustness suite evaluates on are
left out: their runs measure the clean ones.
"""

from __future__ import annotations

from dataclasses import dataclass

from tunelab.engine.compare.series import higher_is_better
from tunelab.engine.errors import BadInputError
from tunelab.engine.evaluation.run import refresh_run_states
from tunelab.engine.report.records import FinetuneEffort
from tunelab.engine.robustness.derived import LINEAGE_KIND as PERTURBED_LINEAGE
from tunelab.store import Dataset, Model, Run, Store

SPLIT_PREFERENCE = ("test", "validation")
"""Without a named run, a held-out split beats the others; then the newest pair wins."""


@dataclass(frozen=True)
class RunChoice:
    prompt_run: Run
    finetune_run: Run
    metric: str
    selection: str
    finetune_effort: FinetuneEffort


def headline_metric(dataset: Dataset, runs: list[Run]) -> str | None:
    """The dataset's first metric every run stored, else the first numeric one they share."""
    shared = None
    for run in runs:
        names = {k for k, v in run.metrics.items() if _number(v) is not None}
        shared = names if shared is None else shared & names
    if not shared:
        return None
    for name in [*dataset.metrics, *runs[0].metric_names]:
        if name in shared:
            return name
    return sorted(shared)[0]


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _best(runs: list[Run], metric: str) -> Run:
    sign = 1.0 if higher_is_better(metric) else -1.0

    def key(run: Run) -> tuple[float, int]:
        value = _number(run.metrics.get(metric))
        return (sign * value if value is not None else float("-inf"), run.id)

    return max(runs, key=key)


def _finished(store: Store, run_id: int, models: dict[int, Model], side: str) -> Run:
    run = store.get_run(run_id)
    if run.status != "succeeded":
        raise BadInputError(
            f"run {run.id} is {run.status}; a report weighs finished runs (see `tunelab run list`)"
        )
    tuned = models[run.model_id].base_model_id is not None
    if side == "prompt" and tuned:
        raise BadInputError(
            f"run {run.id} is on the fine-tuned model {run.model_name}; --prompt-run names a run "
            "on a base model"
        )
    if side == "finetune" and not tuned:
        raise BadInputError(
            f"run {run.id} is on the base model {run.model_name}; --finetune-run names a run on "
            "a fine-tuned model"
        )
    return run


def _group_rank(runs: list[Run], split: str) -> tuple[int, int]:
    preference = (
        SPLIT_PREFERENCE.index(split) if split in SPLIT_PREFERENCE else len(SPLIT_PREFERENCE)
    )
    return (-preference, max(r.id for r in runs))


def choose_runs(
    store: Store,
    *,
    dataset: str | None = None,
    prompt_run: int | None = None,
    finetune_run: int | None = None,
) -> RunChoice:
    """The prompt run and the fine-tuned run a report compares.

    Args:
        store: the workspace store.
        dataset: only runs on this dataset.
        prompt_run: this run is the prompt side (a finished run on a base model).
        finetune_run: this run is the fine-tune side (a finished run on a fine-tuned model).

    Raises:
        BadInputError: an unknown dataset, a named run unfinished or on the wrong kind of
            model, named runs on different datasets or splits, or no finished pair.
    """
    refresh_run_states(store)  # a killed evaluation reads 'interrupted', not 'running'
    models = {m.id: m for m in store.list_models()}
    wanted = store.get_dataset(dataset) if dataset is not None else None
    named = {
        side: _finished(store, run_id, models, side)
        for side, run_id in (("prompt", prompt_run), ("finetune", finetune_run))
        if run_id is not None
    }
    for run in named.values():
        if wanted is not None and run.dataset_id != wanted.id:
            raise BadInputError(
                f"run {run.id} is on {run.dataset_name}, not {wanted.name}; drop --dataset or "
                "name a run on it"
            )
    if len(named) == 2 and (
        named["prompt"].dataset_id != named["finetune"].dataset_id
        or named["prompt"].split != named["finetune"].split
    ):
        p, f = named["prompt"], named["finetune"]
        raise BadInputError(
            f"run {p.id} is on {p.dataset_name}/{p.split} but run {f.id} is on "
            f"{f.dataset_name}/{f.split}; name two runs on the same dataset and split"
        )
    finished = [r for r in store.list_runs() if r.status == "succeeded" and r.rows_done > 0]
    groups: dict[tuple[int, str], dict[str, list[Run]]] = {}
    for run in finished:
        side = "finetune" if models[run.model_id].base_model_id is not None else "prompt"
        groups.setdefault((run.dataset_id, run.split), {"prompt": [], "finetune": []})[side].append(
            run
        )
    if named:
        anchor = next(iter(named.values()))
        key = (anchor.dataset_id, anchor.split)
        group = dict(groups.get(key, {"prompt": [], "finetune": []}))
        for side, run in named.items():
            group[side] = [run]
        where = f"{anchor.dataset_name}/{anchor.split}"
        for side in ("prompt", "finetune"):
            if not group[side]:
                raise BadInputError(_no_side(side, where))
    else:
        pairs = {
            k: g
            for k, g in groups.items()
            if g["prompt"]
            and g["finetune"]
            and (k[0] == wanted.id if wanted is not None else not _perturbed(store, k[0]))
        }
        if not pairs:
            where = f" on {wanted.name}" if wanted is not None else ""
            raise BadInputError(
                f"no dataset split{where} has both a finished prompt run and a finished "
                "fine-tuned run; evaluate both with `tunelab eval` (see `tunelab run list`)"
            )
        key = max(
            pairs, key=lambda k: _group_rank([*pairs[k]["prompt"], *pairs[k]["finetune"]], k[1])
        )
        group = pairs[key]
    everything = [*group["prompt"], *group["finetune"]]
    metric = headline_metric(store.get_dataset_by_id(key[0]), everything)
    if metric is None:
        raise BadInputError("the runs share no stored numeric metric; evaluate them with one")
    chosen = {side: _best(group[side], metric) for side in ("prompt", "finetune")}
    # Every finished fine-tuned run on the split counts as effort, a named one or not.
    tuned_runs = groups.get(key, {}).get("finetune") or group["finetune"]
    tuned_models = {r.model_id for r in tuned_runs}
    jobs = {models[m].job_id for m in tuned_models if models[m].job_id is not None}
    effort = FinetuneEffort(len(tuned_runs), len(tuned_models), len(jobs))
    return RunChoice(
        chosen["prompt"], chosen["finetune"], metric, _selection(named, group, metric), effort
    )


def _perturbed(store: Store, dataset_id: int) -> bool:
    """A robustness suite's perturbed copy of another dataset's rows: the runs on it are
    measurements of the clean ones, never the pair a report weighs unless named."""
    lineage = store.dataset_lineage(dataset_id)
    return lineage is not None and lineage.get("kind") == PERTURBED_LINEAGE


def _no_side(side: str, where: str) -> str:
    if side == "prompt":
        return (
            f"no finished prompt run (on a base model) on {where}; evaluate one with "
            "`tunelab eval --prompt P --model builtin`"
        )
    return (
        f"no finished fine-tuned run on {where}; fine-tune with `tunelab tune` and evaluate "
        "the checkpoint with `tunelab eval --model CHECKPOINT`"
    )


def _selection(named: dict[str, Run], group: dict[str, list[Run]], metric: str) -> str:
    def side_text(side: str, noun: str) -> str:
        if side in named:
            return f"the {noun} run named"
        count = len(group[side])
        return f"the best of {count} {noun} run{'' if count == 1 else 's'}"

    return f"{side_text('prompt', 'prompt')} and {side_text('finetune', 'fine-tuned')}, by {metric}"
