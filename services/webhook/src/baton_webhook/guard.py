"""The SSRF guard of outbound deliveries: a subscriber's address must be public.

Names are resolved first and every address they resolve to is checked (a public name that
resolves to 127.0.0.1 is refused), and so is each redirect's target. The request then goes to
the address that was checked (``pin``), not to a second lookup that a rebinding DNS server
could answer differently; TLS still verifies the certificate against the name (SNI). Private, loopback,
link-local (the cloud metadata address 169.254.169.254 among them), multicast, reserved and
unspecified addresses are refused unless the settings' allowlist names them.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Metadata services that are not in a private range on every cloud.
METADATA = {
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
}


class AddressRefused(Exception):
    """The URL's host is (or resolves to) an address outbound deliveries may not reach."""


def parse_allow(text: str) -> list[Network]:
    """``"127.0.0.1, 10.0.0.0/8"`` → networks; a bad entry is an error at start, not ignored."""
    return [ipaddress.ip_network(p.strip(), strict=False) for p in text.split(",") if p.strip()]


def refused_why(address: Address, allow: list[Network]) -> str | None:
    if any(address in net for net in allow):
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return refused_why(address.ipv4_mapped, allow)
    if address in METADATA:
        return "a cloud metadata address"
    for what in ("loopback", "link_local", "unspecified", "multicast", "private", "reserved"):
        if getattr(address, f"is_{what}"):
            return f"a {what.replace('_', '-')} address"
    return None


async def resolve(host: str, port: int) -> list[Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise AddressRefused(f"cannot resolve {host!r}: {exc}") from None
    return list(dict.fromkeys(ipaddress.ip_address(str(i[4][0]).split("%")[0]) for i in infos))


async def check_url(url: str, allow: list[Network]) -> list[Address]:
    """The addresses of ``url``'s host; ``AddressRefused`` unless it is http(s) and every one of
    them may be reached."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AddressRefused(f"{url!r} is not an http(s) URL with a host")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = await resolve(parts.hostname, port)
    for address in addresses:
        why = refused_why(address, allow)
        if why:
            raise AddressRefused(
                f"{parts.hostname} is {why} ({address}); outbound webhooks reach only public "
                "addresses unless BATON_WEBHOOK_ALLOW lists it"
            )
    if not addresses:
        raise AddressRefused(f"{parts.hostname} resolves to no address")
    return addresses


@dataclass(frozen=True)
class Pinned:
    """A request to a checked address: its URL names the address, ``host`` the original name."""

    url: str
    host: str
    extensions: dict[str, Any] = field(default_factory=dict)


async def pin(url: str, allow: list[Network]) -> Pinned:
    """Check ``url`` and aim it at the first checked address."""
    address = (await check_url(url, allow))[0]
    parts = urlsplit(url)
    literal = f"[{address}]" if address.version == 6 else str(address)
    netloc = literal + (f":{parts.port}" if parts.port else "")
    host = parts.netloc.rsplit("@", 1)[-1]
    sni = {"sni_hostname": parts.hostname} if parts.scheme == "https" else {}
    return Pinned(urlunsplit(parts._replace(netloc=netloc)), host, sni)
