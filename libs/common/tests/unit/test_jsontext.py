"""Lone UTF-16 surrogates in JSON bodies: refused at the door (400 with the escape), or, where
a sender's delivery must be kept, replaced by U+FFFD."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from baton_common.bodylimit import BodyLimit
from baton_common.jsontext import UnicodeBodies, loads_unicode, lone_surrogate
from fastapi import FastAPI


def _app(limit: int) -> Any:
    app = FastAPI()

    @app.post("/echo")
    async def echo(body: dict[str, Any]) -> dict[str, Any]:
        return {"echo": body}

    return BodyLimit(UnicodeBodies(app), limit)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=_app(10_000))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield client


def _post(http: httpx.AsyncClient, raw: bytes) -> Any:
    return http.post("/echo", content=raw, headers={"content-type": "application/json"})


async def test_a_lone_surrogate_is_a_400_naming_it(http: httpx.AsyncClient) -> None:
    answer = await _post(http, b'{"name": "a\\udb5e"}')
    assert answer.status_code == 400
    assert "lone UTF-16 surrogate (\\udb5e)" in answer.json()["detail"]


async def test_a_lone_surrogate_in_a_key_or_deep_in_a_list_is_refused(
    http: httpx.AsyncClient,
) -> None:
    assert (await _post(http, b'{"\\uDC00": 1}')).status_code == 400
    assert (await _post(http, b'{"a": [[1, {"b": ["x", "\\ud800y"]}]]}')).status_code == 400


async def test_a_surrogate_pair_and_an_escaped_backslash_pass(http: httpx.AsyncClient) -> None:
    answer = await _post(http, b'{"emoji": "\\ud83d\\ude00", "text": "\\\\ud800"}')
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"echo": {"emoji": "\U0001f600", "text": "\\ud800"}}


async def test_a_body_that_is_not_json_is_left_to_the_route(http: httpx.AsyncClient) -> None:
    answer = await _post(http, b'{"a": "\\ud800')  # cut short: the route's own parser says so
    assert answer.status_code == 422, answer.text


async def test_a_chunked_body_over_the_limit_is_still_a_413(http: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"blob": "'
        for _ in range(200):
            yield b"x" * 100
        yield b'"}'

    answer = await http.post(
        "/echo", content=chunks(), headers={"content-type": "application/json"}
    )
    assert answer.status_code == 413


def test_loads_unicode_keeps_a_delivery_with_u_fffd() -> None:
    assert loads_unicode(b'{"a\\ud800": ["\\udfff", "\\ud83d\\ude00"]}') == {
        "a\ufffd": ["\ufffd", "\U0001f600"]
    }
    assert lone_surrogate(b'{"a": "plain"}') is None


async def test_a_nul_character_in_the_url_is_a_422(http: httpx.AsyncClient) -> None:
    """PostgreSQL's text refuses NUL: a query naming one was a 500 (the fuzzer's ``step=…%00``
    to an execution's logs)."""
    answer = await http.post("/echo?step=a%00b", json={})
    assert answer.status_code == 422
    assert "NUL character" in answer.json()["detail"]
    assert (await http.post("/echo?step=a%2500b", json={})).status_code == 200
