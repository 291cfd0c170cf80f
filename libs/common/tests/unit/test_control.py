"""Signed control events: the installation's key signs the catalogue; readers ignore the rest."""

from __future__ import annotations

import stat
from pathlib import Path

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
