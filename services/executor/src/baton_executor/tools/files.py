"""``files.read``, ``files.write`` and ``files.delete``, confined to the workspace's sandbox."""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from baton_executor.tools.base import ToolContext, ToolError
from baton_executor.tools.misc import catalogue_spec

# Idempotency keys of appends already applied, one JSON line each.
MARKER = ".baton-idempotency"


def _resolve(ctx: ToolContext, path: str) -> tuple[Path, Path]:
    """The sandbox root and the real target path; anything outside the sandbox is refused."""
    root = ctx.sandbox
    root.mkdir(parents=True, exist_ok=True)
    root = root.resolve()
    if not path or Path(path).is_absolute():
        raise ToolError(f"path {path!r} must be relative to the sandbox", retryable=False)
    # resolve() follows symlinks and "..", so the check sees where the file really is.
    target = (root / path).resolve()
    if not target.is_relative_to(root) or target == root:
        raise ToolError(f"path {path!r} is outside the sandbox", retryable=False)
    if target.relative_to(root).parts[0] == MARKER:
        raise ToolError(f"path {path!r} is reserved", retryable=False)
    return root, target


def _relative(root: Path, target: Path) -> str:
    """The target as a sandbox-relative POSIX path."""
    return target.relative_to(root).as_posix()


class _SandboxFileTool:
    """A files tool: its work on ``input["path"]``, resolved in the sandbox, runs off the event
    loop (file I/O blocks)."""

    async def run(self, input: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        return await asyncio.to_thread(self._run, input, ctx)

    def _run(self, input: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        root, target = _resolve(ctx, input["path"])
        return self.on(input, ctx, root, target)

    def on(self, input: dict[str, Any], ctx: ToolContext, root: Path, target: Path) -> Any:
        raise NotImplementedError


class FilesRead(_SandboxFileTool):
    """Reads a UTF-8 text file from the sandbox: its text and size; a missing file fails
    without retry."""

    spec = catalogue_spec("files.read")

    def on(self, input: dict[str, Any], ctx: ToolContext, root: Path, target: Path) -> Any:
        if not target.is_file():
            raise ToolError(f"files.read: no file at {input['path']!r}", retryable=False)
        data = target.read_bytes()
        content = data.decode("utf-8", "replace")
        return {"path": _relative(root, target), "content": content, "bytes": len(data)}


class FilesWrite(_SandboxFileTool):
    """Writes (atomically) or appends (once per idempotency key) text to a sandbox file;
    ``bytes`` is the size of ``content`` in UTF-8."""

    spec = catalogue_spec("files.write")

    def on(self, input: dict[str, Any], ctx: ToolContext, root: Path, target: Path) -> Any:
        if target.is_dir():
            raise ToolError(f"files.write: {input['path']!r} is a folder", retryable=False)
        target.parent.mkdir(parents=True, exist_ok=True)
        data = input["content"].encode()
        relative = _relative(root, target)
        if input.get("append", False):
            _append_once(root, target, relative, data, ctx.idempotency_key)
        else:
            _replace(target, data)
        return {"path": relative, "bytes": len(data)}


def _replace(target: Path, data: bytes) -> None:
    """Write via a temp file and ``os.replace`` so readers never see a half-written file."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _append_once(root: Path, target: Path, relative: str, data: bytes, key: str) -> None:
    """Append unless this key already appended to this file (a retry of the same step)."""
    marker = root / MARKER
    entry = json.dumps([key, relative])
    if marker.exists() and entry in marker.read_text("utf-8").splitlines():
        return
    # O_APPEND keeps concurrent appends from other steps intact. A crash between these two
    # writes would re-append on retry; the window is two local writes wide.
    with target.open("ab") as f:
        f.write(data)
    with marker.open("a", encoding="utf-8") as f:
        f.write(entry + "\n")


class FilesDelete(_SandboxFileTool):
    """Deletes a sandbox file; a file that is already gone is not an error (``deleted`` says
    whether there was one)."""

    spec = catalogue_spec("files.delete")

    def on(self, input: dict[str, Any], ctx: ToolContext, root: Path, target: Path) -> Any:
        if target.is_dir():
            raise ToolError(f"files.delete: {input['path']!r} is a folder", retryable=False)
        try:
            target.unlink()
        except FileNotFoundError:
            return {"path": _relative(root, target), "deleted": False}
        return {"path": _relative(root, target), "deleted": True}
