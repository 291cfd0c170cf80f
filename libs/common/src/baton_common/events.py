"""Integration events: the envelope, the registry of stable names, JSON codec and upcasting.

Every event that crosses a process boundary is a frozen pydantic model registered under a stable
name (``"execution.step_succeeded"``), never a Python path, so code can move without breaking the
history. Older versions are upcast on read by one shared loop (``EventRegistry.decode``); stored
bytes are never rewritten. The registry with every event in it, and ``decode``, are the contracts
package's (``baton_common.contracts``): this module knows no particular event.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class EventDecodeError(ValueError):
    """A message that can never become a typed event (bad JSON, unknown type, invalid fields)."""


def utcnow() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel):
    """Base of every integration event: the envelope plus the payload fields of the subclass."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    TYPE: ClassVar[str] = ""
    VERSION: ClassVar[int] = 1

    type: str = ""
    schema_version: int = 0
    event_id: UUID = Field(default_factory=uuid4)
    workspace_id: str = "default"
    aggregate_id: UUID
    aggregate_version: int = 0
    occurred_at: datetime = Field(default_factory=utcnow)
    correlation_id: UUID | None = None
    causation_id: UUID | None = None
    traceparent: str | None = None
    # Who asked for it ("ops-bot (operator)"), on events a person or key caused; the audit trail.
    actor: str | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("TYPE"):
            _REGISTRY.register(cls)

    # After validation, not before: a "before" validator has pydantic make a dict of the JSON
    # first and validate that, which doubled the cost of decoding an event (the largest part
    # of a projection rebuild's CPU).
    @model_validator(mode="after")
    def _stamp_type(self) -> Event:
        if self.TYPE:
            fields, given = self.__dict__, self.__pydantic_fields_set__
            if "type" not in given:
                fields["type"] = self.TYPE
                given.add("type")
            elif fields["type"] != self.TYPE:
                raise ValueError(f"type {fields['type']!r} does not match {self.TYPE!r}")
            if "schema_version" not in given:
                fields["schema_version"] = self.VERSION
                given.add("schema_version")
        return self

    @property
    def domain(self) -> str:
        return self.type.split(".", 1)[0]

    def subject(self, root: str = "baton") -> str:
        """``<root>.<workspace>.<domain>.<event_type>``: the JetStream subject of this event."""
        return f"{root}.{self.workspace_id}.{self.type}"

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()

    def caused(self, **fields: Any) -> dict[str, Any]:
        """Envelope fields for an event caused by this one (same workspace, correlation, trace)."""
        return {
            "workspace_id": self.workspace_id,
            "correlation_id": self.correlation_id,
            "causation_id": self.event_id,
            "traceparent": self.traceparent,
            **fields,
        }


class EventRegistry:
    """Stable event names to model classes, and the upcasters between their versions."""

    def __init__(self) -> None:
        self._models: dict[str, type[Event]] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}

    def register(self, model: type[Event]) -> None:
        existing = self._models.get(model.TYPE)
        if existing is not None and existing.__qualname__ != model.__qualname__:
            raise TypeError(f"event type {model.TYPE!r} registered twice")
        self._models[model.TYPE] = model

    def upcaster(self, type_: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Register ``fn(payload_v_n) -> payload_v_n+1`` for ``type_``."""

        def decorate(fn: Upcaster) -> Upcaster:
            self._upcasters[(type_, from_version)] = fn
            return fn

        return decorate

    def model(self, type_: str) -> type[Event]:
        try:
            return self._models[type_]
        except KeyError:
            raise EventDecodeError(f"unknown event type {type_!r}") from None

    def types(self) -> dict[str, type[Event]]:
        return dict(self._models)

    def upcast(self, data: dict[str, Any]) -> dict[str, Any]:
        model = self.model(str(data.get("type")))
        version = int(data.get("schema_version") or 1)
        if version > model.VERSION:
            raise EventDecodeError(
                f"{model.TYPE} v{version} is newer than this code understands (v{model.VERSION})"
            )
        while version < model.VERSION:
            step = self._upcasters.get((model.TYPE, version))
            if step is None:
                raise EventDecodeError(f"no upcaster for {model.TYPE} v{version}")
            data = step(dict(data))
            version += 1
            data["schema_version"] = version
        return data

    def decode(self, raw: bytes | str | dict[str, Any], type_hint: str | None = None) -> Event:
        """Bytes or a dict of any known version to the current typed event. An event of a type
        that never changed, or one that says it is of its type's current version, is parsed
        straight from its bytes, a third faster, when its type is known beforehand:
        ``type_hint`` (a message's ``Baton-Type`` header) or the first field ``Event.to_json``
        writes. Anything else takes the general path."""
        if not isinstance(raw, dict):
            model = self._models.get(type_hint or _leading_type(raw) or "")
            # an event of a type that changed must say its version (none given means the first)
            if model is not None and (model.VERSION == 1 or _leading_version(raw) == model.VERSION):
                try:
                    event = model.model_validate_json(raw)
                except ValidationError:
                    pass  # the general path says why
                else:
                    if event.schema_version == model.VERSION:  # no older version to upcast from
                        return event
        if isinstance(raw, dict):
            data = raw
        else:
            try:
                data = json.loads(raw)
            except (ValueError, UnicodeDecodeError) as exc:
                raise EventDecodeError(f"not JSON: {exc}") from None
        if not isinstance(data, dict) or "type" not in data:
            raise EventDecodeError("not an event: a JSON object with a 'type' is expected")
        data = self.upcast(data)
        model = self.model(data["type"])
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise EventDecodeError(f"invalid {model.TYPE}: {_brief(exc)}") from None


def _brief(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()
    )


# The process-wide registry every event subclass registers itself in. ``contracts.registry()``
# hands it out once every contract is imported (so decoding never meets a type not yet loaded).
_REGISTRY = EventRegistry()


# --- reading what ``Event.to_json`` writes first, without parsing the rest -----------------------


def _leading_type(raw: bytes | str) -> str | None:
    """The type of an event serialised by ``Event.to_json`` (its first field); None when it does
    not start so (decode then finds it)."""
    data = raw.encode() if isinstance(raw, str) else raw
    if not data.startswith(b'{"type":"'):
        return None
    end = data.find(b'"', 9)
    return data[9:end].decode() if end > 9 else None


def _leading_version(raw: bytes | str) -> int | None:
    """The version an event serialised by ``Event.to_json`` says it is of (its second field);
    None when it does not start so."""
    data = raw.encode() if isinstance(raw, str) else raw
    if not data.startswith(b'{"type":"'):
        return None
    start = data.find(b'","schema_version":', 9) + 19
    end = data.find(b",", start)
    if start < 19 or not data[start:end].isdigit():
        return None
    return int(data[start:end])


# The envelope's fields, first and in this order, before any payload.
_ENVELOPE = re.compile(
    rb'\{"type":"([a-z0-9_.]+)","schema_version":\d+,"event_id":"([0-9a-f-]{36})",'
    rb'"workspace_id":"([A-Za-z0-9_-]+)",.{0,400}?"causation_id":(?:null|"[0-9a-f-]{36}"),'
    rb'"traceparent":(null|"[0-9a-f-]{1,64}"),'
)


def envelope_of(state: bytes) -> dict[str, Any] | None:
    """The type, id, workspace and trace of a stored event, read off its first bytes instead of
    parsing all of it (the relay's subject and headers); None when it is not laid out as
    ``Event.to_json`` writes it."""
    found = _ENVELOPE.match(state)
    if found is None:
        return None
    traceparent = found[4][1:-1].decode() if found[4] != b"null" else None
    return {
        "type": found[1].decode(),
        "event_id": found[2].decode(),
        "workspace_id": found[3].decode(),
        "traceparent": traceparent,
    }
