"""The admission port: how the Execution aggregate asks whether a ready step may start now.

The domain stays free of I/O: it describes what a step needs (an ``Ask``) and records the answer
as events. The application answers from the store (``admission.StoreAdmission``); unit tests may
answer with a fake. Rebuilding an execution from its events never asks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

WaitingFor = Literal["locks", "rate", "quota"]


@dataclass(frozen=True)
class Claim:
    """A resolved lock of a step: ``repo:baton`` held ``exclusive`` or ``shared``."""

    name: str
    mode: str = "exclusive"


@dataclass(frozen=True)
class Ask:
    """A ready step asking to start."""

    holder: str  # "<execution>:<step>": who holds what it is granted
    workspace: str
    tool: str
    locks: tuple[Claim, ...]  # sorted by name: every replica takes them in the same order
    lease_until: datetime  # a dead holder's claims lapse then (the step's deadline)
    wake_timer: str  # the timer that re-asks, set due-now when a claim it waits for is freed
    wake: dict[str, Any] = field(default_factory=dict)
    ticket: int | None = None  # its place in the queues, once it has waited
    rate_at: datetime | None = None  # a rate place it already reserved
    # The timer that re-asks for every waiting step of the execution (its place in flight).
    execution_wake_timer: str | None = None
    execution_wake: dict[str, Any] = field(default_factory=dict)
    # The executor runs it itself (a pure tool): it takes no place among the workspace's steps
    # in flight, which keep a backlog out of the shared work queue it never enters.
    inline: bool = False


@dataclass(frozen=True)
class Admitted:
    """Start now; the claims are granted in the same commit as the dispatch. ``holds_step``:
    the step holds claims to give back when it ends; ``holds_execution``: its execution holds a
    place in flight to give back when it ends; ``place_until``: the step holds one of its
    workspace's places in flight, whose claim lapses then."""

    holds_step: bool = True
    holds_execution: bool = False
    place_until: datetime | None = None


@dataclass(frozen=True)
class Wait:
    """Not now: what it waits for, who holds it, and when to ask again at the latest."""

    waiting_for: WaitingFor
    reason: str
    until: datetime
    holders: tuple[str, ...] = ()
    ticket: int | None = None
    rate_at: datetime | None = None
    place: bool = False  # queued for a place among the workspace's steps in flight


class Admission(Protocol):
    """Answers asks and forgets a holder's claims when its step ends (``locks=False``: a failed
    attempt that will be retried gives up its place in flight but keeps its locks;
    ``held_until``: the execution's own state shows the step held a place in flight whose claim
    lasts until then, so the place is free for the rest of the batch without a look at the
    store). ``watch`` records the resources a running execution writes and names the others
    that write them."""

    def admit(self, ask: Ask, now: datetime) -> Admitted | Wait: ...

    def watch(self, holder: str, resources: list[str]) -> dict[str, list[str]]: ...

    def release(
        self,
        holder: str,
        workspace: str,
        *,
        locks: bool = True,
        held_until: datetime | None = None,
    ) -> None: ...

    def extend(self, holder: str, until: datetime) -> None: ...


class OpenAdmission:
    """Admits everything: for executions run without limits (unit tests, tools)."""

    def admit(self, ask: Ask, now: datetime) -> Admitted | Wait:
        return Admitted(holds_step=False)

    def watch(self, holder: str, resources: list[str]) -> dict[str, list[str]]:
        return {}

    def release(
        self,
        holder: str,
        workspace: str,
        *,
        locks: bool = True,
        held_until: datetime | None = None,
    ) -> None:
        pass

    def extend(self, holder: str, until: datetime) -> None:
        pass
