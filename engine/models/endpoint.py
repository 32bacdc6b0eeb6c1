"""Endpoint models: a model served by an OpenAI-compatible API, registered in the workspace.

The record is a `models` row of kind `endpoint` (source `openai`, path the base URL) whose
`training_config` JSON holds the `EndpointConfig` below under the key "endpoint"; an endpoint
has no training config of its own, so no migration is needed. The API key is never stored:
only the name of the environment variable it is read from, at call time.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from tunelab.engine.errors import BadInputError

if TYPE_CHECKING:
    from tunelab.store import Model, Store

ENDPOINT_KIND = "endpoint"
ENDPOINT_SOURCE = "openai"
SPEC_PREFIX = "openai:"
CONFIG_KEY = "endpoint"
NO_KEY = "none"
"""The key sent when no --api-key-env is given (local servers ignore it; the client needs one)."""
API_KINDS = ("auto", "chat", "completions")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass
class EndpointConfig:
    """How to reach one model behind an OpenAI-compatible API, and what it costs.

    Args:
        base_url: the API's base URL, e.g. https://api.openai.com/v1 or http://127.0.0.1:8000/v1.
        model: the model id the endpoint lists.
        api_key_env: the environment variable holding the API key (None: no key).
        price_in_per_1m: USD per million input tokens.
        price_out_per_1m: USD per million output tokens.
        max_concurrency: requests in flight at once during an evaluation.
        timeout_s: seconds one request may take before it is retried.
        max_retries: retries of one request after a 429, a 5xx, a timeout or a dropped connection.
        api: auto, chat or completions: the APIs the endpoint serves (hosted chat models
            often have no completions API; some local servers have no chat template).
    """

    base_url: str = field(metadata={"help": "the API's base URL (ends in /v1 for most servers)"})
    model: str = field(metadata={"help": "the model id the endpoint lists"})
    api_key_env: str | None = field(
        default=None, metadata={"help": "environment variable holding the API key"}
    )
    price_in_per_1m: float = field(default=0.0, metadata={"help": "USD per 1M input tokens"})
    price_out_per_1m: float = field(default=0.0, metadata={"help": "USD per 1M output tokens"})
    max_concurrency: int = field(default=4, metadata={"help": "requests in flight at once"})
    timeout_s: float = field(default=60.0, metadata={"help": "seconds per request before retry"})
    max_retries: int = field(default=4, metadata={"help": "retries on 429, 5xx and timeouts"})
    api: str = field(
        default="auto",
        metadata={
            "help": "which API the endpoint has: auto (chat prompts to /chat/completions, "
            "plain ones to /completions), chat (chat only: plain prompts go as one user "
            "message) or completions (completions only: chat prompts are refused)"
        },
    )

    def __post_init__(self) -> None:
        parsed = urlparse(self.base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise BadInputError(
                f"--base-url {self.base_url!r} is not an http(s) URL; e.g. http://127.0.0.1:8000/v1"
            )
        self.base_url = self.base_url.rstrip("/")
        if not self.model.strip():
            raise BadInputError("give the endpoint's model id: openai:MODEL")
        if self.api_key_env is not None and not _ENV_NAME.match(self.api_key_env):
            raise BadInputError(
                f"--api-key-env {self.api_key_env!r} is not an environment variable name"
            )
        for name, flag in (("price_in_per_1m", "--price-in"), ("price_out_per_1m", "--price-out")):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise BadInputError(
                    f"{flag} must be a price >= 0 in USD per 1M tokens, got {value}"
                )
            setattr(self, name, float(value))
        if not isinstance(self.max_concurrency, int) or not 1 <= self.max_concurrency <= 256:
            raise BadInputError(
                f"--max-concurrency must be between 1 and 256, got {self.max_concurrency}"
            )
        if not self.timeout_s > 0:
            raise BadInputError(f"timeout_s must be > 0 seconds, got {self.timeout_s}")
        if self.api not in API_KINDS:
            raise BadInputError(f"--api must be one of {', '.join(API_KINDS)}, got {self.api!r}")
        if not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise BadInputError(f"max_retries must be >= 0, got {self.max_retries}")

    @property
    def fingerprint(self) -> str:
        """Response-cache key material: the same base URL and model share cached outputs."""
        digest = hashlib.sha256(f"{self.base_url}\n{self.model}".encode()).hexdigest()
        return f"endpoint:{digest[:32]}"

    def api_key(self) -> str:
        """The key, read from the environment now (never stored); one line when it is unset."""
        if self.api_key_env is None:
            return NO_KEY
        key = os.environ.get(self.api_key_env)
        if not key:
            raise BadInputError(
                f"environment variable {self.api_key_env} is not set; export the API key in it"
            )
        return key

    def to_dict(self) -> dict[str, Any]:
        """What the model record stores (no key, only the variable's name)."""
        return asdict(self)

    @classmethod
    def from_model(cls, model: Model) -> EndpointConfig:
        """The config of an endpoint model record."""
        data = model.training_config.get(CONFIG_KEY)
        if model.kind != ENDPOINT_KIND or not isinstance(data, dict):
            raise BadInputError(f"model {model.name!r} is not an endpoint model")
        return cls(**data)


def is_endpoint(model: Model) -> bool:
    """Whether a model record is served by an API rather than loaded here."""
    return model.kind == ENDPOINT_KIND


def listed_models(config: EndpointConfig) -> list[str]:
    """The model ids the endpoint lists; one-line errors for an unreachable URL or a bad key."""
    import openai  # deferred: only endpoint models need the client

    client = openai.OpenAI(
        base_url=config.base_url,
        api_key=config.api_key(),
        max_retries=0,
        timeout=min(config.timeout_s, 15.0),
    )
    try:
        return [m.id for m in client.models.list()]
    except openai.AuthenticationError as exc:
        raise BadInputError(
            f"{config.base_url} refused the API key"
            + (f" in {config.api_key_env}" if config.api_key_env else "")
            + f" ({exc.status_code}); check the key"
        ) from exc
    except openai.APIConnectionError as exc:
        raise BadInputError(
            f"cannot reach {config.base_url}: {short_cause(exc)}; check --base-url and that "
            "the server is running"
        ) from exc
    except openai.APIStatusError as exc:
        raise BadInputError(
            f"{config.base_url} answered {exc.status_code} to GET /models; check --base-url"
        ) from exc
    finally:
        client.close()


def short_cause(exc: BaseException) -> str:
    """The innermost cause of a connection failure, in one line."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return (str(exc).splitlines() or [type(exc).__name__])[0] or type(exc).__name__


def register_endpoint(
    store: Store, spec: str, config_fields: dict[str, Any], name: str | None = None
) -> Model:
    """Check an endpoint (reachable, key present, model listed) and record it.

    Args:
        store: the workspace store.
        spec: `openai:MODEL`.
        config_fields: the `EndpointConfig` fields other than `model` (base_url, prices, ...).
        name: the workspace name; defaults to MODEL.

    Returns:
        The stored model record; nothing is stored when any check fails.
    """
    from tunelab.store import NewModel

    if not spec.startswith(SPEC_PREFIX):
        raise BadInputError(f"an endpoint model is given as openai:MODEL, got {spec!r}")
    if config_fields.get("base_url") is None:
        raise BadInputError("an endpoint model needs --base-url, e.g. http://127.0.0.1:8000/v1")
    config = EndpointConfig(model=spec[len(SPEC_PREFIX) :], **config_fields)
    config.api_key()  # a missing variable fails before any request
    listed = listed_models(config)
    if config.model not in listed:
        shown = ", ".join(listed[:10]) + (", ..." if len(listed) > 10 else "")
        raise BadInputError(
            f"{config.base_url} does not list model {config.model!r}; it lists: {shown or '(none)'}"
        )
    new = NewModel(
        name=name or config.model,
        kind=ENDPOINT_KIND,
        source=ENDPOINT_SOURCE,
        path=config.base_url,
        training_config={CONFIG_KEY: config.to_dict()},
        fingerprint=config.fingerprint,
    )
    return store.add_model(new)
