"""Where a request's cards were posted (channel and ts), so updates and thread notes find them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from policy.types import Status
from store._sql import table_of
from store.models import Card, Request


@dataclass(frozen=True, slots=True)
class NewCard:
    """A card just posted (see :meth:`CardRepository.add_cards`)."""

    request_id: str
    stage: int
    channel: str
    ts: str


class CardRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add_card(self, request_id: str, *, stage: int, channel: str, ts: str, now: datetime) -> Card:
        """Remember where a card was posted (``chat.postMessage`` channel and ts)."""
        card = Card(request_id=request_id, stage=stage, channel=channel, ts=ts, created_at=now)
        self._session.add(card)
        await self._session.flush()
        return card

    async def add_cards(self, cards: Sequence[NewCard], *, now: datetime) -> None:
        """Remember where many cards were posted, in one statement (the outbox worker's batch)."""
        if cards:
            rows = [
                {"request_id": c.request_id, "stage": c.stage, "channel": c.channel, "ts": c.ts, "created_at": now}
                for c in cards
            ]
            await self._session.execute(insert(table_of(Card)), rows)

    async def cards_of(self, request_ids: Sequence[str]) -> dict[str, list[Card]]:
        """Each of ``request_ids``' cards, by stage (one query)."""
        found: dict[str, list[Card]] = {r: [] for r in request_ids}
        if request_ids:
            query = select(Card).where(Card.request_id.in_(sorted(set(request_ids)))).order_by(Card.stage, Card.id)
            for card in (await self._session.scalars(query)).all():
                found[card.request_id].append(card)
        return found

    async def of_pending(self) -> Sequence[Card]:
        """Every card of a request still pending, oldest first."""
        query = (
            select(Card)
            .join(Request, Request.id == Card.request_id)
            .where(Request.status == Status.PENDING)
            .order_by(Card.id)
        )
        return (await self._session.scalars(query)).all()

    async def forget(self, card_ids: Sequence[int]) -> None:
        """Drop cards that are not in Slack any more (so the stage's card can be posted again)."""
        if card_ids:
            await self._session.execute(delete(Card).where(Card.id.in_(card_ids)))

    async def cards(self, request_id: str) -> Sequence[Card]:
        """The request's cards, by stage."""
        result = await self._session.scalars(
            select(Card).where(Card.request_id == request_id).order_by(Card.stage, Card.id)
        )
        return result.all()
