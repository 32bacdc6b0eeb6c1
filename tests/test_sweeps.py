"""Hyperparameter sweeps: the space parser, pruning decisions on synthetic series, bad input
(exit 2, one line, nothing stored), a real sweep of the built-in model whose driver is killed
and resumed, a 4-trial sweep with pruning (slow), and a sweep on the local Slurm cluster
(slow). `test_sweeps_stored.py` covers what needs no training.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import run_cli
from tests.tune_helpers import add_training_data, tiny_model_dir, wait_for
from tunelab.engine.errors import BadInputError
from tunelab.engine.models.sources import resolve_model
from tunelab.engine.sweeps.launch import driver_alive, sweep_detail
from tunelab.engine.sweeps.space import parse_space, sweepable_options
from tunelab.engine.sweeps.study import best_value, make_pruner, open_study, report_new_points
from tunelab.engine.training.config import TrainingConfig
from tunelab.engine.training.slurm import slurm_available
from tunelab.store import Store, Workspace

LORA = TrainingConfig(method="lora")
FAST_ENV = {"TUNELAB_SWEEP_POLL_S": "0.3", "TUNELAB_HEARTBEAT_S": "0.5", "OMP_NUM_THREADS": "1"}

# The space ------------------------------------------------------------------------------


def test_the_documented_space_parses_onto_config_fields() -> None:
    lr, rank, epochs = parse_space("lr=1e-4..1e-3:log, lora_r=8|16|32, epochs=1..3", LORA)
    assert (lr.name, lr.low, lr.high, lr.log, lr.kind) == ("lr", 1e-4, 1e-3, True, "float")
    assert (rank.name, rank.choices, rank.is_range) == ("lora_r", (8, 16, 32), False)
    assert (epochs.low, epochs.high, epochs.log) == (1.0, 3.0, False)
    assert parse_space("batch_size=2..8", LORA)[0].distribution().__class__.__name__ == (
        "IntDistribution"
    )
    assert parse_space("packing=true|false", LORA)[0].choices == (True, False)
    assert parse_space("scheduler=cosine", LORA)[0].choices == ("cosine",)


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ("lr=abc", "--space lr=abc: 'abc' is not a number"),
        ("learning_rate=1e-4..1e-3", "unknown parameter 'learning_rate'; sweepable: "),
        ("lora_r=8||16", "--space lora_r=8||16: a choice is empty"),
        ("lora_r=8|8", "a choice repeats"),
        ("", "has an empty item"),
        ("lr=1e-4..1e-3,", "has an empty item"),
        ("lr", "needs NAME=LOW..HIGH[:log] or NAME=A|B|C"),
        ("lr=1e-3..1e-4", "LOW must be below HIGH"),
        ("lr=0..1e-3:log", "a :log range needs LOW above 0"),
        ("lr=1e-4..1e-3:ln", "unknown scale 'ln'"),
        ("lora_r=2.5|4", "lora_r takes whole numbers"),
        ("lora_r=0..8", "--space lora_r=0: lora_r must be an integer >= 1"),
        ("packing=yes|no", "'yes' is not true or false"),
        ("scheduler=linear..cosine", "scheduler is str, so give choices"),
        ("scheduler=cosine|fast", "'fast' is not one of linear"),
        ("num_virtual_tokens=10|20", "applies only to method prefix or prompt, not lora"),
        ("lr=1e-4..1e-3,lr=1e-5..1e-4", "names 'lr' twice"),
        ("method=lora|full", "unknown parameter 'method'"),
    ],
)
def test_bad_spaces_are_one_line_errors(space: str, message: str) -> None:
    with pytest.raises(BadInputError) as caught:
        parse_space(space, LORA)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


@settings(max_examples=60, deadline=None)
@given(
    low=st.floats(min_value=1e-6, max_value=1e-2),
    factor=st.floats(min_value=1.01, max_value=100.0),
    log=st.booleans(),
    ranks=st.lists(st.integers(min_value=1, max_value=256), min_size=1, max_size=5, unique=True),
)
def test_written_spaces_parse_back_to_their_values(
    low: float, factor: float, log: bool, ranks: list[int]
) -> None:
    high = low * factor
    text = f"lr={low!r}..{high!r}{':log' if log else ''},lora_r={'|'.join(map(str, ranks))}"
    lr, rank = parse_space(text, LORA)
    assert (lr.low, lr.high, lr.log) == (low, high, log)
    assert rank.choices == tuple(ranks)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="lr_oa=.|:,0123456789e-+gxyz ", max_size=30))
def test_any_text_parses_or_fails_with_one_line(text: str) -> None:
    try:
        parameters = parse_space(text, LORA)
    except BadInputError as exc:
        assert "\n" not in str(exc) and str(exc)
        return
    options = sweepable_options()
    assert all(p.name in options for p in parameters)


# Pruning --------------------------------------------------------------------------------


def _finished_trial(study: object, series: list[float]) -> None:
    import optuna

    assert isinstance(study, optuna.Study)
    trial = study.ask()
    report_new_points(study, trial.number, list(enumerate(series, start=1)), decide=False)
    study.tell(trial.number, best_value("val_accuracy", series))


def test_median_pruner_stops_a_trial_below_the_median_at_the_same_step(tmp_path: Path) -> None:
    pruner = make_pruner("median", n_trials=8, first_step=1)
    study = open_study(tmp_path / "s.journal", "s", "val_accuracy", pruner, seed=0)
    _finished_trial(study, [0.50, 0.60, 0.70])
    _finished_trial(study, [0.55, 0.65, 0.75])
    weak = study.ask()
    assert report_new_points(study, weak.number, [(1, 0.2)]) == 1
    strong = study.ask()
    assert report_new_points(study, strong.number, [(1, 0.6), (2, 0.7)]) is None
    # A resumed driver reports the same points again: already seen, so no new decision.
    assert report_new_points(study, strong.number, [(1, 0.6), (2, 0.7)]) is None
    assert report_new_points(study, strong.number, [(1, 0.6), (2, 0.7), (3, 0.1)]) == 3


def test_loss_is_minimized_and_a_high_loss_is_pruned(tmp_path: Path) -> None:
    study = open_study(tmp_path / "s.journal", "s", "val_loss",
                       make_pruner("median", 4, 1), seed=0)  # fmt: skip
    assert study.direction.name == "MINIMIZE"
    trial = study.ask()
    report_new_points(study, trial.number, [(1, 1.0), (2, 0.8)], decide=False)
    study.tell(trial.number, best_value("val_loss", [1.0, 0.8]))
    assert study.best_value == 0.8
    worse = study.ask()
    assert report_new_points(study, worse.number, [(1, 3.0)]) == 1
    better = study.ask()
    assert report_new_points(study, better.number, [(1, 0.9)]) is None


def test_halving_keeps_the_top_half_at_each_rung(tmp_path: Path) -> None:
    pruner = make_pruner("halving", n_trials=8, first_step=1)
    study = open_study(tmp_path / "s.journal", "s", "val_accuracy", pruner, seed=0)
    for value in (0.9, 0.8, 0.7, 0.6):
        _finished_trial(study, [value, value])
    assert report_new_points(study, study.ask().number, [(1, 0.1)]) == 1
    assert report_new_points(study, study.ask().number, [(1, 0.95)]) is None


def test_no_pruner_never_prunes(tmp_path: Path) -> None:
    study = open_study(tmp_path / "s.journal", "s", "val_accuracy",
                       make_pruner("none", 4, 1), seed=0)  # fmt: skip
    _finished_trial(study, [0.9, 0.9])
    assert report_new_points(study, study.ask().number, [(1, 0.0), (2, 0.0)]) is None


# Bad input through the CLI ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--space", "lr=abc"], "--space lr=abc: 'abc' is not a number"),
        (["--space", "lora_r=8|16", "--metric", "val_f1"], "--metric must be a validation metric"),
        (["--space", "lora_r=8|16", "--trials", "0"], "--trials must be 1 or more"),
        (["--space", "lora_r=8|16", "--pruner", "hyperband"], "--pruner must be one of"),
        (["--space", "batch_size=4..64"], "batch_size 64 is larger than the"),
        (["--space", "lora_r=8|16", "--method", "prompt"], "--space lora_r: applies only"),
        (["--space", "lora_r=8|16", "--on", "slurm"], "compute nodes do not see"),
        (["--space", "lora_r=8|16", "--nodes", "2"], "need --on slurm"),
        ([], "sweep needs --space"),
    ],
)
def test_bad_sweeps_exit_2_with_one_line_and_store_nothing(
    workspace: Workspace, flags: list[str], message: str
) -> None:
    store = workspace.open_store()
    add_training_data(store, None, n_train=8, n_val=4)
    result = run_cli("sweep", "--dataset", "irony", "--prompt", "irony@1", *flags,
                     workspace=workspace)  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert store.list_sweeps() == [] and store.list_jobs() == []


# Real sweeps ------------------------------------------------------------------------------

_SMALL_JOBS = ["--batch-size", "2", "--max-seq-len", "64", "--eval-samples", "4",
               "--eval-every", "1"]  # fmt: skip


def _start(workspace: Workspace, *flags: str) -> int:
    result = run_cli("sweep", "--dataset", "irony", "--prompt", "irony@1", "--json", *flags,
                     workspace=workspace, env=FAST_ENV)  # fmt: skip
    assert result.returncode == 0, result.stderr
    import json

    return int(json.loads(result.stdout)["sweep_id"])


def _wait_finished(store: Store, sweep_id: int, timeout: float = 420) -> None:
    def ended() -> bool:
        return store.get_sweep(sweep_id).status != "running"

    wait_for(ended, timeout=timeout, what=f"sweep {sweep_id} to end")


@pytest.mark.model
def test_a_killed_driver_resumes_without_rerunning_trials_and_labels_the_best(
    workspace: Workspace,
) -> None:
    """The built-in model, two 1-step trials; the driver is killed once the first trial's job
    is queued, and `sweep resume` re-attaches to it instead of starting it again."""
    store = workspace.open_store()
    add_training_data(store, None, n_train=8, n_val=4)
    sweep_id = _start(workspace, "--space", "lr=1e-4..1e-3:log,lora_r=4|8", "--trials", "2",
                      "--metric", "val_macro_f1", "--max-steps", "1", *_SMALL_JOBS)  # fmt: skip
    first = wait_for(lambda: next((t for t in store.sweep_trials(sweep_id) if t.job_id), None),
                     what="the first trial's job")  # fmt: skip
    sweep = store.get_sweep(sweep_id)
    assert sweep.pid is not None
    os.kill(sweep.pid, signal.SIGKILL)
    wait_for(lambda: not driver_alive(store.get_sweep(sweep_id)), what="the driver to die")
    assert store.get_sweep(sweep_id).status == "running"
    shown = run_cli("sweep", "show", str(sweep_id), workspace=workspace)
    assert f"resume with `tunelab sweep resume {sweep_id}`" in shown.stdout.replace("\n", "")

    resumed = run_cli("sweep", "resume", str(sweep_id), workspace=workspace, env=FAST_ENV)
    assert resumed.returncode == 0, resumed.stderr
    _wait_finished(store, sweep_id)

    detail = sweep_detail(store, sweep_id)
    assert detail.sweep.status == "finished", detail.sweep.error
    assert [t.number for t in detail.trials] == [0, 1]
    assert detail.trials[0].job_id == first.job_id  # re-attached, not run again
    assert len(store.list_jobs()) == 2
    assert all(t.state == "complete" and t.value is not None for t in detail.trials)
    best = max(detail.trials, key=lambda t: t.value or 0.0)
    assert detail.sweep.best_trial == best.number
    labelled = resolve_model(store, f"sweep-{sweep_id}-best")
    assert labelled.job_id == best.job_id and labelled.is_best
    assert resolve_model(store, "swept").id == labelled.id
    assert detail.labels == [f"sweep-{sweep_id}-best", "swept"]


@pytest.mark.model
@pytest.mark.slow  # four jobs of the built-in model, one after another
def test_a_four_trial_sweep_with_pruning_finishes_and_labels_its_best(
    workspace: Workspace,
) -> None:
    store = workspace.open_store()
    add_training_data(store, None, n_train=8, n_val=4)
    sweep_id = _start(workspace, "--space", "lr=1e-5..1e-2:log,lora_r=4|8", "--trials", "4",
                      "--metric", "val_loss", "--max-steps", "2", "--pruner", "median",
                      *_SMALL_JOBS)  # fmt: skip
    _wait_finished(store, sweep_id, timeout=900)
    detail = sweep_detail(store, sweep_id)
    assert detail.sweep.status == "finished", detail.sweep.error
    assert len(detail.trials) == 4 and len(store.list_jobs()) == 4
    assert {t.state for t in detail.trials} <= {"complete", "pruned"}
    for trial in detail.trials:
        if trial.state == "pruned":
            assert trial.pruned_at_step is not None
            assert store.get_job(trial.job_id or 0).status in ("cancelled", "succeeded")
    complete = [t for t in detail.trials if t.state == "complete"]
    best = min(complete, key=lambda t: t.value or 0.0)
    assert detail.sweep.best_trial == best.number
    assert resolve_model(store, "swept").job_id == best.job_id


@pytest.mark.slurm
@pytest.mark.slow  # two Slurm jobs one after another: a minute; the default suite stays fast
@pytest.mark.skipif(not slurm_available(), reason="no Slurm controller answers `sinfo`")
def test_a_sweep_on_slurm_runs_its_trials_as_slurm_jobs(
    workspace: Workspace, tmp_path: Path
) -> None:
    store = workspace.open_store()
    add_training_data(store, tiny_model_dir(tmp_path), n_train=8, n_val=4)
    sweep_id = _start(workspace, "--base", "tiny", "--space", "lr=1e-4..1e-2:log",
                      "--trials", "2", "--metric", "val_accuracy", "--max-steps", "2",
                      "--on", "slurm", "--slurm-allow-local-fs", *_SMALL_JOBS)  # fmt: skip
    _wait_finished(store, sweep_id)
    detail = sweep_detail(store, sweep_id)
    assert detail.sweep.status == "finished", detail.sweep.error
    jobs = [store.get_job(t.job_id or 0) for t in detail.trials]
    assert all(j.scheduler == "slurm" and j.scheduler_job_id for j in jobs)
    assert all(t.state == "complete" for t in detail.trials)
    assert detail.best_model is not None
