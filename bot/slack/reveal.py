"""The card's Reveal button at the Slack edge: masked params shown to the one reviewer who pressed it.

The values go only where only that person can see them: the click's ``response_url`` as an ephemeral,
else ``chat.postEphemeral`` in the card's channel; never a DM or a channel message, and nothing at all
when the click has neither (the use case has audited the reveal by then, so the log over-reports
rather than under-reports). Refusals are explained the same way.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bot import reviewblocks
from bot.ids import ActionId
from bot.payloads import CardRef, parse_block_actions
from bot.service.reveals import RevealOutcome
from bot.slack.listeners import report_error, tell_clicker

log = logging.getLogger(__name__)


class RevealService(Protocol):
    async def reveal(self, *, ref: CardRef, user: str) -> RevealOutcome:
        """Audit and return the request's revealable fields for ``user``, or why not. Raises NotFound."""
        ...


def outcome_text(outcome: RevealOutcome) -> str:
    if outcome.refusal is not None:
        return reviewblocks.reveal_refusal_text(outcome.refusal)
    return reviewblocks.reveal_text([(f.field, f.values) for f in outcome.fields], outcome.withheld)


def register(app: AsyncApp, service: RevealService) -> None:
    """Attach the Reveal listener (before the catch-all of :func:`bot.slack.listeners.register`)."""

    @app.action(ActionId.REVEAL.value)
    async def reveal(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient, respond: AsyncRespond) -> None:
        await ack()
        try:
            click = parse_block_actions(body)
            outcome = await service.reveal(ref=CardRef.loads(click.action.value), user=click.user.id)
            await tell_clicker(respond, client, click, outcome_text(outcome), dm=False)  # a value never goes to a DM
        except Exception as exc:
            await report_error(exc, body, respond, client)
