"""The webhook service's settings (pydantic-settings), beside the shared ``Settings``."""

from __future__ import annotations

from baton_common.egress import EgressGuard
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# Svix's schedule: immediately, then after 5 s, 5 min, 30 min, 2 h, 5 h and 10 h.
DEFAULT_RETRY_SCHEDULE = [5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0]


class WebhookSettings(BaseSettings):
    """Where inbound webhooks arrive, and which private addresses outbound ones may reach."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    port: int = Field(8090, alias="BATON_WEBHOOK_PORT")
    host: str = Field("127.0.0.1", alias="BATON_WEBHOOK_HOST")
    public_url: str | None = Field(None, alias="BATON_WEBHOOK_PUBLIC_URL")
    # The older name of the installation's BATON_EGRESS_ALLOW, for deliveries only: its entries
    # are added to that allowlist (kept so that existing deployments go on working).
    allow: str = Field("", alias="BATON_WEBHOOK_ALLOW")
    max_body_bytes: int = Field(1024 * 1024, alias="BATON_WEBHOOK_MAX_BODY")
    send_timeout_s: float = Field(15.0, alias="BATON_WEBHOOK_SEND_TIMEOUT")
    # The sender's safety look for due attempts (BATON_SAFETY_POLL when unset): it wakes when
    # an attempt's timer falls due, not on this interval.
    sender_interval_s: float | None = Field(None, alias="BATON_WEBHOOK_SENDER_INTERVAL")

    def guard(self) -> EgressGuard:
        """The egress guard of deliveries: BATON_EGRESS_ALLOW plus BATON_WEBHOOK_ALLOW."""
        return EgressGuard.from_settings(self.allow)

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")
