"""API cost of endpoint runs: per-token arithmetic, and the scorecard against a fine-tune."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests import compare_helpers as h
from tunelab.engine.compare.api_cost import api_cost, cost_per_request
from tunelab.engine.compare.report import cost_lines
from tunelab.engine.compare.runs import compare_runs
from tunelab.engine.models.endpoint import EndpointConfig
from tunelab.store import Model, NewModel, RunOutput, Store

tokens = st.integers(min_value=0, max_value=200_000)
prices = st.floats(min_value=0, max_value=1_000, allow_nan=False, allow_infinity=False)


@given(tokens, tokens, prices, prices)
def test_cost_per_request_is_tokens_times_price_per_million(
    t_in: int, t_out: int, p_in: float, p_out: float
) -> None:
    cost = cost_per_request(t_in, t_out, p_in, p_out)
    assert cost >= 0
    assert cost == pytest.approx(t_in * p_in / 1e6 + t_out * p_out / 1e6, rel=1e-9, abs=1e-15)
    # Additive in requests: two requests cost the sum of each.
    assert cost_per_request(2 * t_in, 2 * t_out, p_in, p_out) == pytest.approx(
        2 * cost, rel=1e-9, abs=1e-15
    )
    assert cost_per_request(t_in, t_out, 0.0, 0.0) == 0.0


@given(st.sampled_from([(-1, 0, 1.0, 1.0), (0, -1, 1.0, 1.0), (1, 1, -0.5, 1.0)]))
def test_negative_inputs_are_refused(args: tuple[int, int, float, float]) -> None:
    with pytest.raises(ValueError, match=">= 0"):
        cost_per_request(*args)


def endpoint_model(store: Store, p_in: float, p_out: float, name: str = "api") -> Model:
    config = EndpointConfig(
        base_url="http://127.0.0.1:9/v1", model=name, price_in_per_1m=p_in, price_out_per_1m=p_out
    )
    return store.add_model(
        NewModel(
            name=name,
            kind="endpoint",
            source="openai",
            path=config.base_url,
            training_config={"endpoint": config.to_dict()},
            fingerprint=config.fingerprint,
        )
    )


def _output(t_in: int, t_out: int, cached: bool) -> RunOutput:
    return RunOutput(
        id=0, run_id=0, row_idx=0, row_id=None, rendered_prompt="p", output="o",
        prediction="o", reference=None, scores={}, latency_ms=1.0, tokens_in=t_in,
        tokens_out=t_out, cached=cached, created_at="",
    )  # fmt: skip


@given(st.lists(st.tuples(tokens, tokens, st.booleans()), min_size=1, max_size=20), prices, prices)
def test_cost_per_1k_is_1000_times_the_mean_request(
    rows: list[tuple[int, int, bool]], p_in: float, p_out: float
) -> None:
    store = Store.memory()
    try:
        model = endpoint_model(store, p_in, p_out)
        billed = api_cost(model, [_output(*r) for r in rows])
    finally:
        store.close()
    assert billed is not None and billed.cost_per_1k_requests is not None
    mean = sum(cost_per_request(i, o, p_in, p_out) for i, o, _ in rows) / len(rows)
    assert billed.cost_per_1k_requests == pytest.approx(1000 * mean, rel=1e-9, abs=1e-12)


def test_a_local_model_has_no_api_cost(store: Store) -> None:
    assert api_cost(h.base_model(store), [_output(10, 10, False)]) is None


def test_scorecard_prices_the_api_run_by_tokens_and_finds_the_break_even(store: Store) -> None:
    pv, base = h.prompt(store), h.base_model(store)
    ds = h.dataset(store, n=20)
    api = endpoint_model(store, p_in=1.0, p_out=4.0)
    tuned = h.finetuned_model(store, base, hours=1.0, gpus=1)
    on_api = h.classification_run(store, pv, api, ds, [1] * 20, latency_ms=400)
    on_tuned = h.classification_run(store, pv, tuned, ds, [1] * 20, latency_ms=50)
    c = compare_runs(store, [on_api.id, on_tuned.id], n_boot=200, price_per_gpu_hour=2.0)
    api_cost_1k = (20 * 1.0 + 5 * 4.0) / 1e6 * 1000  # helpers' rows: 20 tokens in, 5 out
    assert c.costs[0].cost_per_1k_requests == pytest.approx(api_cost_1k)
    assert c.costs[0].training_cost == 0.0 and "API tokens of 20 rows" in c.costs[0].cost_note
    serving_1k = 0.05 / 3600 * 2.0 * 1000  # 50 ms a row at $2 per GPU-hour
    assert c.costs[1].cost_per_1k_requests == pytest.approx(serving_1k)
    assert c.costs[1].training_cost == pytest.approx(2.0)
    even = c.break_even[0]
    expected = 2.0 / ((api_cost_1k - serving_1k) / 1000)
    assert even.requests == pytest.approx(expected)
    assert "repaid after about" in even.verdict
    lines = cost_lines(c)
    assert any(line.startswith("cost from: API tokens") for line in lines), lines
