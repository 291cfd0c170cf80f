"""The egress guard: every outbound call Baton makes for a user goes to a public address.

An operator's plan, an agent file, a plugin, a CalDAV calendar or a webhook subscription names a
URL; without a guard that URL could be ``http://127.0.0.1:8222`` (NATS monitoring), the cloud
metadata service or any internal port, and the answer would come back in an execution's view.

The guard resolves the host, checks every address it resolves to, and the connection then goes
to an address that was checked (``GuardedBackend``): no second lookup that a rebinding DNS server
could answer differently. TLS still sends the name (SNI) and verifies the certificate against it.
Because the check sits where connections are opened, every redirect hop is checked as well.

Refused, unless the installation's allowlist (``BATON_EGRESS_ALLOW``) names them: loopback,
private, link-local, cloud metadata, shared (CGNAT), unspecified, multicast and reserved
addresses, and IPv6 forms that carry an IPv4 address (mapped, NAT64, 6to4, Teredo) whose IPv4
address is any of those. A workspace's policy can narrow what its steps reach (only these hosts,
never those), never widen it.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from baton_common.hostpatterns import Network, host_ok, network_of

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

ALLOW_SETTING = "BATON_EGRESS_ALLOW"
MAX_REDIRECTS = 5
# Metadata services of the clouds (AWS, GCP, Azure, OpenStack; AWS over IPv6; Alibaba).
METADATA = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
CGNAT = ipaddress.ip_network("100.64.0.0/10")
NAT64 = ipaddress.ip_network("64:ff9b::/96")
# RFC 8215's local-use prefix: an operator's own translator, whose prefix length (so where the
# IPv4 address sits) is its choice: refused whole rather than guessed at.
NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
# The checks in order (the narrower classes first); the first that matches names the rule.
CLASSES = ("unspecified", "loopback", "link_local", "multicast", "reserved", "private")


class EgressRefused(Exception):
    """The guard refused an outbound call; the message names the rule that refused it."""


class Unresolvable(EgressRefused):
    """The host does not resolve (now): refused by a check, a connection error on a connect
    (which may be retried: DNS failures can pass)."""


def parse_allow(text: str | Iterable[str]) -> Allowlist:
    """``"127.0.0.1, 10.0.0.0/8, radicale.internal"`` → an allowlist; ``ValueError`` on an entry
    that is neither a network nor a host name (a typo must stop the service, not open nothing)."""
    items = text.split(",") if isinstance(text, str) else text
    networks: list[Network] = []
    hosts: set[str] = set()
    for item in (i.strip().lower() for i in items):
        if not item:
            continue
        if (net := network_of(item)) is not None:
            networks.append(net)
        elif host_ok(item):
            hosts.add(item.rstrip("."))
        else:
            raise ValueError(f"{item!r} is neither an address, a network nor a host name")
    return Allowlist(tuple(networks), frozenset(hosts))


@dataclass(frozen=True)
class Allowlist:
    """Networks and host names (``*.domain`` for a domain's hosts) that a list names."""

    networks: tuple[Network, ...] = ()
    hosts: frozenset[str] = frozenset()

    def names(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        if host in self.hosts:
            return True
        return any(h.startswith("*.") and host.endswith(h[1:]) for h in self.hosts)

    def holds(self, address: Address) -> bool:
        return any(address in net for net in self.networks)

    def holds_exactly(self, address: Address) -> bool:
        """Named one by one (a /32 or /128), not as part of a wider network."""
        return any(address in net and net.num_addresses == 1 for net in self.networks)

    def matches(self, host: str, addresses: Iterable[Address]) -> bool:
        return self.names(host) or any(self.holds(a) for a in addresses)


def refused_why(address: Address, allow: Allowlist = Allowlist()) -> str | None:
    """None when ``address`` may be reached; else what it is ("a loopback address")."""
    if address in METADATA:  # only an exact entry opens it: 0.0.0.0/0 is not meant for it
        return None if allow.holds_exactly(address) else "a cloud metadata address"
    if allow.holds(address):
        return None
    if isinstance(address, ipaddress.IPv6Address) and (inner := _embedded(address)):
        kind, v4 = inner
        why = refused_why(v4, allow)
        return f"{why} inside an IPv6 {kind} address" if why else None
    if address in NAT64_LOCAL:
        return "a local-use NAT64 (64:ff9b:1::/48) address"
    if address in CGNAT:
        return "a shared (CGNAT 100.64.0.0/10) address"
    for what in CLASSES:
        if getattr(address, f"is_{what}"):
            name = what.replace("_", "-")
            return f"{'an' if name[0] in 'aeiou' else 'a'} {name} address"
    if not address.is_global:  # documentation ranges, benchmarking, Teredo, ...
        return "a non-global address"
    return None


def _embedded(address: ipaddress.IPv6Address) -> tuple[str, ipaddress.IPv4Address] | None:
    """The IPv4 address an IPv6 address carries, when connecting to it reaches that IPv4."""
    if address.ipv4_mapped is not None:
        return "IPv4-mapped", address.ipv4_mapped
    if address in NAT64:
        return "NAT64", ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return "6to4", address.sixtofour
    if address.teredo is not None:
        return "Teredo", address.teredo[1]
    return None


async def resolve(host: str, port: int) -> list[Address]:
    """Every address ``host`` resolves to (an address literal is its own answer)."""
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise Unresolvable(f"egress refused: cannot resolve {host!r}: {exc}") from None
    return list(dict.fromkeys(ipaddress.ip_address(str(i[4][0]).split("%")[0]) for i in infos))


Narrowing = Callable[[], Awaitable[tuple[list[str] | None, list[str]]]]


@dataclass(frozen=True)
class EgressGuard:
    """The installation's allowlist, narrowed by a workspace's ``only`` / ``deny`` lists.

    ``narrowing`` fetches a workspace's lists when a connection is checked (so a step that never
    calls out never reads its workspace's policy)."""

    allow: Allowlist = Allowlist()
    only: Allowlist | None = None
    deny: Allowlist = Allowlist()
    narrowing: Narrowing | None = field(default=None, compare=False)

    @classmethod
    def from_settings(cls, *extra: str) -> EgressGuard:
        """The installation's guard (``BATON_EGRESS_ALLOW``, plus older settings' entries)."""
        from baton_common.settings import Settings

        return cls(parse_allow(",".join((Settings().egress_allow, *extra))))

    def narrowed(self, only: Iterable[str] | None, deny: Iterable[str] = ()) -> EgressGuard:
        """This guard with a workspace's lists: ``only`` these hosts, never ``deny`` ones."""
        return replace(
            self,
            only=parse_allow(only) if only is not None else None,
            deny=parse_allow(deny),
            narrowing=None,
        )

    def lazily(self, narrowing: Narrowing) -> EgressGuard:
        return replace(self, narrowing=narrowing)

    async def check(self, host: str, port: int) -> list[Address]:
        """The addresses ``host`` may be reached at; ``EgressRefused`` naming the rule if not."""
        guard = self
        if self.narrowing is not None:
            guard = self.narrowed(*(await self.narrowing()))
        addresses = await resolve(host, port)
        guard.vet(host, addresses)
        return addresses

    def vet(self, host: str, addresses: list[Address]) -> None:
        """Refuse unless ``host`` may be reached at every one of ``addresses`` (what it resolved
        to: a name that resolves to one public and one internal address is refused)."""
        if not addresses:
            raise EgressRefused(f"egress refused: {host} resolves to no address")
        self._check_workspace(host, addresses)
        if self.allow.names(host):
            return
        for address in addresses:
            if why := refused_why(address, self.allow):
                said = str(address) if host.strip("[]") == str(address) else f"{host} ({address})"
                raise EgressRefused(
                    f"egress refused: {said} is {why} (set {ALLOW_SETTING} to allow it)"
                )

    def _check_workspace(self, host: str, addresses: list[Address]) -> None:
        if self.deny.matches(host, addresses):
            raise EgressRefused(f"egress refused: {host} is on this workspace's egress deny list")
        if self.only is not None and not self.only.matches(host, addresses):
            raise EgressRefused(
                f"egress refused: {host} is not on this workspace's egress allow list"
            )

    async def check_url(self, url: str) -> list[Address]:
        """``check`` for a URL's host; an URL that is not http(s) with a host is refused too."""
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            raise EgressRefused(f"egress refused: {url!r} has a bad port") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise EgressRefused(f"egress refused: {url!r} is not an http(s) URL with a host")
        return await self.check(parts.hostname, port or (443 if parts.scheme == "https" else 80))

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        """An ``httpx.AsyncClient`` whose every connection (each redirect's too) passes this
        guard. Proxies from the environment are ignored: a proxy would connect for us, unchecked."""
        kwargs.setdefault("max_redirects", MAX_REDIRECTS)
        # What httpx gives the transport when it builds one (here we build it).
        tls = {k: kwargs.pop(k) for k in ("verify", "cert", "http2", "limits") if k in kwargs}
        transport = GuardedTransport(self, **tls)
        return httpx.AsyncClient(transport=transport, trust_env=False, **kwargs)


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to addresses the guard checked."""

    def __init__(self, guard: EgressGuard, core: Any = httpcore) -> None:
        self.guard = guard
        self.core = core  # httpcore, or its fork httpcore2 (under httpx2, the MCP SDK's client)
        self.inner = core.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await self.guard.check(host, port)
        except Unresolvable as exc:
            raise self.core.ConnectError(str(exc).removeprefix("egress refused: ")) from None
        failure: Exception | None = None
        for address in addresses:  # the checked addresses in the resolver's order
            try:
                return await self.inner.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except (self.core.ConnectError, self.core.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
        raise EgressRefused("egress refused: Unix sockets are not reached from outbound calls")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over a connection pool whose connections go through ``GuardedBackend``."""

    def __init__(self, guard: EgressGuard, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._pool = guarded_pool(guard, self._pool, httpcore)


def guarded_pool(guard: EgressGuard, old: Any, core: Any) -> Any:
    """httpx (and httpx2) build their pool without a way to pass a network backend: the same
    pool (its TLS context, limits, HTTP versions) with ours."""
    return core.AsyncConnectionPool(
        ssl_context=old._ssl_context,
        max_connections=old._max_connections,
        max_keepalive_connections=old._max_keepalive_connections,
        keepalive_expiry=old._keepalive_expiry,
        http1=old._http1,
        http2=old._http2,
        retries=old._retries,
        network_backend=GuardedBackend(guard, core),
    )


def guarded_httpx2(guard: EgressGuard, **kwargs: Any) -> Any:
    """An ``httpx2.AsyncClient`` (the MCP SDK's HTTP client) whose every connection passes
    ``guard``, like ``EgressGuard.client``; imported here only when an MCP server is reached."""
    import httpcore2
    import httpx2

    transport = httpx2.AsyncHTTPTransport()
    transport._pool = guarded_pool(guard, transport._pool, httpcore2)
    return httpx2.AsyncClient(transport=transport, trust_env=False, **kwargs)


async def read_capped(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    """At most ``limit`` bytes of a streamed response's body, and whether there was more: a
    huge answer is never read whole into memory."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return b"".join(chunks)[:limit], True
    return b"".join(chunks), False


def model_guard() -> EgressGuard:
    """The guard of a model client's endpoint (OpenAI-compatible, Gemini): the installation's
    allowlist plus ``BATON_LLM_EGRESS_ALLOW``, which opens a local model server to the model
    clients alone, not to every step."""
    from baton_common.settings import Settings

    return EgressGuard.from_settings(Settings().llm_egress_allow)


@functools.lru_cache(maxsize=1)
def installation_guard() -> EgressGuard:
    """The guard from this process's settings, read once."""
    return EgressGuard.from_settings()
