"""An OpenAI-compatible HTTP server for one loaded workspace model: `tunelab serve`.

Built on the stdlib's ThreadingHTTPServer (no server library is a tunelab dependency): each
connection gets a thread, and the model's own lock runs one generation at a time, so
concurrent clients queue rather than fail. Streaming is Server-Sent Events, as OpenAI sends.
"""

from __future__ import annotations

import hmac
import itertools
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from tunelab.engine.errors import BadInputError, EngineError
from tunelab.engine.generation.batched import GenerationResult, generate_batch, stream_generate
from tunelab.engine.prompts.templates import prompt_token_ids
from tunelab.engine.serving.prompt_logprobs import echo_request, score_prompt
from tunelab.engine.serving.protocol import (
    ServeRequest,
    chunk_body,
    new_id,
    parse_request,
    response_body,
    usage,
)

if TYPE_CHECKING:
    from tunelab.engine.models.loading import LoadedModel
    from tunelab.store import PromptVersion

LOOPBACK = ("127.0.0.1", "localhost", "::1")
MAX_BODY_BYTES = 8 * 1024 * 1024


@dataclass
class ServeConfig:
    """Where and how `tunelab serve` listens.

    Args:
        host: the address to bind; loopback unless told otherwise.
        port: the TCP port; 0 picks a free one.
        token: a bearer token every request must carry; None accepts any request.
    """

    host: str = field(default="127.0.0.1", metadata={"help": "address to bind (loopback)"})
    port: int = field(default=8000, metadata={"help": "TCP port; 0 picks a free one"})
    token: str | None = field(
        default=None, metadata={"help": "bearer token clients must send (Authorization header)"}
    )

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise BadInputError(f"--port must be between 0 and 65535, got {self.port}")
        if not self.host.strip():
            raise BadInputError("--host must not be empty; use 127.0.0.1 for loopback")
        if self.token is not None and not self.token.strip():
            raise BadInputError("--token must not be empty; omit it to accept any client")


class ModelServer:
    """Serves one loaded model (and optionally a prompt version) until `close()`.

    Args:
        loaded: the model to generate with.
        name: the model id clients name (and `/v1/models` lists).
        config: host, port and token.
        version: a prompt version whose template and settings every request goes through.
    """

    def __init__(
        self,
        loaded: LoadedModel,
        name: str,
        config: ServeConfig,
        version: PromptVersion | None = None,
    ) -> None:
        self.loaded = loaded
        self.name = name
        self.config = config
        self.version = version
        handler = type("Handler", (_Handler,), {"server_model": self})
        try:
            self.httpd = ThreadingHTTPServer((config.host, config.port), handler)
        except OSError as exc:
            raise BadInputError(
                f"cannot listen on {config.host}:{config.port}: {exc.strerror}; pick another --port"
            ) from exc
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port actually bound (useful with port 0)."""
        return int(self.httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """The OpenAI base URL clients use, ending in /v1."""
        host = self.config.host
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self.port}/v1"

    def serve_forever(self) -> None:
        """Serve in this thread until `close()` is called from another (or Ctrl-C)."""
        self.httpd.serve_forever(poll_interval=0.2)

    def start(self) -> ModelServer:
        """Serve in a background thread (tests, benchmarks); returns self."""
        self._thread = threading.Thread(
            target=self.serve_forever, name="tunelab-serve", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and release the port."""
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Handler(BaseHTTPRequestHandler):
    server_model: ModelServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: request lines would drown the one line `tunelab serve` prints."""

    def _send_json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, kind: str) -> None:
        self._send_json(status, {"error": {"message": message, "type": kind, "code": status}})

    def _authorized(self) -> bool:
        token = self.server_model.config.token
        if token is None:
            return True
        sent = self.headers.get("Authorization", "")
        if hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
            return True
        self._error(401, "missing or wrong bearer token", "authentication_error")
        return False

    def do_GET(self) -> None:
        if not self._authorized():
            return
        path = self.path.split("?")[0].rstrip("/")
        name = self.server_model.name
        if path == "/v1/models":
            model = {"id": name, "object": "model", "created": 0, "owned_by": "tunelab"}
            self._send_json(200, {"object": "list", "data": [model]})
        elif path == "/health":
            self._send_json(200, {"status": "ok"})
        else:
            self._error(404, f"no route {path}", "not_found_error")

    def do_POST(self) -> None:
        if not self._authorized():
            return
        path = self.path.split("?")[0].rstrip("/")
        kinds = {"/v1/chat/completions": "chat", "/v1/completions": "completion"}
        if path not in kinds:
            self._error(404, f"no route {path}", "not_found_error")
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY_BYTES:
            self._error(
                413, "the request body must be a JSON object under 8 MiB", "invalid_request_error"
            )
            return
        served = self.server_model
        try:
            body = json.loads(self.rfile.read(length) or b"null")
            echo = kinds[path] == "completion" and isinstance(body, dict) and body.get("echo")
            top = echo_request(body) if echo else None
            if top is not None:
                # max_tokens 0 is valid for scoring, not for generation settings.
                scoring = {k: v for k, v in body.items() if k not in ("max_tokens", "logprobs")}
                request = parse_request("completion", scoring, *self._served())
                self._send_json(200, self._echo(request, top, int(body.get("max_tokens", 16))))
                return
            request = parse_request(kinds[path], body, *self._served())
            if request.stream:
                self._stream(request)
            else:
                [result] = generate_batch(served.loaded, [request.prompt], request.settings)
                self._send_json(200, response_body(request, result))
        except (BadInputError, json.JSONDecodeError) as exc:
            self._error(400, str(exc), "invalid_request_error")
        except EngineError as exc:
            self._error(500, str(exc), "server_error")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away mid-answer
        except Exception as exc:  # one line to the client instead of a traceback in the server
            first = (str(exc).splitlines() or [type(exc).__name__])[0]
            self._error(500, f"generation failed: {first}", "server_error")

    def _served(self) -> tuple[LoadedModel, str, PromptVersion | None]:
        served = self.server_model
        return served.loaded, served.name, served.version

    def _echo(self, request: ServeRequest, top: int, new_tokens: int) -> dict[str, Any]:
        """A scoring request: the prompt's token log-probabilities (see `prompt_logprobs`)."""
        if self.server_model.version is not None:
            raise BadInputError(
                "echo scoring scores the prompt as sent; it is not available with --prompt"
            )
        scored = score_prompt(self.server_model.loaded, request.prompt, top, new_tokens)
        body = response_body(
            request,
            GenerationResult(
                scored["text"], scored["tokens_in"], scored["tokens_out"], 0.0, "length"
            ),
        )
        body["choices"][0]["logprobs"] = scored["logprobs"]
        return body

    def _stream(self, request: ServeRequest) -> None:
        loaded = self.server_model.loaded
        chunks = stream_generate(loaded, request.prompt, request.settings)
        # The first chunk is awaited before the headers, so a bad request still gets a 400.
        first = next(chunks)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        response_id = new_id(request.kind)
        last = first
        try:
            for chunk in itertools.chain([first], chunks):
                last = chunk
                if chunk.text:
                    self._event(chunk_body(request, response_id, chunk.text, None))
            self._event(chunk_body(request, response_id, None, last.finish_reason or "stop"))
            if request.include_usage:
                tokens_in = len(prompt_token_ids(loaded.tokenizer, request.prompt))
                closing = chunk_body(request, response_id, None, None)
                closing["choices"] = []
                closing["usage"] = usage(tokens_in, last.tokens_out)
                self._event(closing)
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            close = getattr(chunks, "close", None)  # a generator: closing stops generating
            if close is not None:
                close()

    def _event(self, body: dict[str, Any]) -> None:
        self.wfile.write(b"data: " + json.dumps(body).encode() + b"\n\n")
        self.wfile.flush()
