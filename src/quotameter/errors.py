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


def shown(value: object, limit: int = 60) -> str:
    """A value as an error message quotes it: its repr, cut short when long (a body may be
    megabytes, and the answer should not echo it)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 3]}..."
