"""End to end, no network: `tunelab serve builtin`, then that server registered with
`tunelab model add openai:builtin` and evaluated through the official `openai` client."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.conftest import run_cli
from tests.test_cli_eval import irony_ws  # noqa: F401 - the shared fixture
from tunelab.store import Workspace


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.fixture
def served(irony_ws: Workspace) -> Iterator[str]:  # noqa: F811 - pytest fixture injection
    process = subprocess.Popen(
        [sys.executable, "-m", "tunelab", "serve", "builtin", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TUNELAB_WORKSPACE": str(irony_ws.root)},
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # printed once the port is bound
        found = re.search(r"(http://127\.0\.0\.1:\d+/v1)", line)
        assert found, line
        yield found.group(1)
    finally:
        process.terminate()
        process.wait(timeout=30)


def _models(ws: Workspace) -> list[str]:
    listed = run_cli("model", "list", "--json", workspace=ws)
    return [m["name"] for m in json.loads(listed.stdout)]


@pytest.mark.model
@pytest.mark.slow  # ~45 s on 2 cores; the tiny-model twin in test_endpoint.py runs by default
def test_endpoint_eval_equals_local_eval(irony_ws: Workspace, served: str) -> None:  # noqa: F811
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    before = _models(irony_ws)
    unreachable = f"http://127.0.0.1:{closed_port}/v1"
    done = run_cli("model", "add", "openai:builtin", "--base-url", unreachable, workspace=irony_ws)
    assert done.returncode == 2 and "cannot reach" in _one_error_line(done.stderr)
    unlisted = run_cli("model", "add", "openai:gpt-9", "--base-url", served, workspace=irony_ws)
    assert unlisted.returncode == 2
    assert "does not list model 'gpt-9'" in _one_error_line(unlisted.stderr)
    assert _models(irony_ws) == before

    added = run_cli(
        "model", "add", "openai:builtin", "--name", "api", "--base-url", served,
        "--api-key-env", "TUNELAB_TEST_KEY", "--price-in", "0.15", "--price-out", "0.6",
        workspace=irony_ws, env={"TUNELAB_TEST_KEY": "sk-test-not-stored"},
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    common = ["eval", "--prompt", "irony", "--dataset", "irony", "--limit", "2", "--json"]
    env = {"TUNELAB_TEST_KEY": "sk-test-not-stored"}
    local = run_cli(*common, "--model", "builtin", "--no-latency-probe", workspace=irony_ws)
    remote = run_cli(*common, "--model", "api", workspace=irony_ws, env=env)
    assert local.returncode == 0 and remote.returncode == 0, local.stderr + remote.stderr
    outputs = {}
    for name, done in (("local", local), ("remote", remote)):
        run_id = json.loads(done.stdout)["run_id"]
        shown = run_cli("run", "show", str(run_id), "--json", "--outputs", workspace=irony_ws)
        outputs[name] = json.loads(shown.stdout)["outputs"]
    assert [o["output"] for o in outputs["remote"]] == [o["output"] for o in outputs["local"]]
    assert [o["tokens_in"] for o in outputs["remote"]] == [o["tokens_in"] for o in outputs["local"]]
    assert "sk-test-not-stored" not in (irony_ws.db_path.read_bytes().decode("latin-1"))

    unset = run_cli(*common, "--model", "api", "--no-cache", workspace=irony_ws)
    assert unset.returncode == 2 and "TUNELAB_TEST_KEY is not set" in _one_error_line(unset.stderr)
