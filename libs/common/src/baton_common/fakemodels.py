"""Local stand-ins for the model APIs Baton calls, for tests and benchmarks: real HTTP on
127.0.0.1, the real SDK on the other end (google-genai, openai), scripted answers.

- ``FakeGemini``: ``POST /v1(beta)/models/<model>:generateContent`` answers the next scripted
  (status, body), a 404 without one.
- ``FakeOpenAI``: ``POST /v1/chat/completions``. A request that asks for JSON
  (``response_format``) takes the next scripted JSON answer (a plan, or anything a test wants the
  planner to see, invalid plans included); a request for text takes the next scripted text or,
  with none left, an answer that quotes the prompt. With ``schemas_refused`` it answers a
  ``json_schema`` response format with the 400 of a server that does not do JSON Schema.

``NEWS_PLAN`` and ``UNKNOWN_TOOL_PLAN`` are a valid plan and one the validator rejects, for
scripts.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = tuple[int, dict[str, Any]]
OPENAI_PATH = "/v1/chat/completions"
GEMINI_PATH = re.compile(r"^/v1(?:beta)?/models/[^/:]+:generateContent$")  # 3.x: /v1
NEWS_PLAN: dict[str, Any] = {
    "name": "news digest",
    "steps": [
        {"id": "collect_news", "tool": "mock.agent", "input": {"task": "collect the news"}},
        {
            "id": "summarise",
            "tool": "llm.generate",
            "input": {"prompt": "Summarise", "context": ["${steps.collect_news.output.result}"]},
            "depends_on": ["collect_news"],
        },
    ],
    "outputs": {"summary": "${steps.summarise.output.text}"},
}
UNKNOWN_TOOL_PLAN: dict[str, Any] = {
    "steps": [{"id": "scrape", "tool": "web.scrape", "input": {"url": "https://x"}}]
}


@contextmanager
def serving(server: ThreadingHTTPServer) -> Iterator[ThreadingHTTPServer]:
    """``server`` answering from a thread while the block runs, then shut down."""
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


class LocalHandler(BaseHTTPRequestHandler):
    """A test server's handler: ``body()`` reads the request's, ``answer()`` sends a whole
    response (its Content-Length counted), and nothing is logged per request."""

    def body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def answer(
        self, status: int = 200, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        return  # keep test output quiet


class ScriptedServer(ThreadingHTTPServer):
    """A local JSON-over-HTTP server: records each POST and answers what ``answer`` says."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[dict[str, Any]] = []  # path, the headers that matter, body
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [r["body"] for r in self.requests]

    def record(self, path: str, headers: Any, body: dict[str, Any]) -> None:
        with self.lock:
            self.requests.append({"path": path, "body": body})

    def answer(self, path: str, body: dict[str, Any]) -> Reply:
        raise NotImplementedError

    def running(self) -> AbstractContextManager[Any]:
        """This server answering from a thread while the block runs, then shut down."""
        return serving(self)


class _Handler(LocalHandler):
    server: ScriptedServer
    disable_nagle_algorithm = True  # headers and body go out at once, not 40 ms apart

    def do_POST(self) -> None:
        body = json.loads(self.body() or b"{}")
        self.server.record(self.path, self.headers, body)
        status, reply = self.server.answer(self.path, body)
        self.answer(status, json.dumps(reply).encode(), {"Content-Type": "application/json"})


class FakeGemini(ScriptedServer):
    """Answers each generateContent call with the next scripted (status, body)."""

    def __init__(self) -> None:
        super().__init__()
        self.replies: list[Reply] = []

    def record(self, path: str, headers: Any, body: dict[str, Any]) -> None:
        with self.lock:
            self.requests.append({"path": path, "key": headers.get("x-goog-api-key"), "body": body})

    def reply_text(self, text: str) -> None:
        candidate = {
            "content": {"role": "model", "parts": [{"text": text}]},
            "finishReason": "STOP",
        }
        self.replies.append((200, {"candidates": [candidate], "modelVersion": "gemini-2.5-flash"}))

    def reply_plan(self, plan: Any) -> None:
        self.reply_text(plan if isinstance(plan, str) else json.dumps(plan))

    def reply_error(self, status: int, message: str, reason: str = "ERROR") -> None:
        self.replies.append(
            (status, {"error": {"code": status, "message": message, "status": reason}})
        )

    def prompt_of(self, i: int) -> str:
        return "".join(
            p.get("text", "") for c in self.requests[i]["body"]["contents"] for p in c["parts"]
        )

    def answer(self, path: str, body: dict[str, Any]) -> Reply:
        with self.lock:
            if GEMINI_PATH.match(path) and self.replies:
                return self.replies.pop(0)
        return 404, {"error": {"code": 404, "message": f"no route {path}", "status": "NOT_FOUND"}}


class FakeOpenAI(ScriptedServer):
    """Answers chat completions from scripts (JSON answers and text answers apart)."""

    def __init__(self, schemas_refused: bool = False) -> None:
        super().__init__()
        self.schemas_refused = schemas_refused
        self.json_replies: list[tuple[int, Any]] = []  # (status, answer or error message)
        self.text_replies: list[str] = []

    @property
    def url(self) -> str:
        """What OPENAI_BASE_URL is set to."""
        return f"{super().url}/v1"

    def record(self, path: str, headers: Any, body: dict[str, Any]) -> None:
        with self.lock:
            self.requests.append(
                {"path": path, "authorization": headers.get("Authorization"), "body": body}
            )

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

    def answer(self, path: str, body: dict[str, Any]) -> Reply:
        if path != OPENAI_PATH:
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


def _completion(body: dict[str, Any], text: str) -> dict[str, Any]:
    said = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
    written = len(text.split())
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": body.get("model", "fake"),
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
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


def fake_openai_server(schemas_refused: bool = False) -> Any:
    """A ``FakeOpenAI`` answering from a thread while the ``with`` block runs."""
    return FakeOpenAI(schemas_refused).running()
