"""The dashboard's parts about agents in a real headless Chromium: the execution page's Agents
card (the shared context, the workspace keys written and the messages) and the Metrics page's Learning card."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from typing import Any as Engine  # the fixture's type lives in conftest.py

import pytest

pytestmark = pytest.mark.e2e

CHROMIUM = os.environ.get("BATON_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = os.environ.get("BATON_SCREENSHOTS")  # `make screenshots`: docs/
TALK = {
    "steps": [
        {"id": "note", "tool": "context.set", "input": {"key": "topic", "value": "lamps"}},
        {"id": "share", "tool": "context.set",
         "input": {"key": "dashboard-topic", "value": "lamps", "scope": "workspace"}},
        {"id": "tell", "tool": "agent.send",
         "input": {"from": "a", "to": "b", "type": "INFORM", "payload": {"hello": 1}}},
        {"id": "hear", "tool": "agent.receive", "input": {"agent": "b", "timeout_s": 30}},
    ]
}  # fmt: skip


@pytest.fixture(scope="module")
def page(engine: Engine) -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: `make browser` installs Debian's (apt, as root)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(30_000)
        page.goto(engine.signin_url())
        yield page
        browser.close()


def test_the_execution_page_shows_context_and_messages(page: Any, engine: Engine) -> None:
    eid = engine.http.post(f"{engine.url}/v1/executions", json={"plan": TALK}).json()["id"]
    assert engine.wait(eid)["status"] == "succeeded"
    page.goto(f"{engine.url}/executions/{eid}")
    page.wait_for_selector("#agents table[data-role=context] td:text('topic')")
    assert '"lamps"' in page.locator("#agents table[data-role=context]").inner_text()
    shared = page.locator("#agents table[data-role=workspace-context]")
    assert "dashboard-topic" in shared.inner_text() and f"{eid}:share" in shared.inner_text()
    message = page.locator("#agents [data-role=messages] li[data-type=INFORM]")
    assert "a → b" in message.inner_text() and "taken by hear" in message.inner_text()


def test_the_metrics_page_shows_what_the_planner_learned(page: Any, engine: Engine) -> None:
    page.goto(f"{engine.url}/insights")
    page.wait_for_selector("#learning h3:text('Failure patterns')")
    assert "embeddings" in page.locator("#learning").inner_text()


def test_the_agents_page_shows_the_figures_change_live(page: Any, engine: Engine) -> None:
    page.goto(f"{engine.url}/agents")
    cell = "#agents tr[data-agent='mock.agent'] td:nth-child(4)"  # calls, on the worker
    before = int(page.locator(cell).inner_text())
    page.evaluate("window.__same_page = true")
    plan = {"steps": [{"id": "a", "tool": "mock.agent", "input": {"task": "count me"}}]}
    eid = engine.http.post(f"{engine.url}/v1/executions", json={"plan": plan}).json()["id"]
    assert engine.wait(eid)["status"] == "succeeded"
    # the registry's figures, folded from the step events, redrawn when a step ends
    page.wait_for_function(f'Number(document.querySelector("{cell}").textContent) > {before}')
    assert page.evaluate("window.__same_page") is True  # no reload
    assert page.locator("#agents tr[data-agent='context.set']").count() == 1
    if SHOTS:
        page.screenshot(path=f"{SHOTS}/dashboard-agents.png", full_page=True)
