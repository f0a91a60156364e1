"""Request state transitions (placeholder during the restructure: the decided effects)."""

from __future__ import annotations

from datetime import datetime

from bot.service.effects import Callback, Effect, Thread, UpdateCards, callback_key, enqueue, refresh_homes
from policy import Mode
from store.models import Request
from store.uow import Tx


async def enqueue_decided(tx: Tx, row: Request, now: datetime, note: str) -> None:
    """What every decision causes: cards re-rendered, a note in their threads, the agent's callback."""
    await enqueue(tx, row.tenant, Effect.UPDATE_CARDS, UpdateCards(request_id=row.id), now)
    await enqueue(tx, row.tenant, Effect.THREAD, Thread(request_id=row.id, text=note), now)
    if row.mode is Mode.ASYNC and row.callback_url:
        await enqueue(tx, row.tenant, Effect.CALLBACK, Callback(request_id=row.id), now, callback_key(row.id))
    # The request leaves every reviewer's App Home queue.
    await refresh_homes(tx, row.tenant, row.id, now)
