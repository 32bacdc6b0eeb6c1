"""`tunelab tui --web` in a real headless Chromium: the page loads the app, a key switches screen.

The browser is the system chromium (Debian's package, installed by `scripts/ci_packages.sh`),
driven by Playwright; Playwright's own browser download is never used. The page draws on a
canvas, so the test reads the terminal output textual-serve sends over its WebSocket.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.tui_fixtures import seed_store
from tunelab.cli_tui import forward_line, web_command
from tunelab.store import Workspace

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOT = Path(os.environ.get("TUNELAB_WEB_SCREENSHOT", ""))
"""Where to save the browser's screenshot, if set (docs/screenshots/web.png was made so)."""
START_TIMEOUT_S = 60.0


def test_the_forward_line_and_the_served_command() -> None:
    assert forward_line(8123, "ann", "gpu01") == "ssh -L 8123:127.0.0.1:8123 ann@gpu01"
    command = web_command("/data/my ws")
    assert command.endswith("-m tunelab --workspace '/data/my ws' tui")


def test_a_bad_port_is_one_line_and_exit_2(workspace: Workspace) -> None:
    from tests.conftest import run_cli

    bad = run_cli("tui", "--web", "--port", "70000", workspace=workspace)
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "between 1 and 65535" in bad.stderr


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def served(workspace: Workspace, tmp_path: Path) -> Iterator[tuple[int, list[str]]]:
    """`tunelab tui --web` on a free port over a seeded workspace; yields (port, stdout lines)."""
    with workspace.open_store() as store:
        seed_store(store)
    port = _free_port()
    env = {**os.environ, "TUNELAB_CONFIG": str(tmp_path / "tui.toml")}
    server = subprocess.Popen(
        [sys.executable, "-m", "tunelab", "--workspace", str(workspace.root), "tui", "--web",
         "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    lines: list[str] = []
    try:
        assert server.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while not any("Press Ctrl+C" in line for line in lines):
            assert time.monotonic() < deadline, f"the server did not start: {lines}"
            line = server.stdout.readline()
            assert line or server.poll() is None, f"the server exited: {lines}"
            lines.append(line)
        yield port, lines
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/ci_packages.sh)")
def test_the_tui_in_a_browser_loads_and_a_key_switches_screen(
    served: tuple[int, list[str]],
) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    port, lines = served
    printed = "".join(lines)
    assert f"http://127.0.0.1:{port}" in printed
    assert f"ssh -L {port}:127.0.0.1:{port} " in printed
    received: list[str] = []

    def frame(payload: str | bytes) -> None:
        text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
        received.append(text)

    def wait_for(needle: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not any(needle in text for text in received):
            assert time.monotonic() < deadline, f"{needle!r} never arrived over the WebSocket"
            page.wait_for_timeout(100)

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.on("websocket", lambda ws: ws.on("framereceived", frame))
            page.goto(f"http://127.0.0.1:{port}/")
            wait_for("Recent runs")  # the Home screen, drawn by the served app
            received.clear()
            page.locator(".xterm-helper-textarea").focus()
            page.keyboard.press("2")
            wait_for("Versions")  # the Prompts screen's second list
            page.wait_for_timeout(500)  # let the canvas draw the last frame for the picture
            if SCREENSHOT.name:
                page.screenshot(path=str(SCREENSHOT))
        finally:
            browser.close()
