"""The built-in tools against a real local HTTP server and a real sandbox folder."""

from __future__ import annotations

import dataclasses
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from baton_common.catalogue import DEFAULT_CATALOGUE
from baton_common.egress import EgressGuard, parse_allow
from baton_executor.tools.base import ToolContext, ToolError
from baton_executor.tools.files import FilesDelete, FilesRead, FilesWrite
from baton_executor.tools.http import MAX_TEXT_BYTES, HttpRequest
from baton_executor.tools.misc import MockAgent, TimeSleep
from baton_executor.tools.registry import builtin_tools, get_tool
from baton_executor.tools.text import JsonQuery, TextTemplate
from baton_executor.worker import SERVED_ELSEWHERE

LOOPBACK = EgressGuard(
    parse_allow("127.0.0.1")
)  # the test servers listen there: allowed on purpose


def make_ctx(
    attempt: int = 1, key: str = "exec-1:step-a", root: Path | None = None, timeout_s: float = 5.0
) -> ToolContext:
    """A context for step ``step-a``; the key stays the same across its attempts."""
    extra = {"sandbox_root": root} if root is not None else {}
    return ToolContext(
        execution_id="exec-1",
        step_id="step-a",
        attempt=attempt,
        idempotency_key=key,
        timeout_s=timeout_s,
        egress=LOOPBACK,
        **extra,
    )


# --- http.request ----------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    """Routes: /status/<n>, /json, /text, /big, /slow; every request is recorded."""

    # Class-level on purpose: handler instances are per request, the tests read this list.
    seen: list[dict[str, Any]] = []

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        self.seen.append(
            {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
        )
        if self.path.startswith("/status/"):
            return self._reply(int(self.path.rsplit("/", 1)[1]), b"status body", "text/plain")
        if self.path == "/slow":
            time.sleep(0.5)
        if self.path == "/big":
            return self._reply(200, b"x" * (MAX_TEXT_BYTES + 10), "text/plain")
        if self.path == "/text":
            return self._reply(200, b'{"looks": "like json"}', "text/plain")
        payload = {"method": self.command, "body": body, "key": self.headers.get("Idempotency-Key")}
        self._reply(200, json.dumps(payload).encode(), "application/json")

    def _reply(self, status: int, data: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = _handle


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """A real HTTP server on a free local port, in a background thread."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def seen() -> list[dict[str, Any]]:
    """The requests the server received during this test."""
    _Handler.seen.clear()
    return _Handler.seen


async def test_idempotency_key_is_sent_and_stable_across_attempts(server, seen) -> None:
    tool = HttpRequest()
    for attempt in (1, 2):
        # A caller-supplied key must not override the step's.
        input = {
            "url": f"{server}/json",
            "method": "POST",
            "json": {"a": 1},
            "headers": {"idempotency-key": "mine"},
        }
        out = await tool.run(input, make_ctx(attempt=attempt))
        assert out["json"]["key"] == "exec-1:step-a"
    keys = [r["headers"]["Idempotency-Key"] for r in seen]
    assert keys == ["exec-1:step-a", "exec-1:step-a"]
    assert json.loads(seen[0]["body"]) == {"a": 1}


async def test_get_parses_json_and_returns_headers(server, seen) -> None:
    out = await HttpRequest().run({"url": f"{server}/json"}, make_ctx())
    assert out["status"] == 200
    assert out["json"]["method"] == "GET"
    assert json.loads(out["text"]) == out["json"]
    assert out["headers"]["content-type"] == "application/json"


async def test_body_is_sent_and_non_json_is_not_parsed(server, seen) -> None:
    out = await HttpRequest().run(
        {"url": f"{server}/text", "method": "PUT", "body": "hi"}, make_ctx()
    )
    assert out["json"] is None
    assert out["text"] == '{"looks": "like json"}'
    assert seen[0]["body"] == "hi"


@pytest.mark.parametrize(
    ("status", "retryable"), [(500, True), (503, True), (429, True), (404, False), (400, False)]
)
async def test_status_mapping(server, status: int, retryable: bool) -> None:
    with pytest.raises(ToolError) as err:
        await HttpRequest().run({"url": f"{server}/status/{status}"}, make_ctx())
    assert err.value.retryable is retryable
    assert str(status) in str(err.value)


async def test_expect_status(server) -> None:
    out = await HttpRequest().run(
        {"url": f"{server}/status/404", "expect_status": [404]}, make_ctx()
    )
    assert out["status"] == 404
    with pytest.raises(ToolError) as err:
        await HttpRequest().run({"url": f"{server}/json", "expect_status": [201]}, make_ctx())
    assert err.value.retryable is False


async def test_connection_refused_is_retryable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # The socket is closed and never listened on, so the port refuses connections.
    with pytest.raises(ToolError) as err:
        await HttpRequest().run({"url": f"http://127.0.0.1:{port}/"}, make_ctx())
    assert err.value.retryable is True


async def test_timeout_from_input_is_retryable(server) -> None:
    with pytest.raises(ToolError) as err:
        await HttpRequest().run({"url": f"{server}/slow", "timeout_s": 0.1}, make_ctx())
    assert err.value.retryable is True
    assert "timed out" in str(err.value)


async def test_text_is_truncated_to_half_the_step_output_limit(server) -> None:
    out = await HttpRequest().run({"url": f"{server}/big"}, make_ctx())
    assert len(out["text"]) == MAX_TEXT_BYTES and out["truncated"] is True
    small = await HttpRequest().run({"url": f"{server}/json"}, make_ctx())
    assert "truncated" not in small


async def test_a_loopback_url_is_refused_for_good_unless_allowlisted(server) -> None:
    ctx = dataclasses.replace(make_ctx(), egress=EgressGuard())
    with pytest.raises(ToolError) as err:
        await HttpRequest().run({"url": f"{server}/json"}, ctx)
    assert err.value.retryable is False
    assert "egress refused: 127.0.0.1 is a loopback address" in str(err.value)
    assert "BATON_EGRESS_ALLOW" in str(err.value)


# --- text.template and json.query ------------------------------------------------------------


async def test_template_fills_values_and_json_encodes_non_strings() -> None:
    input = {
        "template": "Hi {name}, {n} items {{literal}} {tags} {user.city} {n:03d}",
        "values": {"name": "Ada", "n": 3, "tags": ["a", "b"], "user": {"city": "Oslo"}},
    }
    out = await TextTemplate().run(input, make_ctx())
    assert out == {"text": 'Hi Ada, 3 items {literal} ["a", "b"] Oslo 003'}


async def test_template_missing_key_names_it() -> None:
    with pytest.raises(ToolError, match="missing") as err:
        await TextTemplate().run({"template": "x {missing}", "values": {}}, make_ctx())
    assert err.value.retryable is False


@pytest.mark.parametrize("template", ["{name.__class__}", "{", "{}"])
async def test_template_rejects_attribute_access_and_bad_syntax(template: str) -> None:
    with pytest.raises(ToolError) as err:
        await TextTemplate().run({"template": template, "values": {"name": "x"}}, make_ctx())
    assert err.value.retryable is False


async def test_json_query() -> None:
    data = {"items": [{"title": "first"}, {"title": "second"}], "a": {"b": {"c": 0}}}
    tool = JsonQuery()
    assert await tool.run({"data": data, "path": "items[1].title"}, make_ctx()) == {
        "result": "second",
        "found": True,
    }
    assert await tool.run({"data": data, "path": "a.b.c"}, make_ctx()) == {
        "result": 0,
        "found": True,
    }
    assert await tool.run({"data": data, "path": "items[5].title"}, make_ctx()) == {
        "result": None,
        "found": False,
    }
    assert await tool.run({"data": data, "path": "a.x"}, make_ctx()) == {
        "result": None,
        "found": False,
    }


# --- files.* ---------------------------------------------------------------------------------


async def test_write_read_delete_round_trip(tmp_path: Path) -> None:
    ctx = make_ctx(root=tmp_path)
    out = await FilesWrite().run({"path": "reports/today.txt", "content": "héllo"}, ctx)
    assert out == {"path": "reports/today.txt", "bytes": 6}
    assert (tmp_path / "default" / "reports" / "today.txt").read_text() == "héllo"
    assert await FilesRead().run({"path": "reports/today.txt"}, ctx) == {
        "path": "reports/today.txt",
        "content": "héllo",
        "bytes": 6,
    }
    # A retry of the same write leaves the same file and no temp files behind.
    await FilesWrite().run(
        {"path": "reports/today.txt", "content": "héllo"}, make_ctx(attempt=2, root=tmp_path)
    )
    assert [p.name for p in (tmp_path / "default" / "reports").iterdir()] == ["today.txt"]
    assert await FilesDelete().run({"path": "reports/today.txt"}, ctx) == {
        "path": "reports/today.txt",
        "deleted": True,
    }
    assert await FilesDelete().run({"path": "reports/today.txt"}, ctx) == {
        "path": "reports/today.txt",
        "deleted": False,
    }


async def test_read_missing_file_is_not_retryable(tmp_path: Path) -> None:
    with pytest.raises(ToolError, match=r"nope\.txt") as err:
        await FilesRead().run({"path": "nope.txt"}, make_ctx(root=tmp_path))
    assert err.value.retryable is False


async def test_append_is_idempotent_per_key(tmp_path: Path) -> None:
    write, read = FilesWrite(), FilesRead()
    input = {"path": "log.txt", "content": "line\n", "append": True}
    first = await write.run(input, make_ctx(attempt=1, key="k1", root=tmp_path))
    retry = await write.run(input, make_ctx(attempt=2, key="k1", root=tmp_path))
    assert first == retry == {"path": "log.txt", "bytes": 5}
    assert (await read.run({"path": "log.txt"}, make_ctx(root=tmp_path)))["content"] == "line\n"
    await write.run(input, make_ctx(key="k2", root=tmp_path))
    assert (await read.run({"path": "log.txt"}, make_ctx(root=tmp_path)))[
        "content"
    ] == "line\nline\n"


@pytest.mark.parametrize(
    "path",
    ["../x", "/etc/passwd", "a/../../x", "link/passwd", "outside-file", "", ".baton-idempotency"],
)
async def test_escapes_are_rejected(tmp_path: Path, path: str) -> None:
    sandbox = tmp_path / "sb" / "default"
    sandbox.mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "passwd").write_text("secret")
    (sandbox / "link").symlink_to(outside)
    (sandbox / "outside-file").symlink_to(outside / "passwd")
    ctx = make_ctx(root=tmp_path / "sb")
    for tool, input in [
        (FilesRead(), {"path": path}),
        (FilesWrite(), {"path": path, "content": "x"}),
        (FilesDelete(), {"path": path}),
    ]:
        with pytest.raises(ToolError) as err:
            await tool.run(input, ctx)
        assert err.value.retryable is False
        assert repr(path) in str(err.value)
    assert (outside / "passwd").read_text() == "secret"


async def test_sandbox_is_created(tmp_path: Path) -> None:
    ctx = make_ctx(root=tmp_path / "new")
    assert await FilesDelete().run({"path": "x"}, ctx) == {"path": "x", "deleted": False}
    assert ctx.sandbox.is_dir()


# --- time.sleep and mock.agent ---------------------------------------------------------------


async def test_sleep() -> None:
    start = time.monotonic()
    assert await TimeSleep().run({"seconds": 0.05}, make_ctx()) == {"slept": 0.05}
    assert time.monotonic() - start >= 0.05


async def test_mock_agent_fail_times_then_succeeds() -> None:
    tool = MockAgent()
    input = {"task": "collect prices", "fail_times": 2}
    for attempt in (1, 2):
        with pytest.raises(ToolError) as err:
            await tool.run(input, make_ctx(attempt=attempt))
        assert err.value.retryable is True
    out = await tool.run(input, make_ctx(attempt=3))
    assert out == {"result": "done: collect prices", "task": "collect prices", "attempt": 3}


async def test_mock_agent_output_and_latency() -> None:
    start = time.monotonic()
    out = await MockAgent().run({"task": "t", "output": {"x": 1}, "latency_ms": 30}, make_ctx())
    assert out["result"] == {"x": 1}
    assert time.monotonic() - start >= 0.03


async def _outcomes(key: str, rate: float) -> list[bool]:
    """Whether attempts 1..50 of the step with ``key`` fail."""
    results = []
    for attempt in range(1, 51):
        try:
            await MockAgent().run(
                {"task": "t", "failure_rate": rate}, make_ctx(attempt=attempt, key=key)
            )
            results.append(False)
        except ToolError as err:
            assert err.retryable is True
            results.append(True)
    return results


async def test_mock_agent_failure_rate_is_deterministic() -> None:
    first = await _outcomes("exec-1:step-a", 0.5)
    assert first == await _outcomes("exec-1:step-a", 0.5)
    assert 5 < sum(first) < 45  # roughly half, and both outcomes occur
    assert first != await _outcomes("exec-2:step-a", 0.5)
    assert not any(await _outcomes("k", 0.0))
    assert all(await _outcomes("k", 1.0))


# --- registry --------------------------------------------------------------------------------


def test_registry_has_every_builtin_with_its_catalogue_spec() -> None:
    tools = builtin_tools()
    served = {n for n in DEFAULT_CATALOGUE.names() if n.startswith(SERVED_ELSEWHERE)}
    expected = set(DEFAULT_CATALOGUE.names()) - {"llm.generate"} - served
    assert expected <= set(tools)
    for name, tool in tools.items():
        assert tool.spec is DEFAULT_CATALOGUE.get(name)
    assert get_tool("json.query").spec.name == "json.query"
    with pytest.raises(KeyError, match=r"no\.such"):
        get_tool("no.such")
