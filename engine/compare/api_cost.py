"""What an endpoint run costs: its API price per token times the tokens the API reported.

A local run's cost comes from throughput at a GPU-hour price (`cost.py`); an endpoint run is
billed per token, so its cost per request is each row's input and output tokens at the
model's prices (USD per million tokens), averaged over the compared rows. Cached rows count
too: their token counts are the API's, kept with the cached response, and a cache hit in
tunelab would still be a billed request in production.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tunelab.engine.models.endpoint import EndpointConfig, is_endpoint
from tunelab.store import Model, RunOutput

TOKENS_PER_PRICE_UNIT = 1_000_000
"""Prices are quoted in USD per million tokens."""


@dataclass(frozen=True)
class ApiCost:
    """An endpoint run's cost per 1k requests, and the prices it was computed at."""

    cost_per_1k_requests: float | None
    """None when no compared row has token counts."""
    note: str


def cost_per_request(
    tokens_in: float, tokens_out: float, price_in_per_1m: float, price_out_per_1m: float
) -> float:
    """USD for one request of `tokens_in` prompt and `tokens_out` completion tokens."""
    if min(tokens_in, tokens_out, price_in_per_1m, price_out_per_1m) < 0:
        raise ValueError("token counts and prices must be >= 0")
    return (tokens_in * price_in_per_1m + tokens_out * price_out_per_1m) / TOKENS_PER_PRICE_UNIT


def api_cost(model: Model, outputs: Sequence[RunOutput]) -> ApiCost | None:
    """The API cost of an endpoint model's run; None for a local model."""
    if not is_endpoint(model):
        return None
    config = EndpointConfig.from_model(model)
    prices = f"${config.price_in_per_1m:g} in / ${config.price_out_per_1m:g} out per 1M tokens"
    if not outputs:
        return ApiCost(None, f"API prices {prices}; no rows to price")
    total = sum(
        cost_per_request(o.tokens_in, o.tokens_out, config.price_in_per_1m, config.price_out_per_1m)
        for o in outputs
    )
    return ApiCost(
        total / len(outputs) * 1000,
        f"API tokens of {len(outputs)} rows at {prices}",
    )
