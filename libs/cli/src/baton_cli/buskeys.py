"""``baton nats-keys``: the bus's keys and the server's authorization for a deployment."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from baton_common import natstls
from baton_common.busauth import GRANTS, write_auth
from baton_common.settings import Settings


def add_buskeys_command(sub: Any) -> argparse.ArgumentParser:
    cmd = sub.add_parser(
        "nats-keys",
        help="make each service's NATS key and the server's authorization config",
        description="Writes <out>/<role>.nk (a private NKey seed per service, 0600; existing "
        "ones are kept) and <out>/auth.conf (the server's users: public keys and each one's "
        "permissions, to `include` in nats-server's configuration). Mount one seed in each "
        "service as BATON_NATS_NKEY; keep them secret.",
    )
    cmd.add_argument("--out", required=True, type=Path, help="folder for the keys and auth.conf")
    cmd.set_defaults(fn=cmd_buskeys)
    tls = sub.add_parser(
        "nats-tls",
        help="make a private CA and a certificate for nats-server (TLS on the bus)",
        description="Writes <out>/ca.pem (give it to every service as NATS_TLS_CA), "
        "<out>/server.pem and <out>/server.key (for nats-server's --tlscert/--tlskey) and "
        "<out>/ca.key (0600), once: existing files are kept. Services then use a tls:// URL.",
    )
    tls.add_argument("--out", required=True, type=Path, help="folder for the CA and certificate")
    tls.add_argument(
        "--host",
        action="append",
        default=[],
        help="a name or address clients reach nats-server by (repeatable; default 127.0.0.1 "
        "and localhost)",
    )
    tls.set_defaults(fn=cmd_nats_tls)
    return cmd


def cmd_buskeys(args: argparse.Namespace) -> int:
    s = Settings()
    conf, keys = write_auth(args.out, sorted(GRANTS), s.subject_root, s.stream)
    print(f"keys in {keys.folder} ({len(GRANTS)} roles), server authorization in {conf}")
    return 0


def cmd_nats_tls(args: argparse.Namespace) -> int:
    files = natstls.ensure(args.out, tuple(args.host) or natstls.HOSTS)
    print(f"CA in {files.ca}; server certificate {files.cert}, key {files.key}")
    return 0
