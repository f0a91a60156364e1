"""Errors of the bot package, each turned into a friendly message by one handler.

BotError
├── BadPayload        Slack sent something we cannot read (a foreign button, a malformed form)
├── NotFound          a request id or tenant that this caller cannot see
├── Forbidden         the caller may not do this (not an admin, another tenant's key)
├── Conflict          an idempotency key reused with a different body; a request already decided
└── InvalidRequest    an agent's request the policy or the tenant's settings refuse (HTTP 422)
"""

from __future__ import annotations


class BotError(Exception):
    """Root of the bot's errors; ``user_message`` is safe to show to a person."""

    def __init__(self, user_message: str) -> None:
        super().__init__(user_message)
        self.user_message = user_message


class BadPayload(BotError):
    """Raised when a Slack payload or an agent body cannot be parsed."""


class NotFound(BotError):
    """Raised when something does not exist for this caller (other tenants' things included)."""


class Forbidden(BotError):
    """Raised when the caller is not allowed to do what it asked."""


class Conflict(BotError):
    """Raised on a state conflict the caller can resolve (idempotency mismatch, already decided)."""


class InvalidRequest(BotError):
    """Raised for an agent's request the policy or the tenant's settings refuse (HTTP 422)."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
