"""Time to the TUI's first frame (headless, 100x30) against a bare Textual app.

Run: .venv/bin/python benchmarks/bench_tui_startup.py
Each measurement runs in a fresh process (imports, opening the workspace store and the first
frame are counted; the workspace is created beforehand); the target is under 0.6 s.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile

CHILD = r"""
import time
start = time.perf_counter()
import asyncio, json, sys
kind = sys.argv[1]
if kind == "bare":
    from textual.app import App
    from textual.widgets import Footer, Header, Static

    class Bare(App[None]):
        def compose(self):
            yield Header()
            yield Static("hello")
            yield Footer()

    app = Bare()
else:
    from tunelab.store import find_workspace
    from tunelab.tui.app import make_app

    app = make_app(find_workspace(sys.argv[2]))

first_frame = None

async def main():
    global first_frame
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        first_frame = time.perf_counter() - start

asyncio.run(main())
print(json.dumps({"first_frame_s": first_frame, "torch": "torch" in sys.modules}))
"""


def measure(kind: str, repeats: int, workspace: str) -> tuple[float, bool]:
    times, torch_loaded = [], False
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, "-c", CHILD, kind, workspace],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        result = json.loads(out.strip().splitlines()[-1])
        times.append(result["first_frame_s"])
        torch_loaded |= result["torch"]
    return statistics.median(times), torch_loaded


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    from tunelab.store import init_workspace

    with tempfile.TemporaryDirectory() as folder:
        workspace, _ = init_workspace(folder)
        bare, _ = measure("bare", repeats, str(workspace.root))
        tunelab, torch_loaded = measure("tunelab", repeats, str(workspace.root))
    print(f"bare Textual app first frame: {bare:.3f} s (median of {repeats})")
    print(f"tunelab TUI first frame:      {tunelab:.3f} s (median of {repeats})")
    print(f"overhead over bare Textual:   {tunelab - bare:+.3f} s; target < 0.600 s total")
    print(f"torch imported at startup:    {torch_loaded}")


if __name__ == "__main__":
    main()
