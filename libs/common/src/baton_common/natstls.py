"""TLS for the embedded NATS server (``BATON_NATS_TLS=1``): a private CA and a server certificate.

``baton up`` makes them once in ``<data>/nats/tls`` (the folder 0700, the keys 0600) with the
``cryptography`` package, writes the server's ``tls`` block, and every process connects with
``tls://`` and verifies the server against that CA (``NATS_TLS_CA``). Clients still authenticate
with their NKeys: TLS adds secrecy and the server's identity, not client identity.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HOSTS = ("127.0.0.1", "localhost")  # what the embedded server listens on and is reached as
# Valid from well before now: OpenSSL checks the dates against the machine's real clock, and a
# test run may move the process's clock (``make test-clock-ahead``).
_BACKDATE = dt.timedelta(days=400)
_LIFETIME = dt.timedelta(days=3650)


def enabled(environ: dict[str, str] | None = None) -> bool:
    """Whether ``BATON_NATS_TLS`` asks for TLS on the embedded server."""
    value = (environ if environ is not None else os.environ).get("BATON_NATS_TLS", "")
    return value.strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class TlsFiles:
    """The CA every client trusts, and the server's certificate and key (PEM files)."""

    ca: Path
    cert: Path
    key: Path

    def server_block(self) -> str:
        """nats-server's ``tls`` block: every client connection must speak TLS."""
        block = {"cert_file": str(self.cert), "key_file": str(self.key), "timeout": 5}
        return "tls: " + json.dumps(block) + "\n"


def ensure(folder: Path, hosts: tuple[str, ...] = HOSTS) -> TlsFiles:
    """The CA and a server certificate for ``hosts`` (names or addresses clients reach the
    server by) in ``folder``, made the first time (kept after, so a client that trusts the CA
    keeps trusting a restarted server)."""
    files = TlsFiles(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    if files.ca.exists() and files.cert.exists() and files.key.exists():
        return files
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    ca_key, ca_cert = _ca()
    server_key = ec.generate_private_key(ec.SECP256R1())
    _write(folder / "ca.key", _private_pem(ca_key))  # kept to sign a new server certificate
    _write(files.key, _private_pem(server_key))
    _write(files.cert, _server_cert(ca_key, ca_cert, server_key, hosts).public_bytes(_PEM))
    _write(files.ca, ca_cert.public_bytes(_PEM))  # last: its presence means the set is whole
    return files


_PEM = serialization.Encoding.PEM


def _ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Baton private NATS CA")])
    cert = (
        _builder(name, name, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(ca=True), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _server_cert(
    ca_key: ec.EllipticCurvePrivateKey,
    ca: x509.Certificate,
    key: ec.EllipticCurvePrivateKey,
    hosts: tuple[str, ...],
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "baton nats-server")])
    alt = x509.SubjectAlternativeName([_alt_name(h) for h in hosts])
    return (
        _builder(name, ca.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), critical=False)
        .add_extension(alt, critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def _alt_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _builder(
    subject: x509.Name, issuer: x509.Name, public: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + _LIFETIME)
    )


def _usage(ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(_PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _write(path: Path, data: bytes) -> None:
    """Written 0600 from the start (a key never exists readable by others, even briefly)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(path, 0o600)
