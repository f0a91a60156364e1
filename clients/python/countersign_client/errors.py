"""The client's errors: one tree, rooted at ``CountersignError``."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from countersign_client.models import ApprovalRequest


class CountersignError(Exception):
    """The root of every error this package raises."""


class ConfigurationError(CountersignError):
    """The client cannot be set up: no URL or key, or one that cannot be right."""


class ApiError(CountersignError):
    """The service answered with an error: ``status``, and ``code`` / ``message`` / ``field`` from its body."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.field = field


class RateLimited(ApiError):
    """429: over the API key's or the tenant's rate limit; ``retry_after`` seconds later the call may pass."""

    def __init__(self, code: str, message: str, retry_after: float) -> None:
        super().__init__(429, code, message)
        self.retry_after = retry_after


class Unreachable(CountersignError):
    """No answer: the service is down, the URL is wrong, or the call timed out (after the retries)."""

    def __init__(self, url: str, reason: object) -> None:
        super().__init__(f"no answer from {url} ({reason}): is the service (or the sandbox) running?")
        self.url = url


class Rejected(CountersignError):
    """A human, the policy or a timeout said no. ``request`` is the decided request."""

    def __init__(self, request: ApprovalRequest) -> None:
        decision = request.decision
        reason = decision.reason if decision is not None and decision.reason else "no reason given"
        by = f" by {decision.by}" if decision is not None else ""
        super().__init__(f"{request.action} was {request.status}{by}: {reason}")
        self.request = request


class StillPending(CountersignError):
    """The wait ran out before anyone decided. ``request`` is the request as it stands (still pending)."""

    def __init__(self, request: ApprovalRequest) -> None:
        super().__init__(f"{request.action} is still pending after the wait (request {request.id})")
        self.request = request
