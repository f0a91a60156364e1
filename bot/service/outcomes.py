"""Side effects queued in the outbox, shared by every use case that changes a request."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from bot.commands.refresh import refresh_homes
from bot.effects import Callback, Effect, Thread, UpdateCards
from policy import Mode
from store.models import Request
from store.uow import Tx


async def enqueue(
    tx: Tx, row: Request, kind: Effect, payload: BaseModel, now: datetime, dedupe_key: str | None = None
) -> None:
    """Queue one side effect in the caller's unit of work (it commits or rolls back with it)."""
    await tx.outbox.enqueue(row.tenant, kind.value, payload.model_dump(), now=now, dedupe_key=dedupe_key)


async def enqueue_decided(tx: Tx, row: Request, now: datetime, note: str) -> None:
    """What every decision causes: cards re-rendered, a note in their threads, the agent's callback."""
    await enqueue(tx, row, Effect.UPDATE_CARDS, UpdateCards(request_id=row.id), now)
    await enqueue(tx, row, Effect.THREAD, Thread(request_id=row.id, text=note), now)
    if row.mode is Mode.ASYNC and row.callback_url:
        await enqueue(tx, row, Effect.CALLBACK, Callback(request_id=row.id), now, f"callback:{row.id}")
    # The request leaves every reviewer's App Home queue.
    await refresh_homes(tx, row.tenant, row.id, now)
