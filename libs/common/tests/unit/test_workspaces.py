"""Installation limits over a workspace's policy, and a policy read that fails closed."""

from __future__ import annotations

import pytest
from baton_common.workspaces import (
    InstallationLimits,
    PolicyReader,
    PolicyUnavailable,
    WorkspacePolicy,
)


def test_the_installations_denied_tools_win_over_a_workspaces_allow_list() -> None:
    limits = InstallationLimits(BATON_DENIED_TOOLS="http.*, shell.run")
    own = WorkspacePolicy(tools_allow=["http.get", "mock.agent", "shell.run"])
    effective = limits.applied(own)
    assert "denied by this installation" in (effective.tool_allowed("http.get") or "")
    assert "denied by this installation" in (effective.tool_allowed("shell.run") or "")
    assert effective.tool_allowed("mock.agent") is None
    assert own.tool_allowed("http.get") is None  # the workspace's own policy is left as it was
    # what the workspace sees and saves is its own policy: the limits are not written into it
    assert effective.model_dump() == own.model_dump()


def test_the_lower_executions_cap_holds() -> None:
    limits = InstallationLimits(BATON_MAX_EXECUTIONS_IN_FLIGHT=3)
    assert limits.applied(WorkspacePolicy(max_executions_in_flight=5)).executions_cap == 3
    assert limits.applied(WorkspacePolicy(max_executions_in_flight=2)).executions_cap == 2
    assert limits.applied(WorkspacePolicy()).executions_cap == 3
    assert InstallationLimits().applied(WorkspacePolicy()).executions_cap is None


def test_the_limits_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATON_DENIED_TOOLS", "code.run")
    monkeypatch.setenv("BATON_MAX_EXECUTIONS_IN_FLIGHT", "4")
    limits = InstallationLimits()
    assert limits.denies("code.run") and not limits.denies("mock.agent")
    assert limits.max_executions_in_flight == 4


def test_a_policy_that_cannot_be_read_allows_nothing() -> None:
    """A database that does not answer must not read as "no policy, every tool allowed"."""
    reader = PolicyReader("postgresql://nobody@127.0.0.1:1/none", "public")
    with pytest.raises(PolicyUnavailable, match="cannot read workspace 'team'"):
        reader.get("team")
