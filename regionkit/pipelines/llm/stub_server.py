"""A local OpenAI-compatible chat server that answers from a Python function.

For dry runs of a recipe's LLM path without a model, for the test suite (which drives the real
`openai` client through it: rate limits, server errors, timeouts, malformed answers) and for
`bench/llm_throughput.py`. It serves `POST /v1/chat/completions` on 127.0.0.1, one thread per
connection, and counts the requests it receives.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """What the server sends for one request.

    Attributes:
        content: the assistant message (a JSON text for structured output).
        status: the HTTP status; not 200 sends an OpenAI-style error body.
        headers: extra headers (`retry-after`).
        delay: seconds to wait before answering.
        finish_reason: the choice's finish reason.
        raw: a body to send as it is, instead of a completion.
    """

    content: str = ""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    finish_reason: str = "stop"
    raw: bytes | None = None


Responder = Callable[[dict[str, Any]], Reply]
"""Maps a request body (model, messages, response_format, ...) to the reply."""


class StubChatServer:
    """Serves `responder`'s replies at `base_url` until `stop` (or the `with` block ends).

    Attributes:
        requests: every request body received, in order of arrival.
    """

    def __init__(self, responder: Responder) -> None:
        self.responder = responder
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> StubChatServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> StubChatServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _record(self, body: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512  # the default 5 refuses a burst of clients connecting at once


def completion_body(reply: Reply, model: str, number: int) -> dict[str, Any]:
    """A chat completion as OpenAI's API returns it."""
    words = len(reply.content.split())
    return {
        "id": f"chatcmpl-stub-{number}",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply.content},
                "finish_reason": reply.finish_reason,
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": words, "total_tokens": 10 + words},
    }


def _handler_for(server: StubChatServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep connections open, as the client's pool expects
        disable_nagle_algorithm = True  # or each small answer waits for the next packet

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", 0))
            body = json.loads(self.rfile.read(length) or b"{}")
            if not self.path.rstrip("/").endswith("/chat/completions"):
                self._send(404, {"error": {"message": f"no route {self.path}"}})
                return
            server._record(body)
            reply = server.responder(body)
            if reply.delay:
                time.sleep(reply.delay)
            if reply.raw is not None:
                self._send_bytes(reply.status, reply.raw, reply.headers)
            elif reply.status != 200:
                error = {"error": {"message": reply.content or "stub error", "type": "stub"}}
                self._send(reply.status, error, reply.headers)
            else:
                self._send(200, completion_body(reply, body.get("model", ""), len(server.requests)))

        def _send(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
            self._send_bytes(status, json.dumps(data).encode(), headers or {})

        def _send_bytes(self, status: int, data: bytes, headers: dict[str, str]) -> None:
            try:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting (a timeout test)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    return Handler
