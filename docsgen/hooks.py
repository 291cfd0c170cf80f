"""MkDocs hooks (``mkdocs.yml``): the pages made from the code at build time, so they cannot
drift from it: the CLI reference (argparse), the HTTP API reference (the OpenAPI document), and
the home page (the README, its links made relative to the site)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# MkDocs puts this file's folder on sys.path only while it loads it: its siblings are imported now.
import api_reference
import cli_reference
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent


def on_files(files: Files, config: Any) -> Files:
    doc = api_reference.document()
    pages = {
        "index.md": home(),
        "reference/cli.md": cli_reference.markdown(),
        "reference/http-api.md": api_reference.markdown(doc),
        "reference/openapi.json": json.dumps(doc, indent=2),
    }
    for uri, content in pages.items():
        files.append(File.generated(config, uri, content=content))
    return files


def home() -> str:
    """The README, as the site's home: its ``docs/…`` links point into the site."""
    return (ROOT / "README.md").read_text().replace("](docs/", "](")
