"""Settings shared by every service, read from the environment (pydantic-settings)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where the bus and the store are, and the names that isolate one deployment from another."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    nats_url: str = Field("nats://127.0.0.1:4222", alias="NATS_URL")
    # The process's NKey seed file (busauth.py); else its role's seed in the local data folder.
    nats_nkey: Path | None = Field(None, alias="BATON_NATS_NKEY")
    nats_creds: Path | None = Field(None, alias="NATS_CREDS")  # a JWT .creds file (operator mode)
    nats_tls_ca: Path | None = Field(None, alias="NATS_TLS_CA")  # verify the server's TLS with it
    # The installation's key that signs control events (control.py); else the local engine's.
    control_key_file: Path | None = Field(None, alias="BATON_CONTROL_KEY_FILE")
    database_url: str = Field("postgresql://postgres@127.0.0.1:5432/postgres", alias="DATABASE_URL")
    db_schema: str = Field("public", alias="BATON_DB_SCHEMA")
    # Connections a service's store keeps open while idle (else its pool's size, 4); more are
    # opened as calls wait. `baton up --one-process` sets 1: a laptop's engine mostly waits.
    db_pool_min: int | None = Field(None, alias="BATON_DB_POOL_MIN", ge=1)
    subject_root: str = Field("baton", alias="BATON_SUBJECT_ROOT")
    stream: str = Field("BATON_EVENTS", alias="BATON_STREAM")
    data_dir: Path = Field(Path(".baton"), alias="BATON_DATA_DIR")
    http_port: int = Field(8080, alias="BATON_HTTP_PORT")
    http_host: str = Field("127.0.0.1", alias="BATON_HTTP_HOST")
    # A service's /healthz, /readyz and /metrics listener (the gateway's are on its HTTP port).
    health_port: int | None = Field(None, alias="BATON_HEALTH_PORT")
    # Seconds a service may take to become ready; past them it logs where it waits and exits
    # non-zero to be started again (startwatch). 0: no bound.
    start_timeout_s: float = Field(180.0, alias="BATON_START_TIMEOUT", ge=0)
    # Gateways on one machine share the API port (SO_REUSEPORT: the kernel spreads connections,
    # a dead one's share goes to the others); only processes of the same user can join.
    http_reuse_port: bool = Field(False, alias="BATON_HTTP_REUSE_PORT")
    ack_wait_s: float = Field(30.0, alias="BATON_ACK_WAIT")
    # The event stream is the transport, not the archive (PostgreSQL is): it keeps messages this
    # long and up to this size, oldest dropped first; a consumer further behind recovers from the
    # store. Applied to an existing stream at start.
    stream_max_age_s: float = Field(7 * 24 * 3600.0, alias="BATON_STREAM_MAX_AGE", gt=0)
    stream_max_bytes: int = Field(10 * 1024**3, alias="BATON_STREAM_MAX_BYTES", gt=0)
    # Inbox rows (the record of handled messages) older than this are pruned: never less than
    # the stream's duplicate window plus a redelivery's wait (``store.inbox_keep``).
    inbox_keep_s: float = Field(24 * 3600.0, alias="BATON_INBOX_KEEP", gt=0)
    # Long-lived aggregates (workspaces, saved plans, endpoints, calendars) get a snapshot every
    # this many events read past their newest one (``snapshots``): a load reads at most about it.
    aggregate_snapshot_every: int = Field(100, alias="BATON_AGGREGATE_SNAPSHOT_EVERY", gt=0)
    # What a service folds from its whole log (the scheduler's objects, the planner's saved plans,
    # the calendar directory) gets a snapshot every this many log positions (``startsnapshots``):
    # a replica starts from the newest and reads at most about this many events.
    snapshot_every: int = Field(1_000, alias="BATON_SNAPSHOT_EVERY", gt=0)
    # How often each service looks for inbox rows to prune.
    inbox_prune_every_s: float = Field(300.0, alias="BATON_INBOX_PRUNE_EVERY", gt=0)
    # Services wake on what happens (a commit, a bus message, a NOTIFY, the next timer's time),
    # not on polls; this slow look stands behind every wake-up: seconds between two looks for
    # work one may have missed (events or timers another replica committed).
    safety_poll_s: float = Field(30.0, alias="BATON_SAFETY_POLL", gt=0)
    log_level: str = Field("INFO", alias="BATON_LOG_LEVEL")
    # Comma-separated hosts and networks that outbound calls (http.request, agent files, plugins,
    # CalDAV, webhooks) may reach although they are internal: ``127.0.0.1,10.0.0.0/8,radicale``.
    egress_allow: str = Field("", alias="BATON_EGRESS_ALLOW")
    # Entries added for the model clients alone (the planner's and llm.generate's endpoint): a
    # local model server at 127.0.0.1 without opening loopback to every step.
    llm_egress_allow: str = Field("", alias="BATON_LLM_EGRESS_ALLOW")
    # Proxies (addresses or networks, comma separated) whose X-Forwarded-Proto/-For the gateway
    # believes; nobody's by default.
    trusted_proxies: str = Field("", alias="BATON_TRUSTED_PROXIES")

    @property
    def dlq_stream(self) -> str:
        return f"{self.stream}_DLQ"

    @property
    def dlq_root(self) -> str:
        return f"{self.subject_root}_dlq"


def auth_folder(data_dir: Path) -> Path:
    """Where the local engine keeps the installation's keys: each service's NATS seed and the
    control key (``busauth`` writes them, ``control`` and the bus read them)."""
    return data_dir / "nats" / "auth"
