"""Save SVG screenshots of the real screens over a workspace (the demo, after its headless run).

Usage: .venv/bin/python scripts/screenshots.py [WORKSPACE] [OUT_DIR]
Defaults: ./tunelab-demo and docs/screenshots. The README shows these files.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from tunelab.store import find_workspace
from tunelab.tui.app import make_app

SCREENS = [("1", "home"), ("2", "prompts"), ("4", "runs"), ("6", "finetune"), ("7", "models")]


async def capture(workspace_dir: Path, out_dir: Path) -> list[Path]:
    workspace = find_workspace(workspace_dir)
    app = make_app(workspace)
    saved: list[Path] = []
    out_dir.mkdir(parents=True, exist_ok=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause(1.0)
        for key, name in SCREENS:
            await pilot.press(key)
            await app.workers.wait_for_complete()
            await pilot.pause(1.0)
            saved.append(Path(app.save_screenshot(f"{name}.svg", str(out_dir))))
        store = workspace.open_store()
        runs = store.list_runs()
        store.close()
        tuned = [r for r in runs if r.prompt_ref.startswith("route-ft")]
        prompts = [r for r in runs if not r.prompt_ref.startswith("route-ft")]
        if tuned and prompts:
            best = max(prompts, key=lambda r: (r.metrics.get("accuracy", 0), -r.id))
            await pilot.press("5")
            await pilot.pause(0.5)
            app.screen.compare([best.id, tuned[0].id])  # type: ignore[attr-defined]
            await app.workers.wait_for_complete()
            await pilot.pause(1.5)
            saved.append(Path(app.save_screenshot("compare.svg", str(out_dir))))
    return saved


def main() -> None:
    workspace_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("tunelab-demo")
    out_dir = Path(sys.argv[2]) if len(sys.argv) > 2 else Path("docs/screenshots")
    for path in asyncio.run(capture(workspace_dir, out_dir)):
        print(f"saved {path}")


if __name__ == "__main__":
    main()
