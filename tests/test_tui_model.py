"""The TUI against the real engine and the built-in model: playground, evaluation, tmux."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from textual.widgets import Input, Static

from tests.tui_helpers import (
    current_screen,
    screen_text,
    settle,
    show_screen,
    wait_for_text,
    wait_until,
)
from tunelab.store import Workspace
from tunelab.tui.app import make_app
from tunelab.tui.config import UserSettings
from tunelab.tui.screens.finetune import FinetuneScreen
from tunelab.tui.screens.playground import PlaygroundScreen

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def demo_workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    from tunelab.engine.demo import create_demo_workspace

    workspace, _ = create_demo_workspace(tmp_path_factory.mktemp("demo") / "ws")
    return workspace


async def test_playground_and_evaluation_with_the_builtin_model(
    demo_workspace: Workspace,
) -> None:
    app = make_app(demo_workspace, settings=UserSettings())
    async with app.run_test(size=(100, 30)) as pilot:
        await show_screen(app, pilot, "3", "Playground")
        playground = current_screen(app, PlaygroundScreen)
        # Loading the model for the token count can outlast the screen's own loaders.
        await wait_for_text(app, pilot, "/ 8192 tokens", timeout=300)
        await pilot.press("ctrl+r")
        timing = playground.query_one("#pg-timing", Static)
        await wait_until(
            pilot, lambda: "total" in str(timing.render()), "the generation", timeout=300
        )
        await settle(app, pilot)
        assert "first token" in str(timing.render())
        assert playground.output_text.strip()
        runs_before = len(app.store.list_runs())
        await show_screen(app, pilot, "4", "Runs")
        await pilot.press("e")
        await wait_for_text(app, pilot, "New evaluation")
        await settle(app, pilot)
        app.screen.query_one("#eval-limit", Input).value = "2"
        await pilot.press("ctrl+s")

        def finished() -> bool:
            runs = app.store.list_runs()
            return len(runs) > runs_before and runs[0].status not in ("queued", "running")

        await wait_until(pilot, finished, "the evaluation to finish", timeout=600)
        await settle(app, pilot)
        runs = app.store.list_runs()
        assert len(runs) == runs_before + 1
        assert runs[0].status == "succeeded" and runs[0].rows_done == 2
        await wait_for_text(app, pilot, f"Run {runs[0].id} succeeded")


def _capture(session: str) -> str:
    return subprocess.run(
        ["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True, check=True
    ).stdout


def _wait_for(session: str, needle: str, timeout: float, failure: str = "") -> str:
    deadline = time.monotonic() + timeout
    while True:
        screen = _capture(session)
        if needle in screen:
            return screen
        if failure and failure in screen:
            raise AssertionError(f"{failure!r} appeared; screen:\n{screen}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{needle!r} never appeared; screen:\n{screen}")
        time.sleep(0.5)


def _keys(session: str, *keys: str) -> None:
    subprocess.run(["tmux", "send-keys", "-t", session, *keys], check=True)


def _styled(session: str) -> str:
    """The pane with its colours: moving the focus changes a border's colour, not its text."""
    return subprocess.run(
        ["tmux", "capture-pane", "-p", "-e", "-t", session],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip


def _key_and_wait(session: str, key: str, timeout: float = 30) -> None:
    """Send one key and wait until the pane shows that it was handled."""
    before = _styled(session)
    _keys(session, key)
    deadline = time.monotonic() + timeout
    while _styled(session) == before:
        if time.monotonic() > deadline:
            raise AssertionError(f"{key!r} changed nothing on screen:\n{_capture(session)}")
        time.sleep(0.1)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_tunelab_command_in_tmux(tmp_path: Path) -> None:
    from tunelab.engine.demo import create_demo_workspace

    demo_workspace, _ = create_demo_workspace(tmp_path / "ws")
    session = f"tunelab-e2e-{os.getpid()}"
    env = {
        "TUNELAB_CONFIG": str(tmp_path / "tui.toml"),
        "TUNELAB_WORKSPACE": str(demo_workspace.root),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    exports = " ".join(f"{k}={v}" for k, v in env.items())
    command = f"env {exports} {sys.executable} -m tunelab"
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", "100", "-y", "30", command], check=True
    )
    try:
        _wait_for(session, "Recent runs", 60)
        _keys(session, "2")
        _wait_for(session, "route", 30)
        _keys(session, "j")
        _keys(session, "t")
        _wait_for(session, "tunelab — Playground", 30)
        _wait_for(session, "tokens", 300)
        _keys(session, "C-r")
        _wait_for(session, "total", 300, failure="failed")
        _keys(session, "4")
        _wait_for(session, "tunelab — Runs", 30)
        _keys(session, "e")
        _wait_for(session, "New evaluation", 30)
        for key in ("Tab", "Tab", "Tab", "2"):
            _key_and_wait(session, key)
        _keys(session, "Enter")
        # The "Run 1 succeeded" toast can show a moment before the runs table reloads, and
        # the toast can cover the table's right edge, so wait for both separately.
        _wait_for(session, "Run 1 succeeded", 600, failure="Run 1 failed")
        screen = _wait_for(session, "2/2", 30)
        assert "succeeded" in screen
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)


@pytest.mark.slow
async def test_finetune_job_launched_from_the_form_is_polled_from_the_store(
    tmp_path: Path,
) -> None:
    """A real detached job: the TUI launches it, then only reads its progress from the store."""
    from tunelab.engine.demo import create_demo_workspace

    workspace, _ = create_demo_workspace(tmp_path / "ws")
    app = make_app(workspace, settings=UserSettings())
    async with app.run_test(size=(100, 30)) as pilot:
        await show_screen(app, pilot, "6", "Fine-tune")
        await pilot.press("n")
        await wait_until(pilot, lambda: bool(app.screen.query("#field-batch_size")), "the form")
        await settle(app, pilot)
        form = app.screen
        for name, value in (("dataset", "tickets"), ("prompt", "route-ft@1"), ("max_steps", "2"),
                            ("eval_every_steps", "0"), ("eval_samples", "8"),
                            ("batch_size", "4")):  # fmt: skip
            form.query_one(f"#field-{name}", Input).value = value
        jobs_before = len(app.store.list_jobs())
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: len(app.store.list_jobs()) > jobs_before, "the job")
        await settle(app, pilot)
        job = app.store.list_jobs()[0]

        def job_done() -> bool:
            # A detached process, not a Textual worker: only the store shows its progress.
            status = app.store.get_job(job.id).status
            return status in ("succeeded", "failed", "cancelled")

        await wait_until(pilot, job_done, "the detached job", timeout=600)
        job = app.store.get_job(job.id)
        assert job.status == "succeeded", job.error
        await show_screen(app, pilot, "6", "Fine-tune")
        current_screen(app, FinetuneScreen).poll_jobs()
        await settle(app, pilot)
        text = screen_text(app)
        assert f" {job.id}    lora    succeeded" in text
        assert "loss by step" in text


def _session_alive(session: str) -> bool:
    return (
        subprocess.run(["tmux", "has-session", "-t", session], capture_output=True).returncode == 0
    )


def _open_tunelab(session: str, workspace: Workspace, config: Path) -> None:
    env = {
        "TUNELAB_CONFIG": str(config),
        "TUNELAB_WORKSPACE": str(workspace.root),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
    }
    exports = " ".join(f"{k}={v}" for k, v in env.items())
    command = f"env {exports} {sys.executable} -m tunelab"
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", "100", "-y", "30", command], check=True
    )


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_an_evaluation_started_in_tmux_outlives_the_tui_and_is_seen_finished(
    tmp_path: Path,
) -> None:
    """Palette-launch an evaluation from Home, quit while it runs (the TUI asks), reopen:
    the run finished in its own process meanwhile."""
    from tunelab.engine.demo import create_demo_workspace

    workspace, _ = create_demo_workspace(tmp_path / "ws")
    session = f"tunelab-detach-{os.getpid()}"
    _open_tunelab(session, workspace, tmp_path / "tui.toml")
    try:
        _wait_for(session, "Recent runs", 60)
        _keys(session, "C-p")
        _wait_for(session, "Search for commands", 30)
        _keys(session, "eval")
        _wait_for(session, "Eval (Runs)", 30)
        _keys(session, "Enter")
        _wait_for(session, "New evaluation", 30)
        for key in ("Tab", "Tab", "Tab", "3"):
            _key_and_wait(session, key)
        _keys(session, "Enter")
        _wait_for(session, "started in its own process", 60, failure="did not start")
        _wait_for(session, "1 eval", 30)  # the status line counts it
        _keys(session, "C-q")
        _wait_for(session, "Quit — keeps running", 30)
        _keys(session, "y")
        deadline = time.monotonic() + 30
        while _session_alive(session):
            assert time.monotonic() < deadline, _capture(session)
            time.sleep(0.2)
        with workspace.open_store() as store:
            run = store.list_runs()[0]
            assert run.pid is not None and run.status in ("running", "succeeded")
        _open_tunelab(session, workspace, tmp_path / "tui.toml")
        _wait_for(session, "Recent runs", 60)
        _keys(session, "4")
        _wait_for(session, "tunelab — Runs", 30)
        screen = _wait_for(session, "3/3", 600, failure="failed")
        _wait_for(session, "succeeded", 600, failure="interrupted")
        assert "Traceback" not in screen
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)
