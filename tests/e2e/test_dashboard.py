"""The dashboard in a real headless Chromium (Debian's, driven by Playwright), on the engine as
processes: the live list, an execution reaching `succeeded` without a reload, step detail,
pause / resume / cancel, a failing step's error, the replay slider, metrics, sign-in."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from typing import Any as Engine  # the fixture's type lives in conftest.py
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.e2e.conftest import retried_agent

pytestmark = pytest.mark.e2e

CHROMIUM = os.environ.get("BATON_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# `make screenshots` sets this to docs/ (the README shows them); otherwise a scratch folder.
DOCS = Path(os.environ.get("BATON_SCREENSHOTS") or tempfile.mkdtemp(prefix="baton-shots-"))

KOLKATA = ZoneInfo("Asia/Kolkata")
FANOUT = """
name: dashboard-demo
steps:
  - {id: fetch_api, tool: mock.agent, input: {task: "collect api", latency_ms: 400, output: {n: 1}}}
  - {id: fetch_db, tool: mock.agent, input: {task: "collect db", latency_ms: 600, output: {n: 2}}}
  - id: report
    tool: text.template
    input: {template: "{a} and {b}", values: {a: "${steps.fetch_api.output.result.n}", b: "${steps.fetch_db.output.result.n}"}}
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: `make browser` installs Debian's (apt, as root)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any, engine: Engine) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(engine.signin_url())
    yield page
    context.close()


def test_the_code_link_signs_in_and_lands_on_the_clean_url(page: Any, engine: Engine) -> None:
    assert page.url == f"{engine.url}/"
    cookies = page.context.cookies()
    session = next(c for c in cookies if c["name"] == "baton_session")
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert engine.token not in session["value"]  # the cookie names a session, not the key
    assert page.locator(".who").inner_text().endswith("owner · default")


def test_sign_in_page_refuses_a_bad_key_and_accepts_a_good_one(
    browser: Any, engine: Engine
) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{engine.url}/insights")
    assert "/signin" in page.url
    page.fill("#key", "bk_not-a-key")
    page.click("button[type=submit]")
    assert (
        "API key refused" in page.locator("#key-error").inner_text()
        or "not a Baton" in page.content()
    )
    page.fill("#key", engine.token)
    page.click("button[type=submit]")
    page.wait_for_url(f"{engine.url}/insights")
    context.close()


def test_start_from_the_list_and_watch_the_graph_succeed_live(page: Any, engine: Engine) -> None:
    page.evaluate("window.__same_page = true")
    page.check("input[name=kind][value=plan]")
    page.fill("#new-text", FANOUT)
    page.click("#new-execution button[type=submit]")
    page.wait_for_url("**/executions/*")
    page.evaluate("window.__same_page = 'execution'")
    page.wait_for_selector("#status[data-status=succeeded]", timeout=60_000)
    assert page.evaluate("window.__same_page") == "execution"  # no reload on the way
    nodes = page.locator("#graph .node")
    assert nodes.count() == 3
    assert page.locator("#graph .node.st-succeeded").count() == 3
    assert page.locator("#graph .edge").count() == 2
    # The status comes from the view, which can be a moment ahead of the live stream the
    # timeline and the log are drawn from: they catch up once the stream's last event is in.
    page.wait_for_selector("#log li[data-type='execution.succeeded']", timeout=10_000)
    page.wait_for_function(
        "document.querySelectorAll('#timeline .tl-bar.ok').length === 3", timeout=10_000
    )
    assert page.locator("#timeline .tl-bar.ok").count() == 3
    assert page.locator("#log li[data-type='execution.succeeded']").count() == 1
    page.locator("#graph .node[data-step=report]").click()
    detail = page.locator("#detail").inner_text()
    execution_id = page.url.rsplit("/", 1)[1].split("#")[0]
    assert f"{execution_id}:report" in detail  # the idempotency key
    assert '"a": 1' in detail and "1 and 2" in detail  # resolved input and output
    page.screenshot(path=str(DOCS / "dashboard-execution.png"), full_page=True)
    page.goto(f"{engine.url}/")
    row = page.locator(f"tr[data-id='{execution_id}']")
    assert row.get_attribute("data-status") == "succeeded"
    page.screenshot(path=str(DOCS / "dashboard-executions.png"), full_page=True)


def test_the_list_shows_new_executions_and_their_changes_without_reload(
    page: Any, engine: Engine
) -> None:
    page.evaluate("window.__same_page = true")
    plan = {
        "name": "live-list",
        "steps": [{"id": "a", "tool": "mock.agent", "input": {"latency_ms": 800}}],
    }
    eid = engine.http.post(f"{engine.url}/v1/executions", json={"plan": plan}).json()["id"]
    page.wait_for_selector(f"tr[data-id='{eid}']")
    page.wait_for_selector(f"tr[data-id='{eid}'][data-status=succeeded]", timeout=60_000)
    assert page.evaluate("window.__same_page") is True
    page.goto(f"{engine.url}/?plan=live-list&status=succeeded")
    page.wait_for_selector(f"tr[data-id='{eid}']")
    assert page.locator("tbody tr").count() >= 1
    assert all(
        s == "succeeded"
        for s in page.locator("tbody tr").evaluate_all("rs => rs.map(r => r.dataset.status)")
    )


def test_start_an_execution_from_words_on_the_list(page: Any, engine: Engine) -> None:
    page.click("#new-execution summary")  # the inputs are folded away
    page.fill("#new-inputs", "{not json")  # a bad input says why, and nothing starts
    page.fill("#new-text", "collect reports for search")
    page.click("#new-execution button[type=submit]")
    page.wait_for_selector("#new-error:not([hidden])")
    assert "JSON" in page.locator("#new-error").inner_text()
    assert page.url == f"{engine.url}/"
    page.fill("#new-inputs", '{"who": "Ada"}')
    page.click("#new-execution button[type=submit]")  # "a request in words" is the default
    page.wait_for_url("**/executions/*")
    page.wait_for_selector("#status[data-status=succeeded]", timeout=60_000)
    eid = page.url.rsplit("/", 1)[1].split("#")[0]
    view = engine.http.get(f"{engine.url}/v1/executions/{eid}").json()
    assert view["request"] == "collect reports for search" and view["inputs"] == {"who": "Ada"}
    assert view["planner"] and view["plan"]["steps"]  # planned from the words


def test_the_text_and_time_filters_of_the_list(browser: Any, engine: Engine) -> None:
    """Words of the request (any case) and a time range typed in the browser's own zone (here
    +05:30), sent to the API in UTC: the list shows exactly what falls inside."""
    tag = f"zq{uuid.uuid4().hex[:8]}"
    ids = [
        engine.http.post(f"{engine.url}/v1/executions", json={"request": words}).json()["id"]
        for words in (f"collect reports for api {tag}", f"collect reports for billing {tag}")
    ]
    created = [
        datetime.fromisoformat(
            engine.http.get(f"{engine.url}/v1/executions/{i}").json()["created_at"]
        )
        for i in ids
    ]
    context = browser.new_context(timezone_id="Asia/Kolkata")
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(engine.signin_url())

    def shown(q: str, since: datetime | None = None, until: datetime | None = None) -> set[str]:
        page.goto(f"{engine.url}/")
        page.fill("#filters input[name=q]", q)
        for name, at in (("since", since), ("until", until)):
            local = at.astimezone(KOLKATA).strftime("%Y-%m-%dT%H:%M") if at else ""
            page.fill(f"#filters input[name={name}]", local)
        with page.expect_navigation():
            page.click("#filters button[type=submit]")
        page.wait_for_selector("tbody tr")  # the first page, read with these filters
        assert page.locator("#filters input[name=q]").input_value() == q  # kept on the page
        return set(
            page.locator("tbody tr[data-id]").evaluate_all("rs => rs.map(r => r.dataset.id)")
        )

    minute = timedelta(minutes=1)
    first, last = min(created), max(created)
    assert shown(tag.upper()) == set(ids)
    assert shown(f"api {tag}") == {ids[0]}
    assert shown(tag, first - minute, last + 2 * minute) == set(ids)
    assert shown(tag, last + 2 * minute) == set()  # from a time after both
    assert shown(tag, None, first - minute) == set()  # to a time before both
    assert page.locator("tbody td[colspan]").inner_text() == "No executions yet."
    context.close()


def test_pause_resume_and_cancel_from_the_page(page: Any, engine: Engine) -> None:
    plan = {
        "steps": [
            # Long enough for the page to load and pause it first, however busy the machine.
            {"id": "first", "tool": "time.sleep", "input": {"seconds": 5}},
            {
                "id": "second",
                "tool": "time.sleep",
                "input": {"seconds": 30},
                "depends_on": ["first"],
            },
        ]
    }
    eid = engine.http.post(f"{engine.url}/v1/executions", json={"plan": plan}).json()["id"]
    page.goto(f"{engine.url}/executions/{eid}")
    page.wait_for_selector("#pause:not([disabled])")
    page.click("#pause")
    page.wait_for_selector("#status[data-status=paused]")
    assert page.is_disabled("#pause") and page.is_enabled("#resume")
    page.wait_for_selector("#graph .node[data-step=first].st-succeeded")
    page.wait_for_timeout(500)
    assert page.locator("#graph .node[data-step=second]").get_attribute("data-status") == "pending"
    page.click("#resume")
    page.wait_for_selector("#graph .node[data-step=second].st-running")
    page.fill("#reason", "wrong day")
    page.click("#cancel")
    page.wait_for_selector("#status[data-status=cancelled]")
    assert "wrong day" in page.locator("#error").inner_text()
    assert (
        page.is_disabled("#pause") and page.is_disabled("#resume") and page.is_disabled("#cancel")
    )


def test_a_failing_step_shows_its_error(page: Any, engine: Engine) -> None:
    plan = retried_agent("flaky", 2, 0.2, failure_rate=1)
    eid = engine.http.post(f"{engine.url}/v1/executions", json={"plan": plan}).json()["id"]
    page.goto(f"{engine.url}/executions/{eid}#step=flaky")
    page.wait_for_selector("#status[data-status=failed]", timeout=60_000)
    page.wait_for_selector("#detail [data-role=step-error]")
    # the view can arrive before the last events of the stream: wait for both attempts to show
    page.wait_for_function("document.querySelectorAll('#detail ol.attempts li').length === 2")
    assert page.locator("#detail ol.attempts li").count() == 2
    assert page.locator("#detail ol.attempts .error").count() == 2
    assert page.locator("#graph .node.st-failed").count() == 1
    assert page.locator("#timeline .tl-bar.bad").count() == 2
    assert page.locator("#timeline .tl-wait").count() == 1  # the retry's backoff


def test_a_dry_run_is_marked_and_lists_its_calls(page: Any, engine: Engine) -> None:
    url = "http://127.0.0.1:9/never-sent"
    plan = {
        "steps": [{"id": "post", "tool": "http.request", "input": {"url": url, "method": "POST"}}]
    }
    body = {"plan": plan, "dry_run": True}
    eid = engine.http.post(f"{engine.url}/v1/executions", json=body).json()["id"]
    page.goto(f"{engine.url}/executions/{eid}")
    page.wait_for_selector("#status[data-status=succeeded]")
    page.wait_for_function("document.getElementById('summary').textContent.startsWith('dry-run')")
    assert page.locator("#summary").inner_text().startswith("dry-run: 1 call(s), no side effects")
    assert url in (page.locator("#outputs").text_content() or "")


def test_replay_slider_shows_the_state_as_of_event_n(page: Any, engine: Engine) -> None:
    plan = json.loads(
        json.dumps(
            {
                "steps": [
                    {"id": "a", "tool": "mock.agent"},
                    {"id": "b", "tool": "mock.agent", "depends_on": ["a"]},
                ]
            }
        )
    )
    eid = engine.http.post(f"{engine.url}/v1/executions", json={"plan": plan}).json()["id"]
    engine.wait(eid)
    total = len(engine.http.get(f"{engine.url}/v1/executions/{eid}/events").json()["items"])
    page.goto(f"{engine.url}/executions/{eid}/replay")
    page.wait_for_selector(f"#at[max='{total}']:not([disabled])")
    page.wait_for_selector("#status[data-status=succeeded]")
    page.focus("#at")
    page.keyboard.press("Home")  # by keyboard, like a person
    page.wait_for_function("document.getElementById('at-out').textContent === '1'")
    page.wait_for_selector("#status[data-status=requested]")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    page.wait_for_function("document.getElementById('at-out').textContent === '3'")
    expected = engine.http.get(f"{engine.url}/v1/executions/{eid}/replay", params={"at": 3}).json()
    page.wait_for_selector(f"#status[data-status={expected['view']['status']}]")
    shown = page.locator("#state tr").evaluate_all(
        "rs => rs.map(r => [r.dataset.step, r.querySelector('[data-status]').dataset.status])"
    )
    assert shown == [[s["id"], s["status"]] for s in expected["view"]["steps"].values()]
    assert page.locator("#events li.current").get_attribute("data-n") == "3"
    raw = json.loads(page.locator("[data-role=raw-event]").inner_text())
    assert raw["seq"] == expected["event"]["seq"] and raw["type"] == expected["event"]["type"]
    page.screenshot(path=str(DOCS / "dashboard-replay.png"), full_page=True)


def test_replay_slider_keeps_the_last_position_when_an_earlier_answer_comes_late(
    page: Any, engine: Engine
) -> None:
    """Moving the slider fast asks for several states; the answers may come back in any order.
    The page shows the state of where the slider is, never one it has left."""
    plan = {"steps": [{"id": "a", "tool": "mock.agent"}, {"id": "b", "tool": "mock.agent"}]}
    eid = engine.http.post(f"{engine.url}/v1/executions", json={"plan": plan}).json()["id"]
    engine.wait(eid)
    page.goto(f"{engine.url}/executions/{eid}/replay")
    page.wait_for_selector("#status[data-status=succeeded]")
    held: list[Any] = []
    page.route("**/replay?at=1", lambda route: held.append(route))  # held back
    page.focus("#at")
    page.keyboard.press("Home")
    page.wait_for_function("document.getElementById('at-out').textContent === '1'")
    page.keyboard.press("End")  # moved on before the first answer came
    page.wait_for_function("document.getElementById('at-out').textContent !== '1'")
    last = page.locator("#at-out").inner_text()
    page.wait_for_selector("#status[data-status=succeeded]")
    assert len(held) == 1
    with page.expect_response("**/replay?at=1"):
        held[0].continue_()  # now the old answer arrives
    page.wait_for_timeout(500)  # time for a late answer to be drawn, were it drawn
    assert page.locator("#status").get_attribute("data-status") == "succeeded"
    assert page.locator("#at-out").inner_text() == last
    assert page.locator("#events li.current").get_attribute("data-n") == last


def insights_after_a_run_of(page: Any, engine: Engine, plan_name: str) -> None:
    """Run a one-step plan named ``plan_name`` to its end, then open the Insights page."""
    plan = {"name": plan_name, "steps": [{"id": "a", "tool": "mock.agent"}]}
    engine.wait(engine.http.post(f"{engine.url}/v1/executions", json={"plan": plan}).json()["id"])
    page.goto(f"{engine.url}/insights")


def test_metrics_page_draws_from_the_projections(page: Any, engine: Engine) -> None:
    insights_after_a_run_of(page, engine, "metric-plan")
    page.wait_for_selector("#by-plan tr[data-name=metric-plan]")
    page.wait_for_selector("#by-tool tr[data-name='mock.agent']")
    assert page.locator("#success").inner_text().endswith("%")
    assert page.locator("#throughput rect").count() >= 1
    page.screenshot(path=str(DOCS / "dashboard-metrics.png"), full_page=True)


def test_a_bad_plan_from_the_form_shows_the_reason(page: Any) -> None:
    page.check("input[name=kind][value=plan]")
    page.fill("#new-text", "steps:\n  - {id: a, tool: mock.agnet}")
    page.click("#new-execution button[type=submit]")
    page.wait_for_selector("#new-error:not([hidden])")
    assert "did you mean 'mock.agent'" in page.locator("#new-error").inner_text()


def test_readable_on_a_phone(browser: Any, engine: Engine) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    page.goto(engine.signin_url())
    page.wait_for_selector("tbody tr")
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"the page is {overflow}px wider than a phone"
    page.screenshot(path=str(DOCS / "dashboard-phone.png"))
    context.close()


def test_seed_clients_keep_working(engine: Engine) -> None:
    resp = engine.http.post(
        f"{engine.url}/api/orchestrate", json={"query": "collect reports for api", "userId": "u1"}
    )
    assert resp.status_code == 202, resp.text
    eid = resp.json()["executionId"]
    names, types = set(), []
    with engine.http.stream("GET", f"{engine.url}/api/orchestrate/stream/{eid}", timeout=60) as r:
        for line in r.iter_lines():
            if line.startswith("event:"):
                names.add(line[6:].strip())
            elif line.startswith("data:"):
                data = json.loads(line[5:])
                types.append(data.get("type"))
                if data.get("type") == "execution.succeeded":
                    break
    assert names == {"progress"} and types[0] == "execution.requested"
    view = engine.http.get(f"{engine.url}/api/orchestrate/{eid}").json()
    assert view["status"] == "succeeded" and view["inputs"] == {"user_id": "u1"}
    assert engine.http.post(f"{engine.url}/api/orchestrate/{eid}/pause").status_code == 409
    assert httpx.post(f"{engine.url}/api/orchestrate", json={"query": "x"}).status_code == 401


def frozen_clock(page: Any, path: str) -> None:
    """Open ``path`` with the page's clock stopped: from then on no timer of the page fires
    (setTimeout, setInterval), so whatever it shows next came from a live stream, not a poll."""
    page.clock.install()
    page.goto(path)
    page.wait_for_selector("#live.on")  # the stream is open
    page.wait_for_function("!document.querySelector('main').textContent.includes('Loading…')")
    page.clock.pause_at(datetime.now(UTC) + timedelta(minutes=10))


def test_approvals_inbox_shows_a_new_gate_live_and_approves_with_an_edit(
    page: Any, engine: Engine
) -> None:
    frozen_clock(page, f"{engine.url}/approvals")
    plan = {
        "steps": [
            {"id": "pay", "tool": "mock.critical", "input": {"action": "pay", "amount": 10},
             "approval": {"message": "pay 10?"}},
        ]
    }  # fmt: skip
    eid = engine.http.post(f"{engine.url}/v1/executions", json={"plan": plan}).json()["id"]
    card = page.locator(f"article[data-status=pending]:has(a[href^='/executions/{eid}'])")
    card.wait_for()  # the gate opened after the page loaded: it came in on the stream
    page.clock.resume()
    assert card.locator("[data-role=message]").inner_text() == "pay 10?"
    editor = card.locator("textarea[data-role=input]")
    editor.fill('{"action": "pay", "amount": -1}')
    card.locator("button[data-action=edit]").click()
    card.locator("[data-role=error]:not([hidden])").wait_for()
    assert "amount" in card.locator("[data-role=error]").inner_text()
    editor.fill('{"action": "pay", "amount": 7}')
    card.locator("button[data-action=edit]").click()
    view = engine.wait(eid)
    assert view["status"] == "succeeded"
    assert view["steps"]["pay"]["output"]["done"].startswith("pay 7")
    page.goto(f"{engine.url}/approvals?status=granted")
    page.locator(f"article[data-status=granted]:has(a[href^='/executions/{eid}'])").wait_for()
    page.screenshot(path=str(DOCS / "dashboard-approvals.png"), full_page=True)


def test_approvals_page_shows_the_planners_question_and_answers_it(
    page: Any, engine: Engine
) -> None:
    text = (
        f"write 'hi {uuid.uuid4().hex[:6]}' to q-{uuid.uuid4().hex[:8]}.txt and then frobnicate it"
    )
    eid = engine.http.post(f"{engine.url}/v1/executions", json={"request": text}).json()["id"]
    assert engine.wait(eid, until=("waiting", "failed"))["status"] == "waiting"
    page.goto(f"{engine.url}/approvals")
    card = page.locator(f"article[data-kind=question]:has(a[href='/executions/{eid}'])")
    card.wait_for()
    assert "frobnicate" in card.locator("[data-role=message]").inner_text()
    assert "Not understood" in card.inner_text() and "files.write" in card.inner_text()
    card.locator("button[data-action=answer]").click()  # empty: refused in the page
    card.locator("[data-role=error]:not([hidden])").wait_for()
    card.locator("button[data-choice='llm.generate']").click()  # a choice fills the answer
    assert card.locator("textarea[data-role=answer]").input_value() == "llm.generate"
    card.locator("button[data-action=answer]").click()
    view = engine.wait(eid)
    assert view["status"] == "succeeded", view
    assert view["question"]["answer"] == "llm.generate"


def test_schedules_page_lists_next_fire_times_and_pauses_and_triggers_now(
    page: Any, engine: Engine
) -> None:
    body = {"name": "ui-nightly", "cron": "0 3 * * *", "timezone": "Europe/Berlin",
            "plan": {"steps": [{"id": "a", "tool": "mock.agent"}]}}  # fmt: skip
    made = engine.http.post(f"{engine.url}/v1/schedules", json=body)
    assert made.status_code == 201, made.text
    sid = made.json()["id"]
    page.goto(f"{engine.url}/schedules")
    card = page.locator(f"article[data-kind=schedule][data-id='{sid}']")
    card.wait_for()
    assert "03:00" in card.locator("[data-role=next]").inner_text()
    page.once("dialog", lambda d: d.accept("maintenance"))
    card.locator("button[data-action=pause]").click()
    page.locator(f"article[data-id='{sid}'][data-status=paused]").wait_for()
    assert engine.http.get(f"{engine.url}/v1/schedules/{sid}").json()["status"] == "paused"
    page.locator(f"article[data-id='{sid}'] button[data-action=unpause]").click()
    page.locator(f"article[data-id='{sid}'][data-status=active]").wait_for()
    page.locator(f"article[data-id='{sid}'] button[data-action='trigger-now']").click()
    page.locator(f"article[data-id='{sid}'] li[data-outcome] a").first.wait_for(state="attached")
    runs = engine.http.get(f"{engine.url}/v1/executions", params={"schedule": sid}).json()["items"]
    assert len(runs) == 1
    page.locator(f"article[data-id='{sid}'] summary").click()  # its recent runs
    page.screenshot(path=str(DOCS / "dashboard-schedules.png"), full_page=True)
    engine.http.delete(f"{engine.url}/v1/schedules/{sid}")


def test_calendars_page_shows_a_booking_and_finds_slots_around_it(
    page: Any, engine: Engine
) -> None:
    from datetime import UTC, datetime, timedelta

    cal = {"name": "pw-ann", "owner": "pw-ann@example.com", "timezone": "UTC"}
    assert engine.http.post(f"{engine.url}/v1/calendars", json=cal).status_code == 201
    day = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    book = {"steps": [{"id": "book", "tool": "calendar.create_event", "input": {
        "calendar": "pw-ann", "title": "UI review", "start": f"{day}T10:00:00+00:00",
        "end": f"{day}T10:30:00+00:00", "attendees": ["pw-ann@example.com"]}}]}  # fmt: skip
    eid = engine.http.post(f"{engine.url}/v1/executions", json={"plan": book}).json()["id"]
    assert engine.wait(eid)["status"] == "succeeded"
    page.goto(f"{engine.url}/calendars")
    card = page.locator("article[data-calendar='pw-ann']")
    card.locator("li[data-uid]").first.wait_for(timeout=60_000)
    assert "UI review" in card.inner_text()
    page.fill("input[name=attendees]", "pw-ann@example.com")
    page.fill("input[name=from]", f"{day}T09:00:00+00:00")
    page.fill("input[name=to]", f"{day}T12:00:00+00:00")
    page.click("#slots-form button[type=submit]")
    page.locator("#slots li[data-start]").first.wait_for()
    starts = page.locator("#slots li[data-start]").evaluate_all(
        "ls => ls.map(l => l.dataset.start)"
    )
    assert starts and not any(s.startswith(f"{day}T10:00") for s in starts)
    assert not any(s.startswith(f"{day}T09:45") for s in starts)  # would overlap the booking
    page.screenshot(path=str(DOCS / "dashboard-calendars.png"), full_page=True)


def test_plans_page_shows_versions_figures_and_the_diff_and_promotes(
    page: Any, engine: Engine
) -> None:
    url = f"{engine.url}/v1/plans/ui-report/versions"
    one = {"steps": [{"id": "hi", "tool": "text.template", "input": {"template": "hi"}}]}
    two = {"steps": [{"id": "bye", "tool": "mock.agent", "input": {"task": "bye"}}]}
    for plan in (one, two):
        assert engine.http.post(url, json={"plan": plan}).status_code == 201
    eid = engine.http.post(
        f"{engine.url}/v1/executions", json={"plan_ref": {"name": "ui-report"}}
    ).json()["id"]
    engine.wait(eid)
    page.goto(f"{engine.url}/plans")
    card = page.locator("article[data-name='ui-report']")
    card.locator("summary").click()
    page.locator("article[data-name='ui-report'] tr[data-version='1'] [data-role=runs]").filter(
        has_text="1"
    ).wait_for()
    assert card.locator("tr[data-version='1'] [data-role=success]").inner_text() == "100%"
    card.locator("button[data-action=diff]").click()
    card.locator("[data-role=diff] li[data-kind=added]").wait_for()
    assert "bye" in card.locator("[data-role=diff] li[data-kind=added]").inner_text()
    assert "hi" in card.locator("[data-role=diff] li[data-kind=removed]").inner_text()
    page.screenshot(path=str(DOCS / "dashboard-plans.png"), full_page=True)
    card.locator("tr[data-version='2'] button[data-action=promote]").click()
    page.locator("article[data-name='ui-report'][data-current='2']").wait_for()
    page.locator("article[data-name='ui-report'] button[data-action=rollback]").click()
    page.locator("article[data-name='ui-report'][data-current='1']").wait_for()
    assert engine.http.get(f"{url[:-9]}").json()["current_version"] == 1


def test_the_step_log_panel_follows_a_running_step(page: Any, engine: Engine) -> None:
    talk = {"message": "panel", "lines": 4, "interval_s": 2}
    plan = {"steps": [{"id": "talk", "tool": "debug.log", "input": talk}]}
    eid = engine.http.post(f"{engine.url}/v1/executions", json={"plan": plan}).json()["id"]
    page.goto(f"{engine.url}/executions/{eid}")
    page.wait_for_selector("#steplog li[data-step=talk]")
    running = engine.http.get(f"{engine.url}/v1/executions/{eid}").json()["status"]
    page.wait_for_function("document.querySelectorAll('#steplog li').length === 4")
    assert running == "running"  # the first line showed while the step still ran
    assert "panel (4/4)" in page.locator("#steplog li").last.inner_text()
    assert page.locator("#steplog-empty").is_hidden()


def test_the_metrics_page_shows_the_business_totals(page: Any, engine: Engine) -> None:
    insights_after_a_run_of(page, engine, "totals-plan")
    page.wait_for_selector("#totals-plans td:text('totals-plan')")
    assert "Started" in page.locator("#totals-tiles").inner_text()
    assert "mock.agent" in page.locator("#totals-tools").inner_text()
