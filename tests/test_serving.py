"""`tunelab serve`: the OpenAI-compatible server, through the official `openai` client."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.tune_helpers import tiny_model_dir
from tunelab.engine.errors import BadInputError
from tunelab.engine.generation.batched import generate_batch
from tunelab.engine.prompts.settings import GenerationSettings
from tunelab.engine.serving.server import ModelServer, ServeConfig


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tunelab.engine.models.loading import ModelRef, load_ref

    folder = tiny_model_dir(tmp_path_factory.mktemp("serve"))
    return load_ref(ModelRef("tiny", "hf_folder", "base", str(folder)), device="cpu")


@pytest.fixture(scope="module")
def server(tiny: Any) -> Iterator[ModelServer]:
    with ModelServer(tiny, "tiny", ServeConfig(port=0, token="sekret")) as running:
        yield running


def client(server: ModelServer, key: str = "sekret") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0, timeout=60)


def test_config_refuses_bad_port_and_empty_token() -> None:
    with pytest.raises(BadInputError, match="--port"):
        ServeConfig(port=70000)
    with pytest.raises(BadInputError, match="--token"):
        ServeConfig(token=" ")


def test_models_lists_the_served_model(server: ModelServer) -> None:
    assert [m.id for m in client(server).models.list()] == ["tiny"]


def test_completion_equals_local_generation(server: ModelServer, tiny: Any) -> None:
    prompt = "Tweet: what a lovely monday\nLabel:"
    settings = GenerationSettings(max_new_tokens=6, stop=["\n\n"])
    [local] = generate_batch(tiny, [prompt], settings)
    reply = client(server).completions.create(
        model="tiny", prompt=prompt, max_tokens=6, temperature=0, stop=["\n\n"]
    )
    assert reply.choices[0].text == local.text
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (
        local.tokens_in,
        local.tokens_out,
    )


def test_streamed_chat_equals_unstreamed_chat(server: ModelServer) -> None:
    api = client(server)
    messages: list[Any] = [{"role": "user", "content": "Say something."}]
    whole = api.chat.completions.create(
        model="tiny", messages=messages, max_tokens=8, temperature=0
    )
    pieces = []
    usage = None
    for chunk in api.chat.completions.create(
        model="tiny",
        messages=messages,
        max_tokens=8,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    ):
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        usage = chunk.usage or usage
    assert "".join(pieces) == whole.choices[0].message.content
    assert usage is not None and whole.usage is not None
    assert usage.completion_tokens == whole.usage.completion_tokens


def test_wrong_token_is_an_auth_error(server: ModelServer) -> None:
    with pytest.raises(openai.AuthenticationError):
        client(server, key="wrong").models.list()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"logit_bias": {"1": 5}}, "logit_bias"),
        ({"model": "other"}, "not served here"),
        ({"max_tokens": 0}, "max_new_tokens"),
    ],
)
def test_bad_requests_are_400s(server: ModelServer, extra: dict[str, Any], message: str) -> None:
    body: dict[str, Any] = {"model": "tiny", "prompt": "hi", "max_tokens": 2, **extra}
    with pytest.raises(openai.BadRequestError, match=message):
        client(server).completions.create(**body)


def test_cli_refuses_a_bad_port(workspace: Any, cli: Any) -> None:
    done = cli("serve", "builtin", "--port", "-1", workspace=workspace)
    assert done.returncode == 2, done.stderr
    assert "--port" in done.stderr and "Traceback" not in done.stderr
    assert Path(workspace.root).exists()


def test_prompt_version_templates_and_settings_apply_to_each_request(tiny: Any, store: Any) -> None:
    """`--prompt`: the request's text fills the one variable; the version's settings are the
    defaults (here its max_new_tokens), which a request may override."""
    from tunelab.engine.prompts.templates import render_prompt
    from tunelab.store import PromptContent

    version = store.save_prompt_version(
        "p",
        PromptContent(
            template="Tweet: {{ text }}\nLabel:", mode="plain", settings={"max_new_tokens": 5}
        ),
    ).version
    two = store.save_prompt_version(
        "two", PromptContent(template="{{ a }} and {{ b }}", mode="plain")
    ).version
    expected_prompt = render_prompt(version, {"text": "more rain, great"}, tiny).text
    [local] = generate_batch(tiny, [expected_prompt], GenerationSettings(max_new_tokens=5))
    [longer] = generate_batch(tiny, [expected_prompt], GenerationSettings(max_new_tokens=7))
    with ModelServer(tiny, "tiny", ServeConfig(port=0), version) as templated:
        api = openai.OpenAI(base_url=templated.base_url, api_key="x", max_retries=0)
        reply = api.completions.create(model="tiny", prompt="more rain, great")
        assert reply.choices[0].text == local.text
        assert reply.usage is not None and reply.usage.prompt_tokens == local.tokens_in
        chat = api.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "more rain, great"}], max_tokens=7
        )
        assert chat.choices[0].message.content == longer.text
    with ModelServer(tiny, "tiny", ServeConfig(port=0), two) as bad:
        api = openai.OpenAI(base_url=bad.base_url, api_key="x", max_retries=0)
        with pytest.raises(openai.BadRequestError, match="exactly one"):
            api.completions.create(model="tiny", prompt="x")


def test_malformed_bodies_get_one_line_errors(server: ModelServer) -> None:
    import http.client

    port = server.port
    for body, headers, status in [
        (b"{not json", {"Content-Type": "application/json"}, 400),
        (b"[]", {}, 400),
        (b"{}", {"Content-Length": "lots"}, 413),
    ]:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        sent = {"Authorization": "Bearer sekret", **headers}
        if "Content-Length" in sent:
            connection.putrequest("POST", "/v1/completions")
            for key, value in sent.items():
                connection.putheader(key, value)
            connection.endheaders(body)
        else:
            connection.request("POST", "/v1/completions", body=body, headers=sent)
        reply = connection.getresponse()
        payload = reply.read()
        connection.close()
        assert reply.status == status, payload
        assert "\n" not in json.loads(payload)["error"]["message"]


def test_cli_serves_an_adapter_by_its_workspace_name(
    tiny: Any, workspace: Any, tmp_path: Path
) -> None:
    """`tunelab serve ADAPTER`: the adapter on its base, as a local load of it generates."""
    from peft import LoraConfig, get_peft_model

    from tunelab.engine.models.loading import load_model
    from tunelab.store import NewModel

    folder = tmp_path / "lora"
    lora = LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(copy.deepcopy(tiny.model), lora).save_pretrained(str(folder))
    with workspace.open_store() as ws_store:
        assert tiny.ref is not None
        base = ws_store.add_model(
            NewModel(name="tiny", kind="base", source="hf_folder", path=tiny.ref.path)
        )
        adapter = ws_store.add_model(
            NewModel(
                name="ft",
                kind="adapter",
                source="artifact",
                path=str(folder),
                base_model_id=base.id,
            )
        )
        loaded = load_model(ws_store, adapter, device="cpu")
    [local] = generate_batch(loaded, ["Hello there"], GenerationSettings(max_new_tokens=6))
    process = subprocess.Popen(
        [sys.executable, "-m", "tunelab", "serve", "ft", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TUNELAB_WORKSPACE": str(workspace.root), "CUDA_VISIBLE_DEVICES": ""},
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        found = re.search(r"(http://127\.0\.0\.1:\d+/v1)", line)
        assert found, line
        api = openai.OpenAI(base_url=found.group(1), api_key="x", max_retries=0, timeout=120)
        assert [m.id for m in api.models.list()] == ["ft"]
        reply = api.completions.create(model="ft", prompt="Hello there", max_tokens=6)
        assert reply.choices[0].text == local.text
    finally:
        process.terminate()
        process.wait(timeout=30)
