"""The exceptions the connector raises on purpose; each carries its HTTP status."""

from __future__ import annotations

from typing import Any


class ConnectorError(Exception):
    """Base class: a clear message for the caller and the HTTP status that goes with it."""

    status: int = 400
    message: str = "bad request"

    def __init__(self, message: str | None = None, *, details: Any = None) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message
        self.details = details


class BadRequest(ConnectorError):
    status, message = 400, "bad request"


class Unauthorized(ConnectorError):
    status, message = 401, "missing or wrong API key"


class Forbidden(ConnectorError):
    status, message = 403, "not allowed"


class NotFound(ConnectorError):
    status, message = 404, "not found"


class UnknownFlow(NotFound):
    message = "unknown flow"


class RunNotFound(NotFound):
    message = "run not found"


class Conflict(ConnectorError):
    status, message = 409, "conflict"


class AlreadyDecided(Conflict):
    message = "this run has already been decided"


class LinkInvalid(NotFound):
    message = "this link is not valid"


class LinkExpired(ConnectorError):
    status, message = 410, "this link has expired"


class BodyTooLarge(ConnectorError):
    status, message = 413, "request body too large"


class ValidationFailed(ConnectorError):
    status, message = 422, "invalid request"


class ResumeUrlRefused(BadRequest):
    message = "resume URL refused"


class NotAllowedToDecide(Forbidden):
    message = "you may not decide this run"


class EditNotAllowed(ValidationFailed):
    message = "this field may not be edited"
