"""The TUI follows the database live, reaps its job workers, and its palette reaches every
screen's actions (issue #21)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from textual.binding import Binding
from textual.widgets import TabbedContent

from tests.fake_engine import FakeEngine
from tests.tui_fixtures import seed_store
from tests.tui_helpers import current_screen, screen_text, settle, show_screen, wait_until
from tunelab.store import PromptContent, Store
from tunelab.tui.app import TunelabApp, make_app
from tunelab.tui.widgets.nav_table import NavTable

SIZE = (120, 34)
LIVE_S = 2.0
"""How soon a commit made elsewhere must be on screen (the app watches once a second)."""


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[Store, Store, dict[str, int]]]:
    """The TUI's store and a second one on the same file (another session, the CLI)."""
    path = tmp_path / "tunelab.db"
    mine = Store(path)
    ids = seed_store(mine)
    other = Store(path)
    yield mine, other, ids
    other.close()
    mine.close()


def app_for(store: Store) -> TunelabApp:
    return make_app(store, engine=FakeEngine(store))  # type: ignore[arg-type]


def new_run(store: Store, ids: dict[str, int]) -> int:
    run = store.create_run(
        ids["v1"], ids["base"], ids["dataset"], "test", 4, {}, metric_names=["accuracy"]
    )
    return run.id


def table_keys(app: TunelabApp, selector: str) -> list[str]:
    table = app.screen.query_one(selector, NavTable)
    return [str(key.value) for key in table.rows]


async def test_runs_follow_another_connection_keeping_cursor_and_filter(
    stores: tuple[Store, Store, dict[str, int]],
) -> None:
    mine, other, ids = stores
    app = app_for(mine)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await show_screen(app, pilot, "4", "Runs")
        table = app.screen.query_one("#runs-table", NavTable)
        await wait_until(pilot, lambda: table.row_count == 3, "the three seeded runs")
        await pilot.press("j")  # onto run 2 (newest first: 3, 2, 1)
        await wait_until(pilot, lambda: table.selected_key() == "2", "the cursor on run 2")
        await pilot.press("space")  # mark it
        run_id = new_run(other, ids)
        await wait_until(
            pilot, lambda: str(run_id) in table_keys(app, "#runs-table"), "the new run", LIVE_S
        )
        assert table.selected_key() == "2"
        assert "●" in str(table.get_row("2")[0])
        # A filter stays applied across a live reload.
        await pilot.press("slash", *"builtin-lora", "enter")
        await wait_until(pilot, lambda: table_keys(app, "#runs-table") == ["3"], "the filter")
        new_run(other, ids)
        await wait_until(
            pilot, lambda: len(current_screen_runs(app)) == 5, "the second new run read"
        )
        assert table_keys(app, "#runs-table") == ["3"]


def current_screen_runs(app: TunelabApp) -> list[object]:
    from tunelab.tui.screens.runs import RunsScreen

    return list(current_screen(app, RunsScreen).all_runs)


async def test_runs_refresh_key_is_bound(stores: tuple[Store, Store, dict[str, int]]) -> None:
    from tunelab.tui.screens.runs import RunsScreen

    bindings = [b for b in RunsScreen.BINDINGS if isinstance(b, Binding)]
    assert any(b.id == "runs-refresh" and b.key == "r" for b in bindings)
    mine, _other, _ids = stores
    app = app_for(mine)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await show_screen(app, pilot, "4", "Runs")
        assert "Refresh" in screen_text(app)  # in the footer


async def test_home_follows_without_r_and_other_screens_catch_up(
    stores: tuple[Store, Store, dict[str, int]],
) -> None:
    mine, other, ids = stores
    app = app_for(mine)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        run_id = new_run(other, ids)
        await wait_until(
            pilot, lambda: str(run_id) in table_keys(app, "#home-runs"), "the run on Home", LIVE_S
        )
        await show_screen(app, pilot, "4", "Runs")
        await show_screen(app, pilot, "1", "Home")
        # Written while Home was hidden: shown on return.
        later = new_run(other, ids)
        await wait_until(
            pilot, lambda: str(later) in table_keys(app, "#home-runs"), "the later run", LIVE_S
        )


async def test_prompts_follow_another_connection(
    stores: tuple[Store, Store, dict[str, int]],
) -> None:
    mine, other, _ids = stores
    app = app_for(mine)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await show_screen(app, pilot, "2", "Prompts")
        other.save_prompt_version("summarize", PromptContent(template="Sum up: {{ text }}"))
        await wait_until(
            pilot,
            lambda: "summarize" in table_keys(app, "#prompt-list"),
            "the prompt made elsewhere",
            LIVE_S,
        )
        assert app.screen.query_one("#prompt-list", NavTable).selected_key() == "classify"


# The palette -----------------------------------------------------------------------------
async def open_palette_and_pick(app: TunelabApp, pilot: object, query: str, want: str) -> str:
    """Type `query` into the palette; wait until `want` is the top hit; return its help."""
    from textual.command import CommandList, CommandPalette

    await pilot.press("ctrl+p")  # type: ignore[attr-defined]
    await wait_until(pilot, lambda: isinstance(app.screen, CommandPalette), "the palette")  # type: ignore[arg-type]
    await pilot.press(*query)  # type: ignore[attr-defined]
    commands = app.screen.query_one(CommandList)

    def best_hit() -> str:
        if not commands.option_count or commands.highlighted is None:
            return ""
        return str(commands.get_option_at_index(commands.highlighted).prompt)

    await wait_until(pilot, lambda: want in best_hit(), lambda: f"{want!r}; top hit {best_hit()!r}")  # type: ignore[arg-type]
    return best_hit()


async def test_palette_runs_another_screens_action_from_home(seeded: Store) -> None:
    from tunelab.tui.screens.eval_modal import EvalModal

    app = app_for(seeded)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        hit = await open_palette_and_pick(app, pilot, "eval", "Eval (Runs)")
        assert "[e]" in hit  # the key is shown
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, EvalModal), "the Eval form")
        assert app.current_mode == "runs"
        await settle(app, pilot)


async def test_palette_finds_launch_from_home_and_opens_the_form(seeded: Store) -> None:
    app = app_for(seeded)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        hit = await open_palette_and_pick(app, pilot, "launch", "Launch (Fine-tune)")
        assert "[^s]" in hit
        await pilot.press("enter")
        await wait_until(
            pilot,
            lambda: (
                app.screen.sub_title == "Fine-tune"
                and app.screen.query_one("#finetune-tabs", TabbedContent).active == "tab-new"
            ),
            "the Fine-tune form",
        )
        await settle(app, pilot)


async def test_palette_lists_every_screen_action_with_its_remapped_key(seeded: Store) -> None:
    from tunelab.tui.app import SCREENS_BY_MODE
    from tunelab.tui.commands import palette_commands, screen_bindings
    from tunelab.tui.config import UserSettings
    from tunelab.tui.screens.base import TunelabScreen

    app = make_app(
        seeded,
        engine=FakeEngine(seeded),
        settings=UserSettings(keymap={"runs-evaluate": "f6"}),  # type: ignore[arg-type]
    )
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        commands = {c.title: c.help for c in palette_commands(app, app.screen)}
        for mode, (title, _module, _cls) in SCREENS_BY_MODE.items():
            assert f"Go to {title}" in commands
            for binding in screen_bindings(app.screen_type(mode), TunelabScreen):
                assert f"{binding.description} ({title})" in commands, (mode, binding.id)
        assert commands["Eval (Runs)"].endswith("[f6]")
        assert "Help" in commands and "Theme" in commands


# A failed job ------------------------------------------------------------------------------
SITE = "/home/someone/project/.venv/lib/python3.11/site-packages"
FAILED_ERROR = (
    "ValueError: learning rate must be positive for the warmup scheduler configured in "
    "/home/someone/project/.tunelab/jobs/2/config.toml (got -0.0002)"
)
TRACEBACK_LOG = (
    "job 2: lora fine-tuning, pid 4242 on host\n"
    "step 1 loss 2.31\n"
    "Traceback (most recent call last):\n"
    f'  File "{SITE}/tunelab/engine/training/loop.py", line 88, in train\n'
    "    raise ValueError(message)\n"
    f"{FAILED_ERROR}\n"
    "job 2: failed (ValueError: learning rate must be positive)\n"
)


class LogFileEngine(FakeEngine):
    """The fake engine, reading a job's log file as the real one does."""

    def log_tail(self, job_id: int, lines: int = 200) -> list[str]:
        path = self.store.get_job(job_id).log_path
        return Path(path).read_text().splitlines()[-lines:] if path else []


async def test_failed_job_says_why_in_one_line_and_l_shows_the_full_log(
    seeded: Store, tmp_path: Path
) -> None:
    from textual.widgets import Log, TextArea

    from tunelab.tui.screens.modals import TextViewModal

    log = tmp_path / "job-2.log"
    log.write_text(TRACEBACK_LOG)
    base = seeded.get_model("builtin")
    job = seeded.create_job("lora", {"lr": -0.0002}, base.id, None, None)
    seeded.update_job(job.id, status="failed", error=FAILED_ERROR, log_path=str(log))
    app = make_app(seeded, engine=LogFileEngine(seeded))  # type: ignore[arg-type]
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(app, pilot)
        await show_screen(app, pilot, "6", "Fine-tune")
        table = app.screen.query_one("#job-list", NavTable)
        await wait_until(pilot, lambda: str(job.id) in table_keys(app, "#job-list"), "the job")
        table.move_cursor(row=table.get_row_index(str(job.id)))
        pane = app.screen.query_one("#job-log", Log)
        await wait_until(pilot, lambda: "step 1 loss" in "\n".join(pane.lines), "its log")
        error_cell = str(table.get_row(str(job.id))[-1])
        assert error_cell.startswith("ValueError: learning rate must be positive")
        assert len(error_cell) <= 60 and "\n" not in error_cell
        assert error_cell.endswith("…") and "/home/someone" not in error_cell
        shown = "\n".join(pane.lines)
        assert "Traceback" not in shown and 'File "' not in shown
        assert "error: ValueError: learning rate must be positive" in shown
        assert "full log: l" in shown
        await pilot.press("l")
        await wait_until(pilot, lambda: isinstance(app.screen, TextViewModal), "the full log")
        assert "Traceback (most recent call last):" in app.screen.query_one(TextArea).text
        await settle(app, pilot)


def test_one_line_error_keeps_short_errors_and_the_last_line() -> None:
    from tunelab.tui.job_errors import one_line_error, without_tracebacks

    assert one_line_error("worker vanished (pid 12 gone)") == "worker vanished (pid 12 gone)"
    assert one_line_error("Traceback …\n  File x\nKeyError: 'lr'\n") == "KeyError: 'lr'"
    assert one_line_error(None) == ""
    chained = TRACEBACK_LOG.replace(
        "job 2: failed",
        "\nDuring handling of the above exception, another exception occurred:"
        '\n\nTraceback (most recent call last):\n  File "x", line 1\nRuntimeError: boom\njob 2:',
    )
    folded = without_tracebacks(chained.splitlines())
    assert [line for line in folded if line.startswith("error:")] == [
        "error: ValueError: learning rate must be positive for the warmup scheduler configured "
        "in …/config.toml (got -0.0002)  (full log: l)",
        "error: RuntimeError: boom  (full log: l)",
    ]
    assert not any("During handling" in line for line in folded)


# Job workers are reaped ------------------------------------------------------------------
def _zombie(pid: int) -> bool:
    """Whether `pid` is a zombie (`<defunct>`): ended, its exit status never read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False  # gone: reaped
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def _ended(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


@pytest.fixture
def quick_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """Job workers that exit at once (the real one would load a model)."""
    import sys

    from tunelab.engine.training import jobs

    monkeypatch.setattr(
        jobs, "worker_command", lambda _ws, _id, _kind="finetune": [sys.executable, "-c", "pass"]
    )


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
async def test_tui_reaps_a_job_worker_that_ended(
    quick_worker: None, workspace: object, seeded: Store
) -> None:
    from tunelab.engine.training.jobs import start_worker

    app = app_for(seeded)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        pid = start_worker(workspace, 1)  # type: ignore[arg-type]
        await wait_until(pilot, lambda: _ended(pid) and not _zombie(pid), f"worker {pid} reaped")
        await settle(app, pilot)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_reap_workers_collects_ended_workers(quick_worker: None, workspace: object) -> None:
    import time

    from tunelab.engine.training.jobs import reap_workers, start_worker

    pid = start_worker(workspace, 1)  # type: ignore[arg-type]
    deadline = time.monotonic() + 60
    reaped: list[int] = []
    while pid not in reaped:
        assert time.monotonic() < deadline, f"worker {pid} never reaped"
        reaped += reap_workers()
        time.sleep(0.01)  # polling a condition, not a fixed wait
    assert not _zombie(pid)


# The store's change counter ----------------------------------------------------------------
def test_data_version_moves_on_every_commit_and_only_then(
    stores: tuple[Store, Store, dict[str, int]],
) -> None:
    mine, other, ids = stores
    first = mine.data_version()
    assert mine.data_version() == first  # reading changes nothing
    new_run(other, ids)  # another connection (another session)
    second = mine.data_version()
    assert second != first
    mine.rate_output(1, 4)  # this store's own write, on its per-thread connection
    assert mine.data_version() != second
    memory = Store.memory()
    before = memory.data_version()
    seed_store(memory)
    assert memory.data_version() != before
    memory.close()


async def test_home_job_row_shows_its_progress_on_first_draw(seeded: Store) -> None:
    """Home no longer redraws every two seconds, so the first draw must be right."""
    from textual.widgets import ProgressBar

    app = app_for(seeded)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await wait_until(pilot, lambda: bool(app.screen.query(ProgressBar)), "the job row")
        bar = app.screen.query_one(ProgressBar)
        await wait_until(pilot, lambda: bar.is_mounted, "the job row mounted")
        assert (bar.total, bar.progress) == (100.0, 30.0)


async def test_prompt_list_reload_keeps_an_unsaved_new_prompt_in_the_editor(
    stores: tuple[Store, Store, dict[str, int]],
) -> None:
    from textual.widgets import TextArea

    from tunelab.tui.screens.modals import AskTextModal
    from tunelab.tui.screens.prompts import PromptsScreen

    mine, other, _ids = stores
    app = app_for(mine)
    async with app.run_test(size=SIZE) as pilot:
        await settle(app, pilot)
        await show_screen(app, pilot, "2", "Prompts")
        await pilot.press("n")
        await wait_until(pilot, lambda: isinstance(app.screen, AskTextModal), "the name prompt")
        await pilot.press(*"draft", "enter")
        screen = app.get_screen_stack("prompts")[0]
        assert isinstance(screen, PromptsScreen)
        await wait_until(pilot, lambda: app.screen is screen, "back on Prompts")
        template = screen.query_one("#edit-template", TextArea)
        await wait_until(pilot, lambda: template.has_focus, "the editor focused")
        await pilot.press(*"Unsaved words ")
        await wait_until(pilot, lambda: "Unsaved words" in template.text, "the typed text")
        other.save_prompt_version("summarize", PromptContent(template="Sum up: {{ text }}"))
        await wait_until(
            pilot,
            lambda: "summarize" in table_keys(app, "#prompt-list"),
            "the prompt made elsewhere",
            LIVE_S,
        )
        await settle(app, pilot)
        assert screen.prompt_name == "draft"
        assert "Unsaved words" in template.text


def test_data_version_of_a_closed_store_is_an_error() -> None:
    from tunelab.store import StoreError

    store = Store.memory()
    store.data_version()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.data_version()
