"""The tool catalogue: what each tool is for, its input and output schemas and its side effects.

Specs live here, apart from the implementations (in the executor's workers), so the gateway can
validate plans and the planner can choose tools without importing any tool code.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cached_property
from typing import Any, Literal

import jsonschema
import jsonschema_rs
from pydantic import BaseModel, ConfigDict, Field, field_validator

from baton_common.rates import Rate

SideEffect = Literal["read", "write", "critical"]


class InputChecker:
    """Checks inputs against a tool's schema on every step's path (planning, dispatch, workers).

    The common answer, "valid", comes from ``jsonschema_rs`` (compiled in Rust, about thirty times
    faster than walking the schema in Python, and it was a fifth of the executor's time per step).
    Errors, the rare case, come from ``jsonschema`` itself, so their wording stays the one users
    and tests know. A schema the Rust validator cannot compile is checked by ``jsonschema`` alone.
    """

    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        self.slow = jsonschema.Draft202012Validator(schema)
        try:
            self.fast: Any = jsonschema_rs.validator_for(schema)
        except Exception:  # its dialect refuses what jsonschema accepts: keep to jsonschema
            self.fast = None

    def is_valid(self, value: Any) -> bool:
        if self.fast is not None:
            return bool(self.fast.is_valid(value))
        return bool(self.slow.is_valid(value))

    def iter_errors(self, value: Any) -> Iterator[jsonschema.ValidationError]:
        if self.fast is not None and self.fast.is_valid(value):
            return iter(())
        return self.slow.iter_errors(value)


class ToolSpec(BaseModel):
    """A tool as planners and validators see it."""

    def input_validator(self) -> InputChecker:
        """A compiled validator of the input schema (built once per spec: building is costly)."""
        return self._compiled

    @cached_property
    def _compiled(self) -> InputChecker:
        return InputChecker(self.input_schema)

    model_config = ConfigDict(frozen=True)

    name: str
    description: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    side_effect: SideEffect = "read"
    rate_limit_per_s: float | None = Field(None, ge=0)  # kept for old specs; ``rate_limit`` wins
    # Calls allowed per workspace, e.g. "60/min" (a workspace's policy may set its own).
    rate_limit: str | None = None
    keywords: tuple[str, ...] = ()
    # How the offline planner fills the input from a task's words: the field that takes the text.
    text_field: str | None = None
    # The output field a later step usually consumes.
    primary_output: str | None = None
    # Dry runs (baton_common.simulation): "real" makes the call (reads only; the default for
    # them), "simulate" answers with ``dry_run_output`` (always for write and critical tools).
    # ``${input.…}`` in it is filled from the call's input; None derives it from output_schema.
    dry_run: Literal["real", "simulate"] | None = None
    dry_run_output: Any = None
    # How long a result of this ``read`` tool may be reused for the same input (the smart cache);
    # None: never cached. Ignored for ``write`` and ``critical`` tools.
    cache_ttl_s: float | None = Field(None, gt=0)
    # Pure and cheap (no I/O, output from input alone): the executor may run it in process and
    # commit its result with the decision, instead of a round trip through a worker.
    inline: bool = False
    # False: only a plan names this tool (agents' context and messages need names and types that a
    # request in words never gives); the offline planner does not pick it from words.
    from_words: bool = True

    @field_validator("rate_limit")
    @classmethod
    def _rate(cls, value: str | None) -> str | None:
        if value is not None:
            Rate.parse(value)  # raises on a malformed or negative rate
        return value

    def rate(self) -> Rate | None:
        """The declared call rate, if any."""
        if self.rate_limit is not None:
            return Rate.parse(self.rate_limit)
        if self.rate_limit_per_s is not None:
            return Rate(count=self.rate_limit_per_s, per_s=1.0)
        return None


def _obj(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": required or [],
        "additionalProperties": False,
    }


_ANY: dict[str, Any] = {}
_STR = {"type": "string"}

_MOCK_CRITICAL = ToolSpec(
    name="mock.critical",
    description="A stand-in for an irreversible action (a payment, a deletion, a message sent): "
    "critical, so it always waits for a person's approval. Records each call by idempotency key.",
    input_schema=_obj(
        {
            "action": _STR,
            "amount": {"type": "number", "minimum": 0},
            "target": _STR,
            "latency_ms": {"type": "number", "minimum": 0, "maximum": 600000},
        },
        ["action"],
    ),
    output_schema=_obj({"done": _STR, "calls": {"type": "integer"}}, ["done"]),
    side_effect="critical",
    dry_run_output={"done": "${input.action}", "calls": 0},
    keywords=("pay", "payment", "refund", "irreversible"),
    text_field="action",
    primary_output="done",
)

# --- calendar tools (run by the calendar service, not by the generic workers) ---------------------
# Times are ISO-8601 with an offset or a zone; ``timezone`` reads times without one. ``calendar``
# is a calendar's id, name or CalDAV URL (default: the workspace's default calendar).

_WHEN = {"type": "string", "minLength": 1}
_EMAILS = {"type": "array", "items": {"type": "string", "minLength": 1}, "maxItems": 200}
_CONFLICT = {
    "enum": ["fail", "warn", "ask"],
    "description": "fail: the step fails listing the conflicts; warn: the output lists them; "
    "ask: the step waits at an approval gate showing them, and books on approve",
}
_EVENT_FIELDS: dict[str, Any] = {
    "calendar": _STR,
    "title": {"type": "string", "minLength": 1, "maxLength": 500},
    "start": _WHEN,
    "end": _WHEN,
    "timezone": _STR,
    "attendees": _EMAILS,
    "description": {"type": "string", "maxLength": 20000},
    "location": {"type": "string", "maxLength": 1000},
    "conflict": _CONFLICT,
}
# Room and equipment calendars (kind room|equipment), by name, id, URL or address.
_RESOURCES = {"type": "array", "items": {"type": "string", "minLength": 1}, "maxItems": 50}
_CONFLICTS_OUT = {"type": "array", "items": {"type": "object"}}
_EVENT_OUT = _obj(
    {
        "uid": _STR,
        "calendar": _STR,
        "title": _STR,
        "start": _STR,
        "end": _STR,
        "attendees": _EMAILS,
        "resources": _EMAILS,
        "conflicts": _CONFLICTS_OUT,
        "cancelled": {"type": "boolean"},
    },
    ["uid"],
)
_ATTENDEE = {
    "oneOf": [
        {"type": "string", "minLength": 1},
        _obj(
            {
                "email": {"type": "string", "minLength": 1},
                "timezone": _STR,
                "working_hours": {"type": "object"},
                "calendars": {"type": "array", "items": _STR},
                "optional": {"type": "boolean"},
            },
            ["email"],
        ),
    ]
}
_MINUTES = {"type": "number", "minimum": 0, "maximum": 1440}


def _event_writer(
    name: str, description: str, input_schema: dict[str, Any], **more: Any
) -> ToolSpec:
    """A tool that writes one calendar event (creates, changes or cancels it): it answers with
    the event, found again by its uid."""
    return ToolSpec(
        name=name,
        description=description,
        input_schema=input_schema,
        output_schema=_EVENT_OUT,
        side_effect="write",
        primary_output="uid",
        **more,
    )


_CALENDAR_TOOLS: tuple[ToolSpec, ...] = (
    _event_writer(
        "calendar.create_event",
        "Create (book) a calendar event or meeting: title, start, end, attendees, "
        "rooms and equipment to book (resources). "
        "The step's idempotency key fixes the event's UID, so a retry never makes a second one. "
        "Its compensation is calendar.cancel_event with an empty input (cancels what it made).",
        _obj({**_EVENT_FIELDS, "resources": _RESOURCES}, ["title", "start", "end"]),
        keywords=("book", "meeting", "appointment", "invite", "calendar"),
        text_field="title",
    ),
    _event_writer(
        "calendar.update_event",
        "Change a calendar event found by uid: move it, rename it, change attendees.",
        _obj({**_EVENT_FIELDS, "uid": {"type": "string", "minLength": 1}}, ["uid"]),
        keywords=("reschedule",),
    ),
    _event_writer(
        "calendar.cancel_event",
        "Cancel (delete) a calendar event by uid. Without a uid, as a compensation, "
        "it cancels the event its step created.",
        _obj({"calendar": _STR, "uid": _STR, "reason": _STR}),
        keywords=("unbook",),
    ),
    ToolSpec(
        name="calendar.list_events",
        description="List the events of a calendar in a time window, recurrences expanded.",
        input_schema=_obj(
            {"calendar": _STR, "window_start": _WHEN, "window_end": _WHEN, "timezone": _STR},
            ["window_start", "window_end"],
        ),
        output_schema=_obj({"events": {"type": "array", "items": {"type": "object"}}}, ["events"]),
        keywords=("agenda",),
        primary_output="events",
    ),
    ToolSpec(
        name="calendar.find_slots",
        description="Find free time slots for a meeting across attendees' calendars, working "
        "hours and time zones, with equipment that must be free and a room among several: "
        "ranked slots with the reason (and the room) for each.",
        input_schema=_obj(
            {
                "attendees": {"type": "array", "items": _ATTENDEE, "minItems": 1, "maxItems": 200},
                "optional_attendees": _EMAILS,
                "duration_minutes": {"type": "number", "exclusiveMinimum": 0, "maximum": 10080},
                "window_start": _WHEN,
                "window_end": _WHEN,
                "timezone": _STR,
                "buffer_before_minutes": _MINUTES,
                "buffer_after_minutes": _MINUTES,
                "min_notice_minutes": {"type": "number", "minimum": 0, "maximum": 525600},
                "granularity_minutes": {"type": "number", "minimum": 1, "maximum": 1440},
                "preferred": {"type": "array", "items": {"type": "object"}},
                "working_hours": {"type": "object"},
                "max_results": {"type": "integer", "minimum": 1, "maximum": 100},
                "resources": _RESOURCES,
                "rooms": {"oneOf": [_RESOURCES, {"const": "any"}]},
                "min_capacity": {"type": "integer", "minimum": 1, "maximum": 100000},
            },
            ["attendees", "duration_minutes", "window_start", "window_end"],
        ),
        output_schema=_obj(
            {
                "slots": {
                    "type": "array",
                    "items": _obj(
                        {
                            "start": _STR,
                            "end": _STR,
                            "score": {"type": "number"},
                            "reason": _STR,
                            "room": _STR,
                        }
                    ),
                }
            },
            ["slots"],
        ),
        keywords=("slot", "slots", "availability", "available"),
        primary_output="slots",
    ),
    ToolSpec(
        name="calendar.check_conflicts",
        description="Check whether a time overlaps attendees' (and rooms') calendar events.",
        input_schema=_obj(
            {
                "calendar": _STR,
                "attendees": _EMAILS,
                "start": _WHEN,
                "end": _WHEN,
                "timezone": _STR,
                "uid": _STR,
                "resources": _RESOURCES,
            },
            ["start", "end"],
        ),
        output_schema=_obj(
            {"conflicts": _CONFLICTS_OUT, "count": {"type": "integer"}, "summary": _STR},
            ["conflicts", "count"],
        ),
        keywords=("conflict", "conflicts", "overlap", "clash"),
        primary_output="conflicts",
    ),
)

# --- agents working together: run by the executor itself, from the execution's own state -----------
# ``context.*`` read and write the execution's shared memory; ``agent.*`` exchange typed messages.
# Agent names are the plan's: the ``from`` of agent.send / agent.request and the ``agent`` of
# agent.receive. See docs/context.md.

_KEY = {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[A-Za-z0-9_.:-]+$"}
# execution (the default): this execution's memory; workspace: every execution's of the workspace
_SCOPE = {"enum": ["execution", "workspace"], "default": "execution"}
_AGENT = {"type": "string", "minLength": 1, "maxLength": 100}
_WAIT = {"type": "number", "exclusiveMinimum": 0, "maximum": 86400}
_MESSAGE = _obj(
    {
        "message_id": _STR,
        "from": _STR,
        "to": _STR,
        "type": _STR,
        "payload": _ANY,
        "in_reply_to": {"type": ["string", "null"]},
    },
    ["message_id", "from", "to", "type"],
)
_COORDINATION_TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec(
        name="context.set",
        from_words=False,
        description="Write a value under a key of the execution's shared context (memory that "
        "later steps read with context.get); scope: workspace writes the workspace's context, "
        "which every execution of the workspace reads.",
        input_schema=_obj({"key": _KEY, "value": _ANY, "scope": _SCOPE}, ["key", "value"]),
        output_schema=_obj({"key": _STR, "version": {"type": "integer"}}, ["key", "version"]),
        side_effect="write",
        primary_output="version",
    ),
    ToolSpec(
        name="context.get",
        from_words=False,
        description="Read a key of the execution's shared context as the step's dependencies "
        "left it: the value, its version and the step that wrote it (scope: workspace: the "
        "workspace's newest value when the step starts).",
        input_schema=_obj({"key": _KEY, "default": _ANY, "scope": _SCOPE}, ["key"]),
        output_schema=_obj(
            {
                "value": _ANY,
                "version": {"type": "integer"},
                "written_by": {"type": ["string", "null"]},
            },
            ["value", "version", "written_by"],
        ),
        primary_output="value",
    ),
    ToolSpec(
        name="agent.send",
        from_words=False,
        description="One agent of the plan sends another a typed message (REQUEST, RESPONSE, "
        "INFORM, ERROR, HANDOFF); it waits durably until the other receives it.",
        input_schema=_obj(
            {
                "from": _AGENT,
                "to": _AGENT,
                "type": {"type": "string", "pattern": "^[A-Z][A-Z_]*$"},
                "payload": _ANY,
                "in_reply_to": _STR,
            },
            ["from", "to", "type"],
        ),
        output_schema=_obj({"message_id": _STR, "seq": {"type": "integer"}}, ["message_id"]),
        side_effect="write",
        primary_output="message_id",
    ),
    ToolSpec(
        name="agent.request",
        from_words=False,
        description="One agent asks another (a REQUEST message) and waits for its RESPONSE, at "
        "most timeout_s seconds.",
        input_schema=_obj(
            {"from": _AGENT, "to": _AGENT, "payload": _ANY, "timeout_s": _WAIT},
            ["from", "to", "timeout_s"],
        ),
        output_schema=_MESSAGE,
        side_effect="write",
        primary_output="payload",
    ),
    ToolSpec(
        name="agent.receive",
        from_words=False,
        description="An agent waits for its next message (oldest first; optionally only from "
        "one agent or of some types), at most timeout_s seconds.",
        input_schema=_obj(
            {
                "agent": _AGENT,
                "from": _AGENT,
                "types": {"type": "array", "items": _STR, "minItems": 1},
                "timeout_s": _WAIT,
            },
            ["agent", "timeout_s"],
        ),
        output_schema=_MESSAGE,
        primary_output="payload",
    ),
)

BUILTIN_TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec(
        name="http.request",
        description="Call an HTTP API or fetch a web page or URL: GET, POST, PUT, PATCH or DELETE "
        "with headers and a JSON or text body. Sends the step's idempotency key as Idempotency-Key.",
        input_schema=_obj(
            {
                "url": {"type": "string", "pattern": "^https?://"},
                "method": {"enum": ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]},
                "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                "json": _ANY,
                "body": {"type": "string"},
                "timeout_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 600},
                "expect_status": {"type": "array", "items": {"type": "integer"}},
            },
            ["url"],
        ),
        output_schema=_obj(
            {
                "status": {"type": "integer"},
                "headers": {"type": "object"},
                "text": _STR,
                "json": _ANY,
                "truncated": {"type": "boolean"},
            },
            ["status"],
        ),
        side_effect="write",
        dry_run_output={"status": 200, "headers": {}, "text": "", "json": None},
        keywords=(
            "http",
            "api",
            "url",
            "fetch",
            "download",
            "call",
            "request",
            "webhook",
            "post",
            "get",
        ),
        text_field="url",
        primary_output="json",
    ),
    ToolSpec(
        name="text.template",
        inline=True,
        description="Fill a text template with values: {name} placeholders are replaced. Formats "
        "reports, messages and e-mails from earlier outputs.",
        input_schema=_obj({"template": _STR, "values": {"type": "object"}}, ["template"]),
        output_schema=_obj({"text": _STR}, ["text"]),
        keywords=("format", "template", "compose", "draft", "message", "email", "render", "report"),
        text_field="template",
        primary_output="text",
    ),
    ToolSpec(
        name="json.query",
        inline=True,
        description="Pick a value out of JSON data by a path such as items[0].title or a.b.c.",
        input_schema=_obj({"data": _ANY, "path": _STR}, ["data", "path"]),
        output_schema=_obj({"result": _ANY, "found": {"type": "boolean"}}, ["result"]),
        keywords=("extract", "pick", "select", "query", "json", "field", "parse"),
        primary_output="result",
    ),
    ToolSpec(
        name="files.read",
        description="Read a text file from the workspace's sandbox folder.",
        input_schema=_obj({"path": _STR}, ["path"]),
        output_schema=_obj(
            {"path": _STR, "content": _STR, "bytes": {"type": "integer"}}, ["content"]
        ),
        keywords=("read", "open", "load", "file"),
        text_field="path",
        primary_output="content",
    ),
    ToolSpec(
        name="files.write",
        description="Write or append text to a file in the workspace's sandbox folder (save, store, "
        "export a result to a file).",
        input_schema=_obj(
            {"path": _STR, "content": _STR, "append": {"type": "boolean"}}, ["path", "content"]
        ),
        output_schema=_obj({"path": _STR, "bytes": {"type": "integer"}}, ["path"]),
        side_effect="write",
        dry_run_output={"path": "${input.path}", "bytes": 0},
        keywords=("write", "save", "store", "export", "file", "record", "persist"),
        text_field="path",
        primary_output="path",
    ),
    ToolSpec(
        name="files.delete",
        description="Delete a file in the workspace's sandbox folder (undo a write).",
        input_schema=_obj({"path": _STR}, ["path"]),
        output_schema=_obj({"path": _STR, "deleted": {"type": "boolean"}}, ["path"]),
        side_effect="write",
        dry_run_output={"path": "${input.path}", "deleted": True},
        keywords=("delete", "remove", "erase", "file"),
        text_field="path",
        primary_output="deleted",
    ),
    ToolSpec(
        name="time.sleep",
        description="Wait for a number of seconds before going on.",
        input_schema=_obj(
            {"seconds": {"type": "number", "minimum": 0, "maximum": 3600}}, ["seconds"]
        ),
        output_schema=_obj({"slept": {"type": "number"}}, ["slept"]),
        dry_run="simulate",  # a rehearsal need not wait
        dry_run_output={"slept": "${input.seconds}"},
        keywords=("wait", "sleep", "pause", "delay"),
        primary_output="slept",
    ),
    ToolSpec(
        name="debug.log",
        description="Write lines to the step's live log, spaced over time (see the live logs "
        "of an execution, try the log limits).",
        input_schema=_obj(
            {
                "message": _STR,
                "lines": {"type": "integer", "minimum": 1, "maximum": 1_000_000},
                "interval_s": {"type": "number", "minimum": 0, "maximum": 60},
                "level": {"enum": ["debug", "info", "warning", "error"]},
            },
            ["message"],
        ),
        output_schema=_obj({"written": {"type": "integer"}}, ["written"]),
        keywords=("debug",),
        primary_output="written",
    ),
    ToolSpec(
        name="llm.generate",
        description="Ask a language model: summarise, analyse, explain, answer, translate, classify "
        "or write text from a prompt and context. Gemini when configured, else an offline "
        "deterministic fallback that says it is one.",
        input_schema=_obj(
            {
                "prompt": _STR,
                "context": _ANY,
                "system": _STR,
                "max_tokens": {"type": "integer", "minimum": 1, "maximum": 32768},
            },
            ["prompt"],
        ),
        output_schema=_obj(
            {"text": _STR, "model": _STR, "offline": {"type": "boolean"}, "usage": _ANY},
            ["text", "model"],
        ),
        keywords=(
            "summarise",
            "summarize",
            "summary",
            "analyse",
            "analyze",
            "explain",
            "answer",
            "write",
            "translate",
            "classify",
            "draft",
            "review",
            "compare",
            "recommend",
            "describe",
            "plan",
        ),
        text_field="prompt",
        primary_output="text",
        rate_limit="60/min",
        cache_ttl_s=600,  # the same prompt within 10 minutes: the same answer, no tokens spent
    ),
    ToolSpec(
        name="mock.agent",
        inline=True,
        description="A stand-in agent for dry runs, demos and benchmarks: collects, gathers or "
        "researches something with configurable latency, failure rate and output.",
        input_schema=_obj(
            {
                "task": _STR,
                "latency_ms": {"type": "number", "minimum": 0, "maximum": 600000},
                "failure_rate": {"type": "number", "minimum": 0, "maximum": 1},
                "fail_times": {"type": "integer", "minimum": 0},
                "output": _ANY,
            }
        ),
        output_schema=_obj(
            {"result": _ANY, "task": _STR, "attempt": {"type": "integer"}}, ["result"]
        ),
        keywords=(
            "collect",
            "gather",
            "research",
            "find",
            "look",
            "search",
            "check",
            "monitor",
            "agent",
            "mock",
        ),
        text_field="task",
        primary_output="result",
    ),
    _MOCK_CRITICAL,
    *_CALENDAR_TOOLS,
)


# What a deployment offers: the tools workers run, and the context and messenger tools the
# executor runs itself (kept apart: a catalogue built from BUILTIN_TOOLS plans words to tools).
DEPLOYED_TOOLS: tuple[ToolSpec, ...] = (*BUILTIN_TOOLS, *_COORDINATION_TOOLS)


class Catalogue:
    """The tools a deployment offers, by name.

    Discovered tools (plugins' entry points, agent files) are swapped in by ``replace``, in place,
    so every module holding ``DEFAULT_CATALOGUE`` sees the new set at once; ``version`` counts the
    swaps, so a cache built from the tools (the planner's index) knows when to rebuild.
    """

    def __init__(self, tools: tuple[ToolSpec, ...] = DEPLOYED_TOOLS) -> None:
        self._tools = {t.name: t for t in tools}
        self.version = 0

    def replace(self, tools: tuple[ToolSpec, ...] | list[ToolSpec]) -> None:
        """Offer exactly ``tools`` from now on (one assignment: readers see old or new, never half)."""
        self._tools = {t.name: t for t in tools}
        self.version += 1

    def get(self, name: str) -> ToolSpec | None:
        return self._tools.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def names(self) -> list[str]:
        return sorted(self._tools)

    def all(self) -> list[ToolSpec]:
        return [self._tools[n] for n in self.names()]


DEFAULT_CATALOGUE = Catalogue()


class ToolList(BaseModel):
    """``GET /v1/tools``."""

    tools: list[ToolSpec] = Field(default_factory=list)


class ToolStats(BaseModel):
    """How a tool has fared: planners prefer, among equally fitting tools, the one that works.

    Fed by whoever measures tool calls; the offline planner only reads it (a tie breaker, never a
    reason to pick a tool that does not fit the task).
    """

    model_config = ConfigDict(frozen=True)

    calls: int = Field(ge=0)
    success_rate: float = Field(ge=0, le=1)
    p50_ms: float | None = Field(None, ge=0)
