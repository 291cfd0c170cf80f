"""The bus's permission table: who may publish what, and the server config made from it."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from baton_common.busauth import (
    GRANTS,
    permissions,
    public_key,
    publisher_of,
    role_of,
    subject_matches,
    write_auth,
)


@pytest.mark.parametrize(
    ("pattern", "subject", "ok"),
    [
        ("baton.*.task.finished", "baton.acme.task.finished", True),
        ("baton.*.task.finished", "baton.acme.task.finished.x", False),
        ("baton.*.execution.>", "baton.acme.execution.step_dispatched.inline", True),
        ("baton.*.execution.>", "baton.acme.execution", False),
        ("baton_rpc.hitl.decide", "baton_rpc.hitl.decide", True),
    ],
)
def test_subject_matching_follows_nats_wildcards(pattern: str, subject: str, ok: bool) -> None:
    assert subject_matches(pattern, subject) is ok


def _may_publish(role: str, subject: str) -> bool:
    allow = permissions(role, "baton", "BATON_EVENTS")["publish"]["allow"]  # type: ignore[index]
    return any(subject_matches(p, subject) for p in allow)


def test_each_service_publishes_only_what_it_owns() -> None:
    catalogue, decide = "baton.system.tools.catalogue_changed", "baton_rpc.hitl.decide"
    assert not _may_publish("worker", catalogue) and not _may_publish("worker", decide)
    assert not _may_publish("worker", "baton.acme.execution.step_succeeded")
    assert _may_publish("worker", "baton.acme.task.finished")
    assert not _may_publish("gateway", "baton.acme.execution.step_succeeded")
    assert not _may_publish("gateway", "baton.acme.task.finished")
    assert _may_publish("gateway", "baton.acme.execution.requested") and _may_publish(
        "gateway", decide
    )
    assert not _may_publish("gateway", "baton.acme.approval.granted")
    assert _may_publish("hitl", "baton.acme.approval.granted")
    assert _may_publish("executor", catalogue) and not _may_publish("planner", catalogue)
    assert _may_publish("admin", "anything.at.all")


def test_a_dead_letter_goes_back_through_the_service_that_may_publish_it() -> None:
    assert publisher_of("baton.acme.task.finished", "baton", "BATON_EVENTS") == "worker"
    assert publisher_of("baton.acme.execution.step_failed", "baton", "BATON_EVENTS") == "executor"
    assert publisher_of("baton.acme.webhook.received", "baton", "BATON_EVENTS") == "webhook"
    assert publisher_of("elsewhere.x", "baton", "BATON_EVENTS") is None
    assert role_of("worker#3") == "worker" and role_of("cli") == "admin"


def test_the_server_config_holds_public_keys_and_the_seeds_stay_private(tmp_path: Path) -> None:
    conf, keys = write_auth(tmp_path / "auth", sorted(GRANTS), "baton", "BATON_EVENTS")
    text = conf.read_text()
    assert text.startswith("authorization: ")
    users = json.loads(text.removeprefix("authorization: "))["users"]
    assert len(users) == len(GRANTS)
    for role in GRANTS:
        seed = keys.seed_path(role).read_text().strip()
        assert seed.startswith("SU") and seed not in text
        assert public_key(seed) in text
        assert stat.S_IMODE(keys.seed_path(role).stat().st_mode) == 0o600
    again, _ = write_auth(tmp_path / "auth", sorted(GRANTS), "baton", "BATON_EVENTS")
    assert again.read_text() == text  # the keys are kept
