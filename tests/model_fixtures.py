"""Session-scoped real built-in model for engine tests (offline; converted once into the cache)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SHARED_DATASETS


@pytest.fixture(scope="session")
def builtin_model() -> Any:
    from tunelab.engine.models.loading import load_builtin

    return load_builtin()


@pytest.fixture(scope="session")
def irony_rows() -> list[dict[str, Any]]:
    path = Path(SHARED_DATASETS) / "tweeteval-irony-val.jsonl"
    if not path.exists():
        pytest.skip(f"{path} is not present")
    with path.open() as fh:
        return [json.loads(line) for _, line in zip(range(8), fh, strict=False)]
