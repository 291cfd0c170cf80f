"""Secrets sealed at rest: envelope encryption with a data key per secret.

A secret (a webhook signing secret, a CalDAV password) is encrypted with its own AES-256-GCM
data key; the data key is wrapped by the installation key (the KEK, from ``BATON_SECRETS_KEY``
or ``BATON_SECRETS_KEY_FILE``) and kept in the ``secret_keys`` table, never in an event. Events
carry only ``sealed:v1:<key id>:<nonce + ciphertext>``. Destroying a data key makes every copy
of its ciphertext (events, JetStream, backups) unreadable: crypto-shredding.

Values written before sealing existed are plain text in old events: ``unseal`` passes a value
that is not sealed through as it is, so those histories still read (no upcaster rewrites them).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from uuid import uuid4

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from baton_common.jsonvalues import map_strings

log = logging.getLogger(__name__)
PREFIX = "sealed:v1:"
# A sealed value inside a longer string (a secret tool input resolved into "Bearer ${input.x}").
SEALED_TEXT = re.compile(re.escape(PREFIX) + r"[0-9a-f]{32}:[A-Za-z0-9_\-]+=*")
REDACTED = "***"
# Event fields that hold a secret (sealed, or plain in histories from before sealing).
SECRET_FIELDS = frozenset({"secret", "secrets", "password"})
_NONCE = 12


class SealingError(Exception):
    """A sealed value cannot be opened (wrong or missing installation key, damaged text)."""


class KeyDestroyed(SealingError):
    """The value's data key was destroyed (its owner was deleted): it can never be read."""


# --- the installation key -----------------------------------------------------------------------


@dataclass(frozen=True)
class Kek:
    """An installation key (key-encryption key): 32 random bytes, named by a digest."""

    key: bytes

    @property
    def id(self) -> str:
        return hashlib.sha256(b"baton-kek:" + self.key).hexdigest()[:16]

    @classmethod
    def generate(cls) -> Kek:
        return cls(AESGCM.generate_key(bit_length=256))

    @classmethod
    def parse(cls, text: str, where: str) -> Kek:
        try:
            key = base64.b64decode(text.strip(), validate=True)
        except ValueError:
            raise SealingError(f"{where}: not base64") from None
        if len(key) != 32:
            raise SealingError(f"{where}: an installation key is 32 bytes in base64")
        return cls(key)

    @classmethod
    def read(cls, path: Path) -> Kek:
        try:
            return cls.parse(path.read_text(), str(path))
        except OSError as exc:
            raise SealingError(f"cannot read the installation key {path}: {exc}") from None

    def encoded(self) -> str:
        return base64.b64encode(self.key).decode()


def write_key_file(path: Path, kek: Kek) -> None:
    """Write a key file readable by its owner only (0600), atomically."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(kek.encoded() + "\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def ensure_key_file(path: Path) -> Kek:
    """The key in ``path``, made once (``baton up``'s data folder)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_key_file(path, Kek.generate())
    return Kek.read(path)


_EPHEMERAL: Kek | None = None


class KeyRing:
    """The current installation key and, during a rotation, the old one. Key files are read
    again when they change (``baton secrets rotate`` under ``baton up`` swaps them) or when a
    data key names a KEK not in hand: a rotation needs no restart."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.environ = environ if environ is not None else os.environ
        self.lock = threading.Lock()
        self.stamp = self._stamp()
        self._current, self.known = self._load()

    def _files(self) -> list[Path]:
        names = ("BATON_SECRETS_KEY_FILE", "BATON_SECRETS_OLD_KEY_FILE")
        return [Path(p) for n in names if (p := self.environ.get(n))]

    def _stamp(self) -> tuple[int, ...]:
        return tuple(p.stat().st_mtime_ns if p.exists() else 0 for p in self._files())

    def _load(self) -> tuple[Kek, dict[str, Kek]]:
        current = _kek_from(self.environ, "BATON_SECRETS_KEY", True) or _ephemeral()
        old = _kek_from(self.environ, "BATON_SECRETS_OLD_KEY", False)
        known = {k.id: k for k in (old, current) if k is not None}
        return current, known

    def _reload(self) -> None:
        self.stamp = self._stamp()
        self._current, known = self._load()
        self.known = {**self.known, **known}

    @property
    def current(self) -> Kek:
        with self.lock:
            if self._stamp() != self.stamp:
                self._reload()
            return self._current

    def find(self, kek_id: str) -> Kek:
        with self.lock:
            if kek_id not in self.known:
                self._reload()
            if kek_id not in self.known:
                raise SealingError(
                    f"the installation key {kek_id} is not configured (BATON_SECRETS_KEY_FILE, "
                    "or BATON_SECRETS_OLD_KEY_FILE during a rotation)"
                )
            return self.known[kek_id]


def _kek_from(environ: Mapping[str, str], name: str, required: bool) -> Kek | None:
    if text := environ.get(name):
        return Kek.parse(text, name)
    path = environ.get(f"{name}_FILE")
    if not path or (not required and not Path(path).exists()):
        return None  # the old key's file is there only while a rotation runs
    return Kek.read(Path(path))


def _ephemeral() -> Kek:
    """No key configured (unit and in-process tests): one per process, lost at exit."""
    global _EPHEMERAL
    if _EPHEMERAL is None:
        log.warning(
            "no installation key (BATON_SECRETS_KEY_FILE): secrets are sealed with a key kept "
            "in memory only and cannot be read after a restart"
        )
        _EPHEMERAL = Kek.generate()
    return _EPHEMERAL


# --- where the data keys live -------------------------------------------------------------------


@dataclass(frozen=True)
class KeyRow:
    """One data key, wrapped by the KEK ``kek_id``; ``wrapped`` is None once destroyed."""

    key_id: str
    wrapped: bytes | None
    kek_id: str


class KeyStore(Protocol):
    def put(self, row: KeyRow) -> None: ...
    def get(self, key_id: str) -> KeyRow | None: ...
    def destroy(self, key_ids: Iterable[str]) -> None: ...
    def rows(self) -> list[KeyRow]: ...
    def rewrap(self, row: KeyRow, old_kek_id: str) -> None: ...


class MemoryKeyStore:
    """Data keys in a dict (unit tests, the in-memory store)."""

    def __init__(self) -> None:
        self.keys: dict[str, KeyRow] = {}

    def put(self, row: KeyRow) -> None:
        self.keys[row.key_id] = row

    def get(self, key_id: str) -> KeyRow | None:
        return self.keys.get(key_id)

    def destroy(self, key_ids: Iterable[str]) -> None:
        for key_id in key_ids:
            if key_id in self.keys:
                self.keys[key_id] = KeyRow(key_id, None, self.keys[key_id].kek_id)

    def rows(self) -> list[KeyRow]:
        return list(self.keys.values())

    def rewrap(self, row: KeyRow, old_kek_id: str) -> None:
        if (found := self.keys.get(row.key_id)) and found.kek_id == old_kek_id and found.wrapped:
            self.keys[row.key_id] = row


_TABLE = (
    "CREATE TABLE IF NOT EXISTS {s}.secret_keys (key_id text PRIMARY KEY, wrapped bytea, "
    "kek_id text NOT NULL, created_at timestamptz NOT NULL DEFAULT now(), "
    "destroyed_at timestamptz)"
)


class PostgresKeyStore:
    """Data keys in ``<schema>.secret_keys``; destroying one overwrites its wrapped bytes."""

    def __init__(self, url: str, schema: str = "public") -> None:
        # psycopg here, not at the top: ``baton up``'s supervisor makes the key file only.
        import psycopg
        from psycopg.sql import SQL, Identifier

        self.url, self.s = url, Identifier(schema)
        with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(77026)")  # services start together
            conn.execute(SQL(_TABLE).format(s=self.s))

    def _run(self, statement: str, params: tuple[Any, ...] = ()) -> list[Any]:
        import psycopg
        from psycopg.sql import SQL

        with psycopg.connect(self.url, autocommit=True) as conn:
            cur = conn.execute(SQL(statement).format(s=self.s), params)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []

    def put(self, row: KeyRow) -> None:
        self._run(
            "INSERT INTO {s}.secret_keys (key_id, wrapped, kek_id) VALUES (%s, %s, %s)",
            (row.key_id, row.wrapped, row.kek_id),
        )

    def get(self, key_id: str) -> KeyRow | None:
        found = self._run(
            "SELECT key_id, wrapped, kek_id FROM {s}.secret_keys WHERE key_id = %s", (key_id,)
        )
        return KeyRow(found[0][0], _bytes(found[0][1]), found[0][2]) if found else None

    def destroy(self, key_ids: Iterable[str]) -> None:
        self._run(
            "UPDATE {s}.secret_keys SET wrapped = NULL, destroyed_at = now() "
            "WHERE key_id = ANY(%s) AND destroyed_at IS NULL",
            (list(key_ids),),
        )

    def rows(self) -> list[KeyRow]:
        found = self._run("SELECT key_id, wrapped, kek_id FROM {s}.secret_keys ORDER BY key_id")
        return [KeyRow(k, _bytes(w), kek) for k, w, kek in found]

    def rewrap(self, row: KeyRow, old_kek_id: str) -> None:
        # Only if still wrapped by the old key: a key destroyed meanwhile stays destroyed.
        self._run(
            "UPDATE {s}.secret_keys SET wrapped = %s, kek_id = %s "
            "WHERE key_id = %s AND kek_id = %s AND wrapped IS NOT NULL",
            (row.wrapped, row.kek_id, row.key_id, old_kek_id),
        )


def _bytes(value: Any) -> bytes | None:
    return bytes(value) if value is not None else None


# --- sealing ------------------------------------------------------------------------------------


def is_sealed(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def key_id_of(value: str) -> str:
    return value[len(PREFIX) :].split(":", 1)[0]


def _wrap(kek: Kek, data_key: bytes, key_id: str) -> bytes:
    nonce = os.urandom(_NONCE)  # the key id is bound in: a wrapped key moved to another row fails
    return nonce + AESGCM(kek.key).encrypt(nonce, data_key, b"baton-dek:" + key_id.encode())


def _unwrap(kek: Kek, wrapped: bytes, key_id: str) -> bytes:
    aad = b"baton-dek:" + key_id.encode()
    try:
        return AESGCM(kek.key).decrypt(wrapped[:_NONCE], wrapped[_NONCE:], aad)
    except InvalidTag:
        raise SealingError(f"data key {key_id}: the installation key does not open it") from None


class Sealer:
    """Seals secrets before they become events and opens them where they are used."""

    def __init__(self, keys: KeyStore, ring: KeyRing | None = None) -> None:
        self.keys, self.ring = keys, ring or KeyRing()

    @classmethod
    def in_memory(cls, environ: Mapping[str, str] | None = None) -> Sealer:
        return cls(MemoryKeyStore(), KeyRing(environ))

    @classmethod
    def for_store(cls, store: Any) -> Sealer:
        """Data keys next to a service's events: PostgreSQL for its store, else in memory."""
        url = getattr(store, "url", None)
        if url is None:
            return cls.in_memory()
        return cls(PostgresKeyStore(url, store.datastore.schema))

    def seal(self, plain: str) -> str:
        """A new data key for this secret, wrapped and stored; the sealed text to keep."""
        key_id, data_key, kek = uuid4().hex, AESGCM.generate_key(bit_length=256), self.ring.current
        self.keys.put(KeyRow(key_id, _wrap(kek, data_key, key_id), kek.id))
        nonce = os.urandom(_NONCE)
        sealed = AESGCM(data_key).encrypt(nonce, plain.encode(), key_id.encode())
        return f"{PREFIX}{key_id}:{base64.urlsafe_b64encode(nonce + sealed).decode()}"

    def unseal(self, value: str) -> str:
        """The secret in clear; a value that is not sealed (an old event's) as it is."""
        if not is_sealed(value):
            return value
        key_id, _, text = value[len(PREFIX) :].partition(":")
        row = self.keys.get(key_id)
        if row is None or row.wrapped is None:
            raise KeyDestroyed(f"data key {key_id} was destroyed: the secret is gone")
        data_key = _unwrap(self.ring.find(row.kek_id), row.wrapped, key_id)
        try:
            raw = base64.urlsafe_b64decode(text.encode())
            return AESGCM(data_key).decrypt(raw[:_NONCE], raw[_NONCE:], key_id.encode()).decode()
        except (ValueError, InvalidTag):
            raise SealingError(f"sealed value of data key {key_id} is damaged") from None

    def destroy(self, values: Iterable[Any]) -> int:
        """Destroy the data keys of every sealed value among ``values`` (crypto-shredding)."""
        ids = sorted({key_id_of(v) for v in values if is_sealed(v)})
        if ids:
            self.keys.destroy(ids)
        return len(ids)


def rotate(keys: KeyStore, ring: KeyRing) -> int:
    """Re-wrap every live data key under the ring's current KEK; returns how many moved.
    Resumable: keys already under the current KEK are left alone."""
    new, moved = ring.current, 0
    for row in keys.rows():
        if row.wrapped is None or row.kek_id == new.id:
            continue
        data_key = _unwrap(ring.find(row.kek_id), row.wrapped, row.key_id)
        keys.rewrap(KeyRow(row.key_id, _wrap(new, data_key, row.key_id), new.id), row.kek_id)
        moved += 1
    return moved


# --- never shown --------------------------------------------------------------------------------


def sealed_values(value: Any) -> list[str]:
    """Every sealed string inside a JSON-like value (also sealed text inside a longer one)."""
    if is_sealed(value):
        return [value]
    if isinstance(value, str) and PREFIX in value:
        return SEALED_TEXT.findall(value)
    if isinstance(value, dict):
        return [s for v in value.values() for s in sealed_values(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in sealed_values(v)]
    return []


def holds_sealed(value: Any) -> bool:
    """Whether a JSON-like value holds a sealed string anywhere (``sealed_values`` without
    collecting them: the views ask it of every event's fields). A dict or list is first encoded
    whole (``orjson``, which writes ASCII as it is): no prefix in the encoding, no sealed string
    in it, without a walk in Python of every nested value (a rebuild asks it millions of times)."""
    if isinstance(value, dict | list | tuple):
        try:
            if _PREFIX_BYTES not in orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS):
                return False
        except TypeError:
            pass  # not JSON as orjson knows it (an integer beyond 64 bits): walked
    return _holds_sealed(value)


_PREFIX_BYTES = PREFIX.encode()


def _holds_sealed(value: Any) -> bool:
    if isinstance(value, str):
        return PREFIX in value and (is_sealed(value) or SEALED_TEXT.search(value) is not None)
    if isinstance(value, dict):
        value = value.values()
    elif not isinstance(value, list | tuple):
        return False
    for item in value:
        if _holds_sealed(item):
            return True
    return False


def redact(value: Any) -> Any:
    """A JSON-like value with every sealed string, or sealed text inside one, shown as ``***``."""
    return map_strings(value, _redacted)


def _redacted(text: str) -> str:
    if is_sealed(text):
        return REDACTED
    return SEALED_TEXT.sub(REDACTED, text) if PREFIX in text else text


def redact_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    """An event's fields for people and triggers: its secret fields (sealed, or plain from an
    old event) as ``***``, and any sealed string deeper in as ``***`` too."""
    return {k: (_mask(v) if k in SECRET_FIELDS else redact(v)) for k, v in data.items()}


def _mask(value: Any) -> Any:
    if isinstance(value, list):
        return [REDACTED for _ in value]
    return REDACTED if value else value
