"""The CLI's client of the engine: where the gateway is, which key to send, and the calls.

Every subcommand talks to a running engine through this module only, so finding the engine
(``baton up``'s runtime file, ``$BATON_URL``) and reading its errors is written once.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx

from baton_cli.errors import CliError

OWNER_KEY_FILE = "owner.key"


def data_dir() -> Path:
    return Path(os.environ.get("BATON_DATA_DIR", ".baton"))


def runtime_info() -> dict[str, Any]:
    path = data_dir() / "runtime.json"
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def gateway_url(given: str | None) -> str:
    if given:
        return given.rstrip("/")
    if env := os.environ.get("BATON_URL"):
        return env.rstrip("/")
    if info := runtime_info().get("gateway"):
        return str(info)
    return f"http://127.0.0.1:{os.environ.get('BATON_HTTP_PORT', '8080')}"


def readiness(url: str) -> tuple[int, str]:
    """A ``/readyz`` answer: (HTTP status, its status word), (0, why) when nothing answers."""
    try:
        resp = httpx.get(f"{url}/readyz", timeout=3)
    except httpx.HTTPError as exc:
        return 0, f"unreachable ({type(exc).__name__})"
    try:
        word = str(resp.json().get("status", ""))
    except ValueError:
        word = resp.text[:80]
    return resp.status_code, word


def apply_runtime_env() -> None:
    """Commands that talk to the store directly find the embedded servers of ``baton up``."""
    info = runtime_info()
    if info.get("database_url"):
        os.environ.setdefault("DATABASE_URL", info["database_url"])
    if info.get("nats_url"):
        os.environ.setdefault("NATS_URL", info["nats_url"])
    if info.get("nats_tls_ca"):
        os.environ.setdefault("NATS_TLS_CA", info["nats_tls_ca"])


def api_key() -> str | None:
    """$BATON_API_KEY, else $BATON_API_TOKEN, else the owner key `baton up` saved."""
    for name in ("BATON_API_KEY", "BATON_API_TOKEN"):
        if key := os.environ.get(name):
            return key
    try:
        return (data_dir() / OWNER_KEY_FILE).read_text().strip() or None
    except OSError:
        return None


def auth_headers() -> dict[str, str]:
    key = api_key()
    return {"Authorization": f"Bearer {key}"} if key else {}


def call(
    method: str, url: str, path: str, body: Any = None, params: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A JSON call to the gateway: its reply, or a ``CliError`` saying what went wrong."""
    try:
        resp = httpx.request(
            method, url + path, json=body, params=params, headers=auth_headers(), timeout=60
        )
    except httpx.HTTPError as exc:
        raise _unreachable(url, exc) from None
    return _answer(resp)


async def call_async(
    method: str, url: str, path: str, body: Any = None, params: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``call`` for a caller on an event loop (``baton mcp serve``)."""
    try:
        async with httpx.AsyncClient(headers=auth_headers(), timeout=60) as http:
            resp = await http.request(method, url + path, json=body, params=params)
    except httpx.HTTPError as exc:
        raise _unreachable(url, exc) from None
    return _answer(resp)


def _unreachable(url: str, exc: Exception) -> CliError:
    return CliError(f"cannot reach the gateway at {url} ({exc}); is `baton up` running?")


def _answer(resp: httpx.Response) -> dict[str, Any]:
    """The reply's JSON, or a ``CliError`` with the gateway's reason."""
    if resp.status_code >= 400:
        detail = _detail(resp)
        if resp.status_code == 401 and api_key() is None:
            detail = f"{detail} (set BATON_API_KEY, or run `baton up` once to create an owner key)"
        raise CliError(f"{resp.status_code}: {detail}")
    return dict(resp.json()) if resp.content else {}


def signin_link(url: str, key: str | None = None) -> str:
    """A one-time dashboard link (valid once, for 10 minutes): the gateway makes the code for
    the calling key, so the link never carries the key itself."""
    headers = {"Authorization": f"Bearer {key}"} if key else auth_headers()
    try:
        resp = httpx.post(url + "/v1/signin-codes", headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        raise CliError(
            f"cannot reach the gateway at {url} ({exc}); is `baton up` running?"
        ) from None
    if resp.status_code != 201:
        raise CliError(f"no sign-in code: {resp.status_code} {resp.text[:300]}")
    return url + str(resp.json()["path"])


def call_text(
    method: str, url: str, path: str, content: str | None = None, content_type: str | None = None
) -> str:
    """A call whose body and answer are text, not JSON (an ICS document, say)."""
    headers = {**auth_headers(), **({"Content-Type": content_type} if content_type else {})}
    body = content.encode() if content is not None else None
    try:
        resp = httpx.request(method, url + path, content=body, headers=headers, timeout=60)
    except httpx.HTTPError as exc:
        raise CliError(
            f"cannot reach the gateway at {url} ({exc}); is `baton up` running?"
        ) from None
    if resp.status_code >= 400:
        raise CliError(f"{resp.status_code}: {_detail(resp)}")
    return resp.text


def _detail(resp: httpx.Response) -> Any:
    """The gateway's reason (``detail``), or the body when it is not JSON."""
    try:
        return resp.json().get("detail")
    except ValueError:
        return resp.text


class StreamLost(CliError):
    """A server-sent event stream could not be opened or broke off (the gateway restarted, say);
    the message is the transport's reason, for the caller to word."""


@contextlib.contextmanager
def stream_lines(
    url: str,
    path: str,
    params: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    read_timeout_s: float | None = None,
) -> Iterator[Iterator[str]]:
    """The lines of a server-sent event stream; ``StreamLost`` when it cannot be read (an error
    status included). ``read_timeout_s``: None waits for the next line as long as it takes."""
    timeout = httpx.Timeout(10 if read_timeout_s is not None else 30, read=read_timeout_s)
    try:
        with httpx.stream(
            "GET",
            url + path,
            params=params,
            headers={**(headers or {}), **auth_headers()},
            timeout=timeout,
        ) as resp:
            resp.raise_for_status()
            yield resp.iter_lines()
    except httpx.HTTPError as exc:
        raise StreamLost(str(exc)) from None


async def events_async(url: str, path: str, after: str | None = None) -> AsyncIterator[SseEvent]:
    """The events of a server-sent event stream, ``after`` (an event id) if given, until it
    ends; ``StreamLost`` when it cannot be read."""
    headers = {**auth_headers(), **({"Last-Event-ID": after} if after else {})}
    event = SseEvent()
    try:
        async with (
            httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(30, read=None)) as http,
            http.stream("GET", url + path) as resp,
        ):
            resp.raise_for_status()
            async for line in resp.aiter_lines():
                if line:
                    event.add(line)
                elif event.data:
                    yield event
                    event = SseEvent()
    except httpx.HTTPError as exc:
        raise StreamLost(str(exc)) from None


class SseEvent:
    """One event of a server-sent event stream: its ``id``, ``event`` name and ``data``."""

    def __init__(self) -> None:
        self.id: str | None = None
        self.event = "message"
        self.data = ""

    def add(self, line: str) -> None:
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            self.data = f"{self.data}\n{value}" if self.data else value
        elif field == "id":
            self.id = value
        elif field == "event":
            self.event = value
