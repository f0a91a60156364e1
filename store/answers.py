"""Answers to questions: one per question, written with an insert that does nothing on a second."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from store._sql import rowcount, table_of, upsert_insert
from store.models import QuestionAnswer


class AnswerRepository:
    """Answers, within a unit of work (``AnswerRepository(tx.session)``)."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, request_id: str, *, text: str, choice: int | None, user: str, now: datetime) -> bool:
        """Record the answer; False if the question already had one (the key decides, not a read before)."""
        values = {"request_id": request_id, "text": text, "choice": choice, "user_id": user, "at": now}
        stmt = upsert_insert(self._session, table_of(QuestionAnswer)).on_conflict_do_nothing(
            index_elements=["request_id"]
        )
        return rowcount(await self._session.execute(stmt, values)) == 1

    async def of(self, request_ids: Sequence[str]) -> dict[str, QuestionAnswer]:
        """The answers of those of ``request_ids`` that have one (one query)."""
        if not request_ids:
            return {}
        query = select(QuestionAnswer).where(QuestionAnswer.request_id.in_(sorted(set(request_ids))))
        return {a.request_id: a for a in (await self._session.scalars(query)).all()}
