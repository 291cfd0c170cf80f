"""Where a calendar's events live: Baton's own store (built in) or a CalDAV server.

The built-in back end writes nothing here: the store commit that records the event is the
write. The CalDAV back end PUTs each event at ``<calendar>/<uid>.ics`` (the ``caldav`` client's
rule), so writing an event again under the same UID replaces it: a create retried after a crash
between the server's answer and the store commit still leaves exactly one event.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from baton_common.egress import EgressGuard, EgressRefused, parse_allow
from baton_common.sealing import Sealer, SealingError

from baton_calendar.config import CalendarSettings
from baton_calendar.directory import Directory
from baton_calendar.domain import Calendar
from baton_calendar.errors import BadInput, CalendarError, NotFound, Refused, ServerError

log = logging.getLogger(__name__)
TIMEOUT_S = 15


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a CalDAV collection's address (None when it can)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError as exc:
        return f"{url!r} is not a URL: {exc}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{url!r} is not an http(s) URL with a host (e.g. https://dav.example.com/cal/)"
    return None


@functools.cache
def guarded_resolver() -> type:
    """The resolver class, made on the first CalDAV calendar: niquests and caldav (~10 MB) are
    imported by a service that reaches a CalDAV server, not by every idle one (issue 32)."""
    from niquests.packages.urllib3.contrib.resolver.system import SystemResolver

    class GuardedResolver(SystemResolver):  # type: ignore[misc]
        """niquests' system resolver, answering only with addresses the egress guard accepts:
        every connection (each redirect's too) goes to a checked address. The last refusal is
        kept so the caller can name the rule (niquests wraps it in a connection error)."""

        def __init__(self, guard: EgressGuard) -> None:
            super().__init__()
            self.guard = guard
            self.refused = threading.local()

        def getaddrinfo(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            infos = super().getaddrinfo(host, port, *args, **kwargs)
            name = host.decode("ascii") if isinstance(host, bytes) else str(host)
            addresses = [ipaddress.ip_address(str(i[4][0]).split("%")[0]) for i in infos]
            try:
                self.guard.vet(name, list(dict.fromkeys(addresses)))
            except EgressRefused as exc:
                self.refused.error = exc
                raise OSError(str(exc)) from None
            return infos

    return GuardedResolver


@functools.lru_cache(maxsize=1)
def guard() -> EgressGuard:
    """The installation's egress guard (``BATON_EGRESS_ALLOW``), read once."""
    return EgressGuard.from_settings()


def check_credentials_target(url: str, settings: CalendarSettings) -> None:
    """The installation's CalDAV credentials go only to the hosts ``BATON_CALDAV_HOSTS`` names,
    and only over https unless the host is an internal one ``BATON_EGRESS_ALLOW`` names too: a
    calendar connected without credentials must not carry them to any URL a user types."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    addresses = _literal(host)
    if not parse_allow(settings.caldav_hosts).matches(host, addresses):
        raise BadInput(
            "url",
            f"{host} is not a host the installation's CalDAV credentials may go to "
            "(BATON_CALDAV_HOSTS); give the calendar a username and password of its own",
        )
    if parts.scheme != "https" and not guard().allow.matches(host, addresses):
        raise BadInput("url", f"the installation's CalDAV credentials go to {host} over https only")


def _literal(host: str) -> list[Any]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        return []


class CalDav:
    """One CalDAV collection, reached with its stored credentials."""

    def __init__(self, url: str, username: str | None, password: str | None) -> None:
        import niquests
        from caldav.collection import Calendar as DavCalendar
        from caldav.davclient import DAVClient

        if problem := url_problem(url):
            raise BadInput("url", problem)
        self.url = url
        self.client = DAVClient(
            url=url,
            username=username,
            password=password,
            timeout=TIMEOUT_S,
            require_tls=False,
            enable_rfc6764=False,  # discovery would call out on its own, past the guard
        )
        # Every connection resolves through the guard; proxies from the environment are not
        # used (a proxy would connect for us, unchecked).
        self.resolver = guarded_resolver()(guard())
        self.client.session.close()
        self.client.session = niquests.Session(resolver=self.resolver)
        self.client.session.trust_env = False
        self.collection = DavCalendar(client=self.client, url=url)

    @classmethod
    def of(cls, calendar: Calendar, sealer: Sealer) -> CalDav:
        """The calendar's collection, its stored (sealed) password opened just for this."""
        assert calendar.url is not None
        try:
            password = sealer.unseal(calendar.password) if calendar.password else None
        except SealingError as exc:
            raise CalendarError(
                f"calendar {calendar.name!r}: its password cannot be opened ({exc})"
            ) from None
        return cls.reach(calendar.url, calendar.username, password)

    @classmethod
    def reach(cls, url: str, username: str | None, password: str | None) -> CalDav:
        """With the given credentials, else the service's own (settings)."""
        if username is None and password is None:
            settings = CalendarSettings()
            if settings.caldav_username is not None or settings.caldav_password is not None:
                check_credentials_target(url, settings)
            username, password = settings.caldav_username, settings.caldav_password
        return cls(url, username, password)

    def check(self) -> str:
        """Reach the collection (credentials, existence); its display name if it has one."""
        with self._answers("connect to"):
            return str(self.collection.get_display_name() or "")

    def texts(self) -> list[str]:
        with self._answers("read the events of"):
            found: Any = self.collection.events()  # sync client: a list
            return [str(o.data) for o in found]

    def get(self, uid: str) -> str | None:
        from caldav.lib import error as dav_error

        with self._answers("read an event of"):
            try:
                found: Any = self.collection.event_by_uid(uid)  # sync client: no coroutine
                return str(found.data)
            except dav_error.NotFoundError:
                return None

    def put(self, ics: str) -> None:
        with self._answers("write an event to"):
            self.collection.add_event(ics, increase_seqno=False)

    def delete(self, uid: str) -> bool:
        """Remove the event; False when it was not there (already removed: fine)."""
        from caldav.lib import error as dav_error

        with self._answers("delete an event of"):
            try:
                found: Any = self.collection.event_by_uid(uid)
                found.delete()
            except dav_error.NotFoundError:
                return False
            return True

    @contextmanager
    def _answers(self, what: str) -> Iterator[None]:
        """The server's answer, or why it could not be reached, as one clear error."""
        self.resolver.refused.error = None
        try:
            yield
        except Exception:
            if (refusal := getattr(self.resolver.refused, "error", None)) is not None:
                raise Refused(f"the CalDAV server at {self.url}: {refusal}") from None
            self._explain(what)

    def _explain(self, what: str) -> None:
        """Re-raise the exception in hand as one clear calendar error."""
        from caldav.lib import error as dav_error

        try:
            raise
        except dav_error.AuthorizationError as exc:
            raise ServerError(
                f"the CalDAV server at {self.url} answered 401 Unauthorized when Baton tried to "
                f"{what} it ({_brief(exc)}): check the username and password",
                retryable=False,
            ) from None
        except dav_error.NotFoundError as exc:
            raise NotFound(
                f"the CalDAV server has no calendar at {self.url} ({_brief(exc)})"
            ) from None
        except dav_error.DAVError as exc:
            raise _answered(self.url, what, exc) from None
        except (OSError, ConnectionError) as exc:
            raise ServerError(f"the CalDAV server at {self.url} cannot be reached: {exc}") from None
        except Exception as exc:  # niquests' connection errors and the like
            if "connect" in type(exc).__name__.lower() or "timeout" in type(exc).__name__.lower():
                raise ServerError(
                    f"the CalDAV server at {self.url} cannot be reached: {type(exc).__name__}: {exc}"
                ) from None
            raise


def _answered(url: str, what: str, exc: Exception) -> ServerError:
    """A 4xx is a refusal of what was sent (a server that does not take ``RDATE`` periods, say):
    the same request is refused again, so it is not retried; anything else may pass."""
    status = _STATUS.search(str(exc))
    if status is None or not status[1].startswith("4"):
        return ServerError(f"the CalDAV server at {url} answered: {_brief(exc)}")
    return ServerError(
        f"the CalDAV server at {url} refused to {what} it ({_brief(exc)}); its log says why "
        "(servers differ in the iCalendar features they accept)",
        retryable=False,
    )


_STATUS = re.compile(r"\b([45]\d\d) [A-Z]")


def _brief(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return text[:300] or type(exc).__name__


def texts_of(calendar: Calendar, directory: Directory) -> list[str]:
    """Every event of a calendar as ICS text, wherever they live."""
    if calendar.backend == "caldav":
        return CalDav.of(calendar, directory.sealer).texts()
    return [e.ics for e in directory.events_of(calendar.id)]
