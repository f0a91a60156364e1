"""Who has opened the bot's App Home.

A Home tab is re-published after every vote and decision that changes what it shows. Publishing
one for somebody who never opened it is wasted work (they get a fresh one the moment they open
it), and in a pool of a hundred reviewers that waste was most of what a decision cost.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from store._sql import upsert_insert
from store.models.homes import HomeViewer


class HomeViewers:
    """Records Home openings and filters people down to those who have a Home tab to refresh."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def opened(self, user: str, *, now: datetime) -> None:
        """``user`` opened the App Home (only the first time is kept)."""
        stmt = upsert_insert(self._session, HomeViewer).values(user_id=user, first_opened_at=now)
        await self._session.execute(stmt.on_conflict_do_nothing(index_elements=["user_id"]))

    async def among(self, users: Iterable[str]) -> set[str]:
        """Those of ``users`` who have opened the App Home."""
        wanted = sorted(set(users))
        if not wanted:
            return set()
        rows = await self._session.scalars(select(HomeViewer.user_id).where(HomeViewer.user_id.in_(wanted)))
        return set(rows)
