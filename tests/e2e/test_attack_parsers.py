"""Regression tests for the parser findings (issue 25), on the engine as processes: no input burns
the engine's CPU.

- A kilobyte of YAML aliases sent to ``POST /v1/plans/validate`` held the gateway's event loop
  for 8 s before its 422; a few at once stopped the gateway for everyone. Now aliases are refused
  while the document is composed, and plan checks run off the event loop: ``/readyz`` answers
  during the bombs.
- Deep nesting, huge numbers, a ``${`` before thousands of blanks (a cubic pattern), a giant
  ``text.template`` width and a ``FREQ=SECONDLY`` calendar rule: each a clear 4xx or a failed
  step with its reason, quickly.
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from typing import Any as Engine  # the fixture's type lives in conftest.py

import httpx
import pytest
from baton_common.testing import one_event_ics

from tests.e2e.conftest import import_ics

pytestmark = pytest.mark.e2e

BOMBS = 20


def alias_bomb(levels: int = 9) -> str:
    """About a kilobyte of plan that means 9**9 (387 million) values once aliases are followed."""
    lines = ["steps:", "- id: s", "  tool: text.template", "  input:", "    template: x"]
    lines += ["    values:", "      a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"      a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def validate(engine: Engine, plan: Any) -> httpx.Response:
    with httpx.Client(headers=engine.http.headers, timeout=60) as client:
        return client.post(f"{engine.url}/v1/plans/validate", json={"plan": plan})


def readyz_latencies(engine: Engine, until: Any, at_least: int = 8) -> list[float]:
    """``/readyz`` timed again and again (on a warm connection) while ``until()`` is false."""
    took: list[float] = []
    with httpx.Client(timeout=120) as client:
        client.get(f"{engine.url}/readyz")  # the connection, opened before the clock starts
        while not until() or len(took) < at_least:
            started = time.perf_counter()
            assert client.get(f"{engine.url}/readyz").status_code == 200
            took.append(time.perf_counter() - started)
            time.sleep(0.01)
    return took


def during(engine: Engine, plan: Any, n: int) -> tuple[list[httpx.Response], list[float]]:
    """``n`` validations of ``plan`` at once, and readyz's latencies meanwhile."""
    with ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(validate, engine, plan) for _ in range(n)]
        latencies = readyz_latencies(engine, lambda: all(f.done() for f in futures))
        return [f.result() for f in futures], latencies


def allowed_latency(engine: Engine, plan: Any, n: int, quiet: float) -> float:
    """What readyz may take while ``n`` requests of ``plan``'s size are served: ``quiet`` on an
    idle box plus twice what ``n`` harmless requests cost it on this box now (CI shares two
    cores with other jobs); never the seconds to minutes a bomb held the event loop before."""
    answers, latencies = during(engine, plan, n)
    assert all(a.status_code == 422 for a in answers)
    return quiet + 2 * max(latencies)


def harmless(size: int) -> str:
    """A plan of about ``size`` characters that is refused at once (an unknown tool)."""
    return "steps:\n- id: s\n  tool: no.such.tool\n  description: '" + "x" * size + "'\n"


def test_alias_bombs_are_refused_while_readyz_keeps_answering(engine: Engine) -> None:
    bomb = alias_bomb()
    assert len(bomb) < 1200
    bound = allowed_latency(engine, harmless(len(bomb)), BOMBS, 0.1)
    answers, latencies = during(engine, bomb, BOMBS)
    for answer in answers:
        assert answer.status_code == 422, answer.text
        assert "aliases (*a0) are not accepted" in answer.json()["detail"]
    # Before: each bomb held the event loop for minutes, so readyz waited for all of them.
    assert max(latencies) < bound, (bound, latencies)


def test_a_big_plan_is_checked_off_the_event_loop(engine: Engine) -> None:
    """A 1,000-step plan (the most a plan may have) in YAML is a second of CPU to read and check:
    three at once keep two checking threads busy while readyz still answers."""
    steps = "".join(
        f"- id: s{i}\n  tool: text.template\n  input: {{template: 'step {i} ${{steps.s{i - 1}"
        f".output.text}}'}}\n"
        if i
        else "- id: s0\n  tool: text.template\n  input: {template: go}\n"
        for i in range(1000)
    )
    plan = "steps:\n" + steps
    bound = allowed_latency(engine, harmless(len(plan)), 3, 0.5)  # three checks, two cores
    answers, latencies = during(engine, plan, 3)
    for answer in answers:
        assert answer.status_code == 200, answer.text[:500]
        assert answer.json()["order"][:2] == ["s0", "s1"]
    assert max(latencies) < bound, (bound, latencies)


@pytest.mark.parametrize(
    ("plan", "reason"),
    [
        ("steps: " + "[" * 100 + "]" * 100, "nested more than 64 levels"),
        ('{"steps": ' + "[" * 50_000 + "]" * 50_000 + "}", "nested more than 64 levels"),
        ("steps: []\nn: 1" + ":1" * 100_000, "a number longer than 100 characters"),
        ("steps: []\npad: '" + "x" * 1_000_001 + "'", "at most 1000000 are read"),
    ],
)
def test_documents_over_a_limit_are_a_422_with_the_reason(
    engine: Engine, plan: str, reason: str
) -> None:
    started = time.perf_counter()
    answer = validate(engine, plan)
    assert answer.status_code == 422, answer.text[:500]
    assert reason in answer.json()["detail"]
    assert time.perf_counter() - started < 5  # generous: the megabyte is sent and read


def test_text_around_references_is_read_in_linear_time(engine: Engine) -> None:
    """``${`` and 3,000 blanks took a minute of the cubic reference pattern; now it is text."""
    step = {"id": "s", "tool": "text.template", "input": {"template": "${" + " " * 3000}}
    started = time.perf_counter()
    answer = validate(engine, {"steps": [step]})
    assert answer.status_code == 200, answer.text[:500]
    assert time.perf_counter() - started < 5


def test_a_giant_template_width_fails_the_step_with_its_reason(engine: Engine) -> None:
    step = {
        "id": "s",
        "tool": "text.template",
        "input": {"template": "{x:>999999999}", "values": {"x": "a"}},
    }
    created = engine.http.post(f"{engine.url}/v1/executions", json={"plan": {"steps": [step]}})
    assert created.status_code == 202, created.text
    view = engine.wait(created.json()["id"])
    assert view["status"] == "failed"
    assert "widths and precisions are at most 1000" in str(view), view


def test_a_secondly_calendar_rule_is_refused_on_import(engine: Engine) -> None:
    name = f"parsers-{uuid.uuid4().hex[:8]}"
    made = engine.http.post(f"{engine.url}/v1/calendars", json={"name": name})
    assert made.status_code == 201, made.text
    ics = one_event_ics(
        "UID:every-second@test",
        "DTSTART:20260101T000000Z",
        "DTEND:20260101T000001Z",
        "RRULE:FREQ=SECONDLY",
        "SUMMARY:Busy",
    )
    answer = import_ics(engine, name, ics)
    assert answer.status_code == 422, answer.text
    assert "repeats SECONDLY" in answer.text


def test_a_nul_character_in_a_request_or_an_output_leaves_every_view_readable(
    engine: Engine,
) -> None:
    """PostgreSQL's text and jsonb refuse the NUL character; a request, an input or a tool's
    output may carry one (the fuzzer sent one in a webhook endpoint's name). The execution runs
    and its views show U+FFFD in its place; the events keep the exact text."""
    step = {
        "id": "s",
        "tool": "text.template",
        "input": {"template": "a\x00{x}", "values": {"x": "b\x00c"}},
    }
    created = engine.http.post(
        f"{engine.url}/v1/executions", json={"plan": {"steps": [step]}, "inputs": {"n": "\x00"}}
    )
    assert created.status_code == 202, created.text
    view = engine.wait(created.json()["id"])
    assert view["status"] == "succeeded", view
    shown = view["steps"]["s"]
    assert "\ufffd" in str(shown["output"]) and "\x00" not in str(view), shown
    listed = engine.http.get(f"{engine.url}/v1/executions", params={"limit": 5})
    assert listed.status_code == 200, listed.text
    worded = engine.http.post(
        f"{engine.url}/v1/executions", json={"request": "say hello\x00 to the team"}
    )
    assert worded.status_code == 202, worded.text
    done = engine.wait(worded.json()["id"], until=("succeeded", "failed"))
    assert done["request"] == "say hello\ufffd to the team", done


def test_a_lone_surrogate_in_a_json_body_is_a_400_not_a_500(engine: Engine) -> None:
    """JSON may spell half of a UTF-16 pair on its own; no UTF-8 encoder takes it, and the
    fuzzer's ``"\\udb5e"`` in a webhook endpoint's action was a 500. Now the door refuses it
    with the reason, and nothing is created."""
    name = f"hook-{uuid.uuid4().hex[:8]}"
    raw = b'{"name": "%s", "action": {"request": "say \\udb5e"}}' % name.encode()
    headers = {**engine.http.headers, "content-type": "application/json"}
    answer = httpx.post(f"{engine.url}/v1/webhooks/endpoints", content=raw, headers=headers)
    assert answer.status_code == 400, answer.text
    assert "lone UTF-16 surrogate (\\udb5e)" in answer.json()["detail"]
    listed = engine.http.get(f"{engine.url}/v1/webhooks/endpoints")
    assert listed.status_code == 200 and name not in listed.text, listed.text
    paired = b'{"request": "say \\ud83d\\ude00 to the team"}'
    created = httpx.post(f"{engine.url}/v1/executions", content=paired, headers=headers)
    assert created.status_code == 202, created.text
