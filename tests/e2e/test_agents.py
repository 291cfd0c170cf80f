"""Agents working together, on the engine as processes: two steps exchange data through the
shared context and through a request/response pair; replay at event N shows the context then;
the API reads and writes keys; a read-only step's result is reused and a write step's never."""

from __future__ import annotations

import json
import uuid
from typing import Any
from typing import Any as Engine  # the fixture's type lives in conftest.py

import pytest

pytestmark = pytest.mark.e2e

EXCHANGE = {
    "name": "negotiate",
    "steps": [
        {"id": "buyer_notes", "tool": "context.set",
         "input": {"key": "budget", "value": {"max": 120, "currency": "EUR"}}},
        {"id": "ask", "tool": "agent.request", "depends_on": ["buyer_notes"],
         "input": {"from": "buyer", "to": "seller", "timeout_s": 60,
                   "payload": {"item": "lamp", "offer": 80}}},
        {"id": "hear", "tool": "agent.receive",
         "input": {"agent": "seller", "types": ["REQUEST"], "timeout_s": 60}},
        {"id": "seller_reads", "tool": "context.get", "depends_on": ["buyer_notes"],
         "input": {"key": "budget"}},
        {"id": "answer", "tool": "agent.send",
         "input": {"from": "seller", "to": "${steps.hear.output.from}", "type": "RESPONSE",
                   "in_reply_to": "${steps.hear.output.message_id}",
                   "payload": {"price": "${steps.seller_reads.output.value.max}"}}},
        {"id": "deal", "tool": "context.set",
         "input": {"key": "deal", "value": "${steps.ask.output.payload}"}},
    ],
    "outputs": {"deal": "${steps.deal.output.version}", "price": "${steps.ask.output.payload.price}"},
}  # fmt: skip


def _run(engine: Engine, plan: dict[str, Any]) -> dict[str, Any]:
    resp = engine.http.post(f"{engine.url}/v1/executions", json={"plan": plan})
    assert resp.status_code == 202, resp.text
    return dict(engine.wait(resp.json()["id"]))


def test_two_agents_exchange_data_through_context_and_request_response(engine: Engine) -> None:
    view = _run(engine, EXCHANGE)
    assert view["status"] == "succeeded", view
    assert view["outputs"] == {"deal": 1, "price": 120}
    assert view["context"]["budget"]["written_by"] == "buyer_notes"
    assert view["context"]["deal"]["value"] == {"price": 120}
    kinds = [(m["type"], m["from"], m["to"], m["delivered_to"]) for m in view["messages"]]
    assert kinds == [("REQUEST", "buyer", "seller", "hear"), ("RESPONSE", "seller", "buyer", "ask")]
    eid = view["id"]
    one = engine.http.get(f"{engine.url}/v1/executions/{eid}/context/budget").json()
    assert one["value"] == {"max": 120, "currency": "EUR"} and one["version"] == 1
    assert engine.http.get(f"{engine.url}/v1/executions/{eid}/context/nope").status_code == 404

    # replay at the first context write: the budget is there, the deal not yet
    history = engine.http.get(f"{engine.url}/v1/executions/{eid}/events").json()["items"]
    n = 1 + next(i for i, e in enumerate(history) if e["type"] == "execution.context_written")
    out = engine.cli("replay", eid, "--at", str(n), "--json")
    assert out.returncode == 0, out.stderr
    then = json.loads(out.stdout)
    assert set(then["context"]) == {"budget"} and then["context"]["budget"]["version"] == 1
    text = engine.cli("replay", eid, "--at", str(len(history)))
    assert "context deal" in text.stdout and "message #2 RESPONSE seller → buyer" in text.stdout


def test_a_write_through_the_api_and_the_errors_that_name_the_field(engine: Engine) -> None:
    waits = {"steps": [{"id": "hear", "tool": "agent.receive",
                        "input": {"agent": "me", "timeout_s": 5}}]}  # fmt: skip
    resp = engine.http.post(f"{engine.url}/v1/executions", json={"plan": waits})
    eid = resp.json()["id"]
    engine.wait(eid, until=("running", "failed"))
    put = engine.http.put(f"{engine.url}/v1/executions/{eid}/context/note", json={"value": [1]})
    assert put.status_code == 202, put.text
    big = engine.http.put(
        f"{engine.url}/v1/executions/{eid}/context/note", json={"value": "x" * 70_000}
    )
    assert (
        big.status_code == 422 and big.json()["detail"] == "value is 68.4 KiB, the limit is 64 KiB"
    )
    view = engine.wait(eid)
    assert view["status"] == "failed"
    assert "agent.receive: no message for 'me' within 5s" in view["steps"]["hear"]["error"]
    assert view["context"]["note"]["value"] == [1]
    assert view["context"]["note"]["written_by"].startswith("api:")
    bad = {"steps": [{"id": "s", "tool": "agent.send",
                      "input": {"from": "a", "to": "ghost", "type": "INFORM"}}]}  # fmt: skip
    refused = engine.http.post(f"{engine.url}/v1/executions", json={"plan": bad})
    assert refused.status_code == 422 and "unknown agent 'ghost'" in refused.text
    zero = {"steps": [{"id": "s", "tool": "agent.request",
                       "input": {"from": "a", "to": "a", "timeout_s": 0}}]}  # fmt: skip
    refused = engine.http.post(f"{engine.url}/v1/executions", json={"plan": zero})
    assert refused.status_code == 422 and "timeout_s" in refused.text


def test_a_read_only_result_is_reused_and_a_write_never_is(engine: Engine) -> None:
    marker = uuid.uuid4().hex  # an input no other test used
    plan = {
        "steps": [
            {"id": "fmt", "tool": "llm.generate",
             "input": {"prompt": f"summarise report {marker}"}},
            {"id": "save", "tool": "files.write",
             "input": {"path": f"cache-{marker}.txt", "content": "${steps.fmt.output.text}"}},
        ]
    }  # fmt: skip
    first, second = _run(engine, plan), _run(engine, plan)
    assert first["status"] == second["status"] == "succeeded"
    assert "cached_from" not in first["steps"]["fmt"]
    assert second["steps"]["fmt"]["cached_from"] == f"{first['id']}:fmt"
    assert "cached_from" not in second["steps"]["save"]
    events = engine.http.get(f"{engine.url}/v1/executions/{second['id']}/events").json()["items"]
    dispatched = [e["data"]["step_id"] for e in events if e["type"].endswith("step_dispatched")]
    assert dispatched == ["save"]  # the write ran again; the read did not
    cleared = engine.cli("cache", "clear", "--tool", "llm.generate")
    assert cleared.returncode == 0, cleared.stderr
    for _ in range(50):  # the executor takes the clear from the bus
        third = _run(engine, plan)
        if "cached_from" not in third["steps"]["fmt"]:
            break
    assert "cached_from" not in third["steps"]["fmt"]
