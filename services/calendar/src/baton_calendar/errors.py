"""The calendar service's errors: each says what is wrong in words a caller can act on."""

from __future__ import annotations

from typing import Any


class CalendarError(Exception):
    """Base of the calendar service's errors; ``status`` is the HTTP-like answer."""

    status = 400
    retryable = False

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class BadInput(CalendarError):
    """An input that can never work: names its field."""

    status = 422

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class NotFound(CalendarError):
    status = 404


class Conflicts(CalendarError):
    """``conflict: fail`` (or ``ask``) and the time overlaps other events."""

    status = 409

    def __init__(self, detail: str, conflicts: list[dict[str, str]]) -> None:
        super().__init__(detail)
        self.conflicts = conflicts


class AskFirst(CalendarError):
    """``conflict: ask`` and the time overlaps other events: a person decides. ``ask`` is the
    question for the executor's gate (``contracts.ToolAsk``): what was found, and the input that
    books it anyway once approved."""

    status = 409

    def __init__(self, detail: str, ask: dict[str, Any]) -> None:
        super().__init__(detail)
        self.ask = ask


class ServerError(CalendarError):
    """The CalDAV server could not be reached or said no; ``detail`` carries its answer.
    Unreachable is retryable (it may come back); a refusal (401, 403, 404) is not."""

    status = 502

    def __init__(self, detail: str, retryable: bool = True) -> None:
        super().__init__(detail)
        self.retryable = retryable


class Refused(CalendarError):
    """The egress guard refused the CalDAV server's address; the detail names the rule."""

    status = 422
