"""Workspaces, members and keys on the in-memory store: authentication and authorisation rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from baton_common.rates import Rate
from baton_common.store import MemoryEventStore
from baton_common.testing import state_of
from baton_common.workspaces import TOKEN_KEY_ID, WorkspacePolicy, key_string, split_key
from baton_gateway import access as access_module
from baton_gateway import domain
from baton_gateway.access import AccessApp
from baton_gateway.domain import Conflict, Forbidden, Invalid, NotFound, Principal, Unauthorized

ROOT = Principal("default", "owner", "root")


@pytest.fixture
def access() -> AccessApp:
    app = AccessApp(MemoryEventStore("gateway"), None)
    app.ensure_workspace("default", "Default")
    app.ensure_token("t0ken")
    return app


def test_a_created_key_authenticates_as_its_workspace_and_role(access: AccessApp) -> None:
    ws = access.create_workspace("Team Alpha", ROOT)
    assert ws == "team-alpha"
    key_id, key = access.create_key(ws, "operator", "ci", None, ROOT)
    who = access.authenticate(key)
    assert (who.workspace_id, who.role, who.name, who.key_id) == (ws, "operator", "ci", key_id)
    assert access.authenticate(key) == who  # the second time from the checked-secret cache


def test_wrong_secret_unknown_revoked_and_expired_keys_are_refused(access: AccessApp) -> None:
    key_id, key = access.create_key("default", "viewer", None, None, ROOT)
    _, secret = split_key(key)  # type: ignore[misc]
    with pytest.raises(Unauthorized, match="unknown key"):
        access.authenticate(key_string(key_id, secret[:-1] + "x"))
    with pytest.raises(Unauthorized, match="unknown key"):
        access.authenticate(key_string(uuid4(), secret))
    with pytest.raises(Unauthorized, match="missing"):
        access.authenticate(None)
    access.revoke_key(key_id, "leaked", ROOT)
    with pytest.raises(Unauthorized, match="revoked"):
        access.authenticate(key)
    soon = datetime.now(UTC) + timedelta(hours=1)
    _, short = access.create_key("default", "viewer", None, soon, ROOT)
    access.authenticate(short)
    with pytest.raises(Unauthorized, match="expired"):
        access.authenticate(short, now=soon + timedelta(seconds=1))


def test_memory_answers_only_for_a_key_checked_before_and_still_usable(
    access: AccessApp,
) -> None:
    """``known`` (called on the event loop) never reads the store nor runs scrypt: a key it has
    not seen, a wrong secret, a revoked or expired key are left to ``authenticate``."""
    soon = datetime.now(UTC) + timedelta(hours=1)
    key_id, key = access.create_key("default", "viewer", None, soon, ROOT)
    _, secret = split_key(key)  # type: ignore[misc]
    assert access.known(key) is None and access.known(None) is None
    who = access.authenticate(key)
    assert access.known(key) == who
    assert access.known(key_string(key_id, secret[:-1] + "x")) is None
    assert access.known(key, now=soon + timedelta(seconds=1)) is None
    access.revoke_key(key_id, None, ROOT)
    assert access.known(key) is None
    with pytest.raises(Unauthorized, match="revoked"):
        access.authenticate(key)
    who = access.authenticate("t0ken")  # the installation token: the same, once checked
    assert access.known("t0ken") == who


def test_the_api_token_is_the_default_workspace_owner(access: AccessApp) -> None:
    who = access.authenticate("t0ken")
    assert (who.workspace_id, who.role, who.key_id) == ("default", "owner", TOKEN_KEY_ID)
    with pytest.raises(Unauthorized):
        access.authenticate("t0ke")


def test_the_api_token_is_kept_as_a_hash_and_registered_once(access: AccessApp) -> None:
    history = access.store.load(TOKEN_KEY_ID)
    assert [e.type for e in history] == ["workspace.key_created"]
    assert "t0ken" not in history[0].model_dump_json()
    access.ensure_token("t0ken")  # every gateway start asks: the same value changes nothing
    assert len(access.store.load(TOKEN_KEY_ID)) == 1


def test_a_revoked_token_stays_revoked_while_its_value_is_the_same(access: AccessApp) -> None:
    access.authenticate("t0ken")
    access.revoke_key(TOKEN_KEY_ID, "leaked", ROOT)
    assert access.known("t0ken") is None
    with pytest.raises(Unauthorized, match="revoked"):
        access.authenticate("t0ken")
    access.ensure_token("t0ken")  # a restart with the same value
    with pytest.raises(Unauthorized, match="revoked"):
        access.authenticate("t0ken")


def test_a_new_token_value_replaces_the_old_on_every_replica(
    access: AccessApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    replica = AccessApp(access.store, None)  # another gateway on the same store
    assert replica.authenticate("t0ken").key_id == TOKEN_KEY_ID
    access.authenticate("t0ken")
    access.ensure_token("n3w-t0ken")
    with pytest.raises(Unauthorized, match="unknown key"):  # checked before, refused now
        access.authenticate("t0ken")
    assert access.authenticate("n3w-t0ken").key_id == TOKEN_KEY_ID
    monkeypatch.setattr(access_module, "CACHE_S", 0.0)  # the replica's memory has aged
    assert replica.known("t0ken") is None
    with pytest.raises(Unauthorized, match="unknown key"):
        replica.authenticate("t0ken")
    assert replica.authenticate("n3w-t0ken").role == "owner"


def test_a_new_value_makes_a_revoked_token_work_and_no_value_revokes_it(
    access: AccessApp,
) -> None:
    access.revoke_key(TOKEN_KEY_ID, None, ROOT)
    access.ensure_token("n3w-t0ken")
    assert access.authenticate("n3w-t0ken").key_id == TOKEN_KEY_ID
    access.ensure_token(None)  # BATON_API_TOKEN unset
    with pytest.raises(Unauthorized, match=r"installation token cannot be used: .*revoked"):
        access.authenticate("n3w-t0ken")
    events = access.store.load(TOKEN_KEY_ID)
    assert [e.type.split(".")[1] for e in events] == [
        "key_created",
        "key_revoked",
        "key_rotated",
        "key_revoked",
    ]
    assert events[-1].reason == "BATON_API_TOKEN is no longer set"  # type: ignore[attr-defined]


def test_without_a_token_other_strings_are_not_keys() -> None:
    app = AccessApp(MemoryEventStore("gateway"), None)
    app.ensure_token(None)
    assert app.store.load(TOKEN_KEY_ID) == []
    with pytest.raises(Unauthorized, match="not a Baton API key"):
        app.authenticate("t0ken")


def test_a_token_shaped_like_a_key_is_refused_at_start(access: AccessApp) -> None:
    with pytest.raises(ValueError, match="BATON_BOOTSTRAP_KEY"):
        access.ensure_token(key_string(uuid4(), "s3cret-s3cret-s3cret"))


def test_a_rotation_ends_the_sessions_opened_with_the_old_secret(access: AccessApp) -> None:
    before = access.reference(access.authenticate("t0ken"))
    assert access.principal_for(before).key_id == TOKEN_KEY_ID
    access.ensure_token("n3w-t0ken")
    with pytest.raises(Unauthorized, match="replaced"):
        access.principal_for(before)
    after = access.reference(access.authenticate("n3w-t0ken"))
    assert after != before and access.principal_for(after).role == "owner"
    with pytest.raises(Unauthorized, match="sign in again"):
        access.principal_for("token:" + "0" * 64)  # a session of an older gateway's token


def test_roles_limit_what_a_key_may_grant(access: AccessApp) -> None:
    ws = access.create_workspace("beta", ROOT)
    admin = Principal(ws, "admin", "ann")
    access.create_key(ws, "admin", None, None, admin)
    with pytest.raises(Forbidden, match="needs the role owner; this key is 'admin'"):
        access.create_key(ws, "owner", None, None, admin)
    with pytest.raises(Forbidden, match="admin or owner"):
        access.create_key(ws, "viewer", None, None, Principal(ws, "operator", "op"))
    with pytest.raises(Forbidden, match="creating workspaces"):
        access.create_workspace("gamma", Principal(ws, "owner", "o"))
    with pytest.raises(Invalid, match="unknown role"):
        access.set_member(ws, "bob", "boss", admin)


def test_another_workspace_is_not_found_not_forbidden(access: AccessApp) -> None:
    a, b = access.create_workspace("a", ROOT), access.create_workspace("b", ROOT)
    key_id, _ = access.create_key(a, "viewer", None, None, ROOT)
    b_owner = Principal(b, "owner", "bo")
    with pytest.raises(NotFound):
        access.visible_workspace(a, b_owner)
    with pytest.raises(NotFound):
        access.create_key(a, "viewer", None, None, b_owner)
    with pytest.raises(NotFound):
        access.revoke_key(key_id, None, b_owner)
    with pytest.raises(NotFound):
        access.set_policy(a, WorkspacePolicy(), b_owner)


def test_members_policy_and_duplicates(access: AccessApp) -> None:
    ws = access.create_workspace("delta", ROOT)
    with pytest.raises(Conflict):
        access.create_workspace("Delta", ROOT)
    access.set_member(ws, "bob", "approver", ROOT)
    access.set_member(ws, "bob", "operator", ROOT)
    assert access.visible_workspace(ws, ROOT).members == {"bob": "operator"}
    access.set_policy(ws, WorkspacePolicy(tools_deny=["http.request"]), ROOT)
    assert access.policy(ws).tool_allowed("http.request") == (
        "tool 'http.request' is denied in this workspace"
    )
    assert access.policy(ws).tool_allowed("mock.agent") is None
    assert access.known_policy(ws) == access.policy(ws)  # remembered: the event loop may ask
    access.set_policy(ws, WorkspacePolicy(), ROOT)
    assert access.known_policy(ws) is None  # a change is read again, at once
    assert access.policy(ws).tool_allowed("http.request") is None
    with pytest.raises(Invalid, match="no letters"):
        access.create_workspace("???", ROOT)


def test_bootstrap_key_is_registered_once_and_stays_revoked(access: AccessApp) -> None:
    key = key_string(uuid4(), "s3cret-s3cret-s3cret")
    access.ensure_key(key, "default", "owner", "bootstrap")
    access.ensure_key(key, "default", "owner", "bootstrap")
    who = access.authenticate(key)
    access.revoke_key(who.key_id, None, ROOT)  # type: ignore[arg-type]
    access.ensure_key(key, "default", "owner", "bootstrap")
    with pytest.raises(Unauthorized, match="revoked"):
        access.authenticate(key)


@pytest.mark.parametrize(
    ("text", "count", "per_s"),
    [("5/s", 5, 1), ("60/min", 60, 60), ("100/10s", 100, 10), ("1000 / h", 1000, 3600), (2, 2, 1)],
)
def test_rates_read_like_people_write_them(text: str, count: float, per_s: float) -> None:
    assert Rate.parse(text) == Rate(count=count, per_s=per_s)


@pytest.mark.parametrize("bad", ["-1/s", "5 per second", "5/fortnight", -3])
def test_bad_rates_are_refused(bad: object) -> None:
    with pytest.raises(ValueError):
        Rate.parse(bad)  # type: ignore[arg-type]


def test_a_workspace_loads_through_a_snapshot(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATON_AGGREGATE_SNAPSHOT_EVERY", "3")
    app = AccessApp(MemoryEventStore("gateway"), None)
    app.ensure_workspace("default", "Default")
    for user in ("ann", "bob", "cy"):
        app.set_member("default", user, "viewer", ROOT)
    app.remove_member("default", "bob", ROOT)
    ws = domain.workspace_uuid("default")
    whole = domain.Workspace.rebuild(ws, app.store.load(ws))
    app.snapshots.read = 0
    assert state_of(app.workspace("default")) == state_of(whole)
    assert app.snapshots.read < 3  # what came after the newest snapshot only
