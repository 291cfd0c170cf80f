"""Who may publish and subscribe what on NATS: one table, and the credentials that carry it.

Every connection to the bus authenticates with an NKey (an ed25519 key pair: the server holds only
the public half). Each service has its own key, and the server grants that key the subjects in
``GRANTS`` and nothing else, so a worker cannot announce tools or decide an approval, and the
gateway cannot report a step's outcome, however it is compromised.

``baton up`` generates the keys in ``<data>/nats/auth`` (mode 0600, the folder 0700) and writes the
embedded server's configuration from this table at every start (a changed table applies at the
next start; the keys stay). Elsewhere (docker-compose, Kubernetes) ``baton nats-config`` prints the
same configuration and each service's seed comes from a secret (``BATON_NATS_NKEY``).

Subjects use ``{root}`` (``BATON_SUBJECT_ROOT``) and ``{stream}`` (``BATON_STREAM``). Replies to
requests are allowed by ``allow_responses`` (to the requester only, once), not by a grant on
``_INBOX.>``, so no service can write into another's inbox.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from baton_common.control import ensure_key
from baton_common.settings import auth_folder

ADMIN = "admin"


@dataclass(frozen=True)
class Grant:
    """The subjects one role may publish to and subscribe to."""

    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    responds: bool = False  # answers requests (an RPC server)


# What every JetStream client needs: stream and consumer lookups, its own consumers, acks, gets.
# Deleting or purging a stream, or editing another's stream, is left to the admin key.
_JS = (
    "$JS.API.INFO",
    "$JS.API.STREAM.INFO.{stream}",
    "$JS.API.STREAM.INFO.{stream}_DLQ",
    "$JS.API.STREAM.CREATE.{stream}",
    "$JS.API.STREAM.CREATE.{stream}_DLQ",
    "$JS.API.STREAM.NAMES",
    "$JS.API.STREAM.MSG.GET.{stream}",
    "$JS.API.STREAM.MSG.GET.{stream}_DLQ",
    "$JS.API.DIRECT.GET.{stream}.>",
    "$JS.API.CONSUMER.>",
    "$JS.ACK.{stream}.>",
    "$JS.ACK.{stream}_DLQ.>",
    "$JS.FC.>",
    "{root}_dlq.>",  # a consumer parks a message it can never handle
    "{root}.*.relay.event_parked",  # and a relay notes an event the bus refused (relay.py)
)
_INBOX = ("_INBOX.>",)
# Tool results, straight to the executor as well as on the stream (``Bus.publish(direct=…)``):
# the same ``task.finished`` events their senders may publish on the stream, nothing more.
RESULTS_DIRECT = "{root}_direct.executor.results"


def _events(*domains: str) -> tuple[str, ...]:
    """``{root}.<workspace>.<domain>.>`` for each domain: the events a role's store holds."""
    return tuple(f"{{root}}.*.{d}.>" for d in domains)


def _types(*types: str) -> tuple[str, ...]:
    """``{root}.<workspace>.<type>`` for single event types of a domain another role owns."""
    return tuple(f"{{root}}.*.{t}" for t in types)


CATALOGUE = "{root}.system.tools.catalogue_changed"
# Changing the event stream's limits is the executor's alone: a worker (untrusted tool code) that
# could shorten them would make messages expire before their consumers read them.
STREAM_UPDATE = "$JS.API.STREAM.UPDATE.{stream}"
_FOLLOW = (*_INBOX, CATALOGUE)  # every process follows the tool catalogue

# Derived from what each service really publishes and subscribes to (a trace of the e2e suite
# on nats-server, kept as tests/e2e/test_bus_auth.py checks): a service publishes the events of
# the aggregates its store holds, requests to the RPC subjects it calls, and nothing else.
GRANTS: dict[str, Grant] = {
    # The door from outside: commands as events (each one a request the owner decides on).
    "gateway": Grant(
        publish=(
            *_JS,
            *_types(
                "execution.requested",
                "execution.cancel_requested",
                "execution.pause_requested",
                "execution.resume_requested",
                "execution.context_put_requested",
                "context.put_requested",
                "cache.clear_requested",
            ),
            *_events("workspace"),
            "{root}_direct.executor",  # a planned execution, handed over at once
            "{root}_rpc.hitl.decide",
            "{root}_rpc.planner",
            "{root}_rpc.planner.insights",
            "{root}_rpc.scheduler",
            "{root}_rpc.webhook.call",
            "{root}_rpc.calendar.call",
            "{root}_rpc.tools.refresh",
            "{root}_rpc.executor.mcp",
        ),
        subscribe=_FOLLOW,
    ),
    "planner": Grant(
        publish=(*_JS, *_events("plan", "saved_plan", "learning")),
        subscribe=(*_FOLLOW, "{root}_rpc.planner", "{root}_rpc.planner.insights"),
        responds=True,
    ),
    # The owner of executions, and the one announcer of the tools.
    "executor": Grant(
        publish=(
            *_JS,
            *_events("execution", "log", "mcp"),  # mcp: the MCP servers it registers
            *_types("context.written", "context.deleted"),  # the workspace's keys
            CATALOGUE,
            STREAM_UPDATE,  # it brings the event stream's limits to the settings (bus.py)
        ),
        subscribe=(
            *_FOLLOW,
            "{root}_direct.executor",
            RESULTS_DIRECT,
            "{root}_rpc.tools.refresh",
            "{root}_rpc.executor.mcp",
        ),
        responds=True,
    ),
    # A tool worker reports what it ran, its logs, its hooks' failures and its agents' messages.
    # It announces no tool, decides nothing, and cannot write an execution's history.
    "worker": Grant(
        publish=(
            *_JS,
            *_types(
                "task.finished",
                "log.step_logged",
                "execution.agent_message_posted",
                "execution.step_hook_failed",
            ),
            RESULTS_DIRECT,
        ),
        # cancelling: a running MCP call is cancelled on its server (mcp/tool.py)
        subscribe=(*_FOLLOW, *_types("execution.cancelling")),
    ),
    "projector": Grant(publish=_JS, subscribe=_FOLLOW),
    "hitl": Grant(
        publish=(*_JS, *_events("approval")),
        subscribe=(*_FOLLOW, "{root}_rpc.hitl.decide"),
        responds=True,
    ),
    "scheduler": Grant(
        publish=(*_JS, *_events("schedule", "trigger", "intake")),
        subscribe=(*_FOLLOW, "{root}_rpc.scheduler"),
        responds=True,
    ),
    "webhook": Grant(
        publish=(*_JS, *_events("webhook", "intake")),
        subscribe=(*_FOLLOW, "{root}_rpc.webhook.call"),
        responds=True,
    ),
    "calendar": Grant(
        publish=(
            *_JS,
            *_events("calendar"),
            *_types("task.finished", "log.step_logged"),
            RESULTS_DIRECT,
        ),
        subscribe=(*_FOLLOW, "{root}_rpc.calendar.call"),
        responds=True,
    ),
    # The operator's key (the CLI, tests, the bench): everything, as the server's owner.
    ADMIN: Grant(publish=(">",), subscribe=(">",), responds=True),
}
# Processes that act for the operator use the admin key; a projection rebuild is the projector's.
ALIASES = {"cli": ADMIN, "rebuild": "projector", "test": ADMIN, "chaos": ADMIN}


def role_of(name: str) -> str:
    """The grant a process named ``name`` connects with (``worker#2`` is a ``worker``)."""
    base = name.partition("#")[0]
    return ALIASES.get(base, base)


def grant_of(role: str) -> Grant:
    """The table's grant, plus what every service needs to replay a dead letter it may publish
    (the request subject, reading and deleting in the dead-letter stream); a service that
    plugins add (not in the table) may publish only its own domain's events."""
    grant = _grant_of(role)
    if role == ADMIN:
        return grant
    replay = "{root}_rpc.replay." + role
    extra_pub: tuple[str, ...] = ("$JS.API.STREAM.MSG.DELETE.{stream}_DLQ",)
    if role == "gateway":
        extra_pub += ("{root}_rpc.replay.*",)
    return Grant(
        publish=(*grant.publish, *extra_pub),
        subscribe=(*grant.subscribe, replay),
        responds=True,
    )


def _grant_of(role: str) -> Grant:
    return GRANTS.get(role) or Grant(
        publish=(*_JS, *_events(role)),
        subscribe=(*_FOLLOW, f"{{root}}_rpc.{role}.>"),
        responds=True,
    )


def sets_stream_limits(name: str) -> bool:
    """Whether process ``name`` may change the event stream's limits (``STREAM_UPDATE``)."""
    role = role_of(name)
    return role == ADMIN or STREAM_UPDATE in _grant_of(role).publish


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS wildcard matching: ``*`` is one token, a final ``>`` one or more."""
    want, have = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(have) > i
        if i >= len(have) or (token != "*" and token != have[i]):
            return False
    return len(want) == len(have)


def publisher_of(subject: str, root: str, stream: str) -> str | None:
    """The service whose key may publish on ``subject`` (the operator's aside), or None."""
    for role, grant in GRANTS.items():
        if role == ADMIN:
            continue
        patterns = (p.format(root=root, stream=stream) for p in grant.publish)
        if any(subject_matches(p, subject) for p in patterns if not p.startswith("$")):
            return role
    return None


def replay_subject(root: str, role: str) -> str:
    """Where ``role`` takes requests to send a dead letter back to its subject (service.py):
    the gateway asks; the service that may publish there does it, with its own key."""
    return f"{root}_rpc.replay.{role}"


def permissions(role: str, root: str, stream: str) -> dict[str, object]:
    """The server's ``permissions`` block for ``role``, with the deployment's names filled in."""
    grant = grant_of(role)

    def fill(subjects: tuple[str, ...]) -> list[str]:
        return sorted({s.format(root=root, stream=stream) for s in subjects})

    block: dict[str, object] = {
        "publish": {"allow": fill(grant.publish)},
        "subscribe": {"allow": fill(grant.subscribe)},
    }
    if grant.responds:
        block["allow_responses"] = True
    return block


# ---------------------------------------------------------------- keys


def new_seed() -> str:
    """A fresh user NKey seed (``SU…``)."""
    import nkeys

    return nkeys.encode_seed(secrets.token_bytes(32), nkeys.PREFIX_BYTE_USER).decode()


def public_key(seed: str) -> str:
    import nkeys

    return str(nkeys.from_seed(seed.strip().encode()).public_key.decode())


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


@dataclass
class Keys:
    """The seeds of every role in one folder (0700, each file 0600), made once, kept after."""

    folder: Path

    def seed_path(self, role: str) -> Path:
        return self.folder / f"{role}.nk"

    def ensure(self, roles: list[str]) -> dict[str, str]:
        """Each role's public key, generating the seeds that are missing."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self.folder.chmod(0o700)
        out = {}
        for role in roles:
            path = self.seed_path(role)
            if not path.exists():
                _write_private(path, new_seed() + "\n")
            out[role] = public_key(path.read_text())
        return out


def server_config(public_keys: dict[str, str], root: str, stream: str) -> str:
    """The ``authorization`` block of nats-server's configuration: a config file of its own, or
    ``include``d in one (NATS reads JSON values)."""
    users = [
        {"nkey": key, "permissions": permissions(role, root, stream)}
        for role, key in sorted(public_keys.items())
    ]
    return "authorization: " + json.dumps({"users": users}, indent=2) + "\n"


def write_auth(folder: Path, roles: list[str], root: str, stream: str) -> tuple[Path, Keys]:
    """Keys for ``roles`` (and the admin) in ``folder``, and the server's config file
    written from the table now (so a changed table applies at the next start)."""
    keys = Keys(folder)
    public = keys.ensure(sorted({*(role_of(r) for r in roles), ADMIN}))
    ensure_key(folder)  # the control events' signing key lives beside the bus keys
    conf = keys.folder / "auth.conf"
    _write_private(conf, server_config(public, root, stream))
    return conf, keys


def local_seed(data_dir: Path, name: str) -> Path | None:
    """The seed a process on this machine uses when none is configured: its role's in the local
    engine's data folder (so ``baton serve x`` and the CLI work beside ``baton up``)."""
    path = Keys(auth_folder(data_dir)).seed_path(role_of(name))
    return path if path.exists() else None
