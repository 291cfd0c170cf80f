"""What an entry of a host list may be: a host name, ``*.domain``, an address or a network.

The egress guard reads lists of them (``BATON_EGRESS_ALLOW``, a workspace's allow and deny
lists); a workspace's policy checks its own entries with the same rules before it is stored.
"""

from __future__ import annotations

import ipaddress

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def network_of(item: str) -> Network | None:
    """The address or network ``item`` names (``10.0.0.0/8``, ``[::1]``), else None."""
    try:
        return ipaddress.ip_network(item.strip("[]"), strict=False)
    except ValueError:
        return None


def host_ok(item: str) -> bool:
    """Whether ``item`` reads as a host name, or ``*.domain`` for a domain's hosts."""
    name = item[2:] if item.startswith("*.") else item
    labels = name.rstrip(".").split(".")
    return bool(name) and all(
        0 < len(label) < 64 and label.replace("-", "").replace("_", "").isalnum()
        for label in labels
    )


def host_pattern_problem(item: str) -> str | None:
    """Why a workspace policy entry is unusable (None when it is a host, ``*.domain``, an
    address or a network)."""
    if network_of(item.strip().lower()) is not None or host_ok(item.strip().lower()):
        return None
    return f"{item!r} is neither a host name, '*.domain', an address nor a network"
