"""Signed control events: the installation's key signs the catalogue; readers ignore the rest."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

from baton_common import contracts as c
from baton_common.catalogue import Catalogue
from baton_common.control import control_key, ensure_key, refused, sign
from baton_common.discovery import CatalogueFollower, Scan
from baton_common.settings import Settings

KEY, OTHER = b"k" * 32, b"o" * 32


def _catalogue(digest: str = "d1") -> c.CatalogueChanged:
    found = Scan(tools=[{"spec": {"name": "t.x"}, "origin": "agents:x", "implementation": {}}])
    return found.event("test", 0).model_copy(update={"digest": digest})


def test_a_signed_event_verifies_and_any_change_breaks_it() -> None:
    event = sign(_catalogue(), KEY)
    assert event.signature and refused(event, KEY) is None
    assert refused(event, OTHER) == "bad signature"
    tampered = event.model_copy(update={"tools": [{"implementation": {"python": "os:system"}}]})
    assert refused(tampered, KEY) == "bad signature"
    assert refused(_catalogue(), KEY) == "unsigned"
    assert refused(_catalogue(), None) is None  # no key configured: nothing to check against


def test_the_follower_applies_only_the_installations_catalogue(caplog: object) -> None:
    follower = CatalogueFollower(bus=None, catalogue=Catalogue())
    follower.key = KEY
    assert not follower.apply(_catalogue("forged"))
    assert not follower.apply(sign(_catalogue("other-key"), OTHER))
    assert follower.current is None
    assert follower.apply(sign(_catalogue("real"), KEY))
    assert follower.current is not None and follower.current.digest == "real"


def test_the_key_is_made_once_private_and_found_by_the_settings(tmp_path: Path) -> None:
    folder = tmp_path / "nats" / "auth"
    folder.mkdir(parents=True)
    path = ensure_key(folder)
    first = path.read_text()
    assert ensure_key(folder).read_text() == first  # kept
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    local = Settings(BATON_DATA_DIR=str(tmp_path))  # type: ignore[call-arg]
    assert control_key(local) == bytes.fromhex(first.strip())
    elsewhere = tmp_path / "k"
    elsewhere.write_text((b"z" * 32).hex())
    configured = Settings(BATON_DATA_DIR=str(tmp_path), BATON_CONTROL_KEY_FILE=str(elsewhere))  # type: ignore[call-arg]
    assert control_key(configured) == b"z" * 32


def test_a_signed_control_message_verifies_on_its_own_subject_only() -> None:
    from baton_common.control import message_refused, signed_headers

    subject, body = "baton_rpc.hitl.decide", b'{"decision": "approve"}'
    headers = signed_headers(KEY, subject, body, {"traceparent": "00-x"})
    assert headers is not None and headers["traceparent"] == "00-x"
    assert message_refused(KEY, subject, body, headers) is None
    assert message_refused(OTHER, subject, body, headers) == "bad signature"
    assert message_refused(KEY, subject, b'{"decision": "reject"}', headers) == "bad signature"
    assert message_refused(KEY, "baton_rpc.scheduler", body, headers) == "bad signature"
    assert message_refused(KEY, subject, body, None) == "unsigned"
    assert message_refused(KEY, subject, body, {"Baton-Signature": "junk"}) == "unsigned"
    assert message_refused(None, subject, body, None) is None  # no key: nothing to check
    assert signed_headers(None, subject, body) is None


def test_a_recorded_control_message_stops_working(monkeypatch: Any) -> None:
    import time

    from baton_common import control

    subject, body = "baton_rpc.tools.refresh", b"{}"
    headers = control.signed_headers(KEY, subject, body)
    later = time.time() + control.MAX_AGE_S + 1
    monkeypatch.setattr(control.time, "time", lambda: later)
    reason = control.message_refused(KEY, subject, body, headers)
    assert reason is not None and "window" in reason
