"""The plugin index's entries: only plain, pinned, hashed names reach pip."""

from __future__ import annotations

from pathlib import Path

import pytest
from baton_cli.plugin_index import EntryRefused, Pin, pin_of, pins_of, pip_command, unmet

SHA = "ab" * 32


def entry(**over: object) -> dict[str, object]:
    return {"name": "x", "package": "baton-x", "version": "1.2.0", "sha256": SHA, **over}


def test_a_pinned_hashed_entry_gives_one_hash_checked_requirement() -> None:
    [pin] = pins_of(entry())
    assert pin == Pin("baton-x", "1.2.0", SHA)
    assert pin.requirement == f"baton-x==1.2.0 --hash=sha256:{SHA}"


def test_an_entry_without_a_hash_is_refused() -> None:
    with pytest.raises(EntryRefused, match="no sha256"):
        pins_of(entry(sha256=None))
    with pytest.raises(EntryRefused, match="not 64 hex digits"):
        pins_of(entry(sha256="abc"))
    with pytest.raises(EntryRefused, match="not 64 hex digits"):
        pins_of(entry(sha256=SHA + "\n-e ./evil"))


OPTION_LIKE = ["-e ./evil", "--index-url=http://evil/simple", "--extra-index-url", "-r/etc/passwd"]
NOT_PLAIN = [
    "./baton-example-github",
    "/tmp/pkg",
    "https://evil.example/x.whl",
    "git+https://evil.example/x",
    "baton-x @ file:///tmp/x",
    "baton-x>=1",
    "baton-x==1.0",
    "baton-x; python_version>'3'",
    "baton-x[extra]",
    "baton-x\n--index-url=http://evil/simple",  # a second line of the requirements file
    "baton-x\n",
    "",
]


@pytest.mark.parametrize(
    ("package", "why"),
    [(p, "looks like a pip option") for p in OPTION_LIKE]
    + [(p, "not a plain distribution name") for p in NOT_PLAIN],
)
def test_anything_but_a_plain_name_is_refused_saying_why(package: str, why: str) -> None:
    with pytest.raises(EntryRefused, match=why):
        pins_of(entry(package=package))


@pytest.mark.parametrize(
    "version", ["", ">=1", "1.*", "1.0 --hash=sha256:00", "latest", "1.0\n-e ./evil"]
)
def test_a_version_must_be_exact(version: str) -> None:
    with pytest.raises(EntryRefused, match="not an exact version"):
        pins_of(entry(version=version))


def test_dependencies_are_pinned_and_hashed_the_same_way() -> None:
    dep = {"package": "httpx", "version": "0.28.1", "sha256": "cd" * 32}
    pins = pins_of(entry(dependencies=[dep]))
    assert [p.package for p in pins] == ["baton-x", "httpx"]
    with pytest.raises(EntryRefused, match="dependency 0: no sha256"):
        pins_of(entry(dependencies=[{**dep, "sha256": ""}]))


def test_pip_runs_in_hash_checking_mode_without_deps_from_the_dist_folder() -> None:
    cmd = pip_command("/py", Path("/tmp/r.txt"), Path("/idx/dist"))
    assert cmd[:4] == ["/py", "-m", "pip", "install"]
    assert {"--require-hashes", "--no-deps", "--no-index"} <= set(cmd)
    assert cmd[cmd.index("--only-binary") + 1] == ":all:"
    assert cmd[cmd.index("--find-links") + 1] == "/idx/dist"
    assert cmd[-2:] == ["-r", "/tmp/r.txt"]
    assert "--no-index" not in pip_command("/py", Path("/tmp/r.txt"), None)


def test_unmet_dependencies_are_the_pip_check_lines_about_the_plugin() -> None:
    out = (
        "baton-example-github 0.1.0 requires httpx, which is not installed.\n"
        "other 1.0 has requirement zzz>2, but you have zzz 1.\n"
    )
    assert unmet(out, "baton_example_github") == [
        "baton-example-github 0.1.0 requires httpx, which is not installed."
    ]
    assert unmet("No broken requirements found.\n", "baton-example-github") == []


def test_pin_of_refuses_a_non_object() -> None:
    with pytest.raises(EntryRefused, match="not an object"):
        pin_of("baton-x==1", "plugin 'x'")
