"""A local stand-in for an OpenAI-compatible server (``POST /v1/chat/completions``) for tests and
benchmarks: real HTTP on 127.0.0.1, the real ``openai`` SDK on the other end, scripted answers.

A request that asks for JSON (``response_format``) takes the next scripted JSON answer (a plan,
or anything else a test wants the planner to see, invalid plans included); a request for text
takes the next scripted text, or, with none left, an answer that quotes the prompt. With
``schemas_refused`` it answers a ``json_schema`` response format with the 400 of a server that
does not do JSON Schema (as Ollama's or llama.cpp's older builds do).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PATH = "/v1/chat/completions"


class FakeOpenAI(ThreadingHTTPServer):
    """Answers chat completions from scripts and records every request it took."""

    daemon_threads = True

    def __init__(self, schemas_refused: bool = False) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.schemas_refused = schemas_refused
        self.json_replies: list[tuple[int, Any]] = []  # (status, answer or error message)
        self.text_replies: list[str] = []
        self.requests: list[dict[str, Any]] = []  # path, authorization, body
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        """What OPENAI_BASE_URL is set to."""
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def reply_json(self, *answers: Any) -> None:
        """The next JSON answers (a dict is sent as JSON, a str as it is: not JSON, say)."""
        with self.lock:
            self.json_replies += [(200, a) for a in answers]

    def reply_text(self, *texts: str) -> None:
        with self.lock:
            self.text_replies += texts

    def reply_error(self, status: int, message: str) -> None:
        """The next JSON request is answered with this HTTP error."""
        with self.lock:
            self.json_replies.append((status, message))

    def prompt_of(self, i: int) -> str:
        """What the i-th request said to the model (its messages' text)."""
        return "\n".join(m.get("content", "") for m in self.requests[i]["body"]["messages"])

    def answer(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """The status and body for one request."""
        if path != PATH:
            return 404, _error(f"no route {path}")
        form = (body.get("response_format") or {}).get("type")
        if form == "json_schema" and self.schemas_refused:
            return 400, _error("response_format json_schema is not supported by this server")
        with self.lock:
            if form is None:
                text = self.text_replies.pop(0) if self.text_replies else _echo(body)
                return 200, _completion(body, text)
            if not self.json_replies:
                return 500, _error("the fake has no scripted JSON answer left")
            status, scripted = self.json_replies.pop(0)
        if status != 200:
            return status, _error(str(scripted))
        text = scripted if isinstance(scripted, str) else json.dumps(scripted)
        return 200, _completion(body, text)


class _Handler(BaseHTTPRequestHandler):
    server: FakeOpenAI
    disable_nagle_algorithm = True  # headers and body go out at once, not 40 ms apart

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.loads(raw or b"{}")
        auth = self.headers.get("Authorization")
        with self.server.lock:
            self.server.requests.append({"path": self.path, "authorization": auth, "body": body})
        status, reply = self.server.answer(self.path, body)
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_: Any) -> None:
        return  # keep test output quiet


def _completion(body: dict[str, Any], text: str) -> dict[str, Any]:
    said = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
    written = len(text.split())
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": body.get("model", "fake"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        # words, not tokens: a server's own count, which the client must take as given
        "usage": {
            "prompt_tokens": said,
            "completion_tokens": written,
            "total_tokens": said + written,
        },
    }


def _echo(body: dict[str, Any]) -> str:
    last = body.get("messages", [{}])[-1].get("content", "")
    return f"fake model answer to: {' '.join(str(last).split())[:120]}"


def _error(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error"}}


@contextmanager
def fake_openai_server(schemas_refused: bool = False) -> Iterator[FakeOpenAI]:
    """A fake answering from a thread while the block runs."""
    server = FakeOpenAI(schemas_refused)
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
