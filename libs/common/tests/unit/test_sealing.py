"""Sealed secrets: round trips, the wrong installation key, rotation, crypto-shredding, and
that redaction never lets a secret through."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from baton_common.sealing import (
    REDACTED,
    Kek,
    KeyDestroyed,
    KeyRing,
    MemoryKeyStore,
    Sealer,
    SealingError,
    ensure_key_file,
    holds_sealed,
    is_sealed,
    key_id_of,
    redact,
    redact_fields,
    rotate,
    sealed_values,
    write_key_file,
)
from hypothesis import given
from hypothesis import strategies as st

SECRET = "whsec_c2VjcmV0LXZhbHVlLXRoYXQtaXMtbG9uZy1lbm91Z2g="


def env_of(kek: Kek, old: Kek | None = None) -> dict[str, str]:
    env = {"BATON_SECRETS_KEY": kek.encoded()}
    if old is not None:
        env["BATON_SECRETS_OLD_KEY"] = old.encoded()
    return env


def test_a_sealed_secret_opens_and_shows_nothing_of_itself() -> None:
    sealer = Sealer(MemoryKeyStore(), KeyRing(env_of(Kek.generate())))
    sealed = sealer.seal(SECRET)
    assert is_sealed(sealed) and SECRET not in sealed
    assert sealer.unseal(sealed) == SECRET
    assert sealer.seal(SECRET) != sealed  # a data key (and nonce) per secret


def test_a_plain_value_from_an_old_event_reads_as_it_is() -> None:
    assert Sealer.in_memory(env_of(Kek.generate())).unseal("whsec_legacy") == "whsec_legacy"


def test_the_wrong_installation_key_opens_nothing() -> None:
    keys = MemoryKeyStore()
    sealed = Sealer(keys, KeyRing(env_of(Kek.generate()))).seal(SECRET)
    row = keys.get(key_id_of(sealed))
    assert row is not None
    other = Kek.generate()
    # The same KEK id with other bytes (a swapped file): the data key does not unwrap.
    with pytest.raises(SealingError, match="does not open"):
        Sealer(keys, _Pinned(other, row.kek_id)).unseal(sealed)
    with pytest.raises(SealingError, match="not configured"):
        Sealer(keys, KeyRing(env_of(other))).unseal(sealed)


class _Pinned(KeyRing):
    """A ring that answers any KEK id with one key."""

    def __init__(self, kek: Kek, kek_id: str) -> None:
        super().__init__({"BATON_SECRETS_KEY": kek.encoded()})
        self.known = {kek_id: kek}


def test_a_damaged_ciphertext_is_refused() -> None:
    sealer = Sealer.in_memory(env_of(Kek.generate()))
    sealed = sealer.seal(SECRET)
    flipped = sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB")
    with pytest.raises(SealingError, match="damaged"):
        sealer.unseal(flipped)


def test_rotation_rewraps_every_key_and_the_old_key_is_no_longer_needed() -> None:
    keys, old, new = MemoryKeyStore(), Kek.generate(), Kek.generate()
    before = Sealer(keys, KeyRing(env_of(old)))
    sealed = [before.seal(f"{SECRET}-{n}") for n in range(3)]
    before.destroy(sealed[2:])
    assert rotate(keys, KeyRing(env_of(new, old))) == 2
    assert {r.kek_id for r in keys.rows() if r.wrapped} == {new.id}
    after = Sealer(keys, KeyRing(env_of(new)))  # the old key gone
    assert [after.unseal(s) for s in sealed[:2]] == [f"{SECRET}-0", f"{SECRET}-1"]
    with pytest.raises(KeyDestroyed):
        after.unseal(sealed[2])
    assert rotate(keys, KeyRing(env_of(new))) == 0  # resumable: nothing left to move


def test_rotation_without_the_old_key_stops_with_a_reason() -> None:
    keys = MemoryKeyStore()
    Sealer(keys, KeyRing(env_of(Kek.generate()))).seal(SECRET)
    with pytest.raises(SealingError, match="not configured"):
        rotate(keys, KeyRing(env_of(Kek.generate())))


def test_a_destroyed_data_key_cannot_open_its_secret_again() -> None:
    keys = MemoryKeyStore()
    sealer = Sealer(keys, KeyRing(env_of(Kek.generate())))
    gone, kept = sealer.seal(SECRET), sealer.seal("other")
    assert sealer.destroy([gone, "not sealed", None]) == 1
    row = keys.get(key_id_of(gone))
    assert row is not None and row.wrapped is None  # the wrapped bytes themselves are gone
    with pytest.raises(KeyDestroyed):
        sealer.unseal(gone)
    assert sealer.unseal(kept) == "other"


def test_key_files_are_private_and_swapped_files_are_picked_up(tmp_path: Path) -> None:
    path = tmp_path / "secrets.key"
    first = ensure_key_file(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert ensure_key_file(path) == first  # made once
    ring = KeyRing({"BATON_SECRETS_KEY_FILE": str(path)})
    assert ring.current == first
    second = Kek.generate()
    write_key_file(path, second)
    os.utime(path, ns=(1, 1))  # a different mtime even on a coarse clock
    assert ring.current == second


def test_a_bad_key_says_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(SealingError, match="32 bytes"):
        KeyRing({"BATON_SECRETS_KEY": "c2hvcnQ="})
    with pytest.raises(SealingError, match="cannot read"):
        KeyRing({"BATON_SECRETS_KEY_FILE": str(tmp_path / "missing")})


def test_redaction_hides_sealed_values_anywhere_and_secret_fields_always() -> None:
    sealed = Sealer.in_memory(env_of(Kek.generate())).seal(SECRET)
    event = {
        "name": "hook",
        "secrets": [sealed, "whsec_plain_from_an_old_event"],
        "password": "plain-old",
        "action": {"inputs": {"copied": sealed}},
        "payload": {"password": "a sender's field stays"},
    }
    shown = redact_fields(event)
    assert shown["secrets"] == [REDACTED, REDACTED]
    assert shown["password"] == REDACTED
    assert shown["action"] == {"inputs": {"copied": REDACTED}}
    assert shown["payload"] == {"password": "a sender's field stays"}
    assert redact([{"x": sealed}]) == [{"x": REDACTED}]
    assert redact_fields({"password": None})["password"] is None


# --- `baton secrets rotate` (the CLI), on an in-memory key table ----------------------------------


def _cli_rotate(monkeypatch: pytest.MonkeyPatch, keys: MemoryKeyStore, env: dict[str, str]) -> int:
    from baton_cli import keys as cli

    for name in ("BATON_SECRETS_KEY", "BATON_SECRETS_OLD_KEY"):
        for var in (name, f"{name}_FILE"):
            monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    monkeypatch.setattr(cli, "_store", lambda: keys)
    monkeypatch.setattr(cli.time, "sleep", lambda _s: None)
    return cli.cmd_rotate(None)  # type: ignore[arg-type]


def test_cli_rotation_with_the_operators_old_and_new_keys(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    keys, old, new = MemoryKeyStore(), tmp_path / "old.key", tmp_path / "new.key"
    write_key_file(old, Kek.generate())
    write_key_file(new, Kek.generate())
    sealed = Sealer(keys, KeyRing({"BATON_SECRETS_KEY_FILE": str(old)})).seal(SECRET)
    files = {"BATON_SECRETS_KEY_FILE": str(new), "BATON_SECRETS_OLD_KEY_FILE": str(old)}
    assert _cli_rotate(monkeypatch, keys, files) == 0
    assert Sealer(keys, KeyRing({"BATON_SECRETS_KEY_FILE": str(new)})).unseal(sealed) == SECRET
    assert old.exists()  # the operator's file: theirs to destroy


def test_cli_rotation_of_baton_ups_key_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    keys, path = MemoryKeyStore(), tmp_path / "secrets.key"
    first = ensure_key_file(path)
    sealed = Sealer(keys, KeyRing({"BATON_SECRETS_KEY_FILE": str(path)})).seal(SECRET)
    assert _cli_rotate(monkeypatch, keys, {"BATON_SECRETS_KEY_FILE": str(path)}) == 0
    assert Kek.read(path) != first and not path.with_name("secrets.key.old").exists()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert Sealer(keys, KeyRing({"BATON_SECRETS_KEY_FILE": str(path)})).unseal(sealed) == SECRET


def test_cli_rotation_without_the_old_key_file_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from baton_cli.errors import CliError

    new = tmp_path / "new.key"
    write_key_file(new, Kek.generate())
    env = {"BATON_SECRETS_KEY_FILE": str(new), "BATON_SECRETS_OLD_KEY_FILE": str(tmp_path / "x")}
    with pytest.raises(CliError, match="no file"):
        _cli_rotate(monkeypatch, MemoryKeyStore(), env)


_SEALED = "sealed:v1:" + "0" * 32 + ":c2VjcmV0"
_strings = st.sampled_from(
    ["", "plain", "sealed:v1:", _SEALED, f"Bearer {_SEALED}", "x sealed:v1:y"]
)
_json = st.recursive(
    st.none() | st.integers() | _strings,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(_json)
def test_holds_sealed_answers_as_sealed_values_finds(value: object) -> None:
    assert holds_sealed(value) == bool(sealed_values(value))
