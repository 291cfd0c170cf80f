"""An ASGI middleware that refuses requests whose text no store can hold: JSON bodies whose strings
are not Unicode text, and URLs naming a NUL character.

JSON may spell a UTF-16 surrogate on its own (``"\\udb5e"``); Python's parser accepts it and
gives a string that no UTF-8 encoder takes, so the request failed later, wherever the text was
first encoded (an event, a bus message, a log line) with a 500 and, worse, after part of the work.
Such a body is refused at the door with a 400 that names the escape. A body without a surrogate
escape (the raw bytes tell) costs one byte scan.
"""

from __future__ import annotations

import json
import re
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]

# A ``\\u`` escape of a surrogate code point (D800-DFFF); an escaped backslash before it makes it
# literal text, which the parse below tells apart.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def lone_surrogate(body: bytes) -> str | None:
    """The first lone surrogate in ``body``'s strings (keys included), as ``\\uXXXX``, or None.
    A body that is not JSON is left to the route's own parser."""
    if not _SURROGATE_ESCAPE.search(body):
        return None
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return None
    stack: list[Any] = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, str):
            try:
                node.encode("utf-8")
            except UnicodeEncodeError as exc:
                return f"\\u{ord(node[exc.start]):04x}"
    return None


_SURROGATE = re.compile("[\ud800-\udfff]")


def loads_unicode(body: bytes) -> Any:
    """``json.loads(body)`` with every lone surrogate in its strings and keys replaced by U+FFFD
    (the walk only when the raw bytes hold a surrogate escape); raises as ``json.loads`` does."""
    value = json.loads(body)
    return _unicode_only(value) if _SURROGATE_ESCAPE.search(body) else value


def _unicode_only(value: Any) -> Any:
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_unicode_only(k): _unicode_only(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unicode_only(v) for v in value]
    return value


class UnicodeBodies:
    """Wraps an ASGI app: a JSON request body holding a lone surrogate gets a 400 with the reason;
    any other body reaches the app unchanged. Place it inside the body limit, which bounds what
    is buffered here."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and _nul_in_url(scope):
            await _answer(send, "a NUL character (%00) in the URL is not accepted", 422)
            return
        if scope["type"] != "http" or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message: Message = await receive()
            if message["type"] != "http.request":  # the client left: let the app see it
                await self.app(scope, _replay([message]), send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        surrogate = lone_surrogate(body)
        if surrogate is not None:
            await _refuse(send, surrogate)
            return
        await self.app(scope, _replay([{"type": "http.request", "body": body}], receive), send)


def _nul_in_url(scope: Scope) -> bool:
    """No stored text can hold NUL (PostgreSQL refuses it): a path or query naming one is a
    request for nothing that exists."""
    query = scope.get("query_string") or b""
    return "\x00" in scope.get("path", "") or b"%00" in query or b"\x00" in query


def _is_json(scope: Scope) -> bool:
    for name, value in scope.get("headers") or ():
        if name == b"content-type":
            kind = value.split(b";", 1)[0].strip().lower()
            return kind == b"application/json" or kind.endswith(b"+json")
    return False


def _replay(messages: list[Message], then: Any = None) -> Any:
    async def receive() -> Message:
        if messages:
            return messages.pop(0)
        if then is None:
            return {"type": "http.disconnect"}
        return await then()

    return receive


async def _refuse(send: Any, surrogate: str) -> None:
    await _answer(
        send,
        f"malformed JSON: a string holds a lone UTF-16 surrogate ({surrogate}), which is not "
        "Unicode text; send the character itself or a surrogate pair",
    )


async def _answer(send: Any, detail: str, status: int = 400) -> None:
    """An answer of ``status`` with ``detail`` as its reason (a parameter no route can take is
    a 422, as FastAPI's own checks of parameters answer)."""
    body = json.dumps({"detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
