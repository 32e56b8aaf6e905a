"""The domain errors every service's rules raise. `status` is the HTTP status the API answers with.

Minimal stand-in (the shared version is written on another branch; the merge takes that one): the names
and constructor signatures here are the agreed ones.
"""

from __future__ import annotations


class DomainError(Exception):
    """A command the rules refuse."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidCommand(DomainError):
    status = 400


class NotAllowed(DomainError):
    status = 403


class NotFound(DomainError):
    status = 404


class Conflict(DomainError):
    status = 409
