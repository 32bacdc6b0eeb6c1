"""`TrainingProgress`: what the worker writes (`to_dict`) is what every reader gets back
(`from_dict`), and the CLI's and the TUI's job lines read it that way."""

from __future__ import annotations

import dataclasses

from hypothesis import given
from hypothesis import strategies as st

from tunelab.cli_tune import _progress_line
from tunelab.engine.training.progress import TrainingProgress
from tunelab.store import Job, Store
from tunelab.tui.data import job_fraction, job_summary

finite = st.floats(allow_nan=False, allow_infinity=False, width=32)
metric_dict = st.dictionaries(st.sampled_from(["val_loss", "val_accuracy"]), finite, max_size=2)
progress_records = st.builds(
    TrainingProgress,
    phase=st.sampled_from(["loading", "training", "evaluating", "saving", "done"]),
    step=st.integers(min_value=0, max_value=10**6),
    total_steps=st.integers(min_value=0, max_value=10**6),
    epoch=finite,
    train_loss=st.none() | finite,
    learning_rate=st.none() | finite,
    tokens_per_s=st.none() | finite,
    eta_s=st.none() | finite,
    peak_memory_mb=st.none() | finite,
    memory_kind=st.sampled_from(["rss", "cuda"]),
    val=metric_dict,
    best=st.fixed_dictionaries({"model_id": st.integers(1, 99), "step": st.integers(1, 99)}),
    metrics=metric_dict,
    message=st.text(max_size=20),
    worker=st.fixed_dictionaries({"pid": st.integers(1, 10**6), "host": st.text(max_size=8)}),
)


def _job(progress: dict[str, object], status: str = "running") -> Job:
    with Store.memory() as store:
        job = store.create_job("lora", {}, None, None, None)
    return dataclasses.replace(job, id=7, status=status, progress=progress)


@given(progress_records)
def test_what_the_worker_writes_reads_back(progress: TrainingProgress) -> None:
    stored = progress.to_dict()
    assert "metrics" not in stored  # per-step points go to the metric series, not here
    assert TrainingProgress.from_dict(stored) == dataclasses.replace(progress, metrics={})


@given(
    st.dictionaries(
        st.sampled_from(["phase", "step", "total_steps", "train_loss", "val", "worker", "x"]),
        st.none() | st.booleans() | st.integers() | finite | st.text(max_size=5)
        | st.dictionaries(st.text(max_size=3), finite, max_size=2),
    )
)  # fmt: skip
def test_any_stored_snapshot_reads_without_raising(data: dict[str, object]) -> None:
    progress = TrainingProgress.from_dict(data)
    assert isinstance(progress.step, int) and not isinstance(progress.step, bool)
    assert isinstance(progress.val, dict) and isinstance(progress.phase, str)
    assert progress.train_loss is None or isinstance(progress.train_loss, float)


def test_a_queued_job_reads_as_nothing_yet() -> None:
    assert TrainingProgress.from_dict({}) == TrainingProgress()
    assert TrainingProgress.from_dict({"worker": {"pid": 3}}).worker == {"pid": 3}
    assert _progress_line(_job({}, "queued")) == "queued"
    assert job_fraction(_job({})) == (0.0, 0.0)
    assert job_summary(_job({}, "queued")) == "job 7 · lora · queued · waiting"


def test_readers_show_what_the_writer_wrote() -> None:
    written = TrainingProgress(
        "training", 30, 100, 0.5, train_loss=0.25, tokens_per_s=1234.0, eta_s=75.0,
        peak_memory_mb=512.0, val={"val_loss": 0.5},
    ).to_dict()  # fmt: skip
    job = _job(written)
    assert job_fraction(job) == (30.0, 100.0)
    assert job_summary(job) == "job 7 · lora · running · training · step 30/100 · loss 0.2500"
    assert _progress_line(job) == (
        "step 30/100, training, loss 0.2500, val_loss 0.5000, 1234 tok/s, ETA 1m15s, peak 512 MB"
    )


def test_keys_the_writer_never_writes_are_not_read() -> None:
    # The TUI used to fall back to done/total/max_steps, which no worker writes.
    assert job_fraction(_job({"done": 3, "total": 10, "max_steps": 10})) == (0.0, 0.0)
