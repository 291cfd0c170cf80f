"""The calendar service on the engine as processes (gateway, planner, executor, workers,
calendar, hitl, projector) and a real Radicale CalDAV server: exactly one event after a kill -9
of the calendar service in the middle of a create, the saga cancelling a booked event, the
conflict policies (``ask`` waits at an approval gate showing the conflicts), the API and the CLI, and a
request in words planned offline into find-then-book."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from typing import Any as Engine  # the fixture's type lives in conftest.py

import httpx
import pytest
from baton_calendar.testing import PASSWORD, USER, Radicale
from baton_common.testing import one_event_ics

from tests.e2e.conftest import import_ics

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def radicale() -> Iterator[Radicale]:
    server = Radicale().start()
    yield server
    server.stop()


class SlowPuts(ThreadingHTTPServer):
    """A proxy in front of Radicale that, when asked, holds the answer to a PUT after the
    server has stored it: the window in which a crash leaves an event the store never heard of."""

    daemon_threads = True

    def __init__(self, target: str) -> None:
        super().__init__(("127.0.0.1", 0), _Forward)
        self.target = target
        self.hold = threading.Event()
        self.stored = threading.Event()
        self.release = threading.Event()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


class _Forward(BaseHTTPRequestHandler):
    server: SlowPuts

    def _any(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        resp = httpx.request(
            self.command, self.server.target + self.path, content=body, headers=headers, timeout=30
        )
        if self.command == "PUT" and resp.status_code < 300 and self.server.hold.is_set():
            self.server.stored.set()
            self.server.release.wait(30)
        self.send_response(resp.status_code)
        for key, value in resp.headers.items():
            if key.lower() not in (
                "transfer-encoding",
                "connection",
                "content-length",
                "content-encoding",
            ):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(resp.content)))
        self.end_headers()
        self.wfile.write(resp.content)

    do_GET = do_PUT = do_DELETE = do_PROPFIND = do_REPORT = do_OPTIONS = _any

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def proxy(radicale: Radicale) -> Iterator[SlowPuts]:
    server = SlowPuts(radicale.url)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.release.set()
    server.shutdown()


def connect(
    engine: Engine, radicale: Radicale, base: str | None = None, **extra: Any
) -> tuple[str, str]:
    """A fresh CalDAV collection, connected under a unique name: (name, its URL at Radicale)."""
    name = f"cal-{uuid.uuid4().hex[:8]}"
    url = radicale.make_calendar(name)
    made = engine.http.post(
        f"{engine.url}/v1/calendars",
        json={
            "name": name,
            "url": (base or radicale.url) + url.removeprefix(radicale.url),
            "username": USER,
            "password": PASSWORD,
            **extra,
        },
    )
    assert made.status_code == 201, made.text
    return name, url


def run(engine: Engine, plan: dict[str, Any], timeout: float = 90) -> dict[str, Any]:
    resp = engine.http.post(f"{engine.url}/v1/executions", json={"plan": plan})
    assert resp.status_code == 202, resp.text
    return dict(engine.wait(resp.json()["id"], timeout=timeout))


def book(
    calendar: str,
    start: str = "2030-01-07T10:00:00Z",
    end: str = "2030-01-07T10:30:00Z",
    **extra: Any,
) -> dict[str, Any]:
    return {
        "id": "book",
        "tool": "calendar.create_event",
        "input": {
            "calendar": calendar,
            "title": "Review",
            "start": start,
            "end": end,
            "attendees": ["ann@example.com"],
            **extra,
        },
        "compensate": {"tool": "calendar.cancel_event", "input": {}},
    }


def test_kill_9_of_the_calendar_service_mid_create_leaves_exactly_one_event(
    engine: Engine, radicale: Radicale, proxy: SlowPuts
) -> None:
    name, url = connect(engine, radicale, base=proxy.url(""))
    proxy.hold.set()
    resp = engine.http.post(f"{engine.url}/v1/executions", json={"plan": {"steps": [book(name)]}})
    assert resp.status_code == 202, resp.text
    assert proxy.stored.wait(60), "the create never reached the server"
    assert len(radicale.events(url)) == 1  # on the server, not yet in Baton's store
    os.kill(engine.runtime()["pids"]["calendar"], signal.SIGKILL)
    proxy.hold.clear()
    proxy.release.set()
    view = engine.wait(resp.json()["id"], timeout=120)  # restarted; the task comes back
    assert view["status"] == "succeeded", view
    on_server = radicale.events(url)
    assert len(on_server) == 1 and view["steps"]["book"]["output"]["uid"] in on_server[0]


def test_a_failed_later_step_cancels_the_booked_event(engine: Engine, radicale: Radicale) -> None:
    name, url = connect(engine, radicale)
    fail = {
        "id": "notify",
        "tool": "mock.agent",
        "depends_on": ["book"],
        "input": {"task": "notify", "fail_times": 9},
        "retry": {"max_attempts": 1},
    }
    view = run(engine, {"steps": [book(name), fail]})
    assert view["status"] == "failed" and view["steps"]["book"]["compensation"] == "compensated"
    assert radicale.events(url) == []


def test_conflict_policies_and_ask_through_an_approval_gate(
    engine: Engine, radicale: Radicale
) -> None:
    name, url = connect(engine, radicale)
    first = {"start": "2082-11-26T10:00:00Z", "end": "2082-11-26T10:30:00Z"}  # far ahead
    assert run(engine, {"steps": [book(name, **first)]})["status"] == "succeeded"
    clash = {"start": "2082-11-26T10:15:00Z", "end": "2082-11-26T11:00:00Z"}
    failed = run(engine, {"steps": [book(name, conflict="fail", **clash)]})
    assert failed["status"] == "failed" and "1 conflicting event(s)" in failed["error"]
    warned = run(engine, {"steps": [book(name, conflict="warn", **clash)]})
    conflicts = warned["steps"]["book"]["output"]["conflicts"]
    assert warned["status"] == "succeeded" and conflicts[0]["title"] == "Review"
    assert len(radicale.events(url)) == 2
    # ask: the step waits at a gate that shows the conflicts; approved, the event is created.
    later = {"start": "2082-11-26T10:20:00Z", "end": "2082-11-26T10:50:00Z"}  # over both
    eid = _start(engine, {"steps": [book(name, conflict="ask", **later)]})
    gate = _pending_gate(engine, eid)
    assert gate["step_id"] == "book" and "2 conflicting event(s)" in gate["message"]
    shown = {
        (c["title"], c["start"], c["end"], c["calendar"]) for c in gate["context"]["conflicts"]
    }
    assert ("Review", "2082-11-26T10:15:00+00:00", "2082-11-26T11:00:00+00:00", name) in shown
    assert gate["context"]["event"]["calendar"] == name and gate["input"]["conflict"] == "warn"
    step = engine.http.get(f"{engine.url}/v1/executions/{eid}").json()["steps"]["book"]
    assert step["status"] == "waiting_approval" and step["approval"]["context"]["count"] == 2
    assert len(radicale.events(url)) == 2  # nothing booked while people think
    shown_cli = engine.cli("approvals", "show", gate["id"])
    assert shown_cli.returncode == 0 and f'"calendar": "{name}"' in shown_cli.stdout
    _decide(engine, gate, "approve")
    approved = engine.wait(eid, timeout=60)
    assert approved["status"] == "succeeded", approved
    assert len(approved["steps"]["book"]["output"]["conflicts"]) == 2
    assert len(radicale.events(url)) == 3
    # rejected: the execution fails saying so, and nothing is booked.
    eid = _start(engine, {"steps": [book(name, conflict="ask", **clash)]})
    _decide(engine, _pending_gate(engine, eid), "reject", comment="not over the review")
    rejected = engine.wait(eid, timeout=60)
    assert rejected["status"] == "failed"
    assert rejected["error"] == "step 'book' failed: approval rejected: not over the review"
    assert len(radicale.events(url)) == 3
    # no conflicts: ask goes ahead without a gate
    free = run(engine, {"steps": [book(name, conflict="ask", start="2082-11-26T14:00:00Z",
                                      end="2082-11-26T14:30:00Z")]})  # fmt: skip
    assert free["status"] == "succeeded" and free["steps"]["book"].get("approval") is None


def _start(engine: Engine, plan: dict[str, Any]) -> str:
    resp = engine.http.post(f"{engine.url}/v1/executions", json={"plan": plan})
    assert resp.status_code == 202, resp.text
    return str(resp.json()["id"])


def _decide(engine: Engine, gate: dict[str, Any], decision: str, **extra: Any) -> None:
    decided = engine.http.post(
        f"{engine.url}/v1/approvals/{gate['id']}/decision", json={"decision": decision, **extra}
    )
    assert decided.status_code == 200, decided.text


def test_api_and_cli_connect_import_list_export_and_find_slots(
    engine: Engine, radicale: Radicale
) -> None:
    hours = {"start": "08:00", "end": "16:00"}
    name, url = connect(
        engine, radicale, owner="bob@example.com", timezone="America/New_York", working_hours=hours
    )
    refused = engine.http.post(
        f"{engine.url}/v1/calendars",
        json={"name": "wrong", "url": url, "username": USER, "password": "nope"},
    )
    assert refused.status_code == 422 and "401 Unauthorized" in refused.json()["detail"]
    assert "wrong" not in {
        c["name"] for c in engine.http.get(f"{engine.url}/v1/calendars").json()["items"]
    }
    weekly = one_event_ics(
        "UID:sync@t",
        "DTSTART:20300107T150000Z",
        "DTEND:20300107T160000Z",
        "RRULE:FREQ=WEEKLY;COUNT=3",
        "EXDATE:20300114T150000Z",
        "SUMMARY:Sync",
    )
    imported = import_ics(engine, name, weekly)
    assert imported.status_code == 201 and imported.json()["imported"] == 1, imported.text
    window = {"window_start": "2030-01-01T00:00:00Z", "window_end": "2030-02-01T00:00:00Z"}
    events = engine.http.get(f"{engine.url}/v1/calendars/{name}/events", params=window).json()
    assert [e["start"] for e in events["events"]] == [
        "2030-01-07T15:00:00+00:00",
        "2030-01-21T15:00:00+00:00",
    ]
    exported = engine.http.get(f"{engine.url}/v1/calendars/{name}/ics")
    assert exported.headers["content-type"].startswith("text/calendar")
    assert "RRULE:FREQ=WEEKLY;COUNT=3" in exported.text and "UID:sync@t" in exported.text
    body = {
        "attendees": ["bob@example.com", "ann@example.com"],
        "duration_minutes": 60,
        "window_start": "2030-01-07T00:00:00Z",
        "window_end": "2030-01-08T00:00:00Z",
        "granularity_minutes": 60,
    }
    slots = engine.http.post(f"{engine.url}/v1/calendars/slots", json=body).json()["slots"]
    # bob works 8-16 in New York (13-21Z), ann 9-17 UTC: 13-17Z, less bob's sync at 15Z.
    assert [s["start"][11:16] for s in slots] == ["13:00", "14:00", "16:00"]
    bad = engine.http.post(f"{engine.url}/v1/calendars/slots", json={**body, "duration_minutes": 0})
    assert bad.status_code == 422 and bad.json()["detail"].startswith("duration_minutes")
    cli = engine.cli(
        "calendar",
        "slots",
        "-a",
        "bob@example.com",
        "-a",
        "ann@example.com",
        "--duration",
        "60",
        "--from",
        "2030-01-07T00:00:00Z",
        "--to",
        "2030-01-08T00:00:00Z",
        "--granularity",
        "60",
    )
    assert cli.returncode == 0 and "2030-01-07T13:00:00+00:00" in cli.stdout, cli.stderr
    listed = engine.cli(
        "calendar",
        "events",
        "--calendar",
        name,
        "--from",
        "2030-01-01T00:00:00Z",
        "--to",
        "2030-02-01T00:00:00Z",
    )
    assert listed.returncode == 0 and listed.stdout.count("Sync") == 2, listed.stderr
    missing = engine.cli("calendar", "events", "--calendar", "nope", "--from", "today")
    assert missing.returncode == 2 and "404" in missing.stderr


def test_a_request_in_words_finds_a_slot_and_books_it(engine: Engine) -> None:
    request = "find a 30 minute slot for ann and bob on thursday and book a review"
    resp = engine.http.post(f"{engine.url}/v1/executions", json={"request": request})
    view = engine.wait(resp.json()["id"], timeout=90)
    assert view["status"] == "succeeded", view
    slot = view["steps"]["find_slot"]["output"]["slots"][0]
    made = view["steps"]["book"]["output"]
    assert (made["start"], made["end"], made["title"]) == (slot["start"], slot["end"], "Review")
    events = engine.http.get(
        f"{engine.url}/v1/calendars/default/events",
        params={"window_start": "thursday", "window_end": "thursday"},
    ).json()
    assert made["uid"] in {e["uid"] for e in events["events"]}


def _pending_gate(engine: Engine, eid: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        items = engine.http.get(
            f"{engine.url}/v1/approvals", params={"execution": eid, "status": "pending"}
        ).json()["items"]
        if items:
            return dict(engine.http.get(f"{engine.url}/v1/approvals/{items[0]['id']}").json())
        time.sleep(0.1)
    raise AssertionError(f"no pending gate for {eid}")


def test_rooms_a_slot_with_a_free_room_and_two_parallel_bookings_of_it(
    engine: Engine, radicale: Radicale
) -> None:
    room, room_url = connect(engine, radicale, kind="room", capacity=6, owner="r6@rooms.example")
    team, _ = connect(engine, radicale)
    shown = engine.http.get(f"{engine.url}/v1/calendars/{room}").json()
    assert (shown["kind"], shown["capacity"]) == ("room", 6)
    refused = engine.http.post(
        f"{engine.url}/v1/calendars", json={"name": "hall", "kind": "room", "capacity": 0}
    )
    assert refused.status_code == 422
    body = {
        "attendees": ["ann@example.com"],
        "duration_minutes": 60,
        "granularity_minutes": 60,
        "window_start": "2082-11-26T09:00:00Z",
        "window_end": "2082-11-26T11:00:00Z",
        "rooms": [room],
    }
    slots = engine.http.post(f"{engine.url}/v1/calendars/slots", json=body).json()["slots"]
    assert [(s["start"][11:16], s["room"]) for s in slots] == [("09:00", room), ("10:00", room)]
    # Two steps book the room at once: they take turns, and the second sees the first's event.
    both = [
        book(team, "2082-11-26T10:00:00Z", "2082-11-26T11:00:00Z", conflict="fail",
             resources=[room]) | {"id": step}
        for step in ("one", "two")
    ]  # fmt: skip
    view = run(engine, {"steps": both})
    outcomes = sorted(
        (view["steps"][s]["status"], view["steps"][s].get("error") or "") for s in ("one", "two")
    )
    assert [o[0] for o in outcomes] == ["failed", "succeeded"], view
    assert f"room {room}: Review" in outcomes[0][1]
    history = engine.http.get(f"{engine.url}/v1/executions/{view['id']}/events").json()["items"]
    waits = [e["data"] for e in history if e["type"] == "execution.step_waiting"]
    assert [w["locks"] for w in waits] == [sorted([f"calendar:{room}", f"calendar:{team}"])]
    assert radicale.events(room_url) == []  # the failed execution's saga released the room
    cli = engine.cli(
        "calendar", "slots", "-a", "ann@example.com", "--duration", "60", "--granularity", "60",
        "--from", "2082-11-26T09:00:00Z", "--to", "2082-11-26T11:00:00Z", "--room", room,
    )  # fmt: skip
    assert cli.returncode == 0 and f"room {room}" in cli.stdout, cli.stderr
    # an existing calendar marked later: through the API, then the CLI
    body = {"kind": "room", "owner": "team@rooms.example"}
    marked = engine.http.patch(f"{engine.url}/v1/calendars/{team}", json=body)
    assert marked.status_code == 200 and marked.json()["kind"] == "room", marked.text
    sized = engine.cli("calendar", "mark", team, "--capacity", "3")
    assert sized.returncode == 0 and f"calendar {team}: room for 3" in sized.stdout, sized.stderr
    bad = engine.http.patch(f"{engine.url}/v1/calendars/{team}", json={"kind": "equipment",
                                                                       "capacity": 2})  # fmt: skip
    assert bad.status_code == 422 and "only a room" in bad.json()["detail"]
