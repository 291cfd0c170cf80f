"""Where expired execution histories go: a local folder or an S3-compatible bucket.

An archived execution is two objects under ``<workspace>/<YYYY>/<MM>/<DD>/`` (the day it was
created): ``<execution>.jsonl.gz``, its whole history as gzipped JSON lines, and
``<execution>.manifest.json``, what it holds with the history's SHA-256. Keys are
deterministic, so writing one again (a sweep resumed after a crash) replaces it with the same
bytes. ``BATON_ARCHIVE_URL=s3://bucket/prefix`` picks a bucket (boto3: the endpoint from
``BATON_ARCHIVE_ENDPOINT`` or the usual ``AWS_*`` variables); else ``BATON_ARCHIVE_DIR``, by
default ``<data dir>/archive``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse
from uuid import UUID

import orjson

FORMAT = 1
# Files synced at once: the file system joins syncs that wait together into one journal commit
# (one flush of the disk), where syncs one after another each pay a whole commit.
SYNCS_AT_ONCE = 32


class ArchiveError(RuntimeError):
    """The archive could not be written or read (the history stays where it was)."""


class ArchiveStore(Protocol):
    """Objects by key: what a local folder and a bucket both do."""

    where: str

    def put(self, key: str, data: bytes) -> None: ...

    def put_many(self, objects: dict[str, bytes]) -> None: ...

    def get(self, key: str) -> bytes | None: ...

    def keys(self, prefix: str) -> list[str]: ...

    def delete_prefix(self, prefix: str) -> int: ...

    def clean(self) -> int: ...


# Where a folder archive's objects are written before they are renamed into place: one folder,
# so a sweep finds what a killed write left (``clean``) without walking the whole archive.
INCOMING = ".incoming"


class LocalArchive:
    """A folder; an object is written to a temporary file, synced, then renamed into place."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.where = str(root)
        self._resolved = root.resolve()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self._resolved):
            raise ArchiveError(f"archive key {key!r} leaves the archive folder")
        return path

    def put(self, key: str, data: bytes) -> None:
        self.put_many({key: data})

    def put_many(self, objects: dict[str, bytes]) -> None:
        """Write every object to a temporary file, sync them all, rename them into place, then
        sync each folder once. The files are all written before the first sync: a file system
        that journals (ext4, XFS) then flushes them in one commit, and the syncs after the first
        find little left to do (200 objects: 4 s synced one after the other, here)."""
        parts: list[tuple[str, Path]] = []
        try:
            for key, data in objects.items():
                path = self._path(key)
                parts.append((self._written(self.root / INCOMING, path, data), path))
            with ThreadPoolExecutor(SYNCS_AT_ONCE) as pool:
                list(pool.map(_sync, [Path(part) for part, _ in parts]))
            for part, path in parts:
                os.replace(part, path)
        finally:
            for part, _ in parts:
                Path(part).unlink(missing_ok=True)
        # A rename is durable only once its folder is synced: without it, a power loss after
        # the removal committed could leave the object missing.
        for folder in {path.parent for _, path in parts}:
            _sync(folder)

    @staticmethod
    def _written(incoming: Path, path: Path, data: bytes) -> str:
        """A temporary file of this writer's own for ``path`` (not synced yet) in the archive's
        ``incoming`` folder (the same file system: the rename is atomic), where the next sweep
        finds it if this write is killed half-way (``clean``)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        incoming.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(
            dir=incoming, prefix=path.name + ".", suffix=".part", delete=False
        ) as out:
            out.write(data)
        return out.name

    def get(self, key: str) -> bytes | None:
        path = self._path(key)
        return path.read_bytes() if path.is_file() else None

    def keys(self, prefix: str) -> list[str]:
        base = self._path(prefix) if prefix else self.root
        if not base.exists():
            return []
        found = [
            p
            for p in base.rglob("*")
            if p.is_file() and not p.name.endswith(".part") and INCOMING not in p.parts
        ]
        return sorted(str(p.relative_to(self.root.resolve())) for p in found)

    def delete_prefix(self, prefix: str) -> int:
        """Remove every object under ``prefix`` (a folder): how many there were."""
        found = len(self.keys(prefix))
        shutil.rmtree(self._path(prefix), ignore_errors=True)
        return found

    def clean(self) -> int:
        """Remove the temporary files of writes that were killed half-way (the caller knows no
        write is under way: it holds the sweep's lock): how many."""
        found = list((self.root / INCOMING).glob("*.part"))
        for part in found:
            part.unlink(missing_ok=True)
        return len(found)


class S3Archive:
    """A bucket (and a prefix in it) of any S3-compatible server, through boto3."""

    def __init__(self, url: str, endpoint: str | None = None) -> None:
        import boto3

        parsed = urlparse(url)
        if not parsed.netloc:
            raise ArchiveError(f"BATON_ARCHIVE_URL {url!r}: give s3://bucket/prefix")
        self.bucket, self.prefix = parsed.netloc, parsed.path.strip("/")
        self.where = url
        self.client = boto3.client("s3", endpoint_url=endpoint or None)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def put_many(self, objects: dict[str, bytes]) -> None:
        for key, data in objects.items():  # a bucket has no batch write; each put is durable
            self.put(key, data)

    def get(self, key: str) -> bytes | None:
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except self.client.exceptions.NoSuchKey:
            return None
        return bytes(answer["Body"].read())

    def keys(self, prefix: str) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._key(prefix)
        )
        cut = len(self._key(""))
        return sorted(o["Key"][cut:] for page in pages for o in page.get("Contents", []))

    def clean(self) -> int:
        """Nothing to clean: a put is whole or absent."""
        return 0

    def delete_prefix(self, prefix: str) -> int:
        keys = self.keys(prefix)
        for start in range(0, len(keys), 1000):  # the API's most per call
            chunk = [{"Key": self._key(k)} for k in keys[start : start + 1000]]
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": chunk})
        return len(keys)


def _sync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_archive(data_dir: Path | None = None) -> ArchiveStore:
    """The installation's archive, from the environment (see the module's docstring)."""
    if url := os.environ.get("BATON_ARCHIVE_URL"):
        if not url.startswith("s3://"):
            raise ArchiveError(f"BATON_ARCHIVE_URL {url!r}: only s3://bucket/prefix is known")
        return S3Archive(url, os.environ.get("BATON_ARCHIVE_ENDPOINT"))
    folder = os.environ.get("BATON_ARCHIVE_DIR")
    if folder:
        return LocalArchive(Path(folder))
    base = data_dir or Path(os.environ.get("BATON_DATA_DIR", ".baton"))
    return LocalArchive(base / "archive")


# --- the objects --------------------------------------------------------------------------------


def object_key(workspace_id: str, execution_id: UUID, created_at: datetime) -> str:
    return f"{workspace_id}/{created_at:%Y/%m/%d}/{execution_id}.jsonl.gz"


def manifest_key(key: str) -> str:
    return key.removesuffix(".jsonl.gz") + ".manifest.json"


def encode(lines: list[dict[str, Any]]) -> bytes:
    """Gzipped JSON lines, byte for byte the same for the same lines (no time in the header)."""
    # Keys in the order read (jsonb's own): a replay prints them as it did before archival.
    return gzip.compress(b"".join(map(_line, lines)), compresslevel=6, mtime=0)


# Times as str() writes them, int keys as strings: what json.dumps(default=str) wrote before.
_DUMP = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS


def _line(line: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(line, default=str, option=_DUMP) + b"\n"
    except orjson.JSONEncodeError:  # what orjson refuses (a lone surrogate): escaped instead
        return (json.dumps(line, default=str) + "\n").encode()


def loads(data: str | bytes) -> Any:
    """A JSON document: orjson (~5x faster), else the standard library, which also reads what
    orjson refuses (integers past 64 bits)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


def decode(data: bytes) -> Iterator[dict[str, Any]]:
    for line in gzip.decompress(data).splitlines():
        if line.strip():
            yield json.loads(line)


def checksum(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_verified(archive: ArchiveStore, key: str, data: bytes, manifest: dict[str, Any]) -> None:
    """Write one history and its manifest, verified (``write_all``)."""
    write_all(archive, [(key, data, manifest)])


def write_all(archive: ArchiveStore, histories: list[tuple[str, bytes, dict[str, Any]]]) -> None:
    """Write histories (key, data, manifest) and their manifests, then read each history back
    and check its checksum: only a verified archive lets a history be removed."""
    written: dict[str, bytes] = {}
    for key, data, manifest in histories:
        written[key] = data
        written[manifest_key(key)] = json.dumps(manifest, indent=2, sort_keys=True).encode()
    archive.put_many(written)
    for key, _, manifest in histories:
        back = archive.get(key)
        if back is None or checksum(back) != manifest["sha256"]:
            raise ArchiveError(f"archive {key} did not read back as written")


def read_verified(archive: ArchiveStore, key: str, sha256: str) -> list[dict[str, Any]]:
    """The lines of an archived history, after checking them against the recorded checksum."""
    data = archive.get(key)
    if data is None:
        raise ArchiveError(f"archive {key} is missing from {archive.where}")
    if checksum(data) != sha256:
        raise ArchiveError(f"archive {key} does not match its checksum: refusing to read it")
    return list(decode(data))
