import json
from pathlib import Path
from uuid import uuid4

import pytest
from baton_common.contracts import ExecutionRequested, StepSucceeded, decode, registry
from baton_common.contracts.execution import StepDispatched, inline_of
from baton_common.events import EventDecodeError
from baton_common.events import envelope_of as _envelope_of
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

SAMPLES = Path(__file__).parent / "samples"


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
JSON_OBJECTS = st.dictionaries(st.text(), JSON, max_size=4)


def _strategy_for(annotation: object) -> st.SearchStrategy[object] | None:
    text = str(annotation)
    if annotation is float:
        return st.floats(min_value=0.001, max_value=1e9)
    if "Any" not in text:
        return None
    if text.startswith("list[dict"):
        return st.lists(JSON_OBJECTS, max_size=3)
    return JSON_OBJECTS if text.startswith("dict") or "dict[" in text else JSON


@pytest.mark.parametrize("type_name", sorted(registry().types()))
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_every_registered_event_round_trips_through_json(
    type_name: str, data: st.DataObject
) -> None:
    for model in [registry().model(type_name)]:
        overrides = {
            name: strategy
            for name, field in model.model_fields.items()
            if (strategy := _strategy_for(field.annotation)) is not None
        }
        strategy = st.builds(model, aggregate_id=st.uuids(), **overrides)
        event = data.draw(strategy, label=type_name)
        again = decode(event.to_json())
        assert again == event
        assert again.type == type_name and type(again) is model
        assert decode(event.to_json(), type_name) == event  # the hinted path: the same event
        head = _envelope_of(event.to_json())  # the relay's quick read of the envelope
        full = json.loads(event.to_json())
        assert head is None or head == {k: full[k] for k in head}


@pytest.mark.parametrize("hint", [None, "execution.requested", "execution.step_succeeded"])
def test_stored_v1_sample_upcasts_to_current_version(hint: str | None) -> None:
    raw = (SAMPLES / "execution.requested.v1.json").read_bytes()
    event = decode(raw, hint)  # a wrong or versioned hint changes nothing
    assert isinstance(event, ExecutionRequested)
    assert event.schema_version == ExecutionRequested.VERSION == 2
    assert event.request == "collect last week's incident reports and summarise them"
    assert event.inputs == {"team": "on-call"}
    assert str(event.event_id) == json.loads(raw)["event_id"]


def test_subject_names_workspace_domain_and_event() -> None:
    event = StepSucceeded(aggregate_id=uuid4(), workspace_id="acme", step_id="a", attempt=1)
    assert event.subject() == "baton.acme.execution.step_succeeded"
    assert event.subject("t1") == "t1.acme.execution.step_succeeded"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not an event"),
        (b'{"type": "nope.never"}', "unknown event type 'nope.never'"),
        (
            b'{"type": "execution.step_succeeded", "aggregate_id": "x"}',
            "invalid execution.step_succeeded",
        ),
        (b'{"type": "execution.started", "schema_version": 9, "aggregate_id": "x"}', "newer than"),
    ],
)
def test_undecodable_messages_say_why(raw: bytes, reason: str) -> None:
    with pytest.raises(EventDecodeError, match=reason):
        decode(raw)


def test_events_are_frozen() -> None:
    event = StepSucceeded(aggregate_id=uuid4(), step_id="a", attempt=1)
    with pytest.raises(ValidationError):
        event.step_id = "b"  # type: ignore[misc]


def test_a_hint_never_hides_a_newer_version_or_a_bad_event() -> None:
    event = StepSucceeded(aggregate_id=uuid4(), step_id="s", attempt=1)
    newer = json.loads(event.to_json()) | {"schema_version": 2}
    with pytest.raises(EventDecodeError, match="newer than this code"):
        decode(json.dumps(newer).encode(), "execution.step_succeeded")
    with pytest.raises(EventDecodeError, match="attempt"):
        decode(b'{"type":"execution.step_succeeded","aggregate_id":"%s"}' % str(uuid4()).encode(),
               "execution.step_succeeded")  # fmt: skip


def test_the_relay_reads_a_usual_envelope_without_parsing_the_payload() -> None:
    event = StepSucceeded(
        aggregate_id=uuid4(), aggregate_version=3, workspace_id="acme-2", step_id="s", attempt=1,
        traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01", output={"traceparent": "x"},
    )  # fmt: skip
    assert _envelope_of(event.to_json()) == {
        "type": "execution.step_succeeded", "event_id": str(event.event_id),
        "workspace_id": "acme-2", "traceparent": event.traceparent,
    }  # fmt: skip
    assert _envelope_of(b'{"workspace_id":"a","type":"x.y"}') is None  # another layout: parsed


tricky = st.lists(st.sampled_from(['"', "\\", ",", ":", "]", "}", '"inline":', "a", "é"])).map(
    "".join
)


@settings(max_examples=200, deadline=None)
@given(
    inline=st.booleans(),
    agents=st.none() | st.lists(tricky, max_size=3),
    value=tricky,
)
def test_the_relay_reads_a_tasks_inline_flag_off_its_last_bytes(
    inline: bool, agents: list[str] | None, value: str
) -> None:
    """What decides a task's subject (``.inline``: no worker takes it), read without a parse,
    whatever its input, its simulated answer and its agents' names hold."""
    task = StepDispatched(
        aggregate_id=uuid4(), aggregate_version=2, step_id="s", attempt=1, tool="t",
        input={"inline": not inline, value: [value, {"inline": True}]}, idempotency_key="k",
        timeout_s=1, simulated={"inline": False}, inline=inline, agents=agents,
    )  # fmt: skip
    assert inline_of(task.to_json()) is inline
    assert json.loads(task.to_json())["inline"] is inline


def test_a_task_laid_out_otherwise_is_parsed() -> None:
    assert inline_of(b'{"type":"execution.step_dispatched","inline":true}') is None
    assert inline_of(b'{"inline":true,"agents":null,"x":1}') is None
