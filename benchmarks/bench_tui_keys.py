"""Key press to screen change in the real `tunelab` TUI, driven in tmux, against a bare Textual app.

Run: .venv/bin/python benchmarks/bench_tui_keys.py [ROUNDS]
Needs tmux. Over a fresh demo workspace at 100x30: the first frame (tmux session start to the
Home screen on the pane), then ROUNDS presses alternating `4` (Runs) and `1` (Home), each timed
from `tmux send-keys` until capture-pane shows the other screen's header; idle, and again
while an evaluation started from the TUI's New evaluation form runs in its own process. A bare
Textual app with two modes switched by the same keys runs the same way, in the same run, so
the figures carry this machine's load. Targets (issue #21): p95 <= 150 ms idle, <= 250 ms
during an evaluation, first frame <= 0.6 s. Polling capture-pane adds a few ms to each figure.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tunelab.store import Workspace

BARE_APP = r"""
from textual.app import App
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

class Named(Screen[None]):
    def __init__(self, title: str) -> None:
        super().__init__()
        self.sub_title = title
    def compose(self):
        yield Header()
        yield Static(f"the {self.sub_title} screen")
        yield Footer()

class Bare(App[None]):
    TITLE = "tunelab"
    BINDINGS = [("1", "switch_mode('home')", "Home"), ("4", "switch_mode('runs')", "Runs")]
    MODES = {"home": lambda: Named("Home"), "runs": lambda: Named("Runs")}
    def on_mount(self) -> None:
        self.switch_mode("home")

Bare().run()
"""

POLL_S = 0.002


def capture(session: str) -> str:
    return subprocess.run(
        ["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True
    ).stdout


def wait_for(session: str, needle: str, timeout: float = 60) -> float:
    """Seconds until `needle` is on the pane (polling as fast as capture-pane allows)."""
    start = time.perf_counter()
    while needle not in capture(session):
        if time.perf_counter() - start > timeout:
            raise SystemExit(f"{needle!r} never appeared:\n{capture(session)}")
        time.sleep(POLL_S)
    return time.perf_counter() - start


def keys(session: str, *pressed: str) -> None:
    subprocess.run(["tmux", "send-keys", "-t", session, *pressed], check=True)


def open_session(session: str, command: str, env: dict[str, str]) -> float:
    """Start `command` in a 100x30 tmux session; seconds to its Home screen."""
    exports = " ".join(f"{k}={v}" for k, v in env.items())
    start = time.perf_counter()
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", "100", "-y", "30",
         f"env {exports} {command}"],
        check=True,
    )  # fmt: skip
    wait_for(session, "tunelab — Home")
    return time.perf_counter() - start


def switch_times(session: str, rounds: int, still: str | None = None) -> list[float]:
    """Seconds from each key press to the other screen's header; stops early when `still`
    (text that shows while the condition holds, e.g. '1 eval') leaves the pane."""
    times = []
    for index in range(rounds):
        key, title = ("4", "Runs") if index % 2 == 0 else ("1", "Home")
        start = time.perf_counter()
        keys(session, key)
        wait_for(session, f"tunelab — {title}")
        times.append(time.perf_counter() - start)
        if still is not None and still not in capture(session):
            break
    return times


def summary(times: list[float]) -> str:
    if len(times) < 2:
        return f"n={len(times)} (too few)"
    ms = sorted(t * 1000 for t in times)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    return f"p50 {statistics.median(ms):6.1f} ms  p95 {p95:6.1f} ms  (n={len(ms)})"


def stop_evaluations(workspace: Workspace) -> None:
    """The evaluation outlives the TUI by design: stop its worker before the workspace goes."""
    import signal

    from tunelab.engine.processes import process_alive

    with workspace.open_store() as store:
        pids = [run.pid for run in store.running_runs() if run.pid]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)  # stops after the current chunk
    deadline = time.monotonic() + 60
    while any(process_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in pids:
        if process_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    from tunelab.engine.demo import create_demo_workspace

    with tempfile.TemporaryDirectory() as folder:
        workspace, _ = create_demo_workspace(Path(folder) / "ws")
        env = {
            "TUNELAB_CONFIG": str(Path(folder) / "tui.toml"),
            "TUNELAB_WORKSPACE": str(workspace.root),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
        }
        bare_script = Path(folder) / "bare.py"
        bare_script.write_text(BARE_APP)
        session = f"bench-keys-{os.getpid()}"
        try:
            bare_first = open_session(session, f"{sys.executable} {bare_script}", env)
            bare_idle = switch_times(session, rounds)
            subprocess.run(["tmux", "kill-session", "-t", session], check=False)

            first = open_session(session, f"{sys.executable} -m tunelab", env)
            wait_for(session, "Recent runs")
            idle = switch_times(session, rounds)
            # An evaluation from the New evaluation form (all rows, no cache hits for a new
            # limit): measure while the status line counts it.
            keys(session, "4")
            wait_for(session, "tunelab — Runs")
            keys(session, "e")
            wait_for(session, "New evaluation")
            for key in ("Tab", "Tab", "Tab"):
                keys(session, key)
                time.sleep(0.2)  # the form moves focus; nothing here is timed
            keys(session, "Enter")
            wait_for(session, "Evaluating run", 120)  # on Runs, above the table
            keys(session, "1")  # from Home, as the idle presses start
            wait_for(session, "tunelab — Home")
            wait_for(session, "1 eval", 30)  # counted in the status line
            busy = switch_times(session, rounds, still="1 eval")  # the status line, anywhere
        finally:
            subprocess.run(["tmux", "kill-session", "-t", session], check=False)
            stop_evaluations(workspace)
    load = os.getloadavg()
    print(f"load average: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")
    print(f"first frame      bare Textual {bare_first:.3f} s   tunelab {first:.3f} s (<= 0.6)")
    print(f"key -> screen    bare Textual {summary(bare_idle)}")
    print(f"key -> screen    tunelab idle {summary(idle)}   (p95 <= 150 ms)")
    print(f"key -> screen    during eval  {summary(busy)}   (p95 <= 250 ms)")


if __name__ == "__main__":
    main()
