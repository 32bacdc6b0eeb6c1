"""Endpoint models: registration checks, concurrent requests with retries, and evaluations
through the official `openai` client against `tunelab serve` (no network: loopback only)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.tune_helpers import tiny_model_dir
from tunelab.engine.errors import BadInputError, EngineError
from tunelab.engine.evaluation.request import EvalRequest
from tunelab.engine.evaluation.run import evaluate
from tunelab.engine.generation.endpoint import EndpointModel, EndpointPrompt, generate_endpoint
from tunelab.engine.models.endpoint import EndpointConfig, register_endpoint
from tunelab.engine.prompts.settings import GenerationSettings
from tunelab.engine.serving.server import ModelServer, ServeConfig
from tunelab.store import NewDataset, NewSplit, PromptContent, Store

ROWS = [{"text": t, "label": lab} for t, lab in [("so fun, a flat tyre", "irony"),
        ("lovely sunny day", "non_irony"), ("great, more rain", "irony")]]  # fmt: skip


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tunelab.engine.models.loading import ModelRef, load_ref

    folder = tiny_model_dir(tmp_path_factory.mktemp("endpoint"))
    return load_ref(ModelRef("tiny", "hf_folder", "base", str(folder)), device="cpu")


@pytest.fixture(scope="module")
def server(tiny: Any) -> Iterator[ModelServer]:
    with ModelServer(tiny, "tiny", ServeConfig(port=0)) as running:
        yield running


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def config(base_url: str, **changes: Any) -> EndpointConfig:
    return EndpointConfig(**{"base_url": base_url, "model": "tiny", **changes})


@settings(max_examples=25, deadline=None)
@given(st.floats(max_value=-1e-9, allow_nan=False) | st.just(float("nan")), st.booleans())
def test_negative_or_nan_prices_are_refused(price: float, output_side: bool) -> None:
    flag = "--price-out" if output_side else "--price-in"
    key = "price_out_per_1m" if output_side else "price_in_per_1m"
    with pytest.raises(BadInputError, match=flag):
        config("http://127.0.0.1:1/v1", **{key: price})


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=0, max_value=10**9), st.sampled_from(["a", "b/c"]))
def test_fingerprint_depends_on_url_and_model_only(port: int, model: str) -> None:
    url = f"http://127.0.0.1:{port}/v1"
    one = EndpointConfig(base_url=url, model=model, price_in_per_1m=1.0)
    two = EndpointConfig(base_url=url + "/", model=model, max_concurrency=9)
    assert one.fingerprint == two.fingerprint
    assert one.fingerprint != EndpointConfig(base_url=url, model=model + "x").fingerprint


def _register(store: Store, url: str, **fields: Any) -> Any:
    return register_endpoint(store, "openai:tiny", {"base_url": url, **fields})


def test_registration_refusals_register_nothing(store: Store, server: ModelServer) -> None:
    unreachable = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(BadInputError, match="cannot reach"):
        _register(store, unreachable)
    with pytest.raises(BadInputError, match="NO_SUCH_KEY_VAR is not set"):
        _register(store, server.base_url, api_key_env="NO_SUCH_KEY_VAR")
    with pytest.raises(BadInputError, match=r"does not list model 'gpt-x'.*tiny"):
        register_endpoint(store, "openai:gpt-x", {"base_url": server.base_url})
    with pytest.raises(BadInputError, match="--price-in"):
        _register(store, server.base_url, price_in_per_1m=-1.0)
    assert store.list_models() == []


def test_registered_endpoint_keeps_the_key_out_of_the_store(
    store: Store, server: ModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TINY_KEY", "sk-never-stored-123")
    model = _register(store, server.base_url, api_key_env="TINY_KEY", price_in_per_1m=0.5)
    assert (model.kind, model.source, model.path) == ("endpoint", "openai", server.base_url)
    assert EndpointConfig.from_model(model).price_in_per_1m == 0.5
    assert "sk-never-stored" not in json.dumps(model.__dict__)


class FaultProxy:
    """Answers the first `failures` requests with `status` (or hangs), then forwards."""

    def __init__(self, target: str, failures: int, status: int | None) -> None:
        self.target, self.failures, self.status, self.seen = target, failures, status, 0
        self.release = threading.Event()
        self.in_flight, self.most_in_flight = 0, 0
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                import urllib.request

                with urllib.request.urlopen(proxy.target + self.path[len("/v1") :]) as reply:
                    data = reply.read()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with proxy.lock:
                    proxy.seen += 1
                    proxy.in_flight += 1
                    proxy.most_in_flight = max(proxy.most_in_flight, proxy.in_flight)
                try:
                    self._answer(body)
                finally:
                    with proxy.lock:
                        proxy.in_flight -= 1

            def _answer(self, body: bytes) -> None:
                if proxy.seen <= proxy.failures:
                    if proxy.status is None:
                        proxy.release.wait(30)  # a hung server: the client must time out
                        return
                    data = b'{"error": {"message": "slow down"}}'
                    self.send_response(proxy.status)
                    self.send_header("Retry-After", "0")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                import urllib.request

                request = urllib.request.Request(
                    proxy.target + self.path[len("/v1") :],
                    body,
                    {"Content-Type": "application/json"},
                )
                with urllib.request.urlopen(request, timeout=60) as reply:
                    data = reply.read()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize("status", [429, 503])
def test_429_and_5xx_are_retried_with_backoff(server: ModelServer, status: int) -> None:
    proxy = FaultProxy(server.base_url, failures=2, status=status)
    waits: list[float] = []
    try:
        endpoint = EndpointModel(config(proxy.base_url, max_retries=3), "tiny", sleep=waits.append)
        settings = GenerationSettings(max_new_tokens=4)
        [result] = generate_endpoint(endpoint, [EndpointPrompt("Hello")], settings)
        [direct] = generate_endpoint(
            EndpointModel(config(server.base_url), "tiny"), [EndpointPrompt("Hello")], settings
        )
    finally:
        proxy.close()
    assert proxy.seen == 3 and waits == [0.0, 0.0]  # Retry-After: 0 is honoured
    assert (result.text, result.tokens_out) == (direct.text, direct.tokens_out)


def test_a_hung_server_times_out_then_fails_in_one_line(server: ModelServer) -> None:
    proxy = FaultProxy(server.base_url, failures=99, status=None)
    waits: list[float] = []
    try:
        endpoint = EndpointModel(
            config(proxy.base_url, timeout_s=0.5, max_retries=1), "tiny", sleep=waits.append
        )
        with pytest.raises(EngineError, match=r"failed 2 times \(timed out\)"):
            generate_endpoint(endpoint, [EndpointPrompt("Hello")], GenerationSettings())
    finally:
        proxy.close()
    assert proxy.seen == 2 and waits == [0.5]  # exponential backoff from 0.5 s


def test_auth_failure_is_one_clear_line(tiny: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TINY_KEY", "wrong")
    with ModelServer(tiny, "tiny", ServeConfig(port=0, token="right")) as guarded:
        endpoint = EndpointModel(config(guarded.base_url, api_key_env="TINY_KEY"), "tiny")
        with pytest.raises(EngineError, match=r"refused the API key.*TINY_KEY"):
            generate_endpoint(endpoint, [EndpointPrompt("Hi")], GenerationSettings())


def test_logit_bias_is_refused(store: Store, server: ModelServer) -> None:
    _add_data(store)
    _register(store, server.base_url)
    with pytest.raises(BadInputError, match="logit_bias"):
        evaluate(store, _request(settings={"logit_bias": {"irony": 5}}))
    assert store.list_runs() == []


def _add_data(store: Store, mode: str = "plain") -> None:
    store.add_dataset(
        NewDataset(
            name="irony",
            source="mem",
            fingerprint="f",
            splits=[NewSplit("test", ROWS, "t")],
            task="classification",
            input_columns=["text"],
            reference_column="label",
            labels=["irony", "non_irony"],
            metrics=["accuracy"],
        )
    )
    store.save_prompt_version(
        "irony",
        PromptContent(
            template="Tweet: {{ text }}\nLabel:",
            mode=mode,
            settings={"max_new_tokens": 5, "stop": ["\n"]},
        ),
    )


def _request(model: str = "tiny", **changes: Any) -> EvalRequest:
    fields: dict[str, Any] = {"prompt": "irony", "model": model, "dataset": "irony"}
    return EvalRequest(**{**fields, "latency_probe": 0, **changes})


def test_endpoint_eval_equals_local_eval_and_uses_the_cache(
    store: Store, server: ModelServer, tiny: Any
) -> None:
    _add_data(store)
    local = store.add_model(_local_record(tiny))
    _register(store, server.base_url)
    local_run = evaluate(store, _request(model=local.name))
    endpoint_run = evaluate(store, _request(model="tiny"))
    local_rows = store.run_outputs(local_run.run.id)
    endpoint_rows = store.run_outputs(endpoint_run.run.id)
    assert [r.output for r in endpoint_rows] == [r.output for r in local_rows]
    assert [r.tokens_out for r in endpoint_rows] == [r.tokens_out for r in local_rows]
    assert all(r.tokens_in > 0 and not r.cached for r in endpoint_rows)
    again = evaluate(store, _request(model="tiny"))
    assert all(r.cached for r in store.run_outputs(again.run.id))


def _local_record(tiny: Any) -> Any:
    from tunelab.store import NewModel

    assert tiny.ref is not None
    return NewModel(name="tiny-local", kind="base", source="hf_folder", path=tiny.ref.path)


def test_migration_widens_model_checks_and_keeps_existing_rows(tmp_path: Any) -> None:
    """m007 on a database holding a model and a run that references it (foreign keys on)."""
    import sqlite3

    from sqlite_utils import Database

    from tunelab.store import migrations as schema

    db = Database(sqlite3.connect(tmp_path / "old.db", isolation_level=None))
    db.execute("PRAGMA foreign_keys = ON")
    schema.migrations.apply(db, stop_before="m007_endpoint_models")
    db.execute(
        "INSERT INTO models (name, kind, source, path, created_at) "
        "VALUES ('old', 'base', 'builtin', 'x', 'now')"
    )
    with pytest.raises(sqlite3.IntegrityError):
        db.execute(
            "INSERT INTO models (name, kind, source, path, created_at) "
            "VALUES ('e', 'endpoint', 'openai', 'x', 'now')"
        )
    schema.migrations.apply(db)
    db.execute(
        "INSERT INTO models (name, kind, source, path, created_at) "
        "VALUES ('e', 'endpoint', 'openai', 'x', 'now')"
    )
    with pytest.raises(sqlite3.IntegrityError):
        db.execute(
            "INSERT INTO models (name, kind, source, path, created_at) "
            "VALUES ('bad', 'bogus', 'openai', 'x', 'now')"
        )
    assert [r[0] for r in db.execute("SELECT name FROM models ORDER BY id")] == ["old", "e"]
    assert db.execute("PRAGMA foreign_key_check").fetchall() == []


@pytest.mark.parametrize("mode", ["plain", "chat"])
def test_streamed_endpoint_text_equals_the_unstreamed_text(
    server: ModelServer, store: Store, mode: str
) -> None:
    """The Playground path (the engine facade) streams an endpoint model as eval sees it."""
    from tunelab.engine.api.facade import Engine
    from tunelab.engine.api.types import RowInput
    from tunelab.engine.generation.endpoint import stream_endpoint

    endpoint = EndpointModel(config(server.base_url), "tiny")
    settings = GenerationSettings(max_new_tokens=6)
    messages = [{"role": "user", "content": "Hello"}] if mode == "chat" else []
    prompt = EndpointPrompt("Hello", messages)
    chunks = list(stream_endpoint(endpoint, prompt, settings))
    [whole] = generate_endpoint(endpoint, [prompt], settings)
    assert "".join(c.text for c in chunks) == whole.text
    assert chunks[-1].done and chunks[-1].tokens_out == whole.tokens_out
    _register(store, server.base_url)
    content = PromptContent(template="Tweet: {{ text }}\nLabel:", mode=mode)
    row = RowInput({"text": "great, more rain"})
    engine = Engine(store)
    assert engine.render_preview(content, row, "tiny").token_count is None
    streamed = list(engine.stream_generate("tiny", content, row, settings, lambda: False))
    rendered = engine.render_preview(content, row, "tiny")
    direct = EndpointPrompt(rendered.text, list(rendered.messages))
    [expected] = generate_endpoint(endpoint, [direct], settings)
    assert "".join(c.text for c in streamed) == expected.text


def test_cli_generate_streams_from_an_endpoint_model(
    server: ModelServer, workspace: Any, cli: Any
) -> None:
    with workspace.open_store() as ws_store:
        _register(ws_store, server.base_url)
        ws_store.save_prompt_version("p", PromptContent(template="Say {{ x }}", mode="plain"))
    done = cli("generate", "--prompt", "p", "--model", "tiny", "--input", "x=hi",
               "--set", "max_new_tokens=4", workspace=workspace)  # fmt: skip
    assert done.returncode == 0, done.stderr
    [expected] = generate_endpoint(
        EndpointModel(config(server.base_url), "tiny"),
        [EndpointPrompt("Say hi")],
        GenerationSettings(max_new_tokens=4),
    )
    assert done.stdout == expected.text + "\n"


def test_an_eval_keeps_max_concurrency_requests_in_flight(
    store: Store, server: ModelServer
) -> None:
    proxy = FaultProxy(server.base_url, failures=0, status=429)
    try:
        _add_data(store)
        _register(store, proxy.base_url, max_concurrency=3)
        # batch_size 1 would send one row at a time; an endpoint fills its concurrency instead.
        done = evaluate(store, _request(batch_size=1, use_cache=False))
    finally:
        proxy.close()
    assert done.rows == 3 and proxy.seen == 3
    assert proxy.most_in_flight == 3
