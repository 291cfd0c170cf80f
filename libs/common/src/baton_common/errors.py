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


# The refusals every service gives, by their answer (a service adds its own where they say more).


class Forbidden(ServiceError):
    """The caller may not do this (its role, or who may decide)."""

    status = 403


class NotFound(ServiceError):
    status = 404


class Conflict(ServiceError):
    """Not now, or not again: the name is taken, the gate is no longer open, …"""

    status = 409


class TooLarge(ServiceError):
    status = 413


class Invalid(ServiceError):
    """An input that can never work, and why."""

    status = 422
