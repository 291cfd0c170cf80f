"""Schedules and triggers on the engine as processes (gateway, scheduler, planner, executor,
workers, projector) on real NATS and PostgreSQL: a per-second cron with two scheduler replicas
gives one execution per tick; kill -9 of the scheduler, then each catch-up policy; overlap
policies with slow executions; a trigger on execution.failed starts its follow-up once; a
self-trigger loop is stopped; bad input is a 422 with nothing stored; the CLI.

Nothing here asserts timings: ticks are counted from the schedule's own events and the
executions listed by schedule."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from typing import Any as Engine  # the fixture's type lives in conftest.py
from zoneinfo import ZoneInfo

import httpx
import pytest
from baton_common.testing import wait_until

pytestmark = pytest.mark.e2e

QUICK = {"steps": [{"id": "a", "tool": "mock.agent", "input": {"task": "tick"}}]}


def slow(seconds: float) -> dict[str, Any]:
    return {"steps": [{"id": "a", "tool": "mock.agent", "input": {"latency_ms": seconds * 1000}}]}


def failing(name: str) -> dict[str, Any]:
    step = {"id": "a", "tool": "mock.agent", "input": {"fail_times": 99}}
    return {"name": name, "steps": [{**step, "retry": {"max_attempts": 1}}]}


until = wait_until


def api(engine: Engine, method: str, path: str, **kw: Any) -> Any:
    resp = engine.http.request(method, f"{engine.url}{path}", **kw)
    assert resp.status_code < 300, resp.text
    return resp.json()


def schedule(engine: Engine, **fields: Any) -> dict[str, Any]:
    body = {"name": f"s-{uuid.uuid4().hex[:6]}", "plan": QUICK, **fields}
    resp = engine.http.post(f"{engine.url}/v1/schedules", json=body)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def history(engine: Engine, sid: str) -> list[dict[str, Any]]:
    return list(api(engine, "GET", f"/v1/schedules/{sid}/events?limit=5000")["items"])


def executions(engine: Engine, **filters: str) -> list[dict[str, Any]]:
    return list(api(engine, "GET", "/v1/executions", params={**filters, "limit": 500})["items"])


def seconds(ticks: list[str]) -> list[datetime]:
    return sorted(datetime.fromisoformat(t) for t in ticks)


def accounted(events: list[dict[str, Any]]) -> list[datetime]:
    """Every tick the schedule's events account for (fired, skipped, buffered, missed)."""
    ticks: list[datetime] = []
    for e in events:
        if e["type"] in ("schedule.fired", "schedule.tick_skipped", "schedule.tick_buffered"):
            if e.get("reason") not in ("manual", "backfill", "buffered"):
                ticks.append(datetime.fromisoformat(e["scheduled_for"]))
        elif e["type"] == "schedule.ticks_missed":
            first, last = datetime.fromisoformat(e["first"]), datetime.fromisoformat(e["last"])
            ticks += [first + timedelta(seconds=i) for i in range(e["count"])]
            assert ticks[-1] == last
    return ticks


def assert_each_second_once(ticks: list[datetime]) -> None:
    ordered = sorted(ticks)
    assert len(ordered) == len(set(ordered)), "a tick was handled twice"
    gaps = {(b - a).total_seconds() for a, b in itertools.pairwise(ordered)}
    assert gaps <= {1.0}, f"ticks missing between {ordered[0]} and {ordered[-1]}: {gaps}"


def pause(engine: Engine, sid: str) -> None:
    api(engine, "POST", f"/v1/schedules/{sid}/pause", json={"note": "test over"})


def settle(engine: Engine, sid: str) -> list[dict[str, Any]]:
    """After a pause: every fired tick's execution is listed; returns the executions."""
    fired = [e for e in history(engine, sid) if e["type"] == "schedule.fired"]
    return list(
        until(
            lambda: (
                (found := executions(engine, schedule=sid)) and len(found) >= len(fired) and found
            ),
            90,
            "every fired tick listed as an execution",
        )
    )


@pytest.fixture
def second_scheduler(engine: Engine) -> Iterator[subprocess.Popen[bytes]]:
    with engine.replica("scheduler") as proc:
        yield proc


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"cron": "61 * * * *"}, "invalid cron"),
        ({"cron": "* * * * *", "timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"every_seconds": 0}, "every_seconds must be more than 0"),
        (
            {"every_seconds": 60, "start_at": "2027-02-01T00:00", "end_at": "2027-01-01T00:00"},
            "end_at must be after start_at",
        ),
        ({"cron": "* * * * *", "plan_ref": "no such!", "plan": None}, "is not a plan name"),
        (
            {"cron": "* * * * *", "plan": {"steps": [{"id": "a", "tool": "mock.agnet"}]}},
            "unknown tool",
        ),
    ],
)
def test_bad_schedules_are_refused_with_the_reason_and_nothing_is_stored(
    engine: Engine, fields: dict[str, Any], reason: str
) -> None:
    name = f"bad-{uuid.uuid4().hex[:6]}"
    body = {k: v for k, v in {"name": name, "plan": QUICK, **fields}.items() if v is not None}
    resp = engine.http.post(f"{engine.url}/v1/schedules", json=body)
    assert resp.status_code == 422 and reason in resp.text, resp.text
    names = [s["name"] for s in api(engine, "GET", "/v1/schedules")["items"]]
    assert name not in names


def test_a_trigger_on_an_unknown_event_type_is_refused(engine: Engine) -> None:
    body = {"name": "t", "request": "x", "filter": {"type": "execution.exploded"}}
    resp = engine.http.post(f"{engine.url}/v1/triggers", json=body)
    assert resp.status_code == 422 and "unknown event type" in resp.text


def test_preview_update_pause_and_delete(engine: Engine) -> None:
    made = schedule(engine, cron="30 2 * * *", timezone="Europe/Berlin")
    assert len(made["next_fire_times"]) == 5 and all(
        "T02:30:00+0" in t or "T03:00:00+02:00" in t for t in made["next_fire_times"]
    )
    sid = made["id"]
    preview = {"cron": "30 2 * * *", "timezone": "Europe/Berlin", "request": "x", "count": 3}
    shown = api(engine, "POST", "/v1/schedules/preview", json=preview)["next_fire_times"]
    assert shown == made["next_fire_times"][:3]
    got = api(engine, "GET", f"/v1/schedules/{sid}?next=10")
    assert len(got["next_fire_times"]) == 10
    changed = api(
        engine, "PATCH", f"/v1/schedules/{sid}", json={"cron": None, "every_seconds": 3600}
    )
    assert changed["definition"]["every_seconds"] == 3600 and "cron" not in changed["definition"]
    paused = api(engine, "POST", f"/v1/schedules/{sid}/pause", json={"note": "holiday"})
    assert (paused["status"], paused["note"]) == ("paused", "holiday")
    assert engine.http.post(f"{engine.url}/v1/schedules/{sid}/pause").status_code == 409
    api(engine, "DELETE", f"/v1/schedules/{sid}")
    assert engine.http.get(f"{engine.url}/v1/schedules/{sid}").status_code == 404


# --- exactly once ---------------------------------------------------------------------------------


def test_a_per_second_cron_on_two_replicas_gives_one_execution_per_tick(
    engine: Engine, second_scheduler: subprocess.Popen[bytes]
) -> None:
    made = schedule(
        engine,
        cron="* * * * * *",
        overlap="allow_all",
        catchup="all",
        inputs={"tick": "${schedule.scheduled_for}"},
    )
    sid = made["id"]
    time.sleep(10)  # ten seconds of ticks, both replicas racing for each
    assert second_scheduler.poll() is None, "the second replica died"
    pause(engine, sid)
    events = history(engine, sid)
    fired = [e["scheduled_for"] for e in events if e["type"] == "schedule.fired"]
    assert len(fired) >= 8
    assert_each_second_once(accounted(events))
    runs = settle(engine, sid)
    assert len(runs) == len(fired)  # one execution per tick, none twice
    views = [api(engine, "GET", f"/v1/executions/{r['id']}") for r in runs]
    ticks = [datetime.fromisoformat(v["inputs"]["tick"]) for v in views]
    assert sorted(ticks) == seconds(fired)
    assert all(v["schedule_id"] == sid for v in views)


def test_kill_9_of_the_scheduler_then_each_catchup_policy(engine: Engine) -> None:
    made = {
        policy: schedule(engine, cron="* * * * * *", overlap="allow_all", catchup=policy)["id"]
        for policy in ("all", "latest", "none")
    }
    until(lambda: all(len(executions(engine, schedule=s)) >= 2 for s in made.values()), 60)
    pid = engine.runtime()["pids"]["scheduler"]
    os.kill(pid, signal.SIGSTOP)  # down (as good as dead) for a few seconds ...
    time.sleep(5)
    killed_at = datetime.now(UTC)
    os.kill(pid, signal.SIGKILL)  # ... then kill -9; the supervisor starts a new one

    def resumed(sid: str) -> bool:
        resp = engine.http.get(f"{engine.url}/v1/schedules/{sid}/events?limit=5000")
        if resp.status_code == 503:  # no scheduler yet: it is being restarted
            return False
        return any(
            e["type"] == "schedule.fired" and datetime.fromisoformat(e["fired_at"]) > killed_at
            for e in resp.json()["items"]
        )

    until(lambda: all(resumed(s) for s in made.values()), 90, "ticks after the restart")
    for sid in made.values():
        pause(engine, sid)
    for policy, sid in made.items():
        events = history(engine, sid)
        assert_each_second_once(accounted(events))
        missed = [e for e in events if e["type"] == "schedule.ticks_missed"]
        caught = [e for e in events if e.get("reason") == "catchup"]
        if policy == "all":
            assert not missed and len(caught) >= 3, (policy, events)
        elif policy == "latest":  # the late ticks are missed but the newest, which runs
            gap = max(missed, key=lambda e: e["count"])  # the downtime's (load may add others)
            assert "catchup latest" in gap["reason"] and gap["count"] >= 3, events
            after = events[events.index(gap) + 1]
            assert after["type"] == "schedule.fired"
            newest = datetime.fromisoformat(gap["last"]) + timedelta(seconds=1)
            assert datetime.fromisoformat(after["scheduled_for"]) == newest
        else:
            gap = max(missed, key=lambda e: e["count"])
            assert "catchup none" in gap["reason"] and gap["count"] >= 3 and not caught, events
        assert len(settle(engine, sid)) == sum(e["type"] == "schedule.fired" for e in events)
    port = engine.runtime()["health_ports"]["scheduler"]
    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    assert "baton_schedule_ticks_missed_total" in metrics
    assert float(metrics.split("baton_schedule_ticks_missed_total ")[1].split()[0]) >= 6


# --- overlap --------------------------------------------------------------------------------------


def test_overlap_policies_with_slow_executions(engine: Engine) -> None:
    made = {
        policy: schedule(engine, every_seconds=1, overlap=policy, plan=slow(2.5))["id"]
        for policy in ("skip", "buffer_one", "allow_all", "cancel_previous")
    }
    until(lambda: all(len(executions(engine, schedule=s)) >= 3 for s in made.values()), 90)
    for sid in made.values():
        pause(engine, sid)
    most = {p: _most_running(history(engine, s)) for p, s in made.items()}
    assert most["skip"] == 1 and most["buffer_one"] == 1 and most["allow_all"] >= 2, most
    skip = history(engine, made["skip"])
    assert any(e["type"] == "schedule.tick_skipped" for e in skip)
    buffered = history(engine, made["buffer_one"])
    assert any(e["type"] == "schedule.tick_buffered" for e in buffered)
    assert any(e.get("reason") == "buffered" for e in buffered)
    runs = settle(engine, made["cancel_previous"])
    done = [engine.wait(r["id"], 90)["status"] for r in runs]
    # each run is cancelled a second into its 2.5 s by the next tick; the last one, after the
    # pause, finishes (one more may finish first on a loaded machine)
    assert done.count("cancelled") >= max(2, len(runs) - 2), done


def _most_running(events: list[dict[str, Any]]) -> int:
    """The most executions of one schedule running at once, from its own events."""
    running, most = 0, 0
    for e in events:
        if e["type"] == "schedule.fired" and e["reason"] != "backfill":
            running += 1
        elif e["type"] == "schedule.run_ended":
            running -= 1
        most = max(most, running)
    return most


def test_inputs_see_the_tick_and_the_time_it_fired_in_the_schedules_zone(engine: Engine) -> None:
    """A backfilled tick fires now for a time in the past: ``${schedule.fired_at}`` is when it
    fired and ``${schedule.scheduled_for}`` the tick, both in the schedule's zone, and they reach
    the plan's steps."""
    zone = ZoneInfo("Asia/Kolkata")  # +05:30: an offset no server here runs in
    plan = {"steps": [{"id": "say", "tool": "text.template", "input": {"template": "${input.at}"}}]}
    inputs = {
        "at": "${schedule.fired_at}",
        "tick": "${schedule.scheduled_for}",
        "id": "${schedule.id}",
        "name": "${schedule.name}",
    }
    made = schedule(engine, cron="0 3 * * *", timezone=str(zone), plan=plan, inputs=inputs)
    span = {"start": "2026-11-01T00:00", "end": "2026-11-01T23:59"}
    api(engine, "POST", f"/v1/schedules/{made['id']}/backfill", json=span)
    [listed] = until(lambda: executions(engine, schedule=made["id"]), 60, "the backfilled run")
    view = engine.wait(listed["id"])
    [fired] = [e for e in history(engine, made["id"]) if e["type"] == "schedule.fired"]
    fired_at = datetime.fromisoformat(fired["fired_at"]).astimezone(zone).isoformat()
    assert view["inputs"] == {
        "at": fired_at,
        "tick": "2026-11-01T03:00:00+05:30",
        "id": made["id"],
        "name": made["name"],
    }
    assert fired_at.endswith("+05:30") and view["steps"]["say"]["output"]["text"] == fired_at
    pause(engine, made["id"])


# --- triggers -------------------------------------------------------------------------------------


def trigger(engine: Engine, **fields: Any) -> dict[str, Any]:
    resp = engine.http.post(f"{engine.url}/v1/triggers", json={"name": "t", **fields})
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def test_a_trigger_on_execution_failed_starts_its_follow_up_exactly_once(engine: Engine) -> None:
    name = f"flaky-{uuid.uuid4().hex[:6]}"
    tid = trigger(
        engine,
        filter={
            "type": "execution.failed",
            "plan": name,
            "where": [{"path": "payload.error", "exists": True}],
        },
        plan=QUICK,
        inputs={"failed": "${event.execution_id}", "error": "${event.payload.error}"},
    )["id"]
    eid = api(engine, "POST", "/v1/executions", json={"plan": failing(name)})["id"]
    assert engine.wait(eid)["status"] == "failed"
    [listed] = until(lambda: executions(engine, trigger=tid), 60, "the follow-up")
    follow = engine.wait(listed["id"])
    assert follow["status"] == "succeeded" and follow["trigger_id"] == tid
    assert follow["trigger_chain"] == [tid] and follow["inputs"]["failed"] == eid
    time.sleep(3)  # redeliveries (ack wait 3 s) would have started a second one by now
    assert len(executions(engine, trigger=tid)) == 1
    got = api(engine, "GET", f"/v1/triggers/{tid}")
    assert got["counts"]["fired"] == 1 and got["recent_runs"][0]["execution_id"] == follow["id"]


def test_a_trigger_that_fires_on_its_own_output_is_stopped(engine: Engine) -> None:
    name = f"loop-{uuid.uuid4().hex[:6]}"
    tid = trigger(engine, filter={"type": "execution.failed", "plan": name}, plan=failing(name))[
        "id"
    ]
    eid = api(engine, "POST", "/v1/executions", json={"plan": failing(name)})["id"]
    assert engine.wait(eid)["status"] == "failed"
    got = until(
        lambda: (t := api(engine, "GET", f"/v1/triggers/{tid}"))["counts"]["loops_stopped"] and t,
        90,
        "the loop stopped",
    )
    assert got["counts"]["fired"] == 1
    assert "its own output" in got["recent_runs"][0]["reason"]
    [first] = executions(engine, trigger=tid)
    assert engine.wait(first["id"])["status"] == "failed"
    time.sleep(2)
    assert len(executions(engine, trigger=tid)) == 1


# --- the CLI --------------------------------------------------------------------------------------


def test_the_cli_creates_lists_pauses_and_triggers(engine: Engine) -> None:
    name = f"cli-{uuid.uuid4().hex[:6]}"
    made = engine.cli(
        "schedules", "create", name, "--every", "3600", "--request", "collect reports for api"
    )
    assert made.returncode == 0, made.stderr
    sid = made.stdout.split()[1]
    listed = engine.cli("schedules")
    assert name in listed.stdout and sid in listed.stdout
    shown = engine.cli("schedules", "show", sid)
    assert "next:" in shown.stdout
    with httpx.Client(follow_redirects=True) as browser:  # the dashboard's page (cookie)
        page = browser.get(engine.signin_url("/schedules"))
    assert page.status_code == 200 and "Schedules" in page.text and "schedules.js" in page.text
    assert engine.cli("schedules", "pause", sid, "--note", "later").returncode == 0
    assert "paused" in engine.cli("schedules", "show", sid).stdout
    now = engine.cli("schedules", "trigger-now", sid)
    assert now.returncode == 0, now.stderr
    until(lambda: executions(engine, schedule=sid), 30, "the manual run")
    bad = engine.cli("schedules", "create", "x", "--cron", "nope", "--request", "y")
    assert bad.returncode == 2 and "invalid cron" in bad.stderr
    made_t = engine.cli(
        "triggers", "create", f"t-{name}", "--on", "execution.failed", "--request", "page on-call"
    )
    assert made_t.returncode == 0, made_t.stderr
    assert f"t-{name}" in engine.cli("triggers").stdout


def test_a_trigger_on_webhook_received_starts_with_the_deliverys_payload(engine: Engine) -> None:
    """A verified delivery's ``webhook.received`` (endpoint name, payload) is an event a trigger
    can match and read; a delivery to another endpoint does not match."""
    hook = f"hook-{uuid.uuid4().hex[:6]}"
    tid = trigger(
        engine,
        filter={
            "type": "webhook.received",
            "where": [{"path": "payload.endpoint", "equals": hook}],
        },
        plan=QUICK,
        inputs={"who": "${event.payload.payload.user.name}", "from": "${event.payload.endpoint}"},
    )["id"]
    urls = {}
    for name in (hook, f"other-{hook}"):
        body = {"name": name, "scheme": "none", "allow_unsigned": True, "action": {"plan": QUICK}}
        urls[name] = api(engine, "POST", "/v1/webhooks/endpoints", json=body)["url"]
    for name, who in ((f"other-{hook}", "Bob"), (hook, "Ada")):
        sent = httpx.post(urls[name], json={"user": {"name": who}}, timeout=30)
        assert sent.status_code == 202, sent.text
        assert engine.wait(sent.json()["execution_id"])["status"] == "succeeded"
    [listed] = until(lambda: executions(engine, trigger=tid), 60, "the trigger's run")
    view = engine.wait(listed["id"])
    assert view["status"] == "succeeded" and view["inputs"] == {"who": "Ada", "from": hook}
    # Bob's delivery was relayed before Ada's, so the one consumer has judged it by now: no match
    got = api(engine, "GET", f"/v1/triggers/{tid}")
    assert got["counts"]["fired"] == 1
