"""What the Slack listeners need from the rest of the service (implemented by ``bot.service``)."""

from __future__ import annotations

from typing import Any, Protocol

from bot.payloads import CardRef
from bot.reviewblocks import Details
from bot.service.models import VoteOutcome
from policy.types import Choice, Refusal


class ReviewService(Protocol):
    async def vote(self, *, ref: CardRef, user: str, choice: Choice, reason: str | None) -> VoteOutcome:
        """Record a click; refused clicks are audited too. Raises NotFound for unknown requests."""
        ...

    async def refusal_for(self, *, ref: CardRef, user: str) -> Refusal | None:
        """Would this person's vote be refused right now? (checked before opening the reject modal)."""
        ...

    async def details(self, *, ref: CardRef, user: str) -> Details:
        """The card's full details and audit trail, for a member of the tenant."""
        ...

    async def summary(self, *, ref: CardRef) -> str:
        """The request's one-line summary."""
        ...

    async def audit_refused_slack_request(self, *, reason: str, detail: dict[str, Any]) -> None:
        """Audit Slack requests that were not acted on (bad signature, unknown action...).

        ``detail`` is what :class:`bot.slack.refusals.RefusalLog` aggregated: ``count`` refusals
        for ``reason`` since the last such event, and ``request``, what is kept of the last one.
        """
        ...
