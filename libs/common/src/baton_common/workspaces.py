"""Workspaces as every service sees them: roles, what each may do, and a workspace's policy.

The gateway owns workspaces, members and keys (their events); the projector keeps the current
policy of each workspace in the ``workspaces`` read model; the executor reads it from there
(``PolicyReader``) to enforce tool lists and quotas.
"""

from __future__ import annotations

import contextlib
import fnmatch
import threading
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from baton_common.followed import plugin_needed
from baton_common.hostpatterns import host_pattern_problem

# Key strings live apart (the supervisor mints one without the models): re-exported here.
from baton_common.keystrings import KEY_PREFIX as KEY_PREFIX
from baton_common.keystrings import TOKEN_KEY_ID as TOKEN_KEY_ID
from baton_common.keystrings import TOKEN_KEY_NAME as TOKEN_KEY_NAME
from baton_common.keystrings import key_string as key_string
from baton_common.keystrings import mint_key as mint_key
from baton_common.keystrings import new_key_secret as new_key_secret
from baton_common.keystrings import split_key as split_key
from baton_common.planproblems import PlanProblem
from baton_common.rates import Rate

DEFAULT_WORKSPACE = "default"
WORKSPACE_ID = r"^[a-z0-9][a-z0-9_-]{0,62}$"

Role = Literal["owner", "admin", "operator", "approver", "viewer"]
ROLES: tuple[str, ...] = ("owner", "admin", "operator", "approver", "viewer")

# What a role may do. "read" covers every GET; "run" submits and steers executions; "approve"
# decides approval gates; "manage" covers keys, members and the workspace's policy.
PERMISSIONS: dict[str, frozenset[str]] = {
    "viewer": frozenset({"read"}),
    "approver": frozenset({"read", "approve"}),
    "operator": frozenset({"read", "run"}),
    "admin": frozenset({"read", "run", "approve", "manage", "audit"}),
    "owner": frozenset({"read", "run", "approve", "manage", "audit", "own"}),
}


def roles_with(permission: str) -> list[str]:
    """The roles that hold ``permission``, weakest first (for "needs one of …" messages)."""
    return [r for r in reversed(ROLES) if permission in PERMISSIONS[r]]


# --- API keys: ``bk_<key id, 32 hex>_<secret>``: the id finds the key, the secret proves it ------


class WorkspacePolicy(BaseModel):
    """A workspace's tool allow/deny lists and quotas; every field optional."""

    model_config = ConfigDict(extra="forbid")
    tools_allow: list[str] | None = Field(
        None, description="only these tools (None: every tool in the catalogue)"
    )
    tools_deny: list[str] = Field(default_factory=list, description="never these tools")
    tool_rates: dict[str, str] = Field(
        default_factory=dict,
        description="per-tool call rate for this workspace, e.g. {'llm.generate': '30/min'}",
    )
    plugins: dict[str, list[str]] = Field(
        default_factory=dict,
        description="plugins whose hooks run here, each with the capabilities granted to it",
    )
    egress_allow_hosts: list[str] | None = Field(
        None,
        description="outbound calls reach only these hosts ('api.example.com', '*.example.com', "
        "addresses, networks); None: any public host. Never opens an internal address the "
        "installation's BATON_EGRESS_ALLOW does not",
    )
    egress_deny_hosts: list[str] = Field(
        default_factory=list, description="outbound calls never reach these hosts or networks"
    )
    max_executions_in_flight: int | None = Field(None, ge=0)
    max_steps_per_minute: int | None = Field(None, ge=0)
    retention_days: float | None = Field(
        None,
        gt=0,
        description="finished executions are archived and removed after this many days "
        "(fractions allowed), within the installation's bounds; None: BATON_RETENTION_DAYS",
    )
    summary_retention_days: float | None = Field(
        None,
        gt=0,
        description="archived executions' summaries are folded into per-day counts after this "
        "many days (fractions allowed); None: BATON_SUMMARY_RETENTION_DAYS",
    )
    # Set only by ``InstallationLimits.applied``: never part of what a workspace admin sends.
    _installation: InstallationLimits | None = PrivateAttr(None)

    @field_validator("tool_rates")
    @classmethod
    def _rates(cls, value: dict[str, str]) -> dict[str, str]:
        for tool, rate in value.items():
            try:
                Rate.parse(rate)
            except ValueError as exc:
                raise ValueError(f"{tool}: {exc}") from None
        return value

    @field_validator("egress_allow_hosts", "egress_deny_hosts")
    @classmethod
    def _hosts(cls, value: list[str] | None) -> list[str] | None:
        for item in value or []:
            if problem := host_pattern_problem(item):
                raise ValueError(problem)
        return value

    def tool_allowed(self, tool: str) -> str | None:
        """None when the workspace may use ``tool``; otherwise the reason it may not. The
        installation's denied tools come first: no allow list of a workspace lifts them."""
        if self._installation is not None and self._installation.denies(tool):
            return f"tool {tool!r} is denied by this installation (BATON_DENIED_TOOLS)"
        if tool in self.tools_deny:
            return f"tool {tool!r} is denied in this workspace"
        if self.tools_allow is not None and tool not in self.tools_allow:
            return f"tool {tool!r} is not on this workspace's allow list"
        return self._plugin_refuses(tool)

    def _plugin_refuses(self, tool: str) -> str | None:
        needed = plugin_needed(tool)
        if needed is None:
            return None
        plugin, capabilities = needed
        if plugin not in self.plugins:
            return f"tool {tool!r} comes with plugin {plugin!r}, not enabled in this workspace"
        if missing := sorted(set(capabilities) - set(self.plugins[plugin])):
            return f"tool {tool!r} needs {', '.join(missing)} granted to plugin {plugin!r}"
        return None

    def rate_for(self, tool: str) -> Rate | None:
        rate = self.tool_rates.get(tool)
        return Rate.parse(rate) if rate is not None else None

    @property
    def executions_cap(self) -> int | None:
        """Executions in flight at most: the lower of the workspace's and the installation's."""
        caps = [self.max_executions_in_flight]
        caps += [self._installation.max_executions_in_flight] if self._installation else []
        known = [cap for cap in caps if cap is not None]
        return min(known) if known else None


class InstallationLimits(BaseSettings):
    """What the installation's operator allows every workspace at most (from the environment):
    a workspace's own policy can narrow these, never lift them."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)
    denied_tools: str = Field(
        "", alias="BATON_DENIED_TOOLS", description="comma list of tools (or patterns: 'http.*')"
    )
    max_executions_in_flight: int | None = Field(
        None, ge=0, alias="BATON_MAX_EXECUTIONS_IN_FLIGHT", description="per workspace"
    )

    def denies(self, tool: str) -> bool:
        patterns = (p.strip() for p in self.denied_tools.split(","))
        return any(fnmatch.fnmatchcase(tool, p) for p in patterns if p)

    def applied(self, policy: WorkspacePolicy) -> WorkspacePolicy:
        """``policy`` as it is enforced here: the workspace's own rules under these limits."""
        effective = policy.model_copy()
        effective._installation = self
        return effective


class PolicyUnavailable(RuntimeError):
    """A workspace's policy could not be read: nothing is allowed until it can be (fail closed)."""


class PolicyReader:
    """Each workspace's current policy from the ``workspaces`` read model, cached briefly."""

    def __init__(
        self,
        url: str,
        schema: str,
        ttl_s: float = 2.0,
        limits: InstallationLimits | None = None,
    ) -> None:
        self.url, self.schema, self.ttl_s = url, schema, ttl_s
        self.limits = limits if limits is not None else InstallationLimits()
        self._cache: dict[str, tuple[float, WorkspacePolicy]] = {}
        # One connection, kept: a new one per read (each cache expiry, every two seconds under
        # load) cost a TCP connect and a scram-sha-256 exchange on the executor's event loop.
        self._conn: Any = None
        self._lock = threading.Lock()  # the planner reads from threads

    def get(self, workspace_id: str) -> WorkspacePolicy:
        hit = self._cache.get(workspace_id)
        if hit is not None and time.monotonic() - hit[0] < self.ttl_s:
            return hit[1]
        policy = self.limits.applied(self._load(workspace_id))
        self._cache[workspace_id] = (time.monotonic(), policy)
        return policy

    def _load(self, workspace_id: str) -> WorkspacePolicy:
        import psycopg
        from psycopg.sql import SQL, Identifier

        query = SQL("SELECT policy FROM {s}.workspaces WHERE id = %s").format(
            s=Identifier(self.schema)
        )
        with self._lock:
            for attempt in (1, 2):  # a kept connection that broke is made again, once
                try:
                    if self._conn is None or self._conn.closed:
                        self._conn = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
                    row = self._conn.execute(query, (workspace_id,)).fetchone()
                    break
                except psycopg.Error as exc:  # never "everything allowed" because a read failed
                    self._close()
                    if attempt == 2 or isinstance(exc, psycopg.ProgrammingError):
                        raise PolicyUnavailable(
                            f"cannot read workspace {workspace_id!r}'s policy: {exc}"
                        ) from None
        return WorkspacePolicy.model_validate(row[0]) if row and row[0] else WorkspacePolicy()

    def _close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None


def policy_problems(plan: Any, policy: WorkspacePolicy) -> list[PlanProblem]:
    """``PlanProblem``s for every tool of ``plan`` (steps, alternatives, compensations) that the
    workspace's policy does not allow."""
    problems = []
    for step in plan.steps:
        calls = [("tool", step.tool)]
        calls += [(f"alternatives.{i}.tool", a.tool) for i, a in enumerate(step.alternatives)]
        if step.compensate:
            calls.append(("compensate.tool", step.compensate.tool))
        for field, tool in calls:
            if reason := policy.tool_allowed(tool):
                problems.append(PlanProblem(step.id, field, reason))
    return problems
