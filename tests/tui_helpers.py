"""Test helpers: the screen as plain text, and waits on conditions instead of fixed pauses.

Every wait here polls a condition with a deadline, so a busy machine makes a test slower, not
red. Worker failures are never swallowed: `settle` raises the first one a test did not say it
expects (see `record_failed_workers`, installed for every test by `tests/conftest.py`).
"""

from __future__ import annotations

import asyncio
import io
import time
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from rich.console import Console
from textual.app import App
from textual.pilot import Pilot
from textual.screen import Screen
from textual.worker import Worker, WorkerFailed, WorkerState
from textual.worker_manager import WorkerManager

ScreenT = TypeVar("ScreenT", bound=Screen[Any])

WAIT_TIMEOUT_S = 60.0
"""Generous on purpose: under load a screen's first import and stylesheet can take seconds."""

WORKERS_TIMEOUT_S = 600.0
"""Only a guard against a worker held open by mistake (a gate never set); real-model workers
can take minutes on a busy CPU."""

_failed_workers: weakref.WeakKeyDictionary[App[Any], list[Worker[Any]]] = (
    weakref.WeakKeyDictionary()
)


def record_failed_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep every worker that ends in ERROR, per app, until `settle` looks at it.

    The worker manager forgets a worker as soon as it finishes, so a failure that happens
    before a test starts waiting would otherwise go unseen.
    """
    original = WorkerManager._remove_worker

    def remove_worker(manager: WorkerManager, worker: Worker[Any]) -> None:
        if worker.state is WorkerState.ERROR:
            _failed_workers.setdefault(manager._app, []).append(worker)
        original(manager, worker)

    monkeypatch.setattr(WorkerManager, "_remove_worker", remove_worker)


def take_worker_failures(app: App[Any]) -> list[BaseException]:
    """The errors of the app's workers that failed since the last call, oldest first."""
    failed = _failed_workers.pop(app, [])
    return [worker.error for worker in failed if worker.error is not None]


def screen_text(app: App[Any]) -> str:
    """The current screen (with any screens beneath a modal) rendered as plain text."""
    width, height = app.size
    console = Console(
        width=width, height=height, file=io.StringIO(), force_terminal=True,
        color_system="truecolor", record=True, legacy_windows=False, safe_box=False,
    )  # fmt: skip
    render = app.screen._compositor.render_update(
        full=True, screen_stack=app._background_screens, simplify=True
    )
    console.print(render)
    return console.export_text()


async def wait_until(
    pilot: Pilot[Any],
    condition: Callable[[], bool],
    what: str | Callable[[], str],
    timeout: float = WAIT_TIMEOUT_S,
) -> None:
    """Let the app run until `condition()` holds; fail naming `what` after `timeout` seconds.

    `what` may be a function, so the message can describe the state at the deadline.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            described = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {described}")
        await pilot.pause(0.02)


async def wait_for_text(
    app: App[Any], pilot: Pilot[Any], needle: str, timeout: float = WAIT_TIMEOUT_S
) -> str:
    """Let the app run until `needle` is on screen; returns the screen's text then."""
    text = ""

    def shown() -> bool:
        nonlocal text
        text = screen_text(app)
        return needle in text

    try:
        await wait_until(pilot, shown, f"{needle!r} on screen", timeout)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the screen shows:\n{text}") from None
    return text


async def wait_for_notification(app: App[Any], pilot: Pilot[Any], needle: str) -> None:
    """Let the app run until a notification containing `needle` has been posted."""
    await wait_until(
        pilot,
        lambda: any(needle in n.message for n in app._notifications),
        lambda: f"a notification with {needle!r}; have {[n.message for n in app._notifications]}",
    )


async def wait_for_workers(app: App[Any], pilot: Pilot[Any], rounds: int = 3) -> None:
    """Wait for the running workers, then for the messages they post, `rounds` times over:
    a loader's result often starts the next worker (a table's rows, a preview)."""
    for _ in range(rounds):
        workers = list(app.workers)
        # Outcomes are read from the failure log in `settle`; a cancelled worker (a stop key,
        # an exclusive worker replaced) is an ordinary end that the test asserts on itself.
        waits = asyncio.gather(*(worker.wait() for worker in workers), return_exceptions=True)
        try:
            await asyncio.wait_for(waits, WORKERS_TIMEOUT_S)
        except TimeoutError:
            running = [w for w in workers if not w.is_finished]
            raise AssertionError(
                f"workers still running after {WORKERS_TIMEOUT_S:.0f} s: {running}"
            ) from None
        await pilot.pause()


async def settle(
    app: App[Any],
    pilot: Pilot[Any],
    rounds: int = 3,
    *,
    expect: tuple[type[BaseException], ...] = (),
) -> list[BaseException]:
    """Wait for the current screen to mount, then for workers and the messages they post.

    Raises `WorkerFailed` for the first worker error since the last settle that is not an
    instance of `expect`; returns the expected ones, so a test can assert on them.
    """
    await wait_until(pilot, lambda: app.screen.is_mounted, f"{app.screen!r} to mount")
    await wait_for_workers(app, pilot, rounds)
    errors = take_worker_failures(app)
    unexpected = [error for error in errors if not isinstance(error, expect)]
    if unexpected:
        raise WorkerFailed(unexpected[0])
    return errors


async def show_screen(app: App[Any], pilot: Pilot[Any], key: str, title: str) -> None:
    """Press a screen's key, wait until that screen is the mounted one, then settle.

    A screen loads its module and stylesheet on first visit; until then the previous screen
    is still current (and mounted), so waiting on "a mounted screen" alone is not enough.
    """
    await pilot.press(key)
    await wait_until(
        pilot,
        lambda: app.screen.sub_title == title and app.screen.is_mounted,
        lambda: f"the {title} screen (current: {app.screen.sub_title!r})",
    )
    await settle(app, pilot)


def current_screen(app: App[Any], screen_type: type[ScreenT]) -> ScreenT:
    """The current screen, checked to be a `screen_type`, typed as one."""
    screen = app.screen
    assert isinstance(screen, screen_type), f"{screen!r} is not a {screen_type.__name__}"
    return screen
