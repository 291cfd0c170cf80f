"""An ASGI middleware that refuses request bodies over a limit with 413, before any route reads them.

A declared ``Content-Length`` over the limit is refused at once; a body without one (chunked) is
counted as the application reads it, and refused as soon as the count passes the limit, so an
endless body costs at most ``limit`` bytes of memory.
"""

from __future__ import annotations

import json
from typing import Any

from baton_common.limits import human

Scope = dict[str, Any]
Message = dict[str, Any]


class BodyTooLarge(Exception):
    """Raised inside ``receive`` when a streamed body passes the limit."""


class BodyLimit:
    """Wraps an ASGI app: HTTP request bodies over ``limit`` bytes get 413 with a JSON reason."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.limit:
            await self.refuse(send, declared)
            return
        guard = _Guard(self, receive, send)
        try:
            await self.app(scope, guard.receive, guard.send)
        except BodyTooLarge:
            pass  # the app let it through: answered below
        if guard.over and not guard.answered:
            await self.refuse(send, None)

    async def refuse(self, send: Any, size: int | None) -> None:
        what = f"{human(size)}" if size is not None else f"over {human(self.limit)}"
        body = json.dumps(
            {"detail": f"the request body is {what}, the limit is {human(self.limit)}"}
        ).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),  # the rest of the body is not read
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class _Guard:
    """One request's count; once over the limit, the app's own answer (FastAPI turns a failed
    body read into a 400) is replaced by the 413."""

    def __init__(self, limit: BodyLimit, receive: Any, send: Any) -> None:
        self.limit, self._receive, self._send = limit, receive, send
        self.counted = 0
        self.over = False
        self.answered = False  # a response went out (the app's before the limit, or the 413)

    async def receive(self) -> Message:
        message: Message = await self._receive()
        if message["type"] == "http.request":
            self.counted += len(message.get("body", b""))
            if self.counted > self.limit.limit:
                self.over = True
                raise BodyTooLarge
        return message

    async def send(self, message: Message) -> None:
        if self.over:
            if not self.answered:
                self.answered = True
                await self.limit.refuse(self._send, None)
            return
        self.answered = self.answered or message["type"] == "http.response.start"
        await self._send(message)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers") or ():
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
