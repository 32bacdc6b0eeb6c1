"""Sweeps from their stored state: what the TUI shows of a finished sweep, a resumed driver
bringing the study back in step with the store, and cancel with the driver gone. No training
runs here: the trials' jobs are store rows.
"""

from __future__ import annotations

import pytest

from tests.tune_helpers import add_training_data
from tunelab.engine.errors import BadInputError
from tunelab.engine.models.sources import resolve_model
from tunelab.engine.training.config import TrainingConfig
from tunelab.store import Store, Workspace

# The TUI ----------------------------------------------------------------------------------


def _stored_sweep(store: Store) -> int:
    """A finished sweep of two trials (one complete, one pruned) through the store alone."""
    from tunelab.store import NewSweep

    models = store.list_models()
    base, tuned = models[0], models[-1]
    dataset = store.list_datasets()[0]
    version = store.list_prompt_versions(store.list_prompts()[0].name)[0]
    sweep = store.create_sweep(
        NewSweep(
            method="lora",
            base_model_id=base.id,
            dataset_id=dataset.id,
            prompt_version_id=version.id,
            space="lora_r=4|8",
            metric="val_accuracy",
            direction="maximize",
            n_trials=2,
            parallel=1,
            pruner="median",
            seed=0,
            config={},
            study_path="unused",
        )
    )
    store.add_sweep_trial(sweep.id, 0, {"lora_r": 4})
    store.update_sweep_trial(sweep.id, 0, state="complete", value=0.75)
    store.add_sweep_trial(sweep.id, 1, {"lora_r": 8})
    store.update_sweep_trial(sweep.id, 1, state="pruned", pruned_at_step=5)
    store.finish_sweep(sweep.id, 0, tuned.id, [f"sweep-{sweep.id}-best", "swept"])
    return sweep.id


async def test_the_sweeps_view_shows_trials_and_the_labelled_best() -> None:
    from tests.fake_engine import FakeEngine
    from tests.tui_fixtures import seed_store
    from tests.tui_helpers import settle, show_screen, wait_for_text
    from tunelab.tui.app import make_app
    from tunelab.tui.screens.sweeps import SweepChart, SweepsModal

    store = Store.memory()
    seed_store(store)
    sweep_id = _stored_sweep(store)
    engine = FakeEngine(store)
    app = make_app(store, engine=engine)
    async with app.run_test(size=(120, 40)) as pilot:
        await show_screen(app, pilot, "6", "Fine-tune")
        await pilot.press("w")
        text = await wait_for_text(app, pilot, f"sweep {sweep_id} · finished · 2/2 trials")
        assert "(1 complete, 1 pruned)" in text and "(sweep-1-best, swept)" in text
        assert "★ 0" in text and "0.7500" in text and "pruned" in text
        assert isinstance(app.screen, SweepsModal)
        chart = app.screen.query_one(SweepChart)
        assert chart.detail is not None and chart.detail.sweep.id == sweep_id
        await pilot.press("escape")
        await settle(app, pilot)
        assert not isinstance(app.screen, SweepsModal)
    assert "sweeps" in engine.calls
    assert resolve_model(store, "swept").id == store.list_models()[-1].id


def test_a_resumed_driver_brings_the_study_back_in_step_with_the_store(
    workspace: Workspace,
) -> None:
    """A driver killed between the study and the store: a trial the store never recorded
    fails, one the store ended is told so; nothing is launched again."""
    import optuna

    from tunelab.engine.sweeps.driver import SweepDriver
    from tunelab.engine.sweeps.launch import study_path
    from tunelab.store import NewSweep

    store = workspace.open_store()
    base, dataset, version = add_training_data(store, None, n_train=8, n_val=4)
    sweep = store.create_sweep(
        NewSweep(
            method="lora",
            base_model_id=base.id,
            dataset_id=dataset.id,
            prompt_version_id=version.id,
            space="lora_r=4|8",
            metric="val_accuracy",
            direction="maximize",
            n_trials=3,
            parallel=1,
            pruner="median",
            seed=0,
            config=TrainingConfig(metric_for_best="val_accuracy").to_dict(),
            study_path=str(study_path(workspace, 1)),
        )
    )
    driver = SweepDriver(workspace, store, sweep.id)
    recorded = driver.study.ask(driver.distributions)
    store.add_sweep_trial(sweep.id, recorded.number, dict(recorded.params))
    store.update_sweep_trial(sweep.id, recorded.number, state="complete", value=0.5)
    orphan = driver.study.ask(driver.distributions)  # asked, then the driver died

    again = SweepDriver(workspace, store, sweep.id)
    again.reconcile()
    states = {t.number: t for t in again.study.get_trials()}
    assert states[recorded.number].state == optuna.trial.TrialState.COMPLETE
    assert states[recorded.number].value == 0.5
    assert states[orphan.number].state == optuna.trial.TrialState.FAIL
    assert [t.number for t in store.sweep_trials(sweep.id)] == [recorded.number]
    assert store.list_jobs() == []


def test_cancelling_a_sweep_whose_driver_is_gone_cancels_its_trial_jobs(
    workspace: Workspace,
) -> None:
    from tunelab.engine.sweeps.driver import SweepDriver, cancel_sweep
    from tunelab.engine.sweeps.launch import study_path
    from tunelab.store import NewSweep

    store = workspace.open_store()
    base, dataset, version = add_training_data(store, None, n_train=8, n_val=4)
    sweep = store.create_sweep(
        NewSweep(method="lora", base_model_id=base.id, dataset_id=dataset.id,
                 prompt_version_id=version.id, space="lora_r=4|8", metric="val_loss",
                 direction="minimize", n_trials=4, parallel=1, pruner="none", seed=0,
                 config=TrainingConfig().to_dict(), study_path=str(study_path(workspace, 1)))
    )  # fmt: skip
    driver = SweepDriver(workspace, store, sweep.id)
    trial = driver.study.ask(driver.distributions)
    store.add_sweep_trial(sweep.id, trial.number, dict(trial.params))
    job = store.create_job("lora", {}, base.id, dataset.id, version.id)  # queued, no worker
    store.update_sweep_trial(sweep.id, trial.number, job_id=job.id)

    cancelled = cancel_sweep(workspace, store, sweep.id)
    assert cancelled.status == "cancelled"
    assert store.get_job(job.id).status == "cancelled"
    assert store.sweep_trial(sweep.id, trial.number).state == "failed"
    with pytest.raises(BadInputError, match="only a running sweep"):
        cancel_sweep(workspace, store, sweep.id)
