"""A real Radicale CalDAV server for tests: started on a free port, with one user, in a folder
of its own (``radicale`` from PyPI, installed with the dev requirements)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from baton_common.embedded import free_port
from caldav.davclient import DAVClient

USER, PASSWORD = "baton", "calendar-secret"


class Radicale:
    """``python -m radicale`` with htpasswd (plain) auth and owner-only rights."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder or Path(tempfile.mkdtemp(prefix="radicale-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Radicale:
        users = self.folder / "users"
        users.write_text(f"{USER}:{PASSWORD}\n")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "radicale", "--server-hosts", f"127.0.0.1:{self.port}",
             "--storage-filesystem-folder", str(self.folder / "collections"),
             "--auth-type", "htpasswd", "--auth-htpasswd-filename", str(users),
             "--auth-htpasswd-encryption", "plain", "--rights-type", "owner_only",
             "--logging-level", "warning"],
            stdout=subprocess.DEVNULL, stderr=open(self.folder / "radicale.log", "wb"),
        )  # fmt: skip
        self._wait()
        return self

    def _wait(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{self.url}/.web/", timeout=1)
                return
            except urllib.error.HTTPError:
                return  # it answers
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"radicale did not start: {(self.folder / 'radicale.log').read_text()}")

    def make_calendar(self, name: str) -> str:
        """A new collection ``/<user>/<name>/``; its URL."""
        client = DAVClient(url=f"{self.url}/{USER}/", username=USER, password=PASSWORD)
        made: Any = client.principal().make_calendar(name=name, cal_id=name)
        return str(made.url)

    def events(self, url: str) -> list[str]:
        """The ICS text of every object in the collection, straight from the server."""
        client = DAVClient(url=url, username=USER, password=PASSWORD)
        from caldav.collection import Calendar

        found: Any = Calendar(client=client, url=url).events()
        return [str(e.data) for e in found]

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
