"""The one base of the services' domain errors, so every boundary translates them the same way."""

from __future__ import annotations


class ServiceError(Exception):
    """A request a service does not take, for a reason the caller can act on: ``status`` is the
    HTTP-like answer (a class sets its own), ``detail`` the reason in words."""

    status = 400

    def __init__(self, detail: str, status: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if status is not None:
            self.status = status
