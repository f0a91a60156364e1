"""What an edit of a request's params writes (edit then approve, ``bot.service.edits``): the params
replaced under a compare-and-set, the approvals cast on the old params withdrawn, the old route's stages
superseded. The caller holds the request's row lock; each statement is still conditional."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from policy.sensitive import params_sha256
from policy.types import Choice, Status
from store._sql import rowcount
from store.models import Request, RequestStage, Vote


@dataclass(frozen=True, slots=True)
class ParamsEdit:
    """The request's new params and, when the edit moves it, its new approvals and current stage."""

    params: Mapping[str, Any]
    edited_by: str
    approvals_required: int
    stage: int


async def replace_params(session: AsyncSession, row: Request, edit: ParamsEdit, *, now: datetime) -> bool:
    """Write ``edit`` on the pending ``row`` if it is still at the version read (compare-and-set); the agent's
    params are kept in ``original_params`` at the first edit. ``row`` is brought up to date in memory.

    Returns:
        False if the request changed or was decided meanwhile (nothing written).
    """
    original = row.original_params if row.original_params is not None else dict(row.params)
    values: dict[str, Any] = {
        "params": dict(edit.params),
        "params_sha256": params_sha256(row.action, edit.params),
        "original_params": original,
        "edited_by": edit.edited_by,
        "approvals_required": edit.approvals_required,
        "stage": edit.stage,
    }
    result = await session.execute(
        update(Request)
        .where(Request.id == row.id, Request.version == row.version, Request.status == Status.PENDING)
        .values(**values, version=Request.version + 1, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if rowcount(result) != 1:
        return False
    for name, value in {**values, "version": row.version + 1, "updated_at": now}.items():
        set_committed_value(row, name, value)
    return True


async def withdraw_approvals(session: AsyncSession, request_id: str) -> None:
    """Delete the approvals cast so far: they approved other params (the audit keeps each ``vote.cast``)."""
    await session.execute(
        delete(Vote)
        .where(Vote.request_id == request_id, Vote.choice == Choice.APPROVE)
        .execution_options(synchronize_session=False)
    )


async def supersede(session: AsyncSession, request_id: str, indices: Sequence[int], *, now: datetime) -> None:
    """Close the old route's stages: their pools stop counting, and their deadlines and reminders never fire
    (an unfired ``fired_at`` is what the deadline watcher looks for)."""
    if not indices:
        return
    these = (RequestStage.request_id == request_id, RequestStage.index.in_(list(indices)))
    await session.execute(
        update(RequestStage).where(*these).values(superseded_at=now).execution_options(synchronize_session=False)
    )
    await session.execute(
        update(RequestStage)
        .where(*these, RequestStage.fired_at.is_(None))
        .values(fired_at=now)
        .execution_options(synchronize_session=False)
    )
