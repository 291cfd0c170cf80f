"""Attack regression (issue 25): an operator's ``http.request`` read a service on 127.0.0.1 and
the body came back in the execution's view (full-read SSRF). The egress guard now refuses every
internal address the installation does not allow (``BATON_EGRESS_ALLOW``), each redirect hop
included; the step fails for good, naming the rule, and no byte of the answer is shown.

The engine here allows 127.0.0.2 only: the loopback range has many addresses, so one stands for
an internal service that was opened on purpose and 127.0.0.1 for one that was not.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from typing import Any
from typing import Any as Engine  # the fixture's type lives in conftest.py

import pytest
from baton_common.testing import LocalHandler

pytestmark = pytest.mark.e2e
SECRET = "internal-secret-4b1d"


class _Internal(LocalHandler):
    """``/redirect?to=<url>`` sends the caller there; anything else answers the secret."""

    def do_GET(self) -> None:
        if self.path.startswith("/redirect?to="):
            self.send_response(302)
            self.send_header("location", self.path.split("=", 1)[1])
            self.end_headers()
            return
        body = json.dumps({"secret": SECRET}).encode()
        self.answer(200, body, {"content-type": "application/json"})


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, str]]:
    started = {}
    for host in ("127.0.0.1", "127.0.0.2"):
        server = ThreadingHTTPServer((host, 0), _Internal)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started[host] = server
    yield {h: f"http://{h}:{s.server_port}" for h, s in started.items()}
    for server in started.values():
        server.shutdown()


@pytest.fixture(scope="module")
def guarded(module_engine: Any) -> Engine:
    return module_engine({"BATON_EGRESS_ALLOW": "127.0.0.2"})


def _fetch(engine: Engine, url: str) -> dict[str, Any]:
    plan = {"steps": [{"id": "fetch", "tool": "http.request", "input": {"url": url}}]}
    resp = engine.http.post(f"{engine.url}/v1/executions", json={"plan": plan})
    assert resp.status_code == 202, resp.text
    return engine.wait(resp.json()["id"])


def _refused(view: dict[str, Any], rule: str) -> None:
    """Failed for good, naming the rule, and nothing of the answer anywhere in the view."""
    assert view["status"] == "failed", view
    step = view["steps"]["fetch"]
    assert "egress refused" in step["error"] and rule in step["error"], step["error"]
    assert "BATON_EGRESS_ALLOW" in step["error"]
    assert step["attempts"] == 1, step  # not retried: the same refusal every time
    assert SECRET not in json.dumps(view)


def test_internal_addresses_are_refused_and_allowed_ones_reached(
    guarded: Engine, servers: dict[str, str]
) -> None:
    _refused(_fetch(guarded, servers["127.0.0.1"] + "/"), "127.0.0.1 is a loopback address")
    _refused(
        _fetch(guarded, "http://169.254.169.254/latest/meta-data/"),
        "169.254.169.254 is a cloud metadata address",
    )
    _refused(_fetch(guarded, "http://[::ffff:127.0.0.1]:9/"), "a loopback address inside")
    opened = _fetch(guarded, servers["127.0.0.2"] + "/")
    assert opened["status"] == "succeeded", opened
    assert opened["steps"]["fetch"]["output"]["json"] == {"secret": SECRET}


def test_a_redirect_to_an_internal_address_is_refused(
    guarded: Engine, servers: dict[str, str]
) -> None:
    bounce = f"{servers['127.0.0.2']}/redirect?to={servers['127.0.0.1']}/"
    _refused(_fetch(guarded, bounce), "127.0.0.1 is a loopback address")


def test_a_workspace_can_narrow_egress_but_not_widen_it(
    guarded: Engine, servers: dict[str, str]
) -> None:
    policy_url = f"{guarded.url}/v1/workspaces/default/policy"
    policy = {"egress_allow_hosts": ["127.0.0.1", "api.example.com"]}
    assert guarded.http.put(policy_url, json=policy).status_code == 200
    time.sleep(2.5)  # the worker reads a workspace's policy at most every 2 s
    # 127.0.0.2 (open to the installation) is now outside the workspace's list ...
    view = _fetch(guarded, servers["127.0.0.2"] + "/")
    assert view["status"] == "failed" and "egress allow list" in view["steps"]["fetch"]["error"]
    # ... and naming 127.0.0.1 there does not open what the installation keeps closed.
    _refused(_fetch(guarded, servers["127.0.0.1"] + "/"), "127.0.0.1 is a loopback address")
    bad = guarded.http.put(policy_url, json={"egress_deny_hosts": ["http://x/"]})
    assert bad.status_code == 422 and "neither a host name" in bad.text


def test_a_calendar_url_is_checked_before_anything_is_stored(
    guarded: Engine, servers: dict[str, str]
) -> None:
    calendars = f"{guarded.url}/v1/calendars"
    malformed = guarded.http.post(calendars, json={"name": "broken", "url": "http://"})
    assert malformed.status_code == 422 and "no host" in malformed.text, malformed.text
    internal = guarded.http.post(
        calendars, json={"name": "internal", "url": servers["127.0.0.1"] + "/cal/"}
    )
    assert internal.status_code == 422, internal.text
    assert "egress refused: 127.0.0.1 is a loopback address" in internal.text
    assert SECRET not in internal.text
