"""The hitl service on real NATS JetStream and PostgreSQL: gates opened from the bus, decisions
over request/reply, deadlines from durable timers, and a kill -9 in the middle of it all."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from baton_common import contracts as c
from baton_common.approvals import DecisionReply, DecisionRequest, rpc_subject
from baton_common.bus import Bus
from baton_common.embedded import free_port
from baton_common.events import Event
from baton_common.service import Runtime
from baton_common.settings import Settings
from baton_common.store import PostgresEventStore
from baton_common.testing import Watch, gate_requested, service_env, until
from baton_hitl.main import start_hitl
from baton_hitl.rpc import request_decision

pytestmark = pytest.mark.integration
INPUT = {"url": "https://example.com/deploy", "method": "POST"}


class Seen(Watch):
    """Every approval event on the stream, as it arrives."""

    def of(self, approval_id: UUID) -> list[str]:
        return [e.type for e in self.about(approval_id)]

    def last(self, approval_id: UUID) -> Event:
        return self.about(approval_id)[-1]

    async def wait(self, approval_id: UUID, type_: str, timeout: float = 30) -> None:
        await until(lambda: type_ in self.of(approval_id), f"{type_} of {approval_id}", timeout)


@pytest.fixture
async def seen(watch: Any) -> Seen:
    return await watch("*.approval.>", Seen)


@pytest.fixture
async def hitl(
    settings: Settings, bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Runtime]:
    monkeypatch.setenv("BATON_TIMER_INTERVAL", "0.1")
    runtime = await start_hitl(settings)
    yield runtime
    await runtime.close()


def far_future() -> datetime:
    return datetime.now(UTC) + timedelta(days=1)


def request(
    policy: dict[str, Any] | None = None, workspace: str = "acme"
) -> c.StepApprovalRequested:
    return gate_requested(INPUT, policy, workspace)


async def decide(
    bus: Bus,
    gate: c.StepApprovalRequested,
    user: str,
    verdict: str = "approve",
    role: str = "approver",
    **fields: Any,
) -> DecisionReply:
    body = DecisionRequest(
        approval_id=str(gate.approval_id),
        workspace_id=fields.pop("workspace_id", "acme"),
        user=user,
        role=role,
        decision=verdict,  # type: ignore[arg-type]
        **fields,
    )
    return await request_decision(bus, body, timeout=10)


async def test_no_hitl_running_is_a_clear_503(bus: Bus) -> None:
    reply = await decide(bus, request(), "alice")
    assert reply.status == 503 and "not running; nothing was decided" in reply.detail


async def test_a_silent_hitl_is_a_503_that_says_the_outcome_is_unknown(bus: Bus) -> None:
    silent = await bus.nc.subscribe(rpc_subject(bus.settings.subject_root), queue="hitl")
    try:
        body = DecisionRequest(
            approval_id=str(uuid4()),
            workspace_id="acme",
            user="a",
            role="admin",
            decision="approve",
        )
        reply = await request_decision(bus, body, timeout=0.3)
    finally:
        await silent.unsubscribe()
    assert reply.status == 503 and "may or may not be recorded" in reply.detail


async def test_a_gate_opens_once_and_takes_votes_edits_and_refusals(
    bus: Bus, hitl: Runtime, seen: Seen
) -> None:
    gate = request({"min_approvals": 2, "approvers": ["alice", "bob", "approver"]})
    await bus.publish([gate, gate.model_copy(update={"event_id": uuid4()})])  # asked twice
    await seen.wait(gate.approval_id, "approval.opened")

    first = await decide(bus, gate, "alice", comment="looks right")
    assert first.status == 200 and first.approval is not None
    assert (
        first.approval["status"] == "pending" and first.detail == "vote recorded: 1 of 2 approvals"
    )
    assert (await decide(bus, gate, "alice")).status == 409  # the same person, twice
    forbidden = await decide(bus, gate, "vic", role="viewer")
    assert forbidden.status == 403 and "only alice, bob, approver may decide" in forbidden.detail
    assert (await decide(bus, gate, "alice", workspace_id="other")).status == 404
    assert (await decide(bus, gate, "bob", "edit", input={"url": "ftp://nope"})).status == 422

    edited = {**INPUT, "url": "https://example.com/deploy?canary=1"}
    granted = await decide(bus, gate, "bob", "edit", input=edited)
    assert granted.status == 200 and granted.approval is not None
    assert granted.approval["status"] == "granted" and granted.approval["decided_input"] == edited
    await seen.wait(gate.approval_id, "approval.granted")
    event = seen.last(gate.approval_id)
    assert isinstance(event, c.ApprovalGranted)
    assert event.input == edited and event.original_input == INPUT and event.edited
    assert event.by == ["alice", "bob"] and event.correlation_id == gate.aggregate_id
    assert seen.of(gate.approval_id) == [
        "approval.opened", "approval.voted", "approval.voted", "approval.granted"
    ]  # fmt: skip
    assert (await decide(bus, gate, "carol", "reject")).status == 409  # closed


async def test_a_reject_closes_the_gate(bus: Bus, hitl: Runtime, seen: Seen) -> None:
    gate = request()
    await bus.publish([gate])
    await seen.wait(gate.approval_id, "approval.opened")
    reply = await decide(bus, gate, "alice", "reject", comment="not on a friday")
    assert reply.status == 200 and reply.approval is not None
    assert reply.approval["status"] == "rejected"
    await seen.wait(gate.approval_id, "approval.rejected")
    event = seen.last(gate.approval_id)
    assert isinstance(event, c.ApprovalRejected) and event.reason == "not on a friday"


async def test_deadlines_reject_approve_and_escalate(bus: Bus, hitl: Runtime, seen: Seen) -> None:
    rejects = request({"deadline": 0.5})
    approves = request({"deadline": 0.5, "on_timeout": "approve"})
    escalates = request({"deadline": 0.5, "on_timeout": "escalate", "escalate_to": ["cto"],
                         "escalation_deadline": 0.5})  # fmt: skip
    await bus.publish([rejects, approves, escalates])
    await seen.wait(rejects.approval_id, "approval.rejected")
    assert seen.of(rejects.approval_id)[-2:] == ["approval.expired", "approval.rejected"]
    await seen.wait(approves.approval_id, "approval.granted")
    granted = seen.last(approves.approval_id)
    assert isinstance(granted, c.ApprovalGranted) and granted.automatic and granted.input == INPUT
    await seen.wait(escalates.approval_id, "approval.rejected")
    assert seen.of(escalates.approval_id) == [
        "approval.opened", "approval.expired", "approval.escalated", "approval.expired",
        "approval.rejected",
    ]  # fmt: skip


async def test_an_escalated_gate_is_decided_by_the_new_approvers(
    bus: Bus, hitl: Runtime, seen: Seen
) -> None:
    gate = request({"deadline": 0.5, "on_timeout": "escalate", "escalate_to": ["cto"],
                    "escalation_deadline": 3600})  # fmt: skip
    await bus.publish([gate])
    await seen.wait(gate.approval_id, "approval.escalated")
    assert (await decide(bus, gate, "alice")).status == 403
    reply = await decide(bus, gate, "cto", role="admin")
    assert reply.status == 200 and reply.approval is not None
    assert reply.approval["status"] == "granted"


async def test_a_cancelled_step_closes_its_gate(bus: Bus, hitl: Runtime, seen: Seen) -> None:
    gate = request({"deadline": 3600})
    await bus.publish([gate])
    await seen.wait(gate.approval_id, "approval.opened")
    cancelled = c.StepCancelled(
        aggregate_id=gate.aggregate_id,
        aggregate_version=9,
        workspace_id="acme",
        step_id="deploy",
        reason="execution cancelled",
    )
    await bus.publish([cancelled])
    await seen.wait(gate.approval_id, "approval.cancelled")
    assert (await decide(bus, gate, "alice")).status == 409
    assert hitl.store is not None
    assert hitl.store.due_timers(far_future(), 10) == []  # its deadline went with it


# --- kill -9 ------------------------------------------------------------------------------------


def spawn(settings: Settings, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = service_env(
        settings,
        BATON_ACK_WAIT="2",
        BATON_HEALTH_PORT=str(port),
        BATON_TIMER_INTERVAL="0.1",
        OTEL_SDK_DISABLED="true",
    )
    baton = Path(sys.executable).parent / "baton"
    out = log.open("ab")
    return subprocess.Popen([str(baton), "serve", "hitl"], env=env, stdout=out, stderr=out)


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1) as resp:
            return resp.status, resp.read().decode()
    except Exception:
        return 0, ""


async def ready(port: int) -> bool:
    status, _ = await asyncio.to_thread(http_get, port, "/readyz")
    return status == 200


async def test_killed_mid_pending_a_new_instance_decides_and_expires_each_gate_once(
    bus: Bus, settings: Settings, seen: Seen, tmp_path: Path
) -> None:
    port, log = free_port(), tmp_path / "hitl.log"
    proc = spawn(settings, port, log)
    try:
        await until(lambda: ready(port), "the first hitl to be ready")
        waits = request({"min_approvals": 1})
        expires = request({"deadline": 3})
        await bus.publish([waits, expires])
        await seen.wait(waits.approval_id, "approval.opened")
        await seen.wait(expires.approval_id, "approval.opened")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert "approval.rejected" not in seen.of(expires.approval_id), "killed too late"

        proc = spawn(settings, port, log)
        await until(lambda: ready(port), "the second hitl to be ready")
        reply = await decide(bus, waits, "alice")
        assert reply.status == 200 and reply.approval is not None
        assert reply.approval["status"] == "granted"
        await seen.wait(expires.approval_id, "approval.rejected")
        _, metrics = await asyncio.to_thread(http_get, port, "/metrics")
        assert "baton_approval_decision_seconds_count 1.0" in metrics
        assert "baton_approvals_pending" in metrics
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, "a clean stop on SIGTERM"
    finally:
        proc.kill()
        proc.wait()
    assert seen.of(waits.approval_id) == ["approval.opened", "approval.voted", "approval.granted"]
    assert seen.of(expires.approval_id) == [
        "approval.opened",
        "approval.expired",
        "approval.rejected",
    ]
    store = PostgresEventStore(settings.database_url, "hitl", schema=settings.db_schema)
    try:  # nothing left that could fire again, whoever starts next
        assert store.due_timers(far_future(), 100) == []
    finally:
        store.close()


# --- replicas -----------------------------------------------------------------------------------


async def test_two_replicas_settle_races_by_version(
    bus: Bus, settings: Settings, seen: Seen, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BATON_TIMER_INTERVAL", "0.05")
    replicas = [await start_hitl(settings), await start_hitl(settings)]
    try:
        expiring = [request({"deadline": 0.5}) for _ in range(6)]
        voted = [request({"min_approvals": 2}) for _ in range(6)]
        await bus.publish([*expiring, *voted])
        for gate in voted:
            await seen.wait(gate.approval_id, "approval.opened")
        replies = await asyncio.gather(
            *(decide(bus, gate, user) for gate in voted for user in ("alice", "bob"))
        )
        assert [r.status for r in replies] == [200] * 12
        for gate in expiring:
            await seen.wait(gate.approval_id, "approval.rejected")
        for gate in voted:
            await seen.wait(gate.approval_id, "approval.granted")
    finally:
        for runtime in replicas:
            await runtime.close()
    for gate in expiring:  # both replicas poll the same timers: each deadline acted on once
        assert seen.of(gate.approval_id) == [
            "approval.opened", "approval.expired", "approval.rejected"
        ]  # fmt: skip
    for gate in voted:
        assert sorted(seen.of(gate.approval_id)) == [
            "approval.granted", "approval.opened", "approval.voted", "approval.voted"
        ]  # fmt: skip


async def test_pending_count_reads_the_store(settings: Settings) -> None:
    from baton_common.consumer import Delivery
    from baton_hitl.application import HitlApp

    store = PostgresEventStore(settings.database_url, "hitl", schema=settings.db_schema)
    app = HitlApp(store)
    try:
        gates = [request(), request(), request({"deadline": 0.01})]
        store.commit(app.handle([Delivery(g) for g in gates]))
        assert app.pending_count() == 3
        commit, _ = app.decide(
            DecisionRequest(
                approval_id=str(gates[0].approval_id),
                workspace_id="acme",
                user="alice",
                role="approver",
                decision="reject",
            )
        )
        store.commit(commit)
        await until(lambda: _true(bool(store.due_timers(datetime.now(UTC), 10))), "the deadline")
        store.commit(app.fire(store.due_timers(datetime.now(UTC), 10)))
        assert app.pending_count() == 1
    finally:
        store.close()


async def _true(value: bool) -> bool:
    return value
