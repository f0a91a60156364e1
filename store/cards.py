"""Where a request's cards were posted (channel and ts), so updates and thread notes find them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from store.models import Card


class CardRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add_card(self, request_id: str, *, stage: int, channel: str, ts: str, now: datetime) -> Card:
        """Remember where a card was posted (``chat.postMessage`` channel and ts)."""
        card = Card(request_id=request_id, stage=stage, channel=channel, ts=ts, created_at=now)
        self._session.add(card)
        await self._session.flush()
        return card

    async def cards(self, request_id: str) -> Sequence[Card]:
        """The request's cards, by stage."""
        result = await self._session.scalars(
            select(Card).where(Card.request_id == request_id).order_by(Card.stage, Card.id)
        )
        return result.all()
