"""The embedded server's TLS files (natstls): a private CA, a server certificate it signed for
the names clients use, private keys readable by their owner only, made once and kept."""

from __future__ import annotations

import ipaddress
import ssl
import stat
from pathlib import Path

from baton_common import natstls
from cryptography import x509


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_the_server_certificate_is_signed_by_the_ca_for_the_given_hosts(tmp_path: Path) -> None:
    files = natstls.ensure(tmp_path / "tls", ("nats", "127.0.0.1"))
    ca, server = _load(files.ca), _load(files.cert)
    server.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    alt = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert alt.get_values_for_type(x509.DNSName) == ["nats"]
    assert alt.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    ssl.create_default_context(cafile=str(files.ca))  # what every client loads
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(files.cert, files.key)  # the key matches the certificate


def test_keys_are_private_and_the_files_are_made_once(tmp_path: Path) -> None:
    files = natstls.ensure(tmp_path / "tls")
    assert stat.S_IMODE(files.ca.parent.stat().st_mode) == 0o700
    for key in (files.key, files.ca.parent / "ca.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    before = files.ca.read_bytes()
    assert natstls.ensure(tmp_path / "tls").ca.read_bytes() == before  # clients keep trusting it


def test_the_server_block_names_the_certificate_and_enabled_reads_the_setting(
    tmp_path: Path,
) -> None:
    files = natstls.ensure(tmp_path / "tls")
    block = files.server_block()
    assert block.startswith("tls: ") and str(files.cert) in block and str(files.key) in block
    assert natstls.enabled({"BATON_NATS_TLS": "1"})
    assert natstls.enabled({"BATON_NATS_TLS": "true"})
    assert not natstls.enabled({"BATON_NATS_TLS": "0"})
    assert not natstls.enabled({})
