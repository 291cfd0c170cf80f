"""``baton secrets …``: the installation key that wraps every secret's data key.

``rotate`` re-wraps every data key under a new installation key, in one of two ways:

- the operator brings both keys (``BATON_SECRETS_KEY_FILE`` the new one,
  ``BATON_SECRETS_OLD_KEY_FILE`` the old one, or ``BATON_SECRETS_KEY`` / ``BATON_SECRETS_OLD_KEY``
  in base64): the keys are re-wrapped from the old to the new, and nothing else is touched;
- under ``baton up`` (only the key file is known): a new key is made, the current one is kept
  as ``<key file>.old`` while the keys are re-wrapped, and removed once every key has moved.
  Running services read the swapped files on their own: nothing needs a restart.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from baton_common.sealing import (
    Kek,
    KeyRing,
    PostgresKeyStore,
    SealingError,
    rotate,
    write_key_file,
)

from baton_cli.client import apply_runtime_env, data_dir, runtime_info
from baton_cli.errors import CliError


def _fail(message: str) -> Exception:
    return CliError(message)


def _store() -> PostgresKeyStore:
    from baton_common.settings import Settings

    apply_runtime_env()
    settings = Settings()
    return PostgresKeyStore(settings.database_url, settings.db_schema)


def _key_file() -> Path:
    given = os.environ.get("BATON_SECRETS_KEY_FILE") or runtime_info().get("secrets_key_file")
    path = Path(given) if given else data_dir() / "secrets.key"
    if not path.exists():
        raise _fail(f"no installation key at {path}: set BATON_SECRETS_KEY_FILE")
    return path


def _both_given() -> bool:
    return any(os.environ.get(n) for n in ("BATON_SECRETS_OLD_KEY", "BATON_SECRETS_OLD_KEY_FILE"))


def _rewrap(store: PostgresKeyStore, ring: KeyRing) -> int:
    moved = rotate(store, ring)
    time.sleep(0.5)  # a secret sealed under the old key as the files were swapped
    return moved + rotate(store, ring)


def _rotate_given(store: PostgresKeyStore) -> int:
    old = os.environ.get("BATON_SECRETS_OLD_KEY_FILE")
    if old and not Path(old).exists():
        raise _fail(f"BATON_SECRETS_OLD_KEY_FILE: no file {old}")
    return _rewrap(store, KeyRing())


def _rotate_file(store: PostgresKeyStore) -> int:
    path = _key_file()
    old_path = path.with_name(path.name + ".old")
    write_key_file(old_path, Kek.read(path))  # first: the old key stays readable throughout
    write_key_file(path, Kek.generate())
    ring = KeyRing(
        {"BATON_SECRETS_KEY_FILE": str(path), "BATON_SECRETS_OLD_KEY_FILE": str(old_path)}
    )
    moved = _rewrap(store, ring)
    old_path.unlink()
    return moved


def cmd_rotate(args: argparse.Namespace) -> int:
    store = _store()
    try:
        moved = _rotate_given(store) if _both_given() else _rotate_file(store)
    except SealingError as exc:
        raise _fail(f"rotation stopped, run it again once fixed: {exc}") from None
    live = sum(1 for row in store.rows() if row.wrapped is not None)
    print(f"re-wrapped {moved} data keys; {live} live data keys, all under the new key")
    return 0


def add_secrets_commands(sub: Any) -> None:
    top = sub.add_parser("secrets", help="the installation key that seals stored secrets")
    actions = top.add_subparsers(dest="secrets_action", required=True)
    actions.add_parser(
        "rotate",
        help="re-wrap every secret's data key under a new installation key",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    ).set_defaults(fn=cmd_rotate)
