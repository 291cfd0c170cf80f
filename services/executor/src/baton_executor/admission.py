"""Admission from the executor's store: locks, a workspace's steps in flight, and call rates.

Shared by every executor replica because it lives in PostgreSQL, next to the events:
- **Locks** are claims on names, FIFO by ticket. A step asks for all its locks at once and is
  granted them only together, so a waiting step holds nothing and the lowest ticket can always
  go ahead once the running holders end: no deadlock. Grants are written in the same commit as
  the dispatch; the store refuses a commit whose grant clashes with a live claim (another
  replica got there first), and the batch is decided again.
- **Steps in flight**: each workspace has a number of places (``slot`` claims); a step holds one
  from dispatch to its end. This keeps one workspace's backlog out of the shared work queue, so
  another's steps do not queue behind it. A place freed goes first to whoever asks in the same
  batch (mostly the next step of a running execution: work in progress finishes first), then to
  the queue in ticket order (``handoffs``), so a queue never forces every step through a timer.
  A place freed by a step that the execution's own state shows held it (admitted here, its
  claim's lease not near its end) is taken by the next ask of the same batch without reading
  the store: the workspace's count cannot grow by that hand-over, so a chain's next step takes
  its place with no round trip. An execution's first step (no place freed before it) takes a
  place without a read too, unless this process saw the workspace's places crowded a moment
  ago: its commit checks the bound (``Commit.places_checked``: the replicas take turns on the
  slot in PostgreSQL and count), and a commit that would pass it is refused and decided again,
  reading. Otherwise the places are read.
- **Executions in flight** (a workspace's ``max_executions_in_flight``, at most the
  installation's ``BATON_MAX_EXECUTIONS_IN_FLIGHT``): places held from an
  execution's first dispatch to its end, strictly FIFO.
- **Rates**: one call per ``per_s / count`` seconds per (workspace, tool), and per workspace for
  ``max_steps_per_minute``. A step reserves its place and waits for it on a durable timer.

This object is per batch: ``begin`` forgets what the last batch saw, ``changes`` hands the
claims decided to the commit.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeAlias

from baton_common.catalogue import DEFAULT_CATALOGUE, Catalogue
from baton_common.rates import Rate
from baton_common.store import LockRow, MemoryEventStore, PostgresEventStore, clashes
from baton_common.workspaces import WorkspacePolicy

from baton_executor.ports import Admitted, Ask, Claim, Wait

log = logging.getLogger(__name__)

LOCK_RECHECK_S = 5.0  # a waiter asks again this often even if no release woke it
QUOTA_RECHECK_S = 30.0  # the same for a place in flight (releases wake waiters promptly)
DEFAULT_STEPS_IN_FLIGHT = 256
# A freed place is taken again without a read only if its claim had this long left: one about
# to lapse may no longer count (the replicas' and PostgreSQL's clocks may differ a little).
PLACE_MARGIN_S = 10.0
# An execution's end skips the read for the queue behind the place it frees when this process
# read that slot this recently and saw no queue, and queued nothing on it since (``handoffs``).
NO_QUEUE_FRESH_S = 1.0
# A place is granted without a read (checked in the commit instead) unless a read of its slot
# found it half taken or queued for, or a commit of this process was refused, this recently:
# then a refusal is likely, and a refused commit costs a commit and a decision again.
CROWDED_S = 5.0

Store: TypeAlias = PostgresEventStore | MemoryEventStore


class StoreAdmission:
    """The executor's admission port over its store and the workspaces' policies."""

    def __init__(
        self,
        store: Store,
        policies: Callable[[str], WorkspacePolicy] = lambda _ws: WorkspacePolicy(),
        *,
        catalogue: Catalogue = DEFAULT_CATALOGUE,
        steps_in_flight: int = DEFAULT_STEPS_IN_FLIGHT,
    ) -> None:
        self.store, self.policies, self.catalogue = store, policies, catalogue
        self.steps_in_flight = steps_in_flight
        self._seq = itertools.count()
        # slot -> when a read of it (by this process) last saw nobody queued; across batches
        self._no_queue: dict[str, datetime] = {}
        self._crowded: dict[str, datetime] = {}  # slot -> read it before granting until then
        # slot -> the places this process granted in it, not released yet (holder -> lease)
        self._mine: dict[str, dict[str, datetime]] = {}
        self._conflicted_at = -CROWDED_S  # time.monotonic() of this process's last refused commit
        self.begin()

    def begin(self) -> None:
        """A new batch: forget what was read and decided."""
        self._rows: dict[str, list[LockRow]] = {}  # lock name -> claims (read, then as decided)
        self._slots: dict[str, Places] = {}
        self._put: dict[tuple[str, str], LockRow] = {}
        self._by_holder: dict[str, list[tuple[str, str]]] = {}  # holder -> its keys in _put
        self._release: set[str] = set()
        self._extend: dict[str, datetime] = {}
        self._freed: set[str] = set()  # workspaces where this batch freed something
        self._holds: dict[tuple[str, str], bool] = {}  # (slot, execution) -> holds a place
        # Places this batch freed that the execution's state shows held (until when each claim
        # lasted), per workspace, not taken again yet; the holders given one, per slot, unread.
        self._credit: dict[str, list[datetime]] = {}
        self._caps: dict[str, int | None] = {}  # workspace -> executions in flight at most
        self._unread: dict[str, set[str]] = {}
        self._checked: dict[str, int] = {}  # slot -> capacity: places granted without a read
        self._placed: list[tuple[str, str]] = []  # (slot, holder) of each place granted

    def conflicted(self) -> None:
        """A commit of this process was refused (a place's bound, a lock, a version): read the
        places before granting one for a while; the places the refused batch granted are not
        held."""
        self._conflicted_at = time.monotonic()
        for slot, holder in self._placed:
            self._mine.get(slot, {}).pop(holder, None)

    def changes(self) -> tuple[list[str], list[LockRow], list[tuple[str, datetime]]]:
        """Holders to release, claims to write and leases to extend, for this batch's commit."""
        return sorted(self._release), list(self._put.values()), sorted(self._extend.items())

    def bounds(self) -> list[tuple[str, int]]:
        """(slot, capacity) of each slot this batch granted a place in without reading it: the
        commit checks that it holds no more than that (``Commit.places_checked``)."""
        return sorted(self._checked.items())

    def extend(self, holder: str, until: datetime) -> None:
        """Keep ``holder``'s held claims alive until ``until`` (a retry waits holding them)."""
        self._extend[holder] = until

    def _executions_cap(self, workspace: str) -> int | None:
        """The workspace's cap on executions in flight, read once a batch: every ask reads it
        two or three times, and the policy's property reads a pydantic private attribute (3% of
        the executor's samples at saturation)."""
        if workspace not in self._caps:
            self._caps[workspace] = self.policies(workspace).executions_cap
        return self._caps[workspace]

    # --- the port -----------------------------------------------------------------------------

    def admit(self, ask: Ask, now: datetime) -> Admitted | Wait:
        prefix = f"lock:{ask.workspace}:"  # each workspace names its own resources
        ask = replace(ask, locks=tuple(Claim(prefix + c.name, c.mode) for c in ask.locks))
        ticket = ask.ticket or self._ticket(now)
        blockers = self._blockers(ask, ticket, now)
        if blockers:
            self._queue(ask, ticket, [(c.name, c.mode) for c in ask.locks], ask.holder)
            names = ", ".join(sorted({n.removeprefix(prefix) for n, _ in blockers}))
            holders = tuple(sorted({h for _, h in blockers}))
            return Wait(
                "locks",
                f"lock {names} held by {', '.join(holders)}",
                self._lock_until(ask, now),
                holders,
                ticket,
            )
        if waited := self._execution_place(ask, ticket, now):
            return waited
        placed = self._executions_cap(ask.workspace) is not None
        if ask.inline:  # no place in flight: its locks and rates only
            if waited := self._rate(ask, now, ticket):
                return waited
            self._grant(ask, ticket, None)
            return Admitted(holds_step=bool(ask.locks), holds_execution=placed)
        slot = f"slot:steps:{ask.workspace}"
        how = self._step_place(slot, ask, now)
        if how is None:
            self._queue(ask, ticket, [(slot, "slot")], slot_holder(ask.holder))
            cap = self._slot_capacity(ask.workspace)
            reason = f"workspace {ask.workspace!r} has {cap} steps in flight (its limit)"
            until = now + timedelta(seconds=QUOTA_RECHECK_S)
            return Wait("quota", reason, until, ticket=ticket, place=True)
        waited = self._rate(ask, now, ticket)
        if waited is not None:
            return waited
        self._grant(ask, ticket, slot)
        self._take_place(slot, slot_holder(ask.holder), ticket, how, now)
        self._mine.setdefault(slot, {})[slot_holder(ask.holder)] = ask.lease_until
        self._placed.append((slot, slot_holder(ask.holder)))
        return Admitted(holds_execution=placed, place_until=ask.lease_until)

    def watch(self, holder: str, resources: list[str]) -> dict[str, list[str]]:
        """Record that ``holder`` (an execution) writes ``resources`` until it ends; returns the
        other running executions that write each of them."""
        names = [f"write:{r}" for r in resources]
        self._load(names)
        found = {}
        for resource, name in zip(resources, names, strict=True):
            others = sorted({r.holder for r in self._rows[name] if r.holder != holder})
            if others:
                found[resource] = others
            self._remember(LockRow(name, holder, "write", 0, False))
        return found

    def release(
        self,
        holder: str,
        workspace: str,
        *,
        locks: bool = True,
        held_until: datetime | None = None,
    ) -> None:
        gone = {slot_holder(holder), holder} if locks else {slot_holder(holder)}
        self._mine.get(f"slot:steps:{workspace}", {}).pop(slot_holder(holder), None)
        if held_until is not None and slot_holder(holder) not in self._release:
            self._credit.setdefault(workspace, []).append(held_until)
        else:
            self._freed.add(workspace)
        self._release |= gone
        for key in [k for h in gone for k in self._by_holder.pop(h, ())]:
            self._put.pop(key, None)
        for name, rows in self._rows.items():
            self._rows[name] = [r for r in rows if r.holder not in gone]
        for places in self._slots.values():  # a place freed is free for the rest of the batch
            places.holders -= gone
        for taken in self._unread.values():
            taken -= gone

    # --- locks --------------------------------------------------------------------------------

    def _blockers(self, ask: Ask, ticket: int, now: datetime) -> list[tuple[str, str]]:
        """(name, holder) of every live claim, or earlier queued one, in this ask's way."""
        self._load([c.name for c in ask.locks])
        found = []
        for claim in ask.locks:
            me = LockRow(claim.name, ask.holder, claim.mode, ticket, True)
            rows = self._rows[claim.name]
            others = [r for r in rows if r.holder != ask.holder]
            if clashes(me, others, now):
                found += [(claim.name, r.holder) for r in others if r.live(now)]
            if any(r.holder == ask.holder and r.live(now) for r in rows):
                continue  # it holds it already (a retry): nobody queued behind it goes first
            queued = [r for r in others if not r.granted and r.ticket < ticket]
            found += [(claim.name, r.holder) for r in queued if "exclusive" in (r.mode, claim.mode)]
        return found

    def _load(self, names: list[str]) -> None:
        missing = [n for n in names if n not in self._rows]
        if missing:
            rows = self.store.lock_rows(missing)
            for name in missing:  # less what this batch released already
                self._rows[name] = [
                    r for r in rows if r.name == name and r.holder not in self._release
                ]

    def _lock_until(self, ask: Ask, now: datetime) -> datetime:
        leases = [
            r.lease_until
            for c in ask.locks
            for r in self._rows[c.name]
            if r.granted and r.lease_until is not None and r.lease_until > now
        ]
        return min([now + timedelta(seconds=LOCK_RECHECK_S), *leases])

    def _queue(self, ask: Ask, ticket: int, claims: list[tuple[str, str]], holder: str) -> None:
        for name, mode in claims:
            cap = self._slot_capacity(ask.workspace) if mode == "slot" else 1
            self._remember(
                LockRow(name, holder, mode, ticket, False, cap, None, ask.wake_timer, ask.wake)
            )
        if claims and claims[0][1] == "slot":
            self._slots[claims[0][0]].queue(ticket)
            self._no_queue.pop(claims[0][0], None)

    def _remember(self, row: LockRow) -> None:
        self._put[(row.name, row.holder)] = row
        self._by_holder.setdefault(row.holder, []).append((row.name, row.holder))
        if row.name in self._rows:
            rows = [r for r in self._rows[row.name] if r.holder != row.holder]
            self._rows[row.name] = [*rows, row]

    # --- steps in flight ----------------------------------------------------------------------

    def _step_place(self, slot: str, ask: Ask, now: datetime) -> str | None:
        """How one of the workspace's places in flight is free for this ask (whoever asks first
        in a batch: running work asks before the queue is handed what is left), or None. A
        place this batch freed, one known to have been held, is taken without a read
        (``"handed"``): the workspace's count stays where it was. Without one, and with no sign
        of a crowd, a place is taken unread and its commit checks the bound (``"checked"``).
        Otherwise the store says (``_slot_free``)."""
        capacity = self._slot_capacity(ask.workspace)
        if slot not in self._slots:
            if self._held_freed(ask.workspace, now):
                return "handed"
            if self._uncrowded(slot, capacity, now):
                return "checked"
        return "read" if self._slot_free(slot, None, capacity, now) else None

    def _uncrowded(self, slot: str, capacity: int, now: datetime) -> bool:
        """May a place be granted without a read, its commit checking the bound? Not when a read
        found the slot half taken or queued for a moment ago, nor after a refused commit, nor
        when this process holds half the places itself: a refusal costs a commit and a
        decision again."""
        if time.monotonic() - self._conflicted_at < CROWDED_S:
            return False
        if now < self._crowded.get(slot, now):
            return False
        mine = self._mine.get(slot, {})
        if any(until <= now for until in mine.values()):  # lapsed: no longer counted anywhere
            mine = self._mine[slot] = {h: u for h, u in mine.items() if u > now}
        return len(mine) < capacity // 2

    def _held_freed(self, workspace: str, now: datetime) -> bool:
        """Did this batch free a place it knows was held (its claim not about to lapse,
        when it would not have counted), not taken again yet?"""
        soon = now + timedelta(seconds=PLACE_MARGIN_S)
        return any(until > soon for until in self._credit.get(workspace, ()))

    def _slot_free(self, slot: str, ticket: int | None, capacity: int, now: datetime) -> bool:
        """Is a place free (to ``ticket``: FIFO; without one, to whoever asks)?"""
        if slot not in self._slots:
            holders, first = self.store.slot_usage([slot], now)[slot]
            taken = self._unread.pop(slot, set())  # given freed places before this read
            self._slots[slot] = Places((holders - self._release) | taken, first, capacity)
            if first is None:
                self._no_queue[slot] = now
            else:
                self._no_queue.pop(slot, None)
            if first is not None or 2 * len(self._slots[slot].holders) >= capacity:
                self._crowded[slot] = now + timedelta(seconds=CROWDED_S)
            else:
                self._crowded.pop(slot, None)
        return self._slots[slot].free(capacity, ticket)

    def handoffs(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """Places freed in this batch go to the first steps queued for them, in this batch: the
        wake payloads of those steps (their asks come next). Without this, once a queue exists
        every place would change hands through a timer. A workspace whose freed places were
        all taken again by running work has none to hand over: no read. Nor does a place an
        execution's state shows held and nobody took (``_no_queue_known``: a chain's end)."""
        payloads: dict[str, dict[str, Any]] = {}
        now = now or datetime.now(UTC)
        left = {ws for ws, credit in self._credit.items() if credit}
        left = {ws for ws in left if ws in self._freed or not self._no_queue_known(ws, now)}
        for ws in sorted(self._freed | left):
            self._slot_free(f"slot:steps:{ws}", None, self._slot_capacity(ws), now)
            if (cap := self._executions_cap(ws)) is not None:
                self._slot_free(f"slot:executions:{ws}", None, cap, now)
        for name, places in self._slots.items():
            free = places.capacity - len(places.holders)
            if places.first is None or free <= 0:
                continue
            for row in self.store.queued(name, free):
                if row.wake_timer and (row.name, row.holder) not in self._put:
                    payloads[row.wake_timer] = row.wake
        return list(payloads.values())

    def _no_queue_known(self, workspace: str, now: datetime) -> bool:
        """Did this process see no queue for the workspace's places in flight a moment ago, and
        queue nothing there since? Then the places this batch leaves free are not read for a
        queue. One that another replica queued since is not lost: the commit that frees the
        place gives the first waiters a due-now timer (the store's commit function), and this
        process's timer loop looks ``RELEASE_LOOK_S`` after any commit that releases claims.
        Only a workspace without a cap on executions in flight (that place is read as before)."""
        seen = self._no_queue.get(f"slot:steps:{workspace}")
        if seen is None or self._executions_cap(workspace) is not None:
            return False
        return timedelta(0) <= now - seen <= timedelta(seconds=NO_QUEUE_FRESH_S)

    def _execution_place(self, ask: Ask, ticket: int, now: datetime) -> Wait | None:
        """With ``max_executions_in_flight``: an execution holds a place from its first
        dispatch to its end; a new one waits (FIFO) for a place."""
        cap = self._executions_cap(ask.workspace)
        if cap is None:
            return None
        name, execution = f"slot:executions:{ask.workspace}", ask.holder.split(":", 1)[0]
        if (name, execution) not in self._holds:
            mine = self.store.lock_rows([name], [execution])
            self._holds[(name, execution)] = any(r.granted for r in mine)
        if self._holds[(name, execution)]:
            return None
        if self._slot_free(name, ticket, cap, now):
            self._remember(LockRow(name, execution, "slot", ticket, True, cap))
            self._holds[(name, execution)] = True
            self._slots[name].take(execution, ticket)
            return None
        self._remember(LockRow(name, execution, "slot", ticket, False, cap, None,
                               ask.execution_wake_timer, ask.execution_wake))  # fmt: skip
        self._slots[name].queue(ticket)
        reason = f"workspace {ask.workspace!r} has {cap} executions in flight (its limit)"
        return Wait("quota", reason, now + timedelta(seconds=QUOTA_RECHECK_S), ticket=ticket)

    def _slot_capacity(self, workspace: str) -> int:
        return self.steps_in_flight

    def _grant(self, ask: Ask, ticket: int, slot: str | None) -> None:
        for claim in ask.locks:
            self._remember(
                LockRow(claim.name, ask.holder, claim.mode, ticket, True, 1, ask.lease_until)
            )
        if slot is None:
            return
        cap = self._slot_capacity(ask.workspace)
        self._remember(
            LockRow(slot, slot_holder(ask.holder), "slot", ticket, True, cap, ask.lease_until)
        )

    def _take_place(self, slot: str, holder: str, ticket: int, how: str, now: datetime) -> None:
        """Count the place granted, as ``_step_place`` found it free."""
        if how == "read":
            self._slots[slot].take(holder, ticket)
            return
        workspace = slot.removeprefix("slot:steps:")
        if how == "handed":
            credit = self._credit[workspace]
            credit.remove(max(credit))
        else:  # its commit checks the bound; and a slot with room has no queue left waiting
            self._checked[slot] = self._slot_capacity(workspace)  # (the release woke it)
            self._no_queue[slot] = now
        self._unread.setdefault(slot, set()).add(holder)

    # --- rates --------------------------------------------------------------------------------

    def _rate(self, ask: Ask, now: datetime, ticket: int) -> Wait | None:
        """Reserve a place in each rate that applies; wait for the latest one."""
        if ask.rate_at is not None:
            if ask.rate_at <= now:
                return None  # its place came: already paid for
            why = "waiting for its reserved place in the rate"
            return Wait("rate", why, ask.rate_at, ticket=ticket, rate_at=ask.rate_at)
        at, why = now, ""
        for key, rate in self._rates(ask):
            if rate.count <= 0:
                return Wait(
                    "quota",
                    f"{key}: no calls allowed (rate {rate})",
                    now + timedelta(seconds=QUOTA_RECHECK_S),
                )
            place = self.store.reserve(key, rate.per_s / rate.count, now)
            if place > at:
                at, why = place, f"{key} is limited to {rate}"
        if at <= now:
            return None
        return Wait("rate", why, at, ticket=ticket, rate_at=at)

    def _rates(self, ask: Ask) -> list[tuple[str, Rate]]:
        policy = self.policies(ask.workspace)
        rates = []
        spec = self.catalogue.get(ask.tool)
        tool_rate = policy.rate_for(ask.tool) or (spec.rate() if spec else None)
        if tool_rate is not None:
            rates.append((f"{ask.workspace}/{ask.tool}", tool_rate))
        if policy.max_steps_per_minute is not None:
            rates.append(
                (f"{ask.workspace}/steps", Rate(count=policy.max_steps_per_minute, per_s=60))
            )
        return rates

    def _ticket(self, now: datetime) -> int:
        """FIFO order across replicas: microseconds since the epoch, then a local counter."""
        return int(now.timestamp() * 1_000_000) * 1000 + next(self._seq) % 1000


@dataclass
class Places:
    """A slot name as this batch sees it: who holds a place, and the first queued ticket."""

    holders: set[str]
    first: int | None
    capacity: int

    def free(self, capacity: int, ticket: int | None) -> bool:
        """A place is free and (given a ticket: FIFO) nobody queued before ``ticket``."""
        if len(self.holders) >= capacity:
            return False
        return ticket is None or self.first is None or self.first >= ticket

    def take(self, holder: str, ticket: int) -> None:
        self.holders.add(holder)
        if self.first == ticket:
            # The next queued ticket is not known here: waiters woken together go on in turn
            # (a newcomer may slip in within this batch; the next batch reads the queue again).
            self.first = None

    def queue(self, ticket: int) -> None:
        self.first = ticket if self.first is None else min(self.first, ticket)


def slot_holder(holder: str) -> str:
    """A step's place in flight is held apart from its locks: a retry gives it up, not them."""
    return f"{holder}/slot"


def policy_reader(url: str | None, schema: str) -> Callable[[str], WorkspacePolicy]:
    """Each workspace's policy from the read model (briefly cached), or none in memory mode."""
    from baton_common.workspaces import InstallationLimits, PolicyReader

    if not url or url.startswith("memory://"):
        installation_only = InstallationLimits().applied(WorkspacePolicy())
        return lambda _ws: installation_only

    reader = PolicyReader(url, schema)

    def get(workspace: str) -> WorkspacePolicy:
        t0 = time.perf_counter()
        policy = reader.get(workspace)
        if time.perf_counter() - t0 > 0.5:
            log.warning(
                "reading workspace %s's policy took %.1fs", workspace, time.perf_counter() - t0
            )
        return policy

    return get
