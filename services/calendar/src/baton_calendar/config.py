"""The calendar service's settings (pydantic-settings)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class CalendarSettings(BaseSettings):
    """CalDAV credentials for calendars connected without their own (a Kubernetes secret, say):
    then they are read from here on each call and never stored in an event."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    caldav_username: str | None = Field(None, alias="BATON_CALDAV_USERNAME")
    caldav_password: str | None = Field(None, alias="BATON_CALDAV_PASSWORD")
    # Where those credentials may go: hosts, ``*.domain`` entries, addresses or networks. Empty:
    # nowhere (a calendar then needs credentials of its own). Plain http only to a host that
    # BATON_EGRESS_ALLOW names too (an internal server); https everywhere else.
    caldav_hosts: str = Field("", alias="BATON_CALDAV_HOSTS")
