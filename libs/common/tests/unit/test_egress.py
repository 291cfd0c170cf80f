"""The egress guard: which addresses are refused and why, the installation's allowlist, a
workspace's narrowing, and that connections go to the address that was checked (real loopback
servers, plain and TLS)."""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from baton_common import egress
from baton_common.egress import EgressGuard, EgressRefused, parse_allow, read_capped, refused_why
from baton_common.workspaces import WorkspacePolicy
from pydantic import ValidationError


@pytest.mark.parametrize(
    ("address", "rule"),
    [
        ("127.0.0.1", "a loopback address"),
        ("127.8.9.10", "a loopback address"),
        ("::1", "a loopback address"),
        ("10.1.2.3", "a private address"),
        ("172.16.0.1", "a private address"),
        ("192.168.1.1", "a private address"),
        ("fc00::1", "a private address"),
        ("169.254.1.1", "a link-local address"),
        ("fe80::1", "a link-local address"),
        ("169.254.169.254", "a cloud metadata address"),
        ("fd00:ec2::254", "a cloud metadata address"),
        ("100.100.100.200", "a cloud metadata address"),
        ("100.64.0.1", "a shared (CGNAT 100.64.0.0/10) address"),
        ("100.127.255.254", "a shared (CGNAT 100.64.0.0/10) address"),
        ("0.0.0.0", "an unspecified address"),
        ("::", "an unspecified address"),
        ("224.0.0.1", "a multicast address"),
        ("ff02::1", "a multicast address"),
        ("240.0.0.1", "a reserved address"),
        ("::ffff:127.0.0.1", "a loopback address inside an IPv6 IPv4-mapped address"),
        ("::ffff:169.254.169.254", "a cloud metadata address inside an IPv6 IPv4-mapped"),
        ("64:ff9b::7f00:1", "a loopback address inside an IPv6 NAT64 address"),
        ("64:ff9b::a9fe:a9fe", "a cloud metadata address inside an IPv6 NAT64 address"),
        ("64:ff9b:1::808:808", "a local-use NAT64 (64:ff9b:1::/48) address"),
        ("2002:7f00:1::", "a loopback address inside an IPv6 6to4 address"),
        ("2002:c0a8:101::1", "a private address inside an IPv6 6to4 address"),
        # Teredo: the client's address is stored inverted (here 10.0.0.1).
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "a private address inside an IPv6 Teredo"),
        ("192.0.2.1", "a private address"),  # documentation range
    ],
)
def test_every_internal_address_class_is_refused_with_its_rule(address: str, rule: str) -> None:
    why = refused_why(ipaddress.ip_address(address))
    assert why is not None and why.startswith(rule), (address, why)


@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", "93.184.215.14", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808",
     "2002:808:808::1"],
)  # fmt: skip
def test_public_addresses_and_their_ipv6_forms_pass(address: str) -> None:
    assert refused_why(ipaddress.ip_address(address)) is None


def test_the_installation_allowlist_opens_addresses_networks_and_names() -> None:
    allow = parse_allow("127.0.0.1, 10.1.0.0/16, ::1, radicale.internal, *.corp.example")
    assert refused_why(ipaddress.ip_address("127.0.0.1"), allow) is None
    assert refused_why(ipaddress.ip_address("::ffff:127.0.0.1"), allow) is None
    assert refused_why(ipaddress.ip_address("10.1.2.3"), allow) is None
    assert refused_why(ipaddress.ip_address("10.2.0.1"), allow) == "a private address"
    assert refused_why(ipaddress.ip_address("127.0.0.2"), allow) == "a loopback address"
    assert allow.names("radicale.internal") and allow.names("dav.corp.example")
    assert not allow.names("corp.example.evil") and not allow.names("other.internal")
    # A wide network does not open the metadata service: only its exact address does.
    wide = parse_allow("0.0.0.0/0")
    assert refused_why(ipaddress.ip_address("169.254.169.254"), wide) == "a cloud metadata address"
    exact = parse_allow("169.254.169.254/32")
    assert refused_why(ipaddress.ip_address("169.254.169.254"), exact) is None
    with pytest.raises(ValueError, match="neither"):
        parse_allow("127.0.0.1, not a host!")


async def test_a_name_is_checked_by_what_it_resolves_to() -> None:
    with pytest.raises(EgressRefused, match=r"localhost \(127\.0\.0\.1\) is a loopback address"):
        await EgressGuard().check("localhost", 80)
    with pytest.raises(EgressRefused, match="BATON_EGRESS_ALLOW"):
        await EgressGuard().check_url("http://127.0.0.1:8222/varz")
    with pytest.raises(EgressRefused, match="not an http"):
        await EgressGuard().check_url("file:///etc/passwd")
    with pytest.raises(EgressRefused, match="not an http"):
        await EgressGuard().check_url("http://")
    assert await EgressGuard(parse_allow("localhost")).check("localhost", 80)
    for spelling in ("0x7f000001", "2130706433", "127.1", "017700000001"):  # other spellings
        with pytest.raises(EgressRefused, match=r"\(127\.0\.0\.1\) is a loopback address"):
            await EgressGuard().check(spelling, 80)


def test_a_name_with_one_internal_address_among_public_ones_is_refused() -> None:
    addresses = [ipaddress.ip_address("8.8.8.8"), ipaddress.ip_address("10.0.0.5")]
    with pytest.raises(EgressRefused, match=r"10\.0\.0\.5\) is a private address"):
        EgressGuard().vet("mixed.example", addresses)


def test_a_workspace_narrows_and_never_widens() -> None:
    public = [ipaddress.ip_address("93.184.215.14")]
    internal = [ipaddress.ip_address("10.0.0.7")]
    installation = EgressGuard(parse_allow("10.0.0.0/24"))
    only = installation.narrowed(["api.example.com", "*.partner.example"])
    only.vet("api.example.com", public)
    only.vet("eu.partner.example", public)
    with pytest.raises(EgressRefused, match="not on this workspace's egress allow list"):
        only.vet("other.example.com", public)
    with pytest.raises(EgressRefused, match="deny list"):
        installation.narrowed(None, ["*.example.com"]).vet("api.example.com", public)
    with pytest.raises(EgressRefused, match="deny list"):
        installation.narrowed(None, ["10.0.0.0/28"]).vet("db.internal", internal)
    # A workspace entry for an internal address does not open it...
    opened = EgressGuard().narrowed(["10.0.0.7", "db.internal"])
    with pytest.raises(EgressRefused, match="a private address"):
        opened.vet("db.internal", internal)
    # ... unless the installation's allowlist does too.
    installation.narrowed(["db.internal"]).vet("db.internal", internal)


def test_a_workspace_policy_takes_egress_lists_and_refuses_nonsense() -> None:
    policy = WorkspacePolicy(
        egress_allow_hosts=["api.example.com"], egress_deny_hosts=["10.0.0.0/8"]
    )
    assert policy.egress_allow_hosts == ["api.example.com"]
    with pytest.raises(ValidationError, match="neither a host name"):
        WorkspacePolicy(egress_deny_hosts=["http://x/"])
    assert WorkspacePolicy().egress_allow_hosts is None


# --- real connections ---------------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    """``/to/<host:port>`` redirects there; ``/big`` answers 3 MB; anything else echoes Host."""

    def do_GET(self) -> None:
        if self.path.startswith("/to/"):
            self.send_response(302)
            self.send_header("location", f"{self.server.scheme}://{self.path[4:]}/")  # type: ignore[attr-defined]
            self.end_headers()
            return
        body = b"x" * (3 * 1024 * 1024) if self.path == "/big" else self.headers["host"].encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def _serve(host: str, tls: ssl.SSLContext | None = None) -> http.server.ThreadingHTTPServer:
    server = http.server.ThreadingHTTPServer((host, 0), _Handler)
    server.scheme = "https" if tls else "http"  # type: ignore[attr-defined]
    if tls:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def servers() -> Iterator[dict[str, int]]:
    """One server on 127.0.0.1 and one on 127.0.0.2 (the loopback range has many addresses)."""
    one, two = _serve("127.0.0.1"), _serve("127.0.0.2")
    yield {"127.0.0.1": one.server_port, "127.0.0.2": two.server_port}
    one.shutdown(), two.shutdown()


async def test_a_loopback_server_is_refused_unless_allowlisted(servers: dict[str, int]) -> None:
    url = f"http://127.0.0.1:{servers['127.0.0.1']}/"
    async with EgressGuard().client() as client:
        with pytest.raises(EgressRefused, match=r"127\.0\.0\.1 is a loopback address"):
            await client.get(url)
    async with EgressGuard(parse_allow("127.0.0.1")).client() as client:
        assert (await client.get(url)).status_code == 200


async def test_a_redirect_to_an_internal_address_is_refused(servers: dict[str, int]) -> None:
    start = f"http://127.0.0.2:{servers['127.0.0.2']}/to/127.0.0.1:{servers['127.0.0.1']}"
    guard = EgressGuard(parse_allow("127.0.0.2"))
    async with guard.client(follow_redirects=True) as client:
        with pytest.raises(EgressRefused, match=r"127\.0\.0\.1 is a loopback address"):
            await client.get(start)
    opened = EgressGuard(parse_allow("127.0.0.1, 127.0.0.2"))
    async with opened.client(follow_redirects=True) as client:
        assert (await client.get(start)).status_code == 200


async def test_redirect_hops_are_capped(servers: dict[str, int]) -> None:
    here = f"127.0.0.2:{servers['127.0.0.2']}"
    loop = f"http://{here}/to/{here}/to/{here}/to/{here}/to/{here}/to/{here}/to/{here}"
    async with EgressGuard(parse_allow("127.0.0.2")).client(follow_redirects=True) as client:
        with pytest.raises(httpx.TooManyRedirects):
            await client.get(loop)  # seven hops, five allowed


async def test_the_connection_goes_to_the_checked_address(
    servers: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``pinned.test`` exists for no resolver: the guard's answer (127.0.0.2) is all the
    connection can use, so no second lookup can rebind it; Host still names the name."""
    lookups: list[str] = []

    async def resolve(host: str, port: int) -> list[egress.Address]:
        lookups.append(host)
        return [ipaddress.ip_address("127.0.0.2")]

    monkeypatch.setattr(egress, "resolve", resolve)
    port = servers["127.0.0.2"]
    async with EgressGuard(parse_allow("127.0.0.2")).client() as client:
        answer = await client.get(f"http://pinned.test:{port}/")
    assert answer.text == f"pinned.test:{port}" and lookups == ["pinned.test"]
    async with EgressGuard(parse_allow("127.0.0.1")).client() as client:
        with pytest.raises(EgressRefused, match=r"pinned.test \(127.0.0.2\) is a loopback"):
            await client.get(f"http://pinned.test:{port}/")


@pytest.mark.real_clock  # the certificate is made with this clock and checked by OpenSSL's
async def test_tls_still_verifies_the_name_on_a_pinned_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = _self_signed(tmp_path, "pinned.test")
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    server = _serve("127.0.0.2", tls)

    async def resolve(host: str, port: int) -> list[egress.Address]:
        return [ipaddress.ip_address("127.0.0.2")]

    monkeypatch.setattr(egress, "resolve", resolve)
    guard = EgressGuard(parse_allow("127.0.0.2"))
    trust = ssl.create_default_context(cafile=str(cert))
    try:
        async with guard.client(verify=trust) as client:
            answer = await client.get(f"https://pinned.test:{server.server_port}/")
            assert answer.status_code == 200
            with pytest.raises(httpx.ConnectError, match="certificate"):
                await client.get(f"https://other.test:{server.server_port}/")
    finally:
        server.shutdown()


async def test_a_body_is_read_up_to_the_cap_only(servers: dict[str, int]) -> None:
    async with EgressGuard(parse_allow("127.0.0.1")).client() as client:
        url = f"http://127.0.0.1:{servers['127.0.0.1']}/big"
        async with client.stream("GET", url) as response:
            body, truncated = await read_capped(response, 1024 * 1024)
    assert len(body) == 1024 * 1024 and truncated
    async with EgressGuard(parse_allow("127.0.0.1")).client() as client:
        async with client.stream("GET", f"http://127.0.0.1:{servers['127.0.0.1']}/") as response:
            body, truncated = await read_capped(response, 1024)
    assert body.startswith(b"127.0.0.1:") and not truncated


async def test_a_name_that_does_not_resolve_is_a_connection_error_on_a_connect() -> None:
    """A check refuses it; a connection fails as any unreachable host (a retry may pass)."""
    with pytest.raises(EgressRefused, match="cannot resolve"):
        await EgressGuard().check_url("http://nowhere.invalid/")
    async with EgressGuard().client() as client:
        with pytest.raises(httpx.ConnectError, match=r"cannot resolve 'nowhere\.invalid'"):
            await client.get("http://nowhere.invalid/")


def test_proxies_from_the_environment_are_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    client = EgressGuard().client()
    assert client.trust_env is False and client._mounts == {}


def test_the_installation_guard_reads_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATON_EGRESS_ALLOW", "10.0.0.0/8,radicale")
    guard = EgressGuard.from_settings("192.168.0.1")
    assert guard.allow.names("radicale")
    assert refused_why(ipaddress.ip_address("10.9.9.9"), guard.allow) is None
    assert refused_why(ipaddress.ip_address("192.168.0.1"), guard.allow) is None


def _self_signed(folder: Path, name: str) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path
