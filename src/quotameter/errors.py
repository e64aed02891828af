"""Errors the API speaks, mapped to HTTP in one place (`server.py`)."""

from __future__ import annotations


class QuotameterError(Exception):
    status = 400

    def __init__(self, message: str, *, errors: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors


class NotFound(QuotameterError):
    status = 404


class Invalid(QuotameterError):
    status = 422


class PayloadTooLarge(QuotameterError):
    status = 413


class Conflict(QuotameterError):
    status = 409


class BadRequest(QuotameterError):
    status = 400


class UnsupportedMediaType(QuotameterError):
    status = 415


class Unauthorized(QuotameterError):
    status = 401


class Forbidden(QuotameterError):
    status = 403


class Overloaded(QuotameterError):
    """The database was too busy with other writes to take this one in time: nothing of it was
    stored, and sending it again after `retry_after` seconds is safe (event and consumption
    ids make a repeat count once). Answered 503 with a Retry-After header."""

    status = 503

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def shown(value: object, limit: int = 60) -> str:
    """A value as an error message quotes it: its repr, cut short when long (a body may be
    megabytes, and the answer should not echo it)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."
