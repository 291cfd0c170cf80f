"""The plugin index's entries, checked before pip sees them: pinned, hashed, plain names.

An entry installs exactly one file: ``package==version`` whose distribution has the ``sha256`` the
index gives. pip runs with ``--require-hashes`` (a file with another hash fails the install) and
``--no-deps`` (nothing unpinned comes along); dependencies the plugin needs are either listed in
the entry the same way (``dependencies: [{package, version, sha256}]``) or must already be
installed, which ``pip check`` confirms after the install. Nothing of an entry ever reaches pip as
an option, a URL or a path: a name that is not a plain distribution name is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# PEP 508 names and PEP 440 public versions (the plain forms: no URLs, markers, extras, ranges),
# matched as whole strings (``fullmatch``: ``$`` would let a trailing newline through).
NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
VERSION = re.compile(r"[0-9]+(?:\.[0-9]+)*(?:(?:a|b|rc)[0-9]+)?(?:\.post[0-9]+)?(?:\.dev[0-9]+)?")
SHA256 = re.compile(r"[0-9a-f]{64}")


class EntryRefused(ValueError):
    """An index entry that cannot be installed safely; the message says which field and why."""


@dataclass(frozen=True)
class Pin:
    """One distribution to install: its name, exact version and the sha256 of its file."""

    package: str
    version: str
    sha256: str

    @property
    def requirement(self) -> str:
        """A line of a requirements file in pip's hash-checking mode."""
        return f"{self.package}=={self.version} --hash=sha256:{self.sha256}"


def pin_of(raw: Any, where: str) -> Pin:
    """The pin in ``raw`` (an index entry or one of its dependencies), or why it is refused."""
    if not isinstance(raw, dict):
        raise EntryRefused(f"{where}: not an object")
    package, version = str(raw.get("package") or ""), str(raw.get("version") or "")
    digest = str(raw.get("sha256") or "").lower()
    if package.startswith("-"):
        raise EntryRefused(f"{where}: package {package!r} looks like a pip option: refused")
    if not NAME.fullmatch(package):
        raise EntryRefused(
            f"{where}: package {package!r} is not a plain distribution name "
            "(no URLs, paths, options or version ranges)"
        )
    if not VERSION.fullmatch(version):
        raise EntryRefused(f"{where}: version {version!r} is not an exact version (e.g. 1.2.0)")
    if not digest:
        raise EntryRefused(f"{where}: no sha256 of the distribution file: refused")
    if not SHA256.fullmatch(digest):
        raise EntryRefused(f"{where}: sha256 {digest!r} is not 64 hex digits")
    return Pin(package, version, digest)


def pins_of(entry: dict[str, Any]) -> list[Pin]:
    """The plugin's own pin first, then its listed dependencies'."""
    name = entry.get("name")
    pins = [pin_of(entry, f"plugin {name!r}")]
    deps = entry.get("dependencies") or []
    if not isinstance(deps, list):
        raise EntryRefused(f"plugin {name!r}: dependencies is not a list")
    pins += [pin_of(d, f"plugin {name!r} dependency {i}") for i, d in enumerate(deps)]
    return pins


def dist_folder(index: dict[str, Any], index_path: Path) -> Path | None:
    """The folder of distribution files the index names (``dist``, relative to the index file);
    None: pip's configured package index serves them."""
    dist = index.get("dist") if isinstance(index, dict) else None
    if not dist:
        return None
    return (index_path.parent / str(dist)).resolve()


def pip_command(python: str, requirements: Path, dist: Path | None) -> list[str]:
    """pip in hash-checking mode, without dependencies, from ``dist`` alone when given."""
    cmd = [python, "-m", "pip", "install", "--require-hashes", "--no-deps", "-q"]
    cmd += ["--only-binary", ":all:"]  # a wheel is installed as is: no build step runs its code
    if dist is not None:
        cmd += ["--no-index", "--find-links", str(dist)]
    return [*cmd, "-r", str(requirements)]


def unmet(check_output: str, package: str) -> list[str]:
    """The lines of ``pip check`` about ``package`` (a dependency missing or of a wrong version)."""
    norm = re.sub(r"[-_.]+", "-", package).lower()
    lines = []
    for line in check_output.splitlines():
        first = re.sub(r"[-_.]+", "-", line.split(" ", 1)[0]).lower()
        if first == norm:
            lines.append(line.strip())
    return lines
