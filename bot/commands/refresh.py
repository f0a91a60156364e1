"""Home tabs go stale when a request they show is voted on or decided: an outbox effect re-publishes them.

The effect is written in the same transaction as the vote (so it is never lost) and delivered
by the outbox worker (:class:`bot.slack.home.HomeRefresher`). Every counted vote changes what
the queues of all the request's reviewers show (its approvals, or that it is gone).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from store.uow import Tx

REFRESH_HOMES = "slack.refresh_homes"


class RefreshHomes(BaseModel):
    model_config = ConfigDict(frozen=True)
    request_id: str
    users: list[str] | None = None  # None: every member of the request's stages' pools


async def refresh_homes(
    tx: Tx, tenant: str, request_id: str, now: datetime, *, users: Sequence[str] | None = None
) -> None:
    """Queue a re-publish of the Home tabs that may show ``request_id``."""
    payload = RefreshHomes(request_id=request_id, users=list(users) if users is not None else None)
    await tx.outbox.enqueue(tenant, REFRESH_HOMES, payload.model_dump(), now=now)
