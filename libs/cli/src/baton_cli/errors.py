"""The CLI's one error: a failure shown as one clear line, never a traceback."""

from __future__ import annotations


class CliError(Exception):
    """A failure to show as one clear line (exit code 2 unless said otherwise)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code
