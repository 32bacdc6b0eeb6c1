"""The built-in demo: data reproducible from its script, workspace set-up, a quick headless run."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tunelab.engine.demo import PROMPT, QUEUES, create_demo_workspace, demo_data_dir

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_demo_data_matches_its_generator() -> None:
    spec = importlib.util.spec_from_file_location(
        "make_demo_data", ROOT / "scripts" / "make_demo_data.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for split, rows in module.build().items():
        shipped = [
            json.loads(line)
            for line in (demo_data_dir() / f"tickets-{split}.jsonl").read_text().splitlines()
        ]
        assert shipped == rows, split
        assert {r["queue"] for r in rows} == set(QUEUES)


def test_demo_workspace_is_created_then_reused(tmp_path: Path) -> None:
    workspace, created = create_demo_workspace(tmp_path / "demo")
    assert created
    store = workspace.open_store()
    dataset = store.get_dataset("tickets")
    assert dataset.task == "classification" and dataset.labels == QUEUES
    assert {s.name: s.row_count for s in dataset.splits} == {
        "test": 120, "train": 400, "validation": 100,
    }  # fmt: skip
    assert store.get_prompt(PROMPT).latest_version == 4
    assert store.get_prompt_version(f"{PROMPT}@3").reasoning == "cot"
    store.close()
    _, created_again = create_demo_workspace(tmp_path / "demo")
    assert not created_again
    store = workspace.open_store()
    assert store.get_prompt(PROMPT).latest_version == 4  # nothing duplicated
    store.close()


@pytest.mark.model
def test_quick_headless_demo_runs_end_to_end(tmp_path: Path) -> None:
    result = run_cli("demo", "--headless", "--quick", "--json", "--dir", str(tmp_path / "demo"))
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout)
    assert set(summary["prompt_accuracy"]) == {f"{PROMPT}@1", f"{PROMPT}@4"}
    assert 0.0 <= summary["finetuned_accuracy"] <= 1.0
    assert summary["verdict"]
    assert [s["name"] for s in summary["steps"]][-1] == "compare"


async def test_tui_opens_on_the_demo_with_its_guided_path(tmp_path: Path) -> None:
    from textual.widgets import TextArea

    from tests.tui_helpers import wait_until
    from tunelab.engine.demo import tour_text
    from tunelab.tui.app import make_app
    from tunelab.tui.screens.modals import TextViewModal

    workspace, _ = create_demo_workspace(tmp_path / "demo")
    assert (workspace.root / "demo-lora.json").exists()
    app = make_app(workspace, welcome=tour_text(workspace))
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, TextViewModal), "the guided path")
        text = app.screen.query_one(TextArea).text
        assert "route-ft@1" in text and "demo-lora.json" in text
        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, TextViewModal), "it to close")
        assert app.current_mode == "home"
    app.store.close()
