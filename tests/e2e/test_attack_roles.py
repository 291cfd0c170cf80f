"""Regressions for the review's findings on roles and sessions, against the engine as processes:
a read-only key decides nothing and drafts nothing, an edited plan cannot bring in a denied tool,
a stream ends with its key, a link carries no key and signs in once, the paste-a-key form needs
its CSRF token, and guessed secrets are answered 429 before they cost a hash each."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from typing import Any as Engine  # the fixture's type lives in conftest.py

import httpx
import pytest

from tests.e2e.conftest import Workspace, key_client

pytestmark = pytest.mark.e2e

REVIEWED = {
    "approval": {"plan": True},
    "steps": [{"id": "a", "tool": "mock.agent", "input": {"task": "look"}}],
}
DENIED_EDIT = {
    "plan": {"steps": [{"id": "pay", "tool": "mock.critical", "input": {"action": "pay"}}]}
}


def _plan_gate(engine: Engine, operator: httpx.Client) -> dict[str, Any]:
    started = operator.post(f"{engine.url}/v1/executions", json={"plan": REVIEWED})
    assert started.status_code == 202, started.text
    eid = started.json()["id"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        items = operator.get(
            f"{engine.url}/v1/approvals", params={"execution": eid, "status": "pending"}
        ).json()["items"]
        if items:
            return dict(items[0], execution_id=eid)
        time.sleep(0.1)
    raise AssertionError(f"no plan review opened for {eid}")


def test_a_viewer_decides_nothing_and_drafts_nothing(engine: Engine) -> None:
    ws = Workspace(engine, "viewer")
    operator, viewer = ws.client("operator"), ws.client("viewer")
    gate = _plan_gate(engine, operator)
    decided = viewer.post(
        f"{engine.url}/v1/approvals/{gate['id']}/decision", json={"decision": "approve"}
    )
    assert decided.status_code == 403 and "approve" in decided.json()["detail"]
    assert viewer.get(f"{engine.url}/v1/approvals/{gate['id']}").json()["status"] == "pending"
    drafted = viewer.post(f"{engine.url}/v1/plans/draft", json={"request": "collect reports"})
    assert drafted.status_code == 403 and "operator" in drafted.json()["detail"]
    operator.post(f"{engine.url}/v1/executions/{gate['execution_id']}/cancel")


def test_an_edited_plan_with_a_denied_tool_is_refused(engine: Engine) -> None:
    ws = Workspace(engine, "edit")
    admin = ws.client("admin")
    denied = admin.put(
        f"{engine.url}/v1/workspaces/{ws.id}/policy", json={"tools_deny": ["mock.critical"]}
    )
    assert denied.status_code == 200, denied.text
    gate = _plan_gate(engine, ws.client("operator"))
    edited = admin.post(
        f"{engine.url}/v1/approvals/{gate['id']}/decision",
        json={"decision": "edit", "input": DENIED_EDIT},
    )
    assert edited.status_code == 422, edited.text
    assert "mock.critical" in edited.json()["detail"] and "denied" in edited.json()["detail"]
    assert admin.get(f"{engine.url}/v1/approvals/{gate['id']}").json()["status"] == "pending"
    admin.post(f"{engine.url}/v1/executions/{gate['execution_id']}/cancel")


def _stream_ends(engine: Engine, key: str, end_it: Any) -> float:
    """Seconds from ``end_it()`` until the server closes the open workspace stream."""
    opened, closed = threading.Event(), threading.Event()

    def follow() -> None:
        with key_client(key) as c, c.stream("GET", f"{engine.url}/v1/stream", timeout=30) as resp:
            assert resp.status_code == 200
            opened.set()
            for _ in resp.iter_raw():
                pass
        closed.set()

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    assert opened.wait(15), "the stream did not open"
    t0 = time.monotonic()
    end_it()
    assert closed.wait(15), "the stream stayed open after its key stopped working"
    return time.monotonic() - t0


def test_a_revoked_keys_open_stream_closes_within_5_s(engine: Engine) -> None:
    ws = Workspace(engine, "revoke")
    made = ws.key("viewer")
    took = _stream_ends(
        engine, made["key"], lambda: engine.http.delete(f"{engine.url}/v1/keys/{made['id']}")
    )
    assert took < 5, f"closed {took:.1f}s after the revocation"


def test_an_expired_keys_open_stream_closes_within_5_s(engine: Engine) -> None:
    ws = Workspace(engine, "expire")
    expires_at = datetime.now(UTC) + timedelta(seconds=3)
    made = ws.key("viewer", expires_at=expires_at.isoformat())

    def wait_for_expiry() -> None:
        time.sleep(max(0.0, (expires_at - datetime.now(UTC)).total_seconds()))

    took = _stream_ends(engine, made["key"], wait_for_expiry)
    assert took < 5 + 3.5, f"closed {took:.1f}s after it began waiting for the expiry"


def test_a_token_link_no_longer_signs_in(engine: Engine) -> None:
    for key in (engine.token, Workspace(engine, "token").key("viewer")["key"]):
        with httpx.Client() as browser:
            page = browser.get(f"{engine.url}/?token={key}")
            assert page.status_code == 401 and "no longer accepted" in page.text
            assert "baton_session" not in browser.cookies


def test_a_code_signs_in_once_and_the_cookie_holds_no_key(engine: Engine) -> None:
    url = engine.signin_url("/approvals")
    with httpx.Client() as browser:
        page = browser.get(url, follow_redirects=True)
        assert page.status_code == 200 and str(page.url) == f"{engine.url}/approvals"
        session = browser.cookies["baton_session"]
        assert engine.token not in session
        assert browser.get(f"{engine.url}/v1/whoami").json()["role"] == "owner"
    with httpx.Client() as other_browser:
        again = other_browser.get(url)
        assert again.status_code == 401 and "used already" in again.text
        assert "baton_session" not in other_browser.cookies


def test_the_signin_form_without_its_csrf_token_is_refused(engine: Engine) -> None:
    """Another site's page can post the form, but cannot know the token nor send its cookie."""
    with httpx.Client() as browser:
        forged = browser.post(f"{engine.url}/signin", data={"key": engine.token, "next": "/"})
        assert forged.status_code == 403 and "baton_session" not in browser.cookies
        form = browser.get(f"{engine.url}/signin").text
        token = form.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        signed = browser.post(
            f"{engine.url}/signin", data={"key": engine.token, "next": "/", "csrf": token}
        )
        assert signed.status_code == 303 and "baton_session" in browser.cookies


def test_repeated_wrong_secrets_get_429_quickly(engine: Engine) -> None:
    made = Workspace(engine, "guess").key("viewer")
    wrong = made["key"][:-4] + ("aaaa" if not made["key"].endswith("aaaa") else "bbbb")
    t0 = time.monotonic()
    answers = []
    with key_client(wrong) as guesser:
        for _ in range(8):
            resp = guesser.get(f"{engine.url}/v1/whoami")
            answers.append(resp.status_code)
            if resp.status_code == 429:
                assert int(resp.headers["Retry-After"]) >= 1
                break
    assert answers[-1] == 429 and answers.count(401) <= 6, answers  # 5, and a refill at most
    assert time.monotonic() - t0 < 5
    # the key itself still works once its bucket refills
    with key_client(made["key"]) as owner_of_it:
        deadline = time.monotonic() + 15
        while owner_of_it.get(f"{engine.url}/v1/whoami").status_code == 429:
            assert time.monotonic() < deadline
            time.sleep(0.5)
        assert owner_of_it.get(f"{engine.url}/v1/whoami").status_code == 200


def test_a_signin_code_is_made_with_a_key_only(engine: Engine) -> None:
    with httpx.Client() as anonymous:
        assert anonymous.post(f"{engine.url}/v1/signin-codes").status_code == 401
        signed_in = anonymous.get(engine.signin_url())
        assert signed_in.status_code == 303 and "baton_session" in anonymous.cookies
        # a session cannot renew itself into a new code: only a key makes one
        renewed = anonymous.post(f"{engine.url}/v1/signin-codes", headers={"X-Baton-CSRF": "1"})
        assert renewed.status_code == 403


def test_the_cli_prints_one_time_links_never_a_key(engine: Engine) -> None:
    printed = (engine.data_dir / "up.log").read_text()
    assert "/?code=" in printed and "?token=" not in printed
    assert (
        engine.token not in printed and (engine.data_dir / "owner.key").read_text() not in printed
    )
    made = engine.cli("dashboard")
    assert made.returncode == 0, made.stderr
    link = made.stdout.strip()
    assert link.startswith(f"{engine.url}/?code=")
    with httpx.Client() as browser:
        assert browser.get(link).status_code == 303 and "baton_session" in browser.cookies
        assert browser.get(link).status_code == 401  # once
