"""Cost and speed: probe latency vs throughput, device-aware training cost, workspace prices."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests import compare_helpers as h
from tests.conftest import run_cli
from tunelab.engine.compare.cost import break_even, job_device, run_cost
from tunelab.engine.compare.runs import compare_runs
from tunelab.store import NewRunOutput, ProbeRequest, Store, Workspace
from tunelab.store.workspace_config import (
    Prices,
    WorkspaceConfigError,
    config_path,
    load_config,
    set_value,
)

PRICES = Prices(gpu_hour=2.0, cpu_hour=0.1)


def test_a_cpu_job_is_priced_at_the_cpu_rate(store: Store) -> None:
    pv, base = h.prompt(store), h.base_model(store)
    ds = h.dataset(store, n=4)
    cpu = h.finetuned_model(store, base, "cpu-ft", hours=2.0, gpus=0, config={"device": "cpu"})
    gpu = h.finetuned_model(store, base, "gpu-ft", hours=2.0, gpus=2)
    on_cpu = h.classification_run(store, pv, cpu, ds, [1, 1, 0, 0])
    on_gpu = h.classification_run(store, pv, gpu, ds, [1, 1, 0, 0])
    cpu_cost = run_cost(store, on_cpu, store.run_outputs(on_cpu.id), PRICES)
    gpu_cost = run_cost(store, on_gpu, store.run_outputs(on_gpu.id), PRICES)
    assert cpu_cost.training_device == "cpu"
    assert cpu_cost.training_cost == pytest.approx(2.0 * 0.1)
    assert "CPU-hour" in cpu_cost.training_note
    assert gpu_cost.training_device == "gpu"
    assert gpu_cost.training_cost == pytest.approx(2.0 * 2 * 2.0)


def test_job_device_reads_the_job_record(store: Store) -> None:
    base = h.base_model(store)
    job = store.create_job("lora", {}, base.id, None, None, gpus=0)
    assert job_device(job) == ("cpu", 1)
    store.update_job(job.id, progress={"memory_kind": "cuda"})
    assert job_device(store.get_job(job.id)) == ("gpu", 1)
    multi = store.create_job("lora", {}, base.id, None, None, gpus=4)
    assert job_device(multi) == ("gpu", 4)
    store.update_job(multi.id, progress={"memory_kind": "rss"})
    assert job_device(store.get_job(multi.id)) == ("cpu", 1)


def _batched_run(store: Store, share_ms: float, rows: int = 4) -> int:
    pv, base = h.prompt(store), h.base_model(store)
    ds = h.dataset(store, n=rows)
    run = store.create_run(pv.id, base.id, ds.id, "test", rows, {})
    store.add_run_outputs(
        run.id,
        [
            NewRunOutput(i, "p", "o", "o", "o", {}, share_ms, 10, 5, False, None, share_ms * 4, 4)
            for i in range(rows)
        ],
    )
    return run.id


def test_latency_comes_from_the_probe_and_cost_from_throughput(store: Store) -> None:
    run_id = _batched_run(store, share_ms=50.0)
    run = store.get_run(run_id)
    outputs = store.run_outputs(run_id)
    unprobed = run_cost(store, run, outputs, PRICES)
    assert unprobed.latency_p50_ms is None and unprobed.requests_timed == 0
    assert "no latency probe" in unprobed.latency_source
    store.add_probe_requests(
        run_id, [ProbeRequest(i, i, 100.0 + 10 * i, 20.0 + i, 10, 5) for i in range(4)]
    )
    probed = run_cost(store, run, outputs, PRICES)
    assert probed.latency_p50_ms == pytest.approx(115.0)
    assert probed.latency_p95_ms == pytest.approx(128.5)
    assert probed.ttft_p50_ms == pytest.approx(21.5)
    assert probed.requests_timed == 4 and probed.latency_source.startswith("probe: 4")
    # Cost is the batch share (50 ms a row) at the GPU-hour price (no device recorded: a GPU is
    # assumed, and said), whatever the probe says.
    assert probed.cost_per_1k_requests == pytest.approx(0.05 / 3600 * 2.0 * 1000)
    assert probed.rows_per_second == pytest.approx(20.0)


@pytest.mark.parametrize(
    ("device", "rate", "note"),
    [
        ("cpu", 0.1, "CPU-hour price"),
        ("cuda", 2.0, "GPU-hour price (cuda)"),
        (None, 2.0, "GPU-hour price (no device)"),
    ],
)
def test_inference_is_priced_at_the_rate_of_the_device_it_ran_on(
    store: Store, device: str | None, rate: float, note: str
) -> None:
    run_id = _batched_run(store, share_ms=50.0)
    if device is not None:
        store.set_run_device(run_id, device)
    run = store.get_run(run_id)
    assert run.device == device
    cost = run_cost(store, run, store.run_outputs(run_id), PRICES)
    assert cost.cost_per_1k_requests == pytest.approx(0.05 / 3600 * rate * 1000)
    assert note in cost.cost_note and cost.inference_device == device


@pytest.mark.model
def test_an_evaluation_records_the_device_its_model_ran_on(store: Store) -> None:
    from tunelab.engine.evaluation.request import EvalRequest
    from tunelab.engine.evaluation.run import evaluate
    from tunelab.store import NewModel, PromptContent

    ds = h.dataset(store, n=2)
    store.add_model(NewModel("builtin", "base", "builtin", "builtin"), exist_ok=True)
    store.save_prompt_version(
        "tiny", PromptContent(template="{{ text }}", settings={"max_new_tokens": 2})
    )
    result = evaluate(store, EvalRequest(prompt="tiny", model="builtin", dataset=ds.name,
                                         metrics=["valid_json"], latency_probe=0))  # fmt: skip
    run = store.get_run(result.run.id)
    assert run.device == "cpu"
    cost = run_cost(store, run, store.run_outputs(run.id), PRICES)
    assert "CPU-hour" in cost.cost_note


def test_no_break_even_when_the_fine_tune_is_significantly_worse(store: Store) -> None:
    pv, base = h.prompt(store), h.base_model(store)
    ds = h.dataset(store, n=30)
    ft = h.finetuned_model(store, base, hours=0.01)
    a = h.classification_run(store, pv, base, ds, [1] * 30, latency_ms=200)
    b = h.classification_run(store, pv, ft, ds, [0] * 30, latency_ms=100)
    even = compare_runs(store, [a.id, b.id], n_boot=200).break_even[0]
    assert even.requests is None
    assert even.verdict.startswith("no break-even: run") and "significantly worse" in even.verdict
    # The same runs, quality aside, would break even: the gate is what says no.
    costs = compare_runs(store, [a.id, b.id], n_boot=200).costs
    assert break_even(costs[0], costs[1]).requests is not None


def test_workspace_config_round_trip_and_strictness(tmp_path: Path) -> None:
    path = config_path(tmp_path)
    assert load_config(path).price == Prices()
    set_value(path, "price.gpu_hour", "2.5")
    set_value(path, "price.cpu_hour", "0.25")
    assert load_config(path).price == Prices(gpu_hour=2.5, cpu_hour=0.25)
    with pytest.raises(WorkspaceConfigError, match=r"unknown setting 'price\.tpu_hour'"):
        set_value(path, "price.tpu_hour", "1")
    with pytest.raises(WorkspaceConfigError, match=">= 0"):
        set_value(path, "price.gpu_hour", "-1")
    path.write_text("[price]\ngpu_hour = 1.0\ngpu_hours = 3\n", encoding="utf-8")
    named = rf"{re.escape(str(path))}.*unknown key.*price\.gpu_hours"
    with pytest.raises(WorkspaceConfigError, match=named):
        load_config(path)


def test_compare_reads_prices_from_the_workspace_config(workspace: Workspace) -> None:
    store = workspace.open_store()
    try:
        pv, base = h.prompt(store), h.base_model(store)
        ds = h.dataset(store, n=4)
        cpu = h.finetuned_model(store, base, hours=1.0, gpus=0, config={"device": "cpu"})
        a = h.classification_run(store, pv, base, ds, [1, 0, 1, 0])
        b = h.classification_run(store, pv, cpu, ds, [1, 1, 1, 0])
        set_value(config_path(workspace.dir), "price.cpu_hour", "0.5")
        set_value(config_path(workspace.dir), "price.gpu_hour", "3")
        c = compare_runs(store, [a.id, b.id], n_boot=200)
        assert (c.price_per_gpu_hour, c.price_per_cpu_hour) == (3.0, 0.5)
        assert c.costs[1].training_cost == pytest.approx(0.5)
        overridden = compare_runs(store, [a.id, b.id], n_boot=200, price_per_gpu_hour=1.0)
        assert overridden.price_per_gpu_hour == 1.0
        assert overridden.costs[1].training_cost == pytest.approx(0.5)
    finally:
        store.close()


def test_config_cli_shows_and_sets_prices(workspace: Workspace) -> None:
    import json

    result = run_cli("config", "set", "price.gpu_hour", "2.5", workspace=workspace)
    assert result.returncode == 0, result.stderr
    shown = run_cli("config", "show", "--json", workspace=workspace)
    assert json.loads(shown.stdout) == {"price.gpu_hour": 2.5, "price.cpu_hour": 0.1}
    bad = run_cli("config", "set", "price.gpu_hour", "cheap", workspace=workspace)
    assert bad.returncode == 2 and "must be a number" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_the_engine_facade_leaves_prices_to_the_workspace_config(workspace: Workspace) -> None:
    from unittest.mock import patch

    from tunelab.engine.api.facade import Engine
    from tunelab.engine.compare import runs as compare_module

    store = workspace.open_store()
    try:
        pv, base = h.prompt(store), h.base_model(store)
        ds = h.dataset(store, n=4)
        a = h.classification_run(store, pv, base, ds, [1, 0, 1, 0])
        b = h.classification_run(store, pv, base, ds, [1, 1, 1, 0])
        real = compare_module.compare_runs
        # What the TUI's Compare screen calls: no price of its own, so the workspace's applies
        # (`compare_runs` with no override reads the config: tested above).
        with patch.object(compare_module, "compare_runs", wraps=real) as spy:
            Engine(store, workspace).compare_runs([a.id, b.id])
        assert spy.call_args.kwargs.get("price_per_gpu_hour") is None
    finally:
        store.close()
