"""Telling the requester: a DM to the person a reviewed request was made for, once it is decided.

Queued by :meth:`bot.service.transitions.Transitions._settle_many` (``slack.tell_requester``, one per
request by its dedupe key). The message is drawn from the request as stored when it is delivered
(outcome, who decided, for whom, the reason), and carries message metadata naming its outbox item, so
a retry after a lost answer finds the DM already sent and does not send it twice.
"""

from __future__ import annotations

from collections.abc import Collection
from functools import partial

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.blocks import Block, Card, cut, outcome_line, section
from bot.outbox.delivery import GiveUp, parse
from bot.outbox.notes import note_metadata
from bot.outbox.slackcalls import SlackCalls
from bot.policyset import PolicySet
from bot.queue import context
from bot.service import render
from bot.service.effects import Effect, TellRequester
from store.models import OutboxItem
from store.uow import uow


def requester_message(card: Card) -> tuple[str, list[Block]]:
    """The DM's text and blocks (pure): what was asked for you, and how it was decided, by whom, why."""
    asked = f"A request made on your behalf ({card.tenant}): *{card.summary}*"
    text = cut(f"{asked}\n{outcome_line(card)}", 3000)
    return text, [section(asked), section(outcome_line(card)), context(f"Request `{card.request_id}`")]


class RequesterDelivery:
    """Delivers :data:`Effect.TELL_REQUESTER`."""

    kinds: Collection[str] = frozenset({Effect.TELL_REQUESTER})

    def __init__(
        self, *, sessionmaker: async_sessionmaker[AsyncSession], slack: SlackCalls, policies: PolicySet
    ) -> None:
        self.sessionmaker = sessionmaker
        self.slack = slack
        self.policies = policies

    async def deliver(self, item: OutboxItem) -> None:
        payload = parse(TellRequester, item)
        async with uow(self.sessionmaker, read_only=True) as tx:
            row = await tx.requests.get(item.tenant, payload.request_id)
            votes = await tx.votes.votes(payload.request_id) if row is not None else []
        if row is None:
            raise GiveUp(f"no request {payload.request_id} of {item.tenant}")
        card = render.card(row, votes, [], self.policies.tenants.get(row.tenant), for_stage=row.stage)
        text, blocks = requester_message(card)
        self.slack.pace([payload.user], item.id)
        meta = note_metadata(item)
        if item.attempts > 1:
            what = f"the decision of {row.id} to its requester {payload.user}"
            if await self.slack.find_in_dm(payload.user, meta, since=item.created_at, what=what):
                return
        post = partial(
            self.slack.client.chat_postMessage,
            channel=payload.user,
            text=text,
            blocks=blocks,
            metadata=meta.model_dump(),
        )
        await self.slack.call("chat.postMessage", post)
